"""The cartoon person: a 2D kinematic body model (proportions, build, lean, joint angles), its
clothing and colours, the shapes that make up its silhouette, and drawing one person.

Body units: the standing height is 1, x to the image right, y down, pelvis at the origin. Every
person faces the camera (face, V-neck, buttons on the front), so a person's right side is on the
image's left; nothing is colour-coded by side and the pose distribution is left/right symmetric.
"""
import colorsys
import math

import cv2
import numpy as np

from posekit.data.descriptors import COCO_JOINTS, MPII_JOINTS

_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 px
_ONE = 1 << _SHIFT

# Points of the body model: the MPII names plus the COCO face points.
_FACE_POINTS = ['nose', 'l_eye', 'r_eye', 'l_ear', 'r_ear']
_POINT_NAMES = MPII_JOINTS + _FACE_POINTS
_POINT_INDEX = {n: i for i, n in enumerate(_POINT_NAMES)}


def _model_name(coco_name):
    return coco_name.replace('left_', 'l_').replace('right_', 'r_')


_MPII_IDX = np.array([_POINT_INDEX[n] for n in MPII_JOINTS])
_COCO_IDX = np.array([_POINT_INDEX[_model_name(n)] for n in COCO_JOINTS])

# Skin tones (RGB, light to dark), hair colours (RGB).
_SKIN_RGB = [(255, 224, 196), (241, 194, 150), (224, 172, 125), (198, 134, 90), (141, 85, 54),
             (96, 62, 44)]
_HAIR_RGB = [(20, 17, 15), (59, 36, 24), (106, 78, 66), (183, 142, 90), (222, 190, 150),
             (145, 60, 30), (165, 165, 165)]


# ---------------------------------------------------------------------------------------------
# Kinematic model (body units: the standing height is 1; x to the image right, y down)

def _angle_dir(deg):
    """Unit vector at ``deg`` degrees from straight down, positive towards the image right."""
    r = math.radians(deg)
    return np.array([math.sin(r), math.cos(r)])


def _sample_arm(rng):
    """(shoulder angle, elbow bend) in degrees, outward positive; and the two foreshortenings."""
    u = rng.random()
    if u < 0.4:  # hanging, slightly away from the body
        a, b = rng.uniform(5, 40), rng.uniform(-25, 60)
    elif u < 0.75:  # raised sideways or overhead
        a, b = rng.uniform(40, 170), rng.uniform(-90, 90)
    else:  # folded in front of the body (the forearm crosses the torso)
        a, b = rng.uniform(-20, 25), rng.uniform(-140, -50)
    fs = [rng.uniform(0.65, 1.0) if rng.random() < 0.25 else 1.0 for _ in range(2)]
    return a, b, fs


def _sample_leg(rng):
    """(hip angle, knee bend) in degrees, outward positive; and the two foreshortenings."""
    u = rng.random()
    fs = [1.0, 1.0]
    if u < 0.4:  # standing
        a, b = rng.uniform(-3, 14), rng.uniform(-10, 10)
    elif u < 0.7:  # stepping or kicking sideways
        a, b = rng.uniform(10, 55), rng.uniform(-60, 20)
    elif u < 0.85:  # crossing the other leg
        a, b = rng.uniform(-22, -5), rng.uniform(-10, 30)
    else:  # knees bent (squat seen from the front: the thigh looks shorter)
        a, b = rng.uniform(15, 50), rng.uniform(-85, -30)
        fs = [rng.uniform(0.6, 0.85), 1.0]
    if rng.random() < 0.2:
        fs[1] = rng.uniform(0.75, 1.0)
    return a, b, fs


def _sample_body(rng):
    """Random but human-plausible body: proportions, build, lean and joint angles."""
    j = lambda lo=0.93, hi=1.07: rng.uniform(lo, hi)  # noqa: E731
    body = {
        'build': rng.uniform(0.85, 1.2),
        'lean': float(np.clip(rng.normal(0, 5), -12, 12)),
        'head_tilt': float(np.clip(rng.normal(0, 8), -20, 20)),
        'torso': 0.30 * j(), 'neck': 0.05 * j(0.8, 1.2), 'head': 0.17 * j(0.95, 1.05),
        'head_w': 0.065 * j(0.92, 1.08), 'shoulder': 0.11 * j(), 'hip': 0.065 * j(),
        'upper_arm': 0.16 * j(), 'forearm': 0.14 * j(), 'thigh': 0.22 * j(), 'shin': 0.22 * j(),
    }
    for side in ('r', 'l'):
        body[side + '_arm'] = _sample_arm(rng)
        body[side + '_leg'] = _sample_leg(rng)
    return body


def _sample_look(rng, bg_mean):
    """Clothing, skin and hair colours (BGR floats) with some contrast to the background."""
    def far_colour(s_lo, s_hi, v_lo, v_hi):
        best, best_d = None, -1.0
        for _ in range(6):
            rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(s_lo, s_hi), rng.uniform(v_lo, v_hi))
            bgr = np.array(rgb[::-1]) * 255.0
            d = float(np.linalg.norm(bgr - bg_mean))
            if d > best_d:
                best, best_d = bgr, d
            if d > 90:
                break
        return best

    skin = np.array(_SKIN_RGB[rng.integers(len(_SKIN_RGB))][::-1], dtype=np.float64)
    skin = np.clip(skin * rng.uniform(0.92, 1.06) + rng.uniform(-8, 8, 3), 0, 255)
    hair = np.array(_HAIR_RGB[rng.integers(len(_HAIR_RGB))][::-1], dtype=np.float64)
    return {
        'skin': skin, 'hair': hair,
        'shirt': far_colour(0.3, 1.0, 0.35, 1.0),
        'pants': far_colour(0.2, 0.9, 0.2, 0.85),
        'shoes': np.array([rng.uniform(10, 70)] * 3) + rng.uniform(-10, 10, 3),
        'long_sleeves': rng.random() < 0.45, 'sleeve': rng.uniform(0.4, 0.75),
        'long_pants': rng.random() < 0.7, 'shorts': rng.uniform(0.55, 0.9),
        'outline': rng.uniform(0.25, 0.5), 'hair_len': rng.uniform(0.022, 0.036),
    }


def _skeleton(body):
    """Points of the body model (``_POINT_NAMES`` order, body units, pelvis at the origin), plus
    the directions needed to draw it."""
    lean, b = body['lean'], body['build']
    down = _angle_dir(lean)
    up = -down
    side = np.array([down[1], -down[0]])  # towards the image right (the person's left)
    p = {}
    p['pelvis'] = np.zeros(2)
    p['thorax'] = up * body['torso']
    neck_dir = -_angle_dir(lean + 0.5 * body['head_tilt'])
    head_up = -_angle_dir(lean + body['head_tilt'])
    head_side = np.array([-head_up[1], head_up[0]])
    p['upper_neck'] = p['thorax'] + neck_dir * body['neck']
    p['head_top'] = p['upper_neck'] + head_up * body['head']
    head_c = p['upper_neck'] + head_up * (0.5 * body['head'])
    hw = body['head_w']
    p['nose'] = head_c - head_up * 0.018
    for s, sgn in (('r', -1), ('l', 1)):
        p[s + '_eye'] = head_c + head_up * 0.012 + head_side * (sgn * 0.42 * hw)
        p[s + '_ear'] = head_c + head_up * 0.004 + head_side * (sgn * 0.97 * hw)
    limbs = {}
    for s, sgn in (('r', -1), ('l', 1)):
        # arms: the angle opens outwards, i.e. to the image left for the right arm
        sh = p['thorax'] + down * 0.025 + side * (sgn * body['shoulder'] * b)
        a, bend, fs = body[s + '_arm']
        d1 = _angle_dir(lean + sgn * a)
        d2 = _angle_dir(lean + sgn * (a + bend))
        el = sh + d1 * body['upper_arm'] * fs[0]
        wr = el + d2 * body['forearm'] * fs[1]
        p[s + '_shoulder'], p[s + '_elbow'], p[s + '_wrist'] = sh, el, wr
        hp = side * (sgn * body['hip'] * b)
        a, bend, fs = body[s + '_leg']
        d1 = _angle_dir(lean + sgn * a)
        d2 = _angle_dir(lean + sgn * (a + bend))
        kn = hp + d1 * body['thigh'] * fs[0]
        an = kn + d2 * body['shin'] * fs[1]
        p[s + '_hip'], p[s + '_knee'], p[s + '_ankle'] = hp, kn, an
        limbs[s] = {'arm_dir': d2, 'out': side * sgn}
    pts = np.array([p[n] for n in _POINT_NAMES])
    frame = {'down': down, 'up': up, 'side': side, 'head_up': head_up, 'head_c': head_c,
             'limbs': limbs}
    return pts, frame


# Shapes, in body units: ('cap', p1, p2, r1, r2, colour) tapered capsule; ('poly', pts, colour);
# ('ell', centre, axis_dir, half_len_along, half_len_across, colour); ('circ', c, r, colour);
# ('line', p1, p2, width, colour). A person is a list of groups (shapes, outlined); an outlined
# group is drawn as one silhouette (all outlines first, then all fills), so a limb shows no seam
# at its own joints but does show an edge where it passes in front of another part.

def _body_shapes(body, look, pts, frame):
    P = lambda n: pts[_POINT_INDEX[n]]  # noqa: E731
    b = body['build']
    lw = math.sqrt(b)
    down, up, side = frame['down'], frame['up'], frame['side']
    skin, shirt, pants = look['skin'], look['shirt'], look['pants']
    groups = []

    for s in ('r', 'l'):  # legs, behind the torso
        hp, kn, an = P(s + '_hip'), P(s + '_knee'), P(s + '_ankle')
        out = frame['limbs'][s]['out']
        leg_col = pants * 0.93 if look['long_pants'] else skin * 0.95
        shapes = [('cap', hp, kn, 0.045 * lw, 0.036 * lw, leg_col),
                  ('cap', kn, an, 0.034 * lw, 0.026 * lw, leg_col * 0.94)]
        if not look['long_pants']:
            shapes.append(('cap', hp, hp + (kn - hp) * look['shorts'], 0.049 * lw, 0.043 * lw,
                           pants * 0.93))
        foot_dir = out * 0.75 + down * 0.25
        foot_dir = foot_dir / np.linalg.norm(foot_dir)
        shapes.append(('ell', an + down * 0.016 + out * 0.018, foot_dir, 0.045, 0.022,
                       look['shoes']))
        groups.append((shapes, True))

    L, SW, HW = body['torso'], body['shoulder'] * b, body['hip'] * b
    T = lambda sx, vy: side * sx + up * vy  # noqa: E731  (torso-frame point, pelvis at 0)
    pants_poly = np.array([T(-(HW + 0.03), 0.11), T(HW + 0.03, 0.11), T(HW + 0.045, -0.02),
                           T(0.0, -0.055), T(-(HW + 0.045), -0.02)])
    shirt_poly = np.array([T(-0.035, L + 0.006), T(-(SW + 0.02), L - 0.012),
                           T(-(SW + 0.01), L - 0.05), T(-(SW - 0.01), L - 0.09),
                           T(-(HW + 0.025), 0.09), T(-(HW + 0.035), 0.04), T(HW + 0.035, 0.04),
                           T(HW + 0.025, 0.09), T(SW - 0.01, L - 0.09), T(SW + 0.01, L - 0.05),
                           T(SW + 0.02, L - 0.012), T(0.035, L + 0.006)])
    groups.append(([('poly', pants_poly, pants), ('poly', shirt_poly, shirt)], True))
    # The front of the body: a V-neck, buttons and a belt (all mirror-symmetric).
    front = [('poly', np.array([T(-0.032, L + 0.004), T(0.032, L + 0.004), T(0.0, L - 0.055)]),
              skin),
             ('line', T(-(HW + 0.03), 0.05), T(HW + 0.03, 0.05), 0.012, pants * 0.55)]
    for k in range(3):
        front.append(('circ', T(0.0, L - 0.085 - 0.05 * k), 0.0075, shirt * 0.45))
    groups.append((front, False))

    head_up, head_c, hw = frame['head_up'], frame['head_c'], body['head_w']
    neck = [('cap', P('thorax') + up * 0.01, P('upper_neck') + head_up * 0.02, 0.026, 0.024,
             skin * 0.9)]
    groups.append((neck, True))
    ears = [('ell', P(s + '_ear'), head_up, 0.022, 0.012, skin * 0.95) for s in ('r', 'l')]
    groups.append((ears, True))
    head = [('ell', head_c, head_up, 0.5 * body['head'], hw, look['hair']),
            ('ell', head_c - head_up * look['hair_len'], head_up,
             0.5 * body['head'] - look['hair_len'], hw - 0.009, skin)]
    groups.append((head, True))
    face = [('circ', P('r_eye'), 0.0085, np.array([40.0, 30, 30])),
            ('circ', P('l_eye'), 0.0085, np.array([40.0, 30, 30])),
            ('line', P('nose') + head_up * 0.012, P('nose') - head_up * 0.004, 0.008, skin * 0.7),
            ('ell', head_c - head_up * 0.047, np.array([head_up[1], -head_up[0]]), 0.016, 0.005,
             np.array([60.0, 60, 150]))]
    groups.append((face, False))

    for s in ('r', 'l'):  # arms, in front of the torso
        sh, el, wr = P(s + '_shoulder'), P(s + '_elbow'), P(s + '_wrist')
        d2 = frame['limbs'][s]['arm_dir']
        fore_col = shirt * 0.86 if look['long_sleeves'] else skin * 0.92
        shapes = [('cap', sh, el, 0.028 * lw, 0.024 * lw, skin * 0.95),
                  ('cap', el, wr, 0.023 * lw, 0.019 * lw, fore_col),
                  ('cap', sh, sh + (el - sh) * look['sleeve'], 0.032 * lw, 0.029 * lw, shirt * 0.92)]
        if look['long_sleeves']:
            shapes[0] = ('cap', sh, el, 0.029 * lw, 0.025 * lw, shirt * 0.9)
        shapes.append(('ell', wr + d2 * 0.03, d2, 0.034, 0.021 * lw, skin))
        groups.append((shapes, True))
    return groups


# ---------------------------------------------------------------------------------------------
# Drawing (hot path: plain Python floats and pre-computed colour tuples)

def _colour(c):
    return tuple(0 if v < 0 else 255 if v > 255 else int(v + 0.5) for v in c)


def _fx(v):
    return round(v * _ONE)


def _draw_shape(img, shape, grow, colour, aa, ox=0.0, oy=0.0):
    """Draw one image-space shape (see :func:`_to_image`) moved by (ox, oy) and grown by
    ``grow`` px (outlines)."""
    kind = shape[0]
    lt = cv2.LINE_AA if aa else cv2.LINE_8
    if kind == 'cap':
        _, x1, y1, x2, y2, r1, r2 = shape[:7]
        x1, y1, x2, y2 = x1 + ox, y1 + oy, x2 + ox, y2 + oy
        r1, r2 = r1 + grow, r2 + grow
        dx, dy = x2 - x1, y2 - y1
        n = math.hypot(dx, dy)
        k = _ONE
        if n > 1e-6:
            nx, ny = -dy / n * k, dx / n * k
            x1, y1, x2, y2 = x1 * k, y1 * k, x2 * k, y2 * k
            quad = np.array([[x1 + nx * r1, y1 + ny * r1], [x2 + nx * r2, y2 + ny * r2],
                             [x2 - nx * r2, y2 - ny * r2], [x1 - nx * r1, y1 - ny * r1]])
            cv2.fillConvexPoly(img, quad.round().astype(np.int32), colour, lt, _SHIFT)
        else:
            x1, y1, x2, y2 = x1 * k, y1 * k, x2 * k, y2 * k
        cv2.circle(img, (round(x1), round(y1)), round(r1 * k), colour, -1, lt, _SHIFT)
        cv2.circle(img, (round(x2), round(y2)), round(r2 * k), colour, -1, lt, _SHIFT)
    elif kind == 'poly':
        pts = np.round((shape[1] + (ox, oy)) * _ONE).astype(np.int32)
        if grow > 0:
            cv2.polylines(img, [pts], True, colour, max(1, int(round(2 * grow))), lt, _SHIFT)
        cv2.fillPoly(img, [pts], colour, lt, _SHIFT)
    elif kind == 'ell':
        _, cx, cy, angle, a, b = shape[:6]
        cx, cy = cx + ox, cy + oy
        axes = (max(1, _fx(a + grow)), max(1, _fx(b + grow)))
        cv2.ellipse(img, (_fx(cx), _fx(cy)), axes, angle, 0, 360, colour, -1, lt, _SHIFT)
    elif kind == 'circ':
        _, cx, cy, r = shape[:4]
        cx, cy = cx + ox, cy + oy
        cv2.circle(img, (_fx(cx), _fx(cy)), max(1, _fx(r + grow)), colour, -1, lt, _SHIFT)
    elif kind == 'line':
        _, x1, y1, x2, y2, wd = shape[:6]
        x1, y1, x2, y2 = x1 + ox, y1 + oy, x2 + ox, y2 + oy
        cv2.line(img, (_fx(x1), _fx(y1)), (_fx(x2), _fx(y2)), colour,
                 max(1, int(round(wd + 2 * grow))), lt, _SHIFT)


def _to_image(groups, scale, rot_deg, outline):
    """Body units -> image pixels: rotate by ``rot_deg``, scale by ``scale`` (height in px); the
    pelvis stays at the origin (the drawing adds the person's position).

    Image-space shapes hold floats and end with (fill colour, outline colour):
    ('cap', x1, y1, x2, y2, r1, r2, ...), ('poly', (N, 2) array, ...), ('ell', cx, cy, angle in
    degrees, half length along the axis, half length across, ...), ('circ', cx, cy, r, ...),
    ('line', x1, y1, x2, y2, width, ...).
    """
    r = math.radians(rot_deg)
    cs, sn = math.cos(r), math.sin(r)
    R = np.array([[cs, -sn], [sn, cs]])

    def tp(p):
        x, y = float(p[0]), float(p[1])
        return scale * (cs * x - sn * y), scale * (sn * x + cs * y)

    out = []
    for shapes, outlined in groups:
        tshapes = []
        for sh in shapes:
            k, col = sh[0], sh[-1]
            cols = (_colour(col), _colour(col * outline))
            if k == 'cap':
                tshapes.append(('cap',) + tp(sh[1]) + tp(sh[2]) + (sh[3] * scale, sh[4] * scale) + cols)
            elif k == 'poly':
                tshapes.append(('poly', scale * sh[1] @ R.T) + cols)
            elif k == 'ell':
                ax, ay = float(sh[2][0]), float(sh[2][1])
                angle = math.degrees(math.atan2(sn * ax + cs * ay, cs * ax - sn * ay))
                tshapes.append(('ell',) + tp(sh[1]) + (angle, sh[3] * scale, sh[4] * scale) + cols)
            elif k == 'circ':
                tshapes.append(('circ',) + tp(sh[1]) + (sh[2] * scale,) + cols)
            elif k == 'line':
                tshapes.append(('line',) + tp(sh[1]) + tp(sh[2]) + (sh[3] * scale,) + cols)
        out.append((tshapes, outlined))
    return out, R


def _shapes_extent(groups, grow):
    """Tight box [x1, y1, x2, y2] of all image-space shapes (outline width ``grow`` included)."""
    xs0, ys0, xs1, ys1 = [], [], [], []
    for shapes, outlined in groups:
        g = grow if outlined else 0.0
        for sh in shapes:
            k = sh[0]
            if k == 'cap':
                for x, y, r in ((sh[1], sh[2], sh[5]), (sh[3], sh[4], sh[6])):
                    xs0.append(x - r - g), ys0.append(y - r - g)
                    xs1.append(x + r + g), ys1.append(y + r + g)
            elif k == 'poly':
                lo, hi = sh[1].min(axis=0), sh[1].max(axis=0)
                xs0.append(lo[0] - g), ys0.append(lo[1] - g)
                xs1.append(hi[0] + g), ys1.append(hi[1] + g)
            elif k == 'ell':
                t = math.radians(sh[3])
                a, b = sh[4] + g, sh[5] + g
                hx = math.hypot(a * math.cos(t), b * math.sin(t))
                hy = math.hypot(a * math.sin(t), b * math.cos(t))
                xs0.append(sh[1] - hx), ys0.append(sh[2] - hy)
                xs1.append(sh[1] + hx), ys1.append(sh[2] + hy)
            elif k == 'circ':
                xs0.append(sh[1] - sh[3]), ys0.append(sh[2] - sh[3])
                xs1.append(sh[1] + sh[3]), ys1.append(sh[2] + sh[3])
    return np.array([min(xs0), min(ys0), max(xs1), max(ys1)])


def _draw_person(img, ids, groups, pid, ol, offset):
    """An outlined group: every outline (also into the person-id map), then every fill."""
    ox, oy = float(offset[0]), float(offset[1])
    for shapes, outlined in groups:
        if outlined:
            for sh in shapes:
                _draw_shape(img, sh, ol, sh[-1], True, ox, oy)
                if sh[0] == 'cap':  # the id map only needs the silhouette: one round-capped line
                    cv2.line(ids, (_fx(sh[1] + ox), _fx(sh[2] + oy)), (_fx(sh[3] + ox), _fx(sh[4] + oy)),
                             pid, max(1, round(2 * (max(sh[5], sh[6]) + ol))), cv2.LINE_8, _SHIFT)
                else:
                    _draw_shape(ids, sh, ol, pid, False, ox, oy)
        for sh in shapes:
            _draw_shape(img, sh, 0.0, sh[-2], True, ox, oy)
