"""Deterministic synthetic pose data in the MPII and COCO on-disk formats.

Cartoon people are drawn from one 2D kinematic model (torso polygon, head, neck, tapered limbs
with round ends, hands and shoes) over cluttered backgrounds, with occluders and several people
per image. The exact joints come from the model, so one scene gives both the 16 MPII joints and
the 17 COCO joints. No mark is drawn at any joint: a network has to find the joints from the
body shape.

Left and right are told apart the way real photos tell them apart: everybody faces the camera
(a face, a V-neck and buttons on the front), so a person's right side is on the image's left.
Nothing is colour-coded by side and the pose distribution is left/right symmetric, so a mirrored
image with swapped labels is as likely as the original (training flips and flip test rely on it).

Writers (same seed -> byte-identical files with the same OpenCV build; every image has its own
random stream, seeded by ``(seed, split, index)``, so MPII and COCO sets of one seed show the
same scenes):

* MPII (REFERENCE_SPEC 1.1): ``images/<9 digits>.jpg``, ``annot/{train,valid}.json`` (1-based
  pixels), ``annot/gt_valid.mat`` for :func:`posekit.evaluation.pckh.evaluate_pckh`.
* COCO (REFERENCE_SPEC 1.2): ``images/<set>/<12 digits>.jpg``,
  ``annotations/person_keypoints_<set>.json`` and ``annotations/person_detection_<set>.json``
  (jittered ground-truth boxes plus a few low-score false positives).

Both write ``synthetic.json`` (generator version and parameters) last; :func:`ensure_synthetic`
reuses a folder only when that manifest matches, and builds a new one in a temporary sibling
folder that is renamed into place, so an interrupted run never leaves a set that looks complete.

Coordinates returned by :func:`render_scene` are 0-based image pixels with pixel centres at
integers (the convention of :mod:`posekit.codec.transforms`); they are rounded to 0.01 px so that the
json files, the .mat file and the returned arrays hold the same numbers.
"""
import colorsys
import io
import json
import math
import os
import shutil
import uuid

import cv2
import numpy as np

from posekit.data.joints import COCO_JOINTS, COCO_SKELETON, MPII_JOINTS
from posekit.evaluation.pckh import MPII_MAT_JOINTS

__all__ = ['SyntheticError', 'render_scene', 'generate_mpii', 'generate_coco', 'ensure_synthetic',
           'read_manifest', 'DEFAULT_IMAGE_SIZE', 'DEFAULT_MAX_PEOPLE', 'FORMATS',
           'GENERATOR_VERSION', 'MANIFEST_NAME']

# Bump when the drawing or the annotation layout changes: old folders are then regenerated.
GENERATOR_VERSION = 1
MANIFEST_NAME = 'synthetic.json'
FORMATS = ('mpii', 'coco')
DEFAULT_IMAGE_SIZE = (256, 256)  # [W, H]
DEFAULT_MAX_PEOPLE = 3
DEFAULT_COCO_SETS = ('train2017', 'val2017')
JPEG_QUALITY = 90
# MPII: a person is annotated only if at least this many of the 16 joints are inside the image.
MPII_MIN_JOINTS_IN_IMAGE = 8
# MPII json scale = longest side of the figure / 200 times this; the loader then enlarges it by 1.25.
MPII_SCALE_MARGIN = 1.0
COORD_DECIMALS = 2

_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 px
_ONE = 1 << _SHIFT
_SPLIT_CODES = {'train': 0, 'valid': 1}

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


class SyntheticError(ValueError):
    """Bad generator parameters, or a target folder that holds something else."""


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


def _background(rng, w, h):
    """Smooth gradient + colour blotches (+ sometimes stripes) + clutter shapes, uint8 BGR."""
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    grey = rng.uniform(0, 0.7)  # from vivid to washed-out backgrounds
    c1, c2 = (c + grey * (c.mean() - c) for c in (c1, c2))
    gw, gh = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    ang = rng.uniform(0, 2 * math.pi)
    t = (np.linspace(0, 1, gw)[None, :] * math.cos(ang)
         + np.linspace(0, 1, gh)[:, None] * math.sin(ang))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    small = c1 + t[..., None] * (c2 - c1) + rng.normal(0, rng.uniform(5, 30), (gh, gw, 3))
    mid = cv2.resize(small.astype(np.float32), (32, 32), interpolation=cv2.INTER_CUBIC)
    img = cv2.resize(mid, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.25:  # stripes / planks
        period = rng.uniform(8, 40)
        ang = rng.uniform(0, math.pi)
        k = 2 * math.pi / period
        ph = (np.arange(w, dtype=np.float32)[None, :] * (k * math.cos(ang))
              + np.arange(h, dtype=np.float32)[:, None] * (k * math.sin(ang)))
        img += (rng.uniform(6, 20) * np.sin(ph))[..., None]
    img = np.clip(img, 0, 255, out=img).astype(np.uint8)
    for _ in range(int(rng.integers(2, 13))):
        col = _colour(rng.uniform(0, 255, 3))
        kind = rng.integers(5)
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        size = rng.uniform(0.04, 0.35) * min(w, h)
        filled = rng.random() < 0.7
        thick = -1 if filled else int(rng.integers(1, 4))
        if kind == 0:
            box = cv2.boxPoints(((cx, cy), (size, size * rng.uniform(0.3, 2.0)), rng.uniform(0, 180)))
            pts = np.round(box * _ONE).astype(np.int32)
            if filled:
                cv2.fillConvexPoly(img, pts, col, cv2.LINE_AA, _SHIFT)
            else:
                cv2.polylines(img, [pts], True, col, thick, cv2.LINE_AA, _SHIFT)
        elif kind == 1:
            cv2.circle(img, (_fx(cx), _fx(cy)), _fx(size * 0.5), col, thick, cv2.LINE_AA, _SHIFT)
        elif kind == 2:
            axes = (_fx(size * 0.5), _fx(size * rng.uniform(0.1, 0.5)))
            cv2.ellipse(img, (_fx(cx), _fx(cy)), axes, rng.uniform(0, 180), 0, 360, col, thick,
                        cv2.LINE_AA, _SHIFT)
        elif kind == 3:
            a = rng.uniform(0, math.pi)
            dx, dy = math.cos(a) * size, math.sin(a) * size
            cv2.line(img, (_fx(cx - dx), _fx(cy - dy)), (_fx(cx + dx), _fx(cy + dy)), col,
                     int(rng.integers(1, 5)), cv2.LINE_AA, _SHIFT)
        else:
            n = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            rad = size * rng.uniform(0.3, 0.6, n)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
            cv2.fillPoly(img, [np.round(pts * _ONE).astype(np.int32)], col, cv2.LINE_AA, _SHIFT)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.5))
    return img


def _draw_occluder(rng, img, ids, centre, size):
    col = _colour(rng.uniform(0, 255, 3))
    if rng.random() < 0.5:
        box = cv2.boxPoints(((float(centre[0]), float(centre[1])),
                             (size * rng.uniform(0.6, 1.4), size * rng.uniform(0.6, 1.4)),
                             rng.uniform(0, 90)))
        pts = np.round(box * _ONE).astype(np.int32)
        cv2.fillConvexPoly(img, pts, col, cv2.LINE_AA, _SHIFT)
        cv2.fillConvexPoly(ids, pts, 255, cv2.LINE_8, _SHIFT)
    else:  # a blob
        n = 7
        ang = np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, 1)
        rad = 0.5 * size * rng.uniform(0.6, 1.2, n)
        pts = np.stack([centre[0] + rad * np.cos(ang), centre[1] + rad * np.sin(ang)], axis=1)
        pts = np.round(pts * _ONE).astype(np.int32)
        cv2.fillPoly(img, [pts], col, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(ids, [pts], 255, cv2.LINE_8, _SHIFT)


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _visibility(points, ids, pid):
    """2 visible, 1 inside the image but covered (by another person or an occluder), 0 outside."""
    h, w = ids.shape
    inside = (points[:, 0] >= 0) & (points[:, 0] <= w - 1) & (points[:, 1] >= 0) & (points[:, 1] <= h - 1)
    # A joint on the silhouette's edge (head top, ears) counts as seen if a neighbour pixel is.
    own = cv2.dilate((ids == pid).view(np.uint8), np.ones((3, 3), np.uint8))
    xi = np.clip(np.round(points[:, 0]).astype(np.int64), 0, w - 1)
    yi = np.clip(np.round(points[:, 1]).astype(np.int64), 0, h - 1)
    return np.where(inside, np.where(own[yi, xi] > 0, 2, 1), 0).astype(np.int64)


def render_scene(rng, image_size=DEFAULT_IMAGE_SIZE, max_people=DEFAULT_MAX_PEOPLE,
                 occluder_prob=0.2, truncate_prob=0.1):
    """Draw one scene.

    Args:
        rng: ``numpy.random.Generator``; the scene is a pure function of its state.
        image_size: ``(W, H)`` in pixels.
        max_people: 1 to this many people are drawn (they may overlap a little).
        occluder_prob: chance that a person gets an occluder over part of the body.
        truncate_prob: chance that a person is allowed to leave the image partly.

    Returns:
        ``(image, people)``: a BGR uint8 image and one dict per person in drawing order (back to
        front) with 0-based pixel coordinates: ``joints_mpii`` (16, 2), ``joints_coco`` (17, 2),
        ``vis_mpii`` (16,) and ``vis_coco`` (17,) with COCO's meaning (2 visible, 1 occluded,
        0 outside the image), ``bbox`` [x, y, w, h] of the figure clipped to the image,
        ``extent`` [x1, y1, x2, y2] of the whole (unclipped) figure, ``head_box`` [x1, y1, x2, y2]
        (the square around the head, as MPII defines it for PCKh), ``area`` (visible pixels)
        and ``height`` (standing height in px).
    """
    w, h = int(image_size[0]), int(image_size[1])
    img = _background(rng, w, h)
    ids = np.zeros((h, w), dtype=np.uint8)
    bg_mean = np.array(cv2.mean(img)[:3])
    n = int(rng.integers(1, max_people + 1))
    lo, hi = {1: (0.55, 0.85), 2: (0.45, 0.72)}.get(n, (0.36, 0.62))

    placed = []
    for _ in range(n):
        body = _sample_body(rng)
        look = _sample_look(rng, bg_mean)
        pts, frame = _skeleton(body)
        groups = _body_shapes(body, look, pts, frame)
        height = rng.uniform(lo, hi) * h
        rot = float(np.clip(rng.normal(0, 6), -15, 15))
        ol = max(0.8, 0.008 * height)
        tgroups, R = _to_image(groups, height, rot, look['outline'])
        ext = _shapes_extent(tgroups, ol)
        ew, eh = ext[2] - ext[0], ext[3] - ext[1]
        truncate = rng.random() < truncate_prob
        for _attempt in range(12):
            if truncate:
                x0 = rng.uniform(-0.3 * ew, w - 0.7 * ew)
                y0 = rng.uniform(-0.3 * eh, h - 0.7 * eh)
            else:
                x0 = rng.uniform(0, max(w - ew, 0.0)) if ew < w else (w - ew) / 2
                y0 = rng.uniform(0, max(h - eh, 0.0)) if eh < h else (h - eh) / 2
            box = np.array([x0, y0, x0 + ew, y0 + eh])
            if all(_iou(box, q['extent']) < 0.3 for q in placed):
                break
        else:
            continue  # no room left for this person
        off = box[:2] - ext[:2]
        placed.append({'body': body, 'pts': pts, 'groups': tgroups, 'R': R, 'height': height,
                       'ol': ol, 'offset': off, 'extent': box})

    # Nearer people (lower feet) are drawn later, in front.
    placed.sort(key=lambda q: q['extent'][3])
    people = []
    for pid, q in enumerate(placed, start=1):
        R = q['R']
        _draw_person(img, ids, q['groups'], pid, q['ol'], q['offset'])
        pts = np.round(q['height'] * q['pts'] @ R.T + q['offset'], COORD_DECIMALS)
        head_up = R @ -_angle_dir(q['body']['lean'] + q['body']['head_tilt'])
        head_c = (pts[_POINT_INDEX['upper_neck']] + pts[_POINT_INDEX['head_top']]) / 2
        # MPII head box: the square around the head (hair included), centred on the head.
        hl, hw = 0.5 * q['body']['head'] * q['height'], q['body']['head_w'] * q['height']
        half = max(np.sqrt((hl * head_up) ** 2 + (hw * head_up[::-1]) ** 2))
        q.update(pts_img=pts, pid=pid,
                 head_box=np.round(np.concatenate([head_c - half, head_c + half]), COORD_DECIMALS))
        people.append(q)

    for q in people:  # occluders go over everybody
        if rng.random() < occluder_prob:
            centre = q['pts_img'][rng.integers(len(_POINT_NAMES))] + rng.normal(0, 0.04, 2) * q['height']
            _draw_occluder(rng, img, ids, centre, rng.uniform(0.12, 0.28) * q['height'])

    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))
    sigma = rng.uniform(0, 7)
    if sigma > 1:  # uniform sensor noise of standard deviation sigma (random bytes are cheap)
        u = np.frombuffer(rng.bytes(img.size), dtype=np.uint8).reshape(img.shape)
        alpha = sigma * math.sqrt(3.0) / 127.5
        img = cv2.addWeighted(img, 1.0, u, alpha, -127.5 * alpha)

    out = []
    for q in people:
        pts = q['pts_img']
        vis = _visibility(pts, ids, q['pid'])
        ext = np.round(q['extent'], COORD_DECIMALS)
        x1, y1 = max(0.0, ext[0]), max(0.0, ext[1])
        x2, y2 = min(w - 1.0, ext[2]), min(h - 1.0, ext[3])
        out.append({
            'joints_mpii': pts[_MPII_IDX], 'joints_coco': pts[_COCO_IDX],
            'vis_mpii': vis[_MPII_IDX], 'vis_coco': vis[_COCO_IDX],
            'bbox': [float(x1), float(y1), float(max(0.0, x2 - x1)), float(max(0.0, y2 - y1))],
            'extent': [float(v) for v in ext],
            'head_box': [float(v) for v in q['head_box']],
            'area': int(np.count_nonzero(ids == q['pid'])),
            'height': float(q['height']),
        })
    return img, out


# ---------------------------------------------------------------------------------------------
# Writers

def _check_params(num_train, num_valid, seed, image_size, max_people):
    for name, v in (('num_train', num_train), ('num_valid', num_valid)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise SyntheticError('%s must be a positive integer, got %r' % (name, v))
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise SyntheticError('seed must be a non-negative integer, got %r' % (seed,))
    try:
        w, h = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise SyntheticError('image_size must be two integers [W, H], got %r' % (image_size,))
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise SyntheticError('image_size [W, H] must be between 64 and 4096 px, got %r'
                             % (list(image_size),))
    if not isinstance(max_people, (int, np.integer)) or not 1 <= max_people <= 10:
        raise SyntheticError('max_people must be an integer from 1 to 10, got %r' % (max_people,))
    return {'num_train': int(num_train), 'num_valid': int(num_valid), 'seed': int(seed),
            'image_size': [w, h], 'max_people': int(max_people)}


def _scenes(params, split, count, progress):
    """(index, image, people) for each image of a split, each from its own random stream."""
    code = _SPLIT_CODES[split]
    for i in range(count):
        rng = np.random.default_rng([params['seed'], code, i])
        img, people = render_scene(rng, params['image_size'], params['max_people'])
        yield i, img, people
        if progress is not None:
            progress(split, i + 1, count)


def _write_jpeg(path, img):
    if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError('cannot write image %s' % path)


def _write_json(path, data):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, separators=(',', ':'))
        f.write('\n')


def _savemat_deterministic(path, mdict):
    """scipy's savemat writes the creation time into the 116-byte text header; a fixed header
    makes the file depend on the data only."""
    from scipy.io import savemat
    buf = io.BytesIO()
    savemat(buf, mdict)
    data = bytearray(buf.getvalue())
    data[0:116] = b'MATLAB 5.0 MAT-file, written by posekit.data.synthetic'.ljust(116, b' ')
    with open(path, 'wb') as f:
        f.write(bytes(data))


def _write_manifest(root, fmt, params, counts):
    manifest = {'generator': 'posekit.data.synthetic', 'version': GENERATOR_VERSION, 'format': fmt,
                'params': params, 'counts': counts}
    _write_json(os.path.join(root, MANIFEST_NAME), manifest)
    return manifest


def _mpii_entry(name, person):
    """One msft-format MPII record (1-based pixels). The centre is moved up by 15 * scale so the
    loader's c_y += 15 * s puts it back on the figure's centre; scale is the figure's longest side
    / 200, which the loader enlarges by 1.25: the crop holds the whole figure with a margin."""
    x1, y1, x2, y2 = person['extent']
    s = round(max(x2 - x1, y2 - y1) * MPII_SCALE_MARGIN / 200.0, 4)
    c = [round((x1 + x2) / 2 + 1, COORD_DECIMALS), round((y1 + y2) / 2 + 1 - 15 * s, COORD_DECIMALS)]
    inside = (person['vis_mpii'] > 0).astype(int)
    joints = np.round(person['joints_mpii'] + 1, COORD_DECIMALS)
    return {'image': name, 'center': c, 'scale': s,
            'joints': [[float(x), float(y)] for x, y in joints],
            'joints_vis': [int(v) for v in inside]}


def generate_mpii(root, num_train, num_valid, seed=0, image_size=DEFAULT_IMAGE_SIZE,
                  max_people=DEFAULT_MAX_PEOPLE, progress=None):
    """Write a synthetic MPII set into ``root`` (created if needed); return its manifest.

    Layout: ``images/<9-digit index>.jpg`` (train first, then valid), ``annot/train.json``,
    ``annot/valid.json`` and ``annot/gt_valid.mat`` (columns in valid.json order), then
    ``synthetic.json``. One json entry per person with at least ``MPII_MIN_JOINTS_IN_IMAGE`` joints
    inside the image; joints outside the image have ``joints_vis`` 0 (``jnt_missing`` 1), covered
    joints stay annotated as in MPII. ``progress(split, done, total)`` is called after each image.
    """
    params = _check_params(num_train, num_valid, seed, image_size, max_people)
    img_dir = os.path.join(root, 'images')
    ann_dir = os.path.join(root, 'annot')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    counts = {}
    valid_people = []
    offset = 0
    for split, count in (('train', params['num_train']), ('valid', params['num_valid'])):
        entries = []
        for i, img, people in _scenes(params, split, count, progress):
            name = '%09d.jpg' % (offset + i + 1)
            _write_jpeg(os.path.join(img_dir, name), img)
            for person in people:
                if np.count_nonzero(person['vis_mpii']) >= MPII_MIN_JOINTS_IN_IMAGE:
                    entries.append(_mpii_entry(name, person))
                    if split == 'valid':
                        valid_people.append(person)
        offset += count
        _write_json(os.path.join(ann_dir, split + '.json'), entries)
        counts[split] = {'images': count, 'persons': len(entries)}

    n = len(valid_people)
    pos_gt = np.zeros((16, 2, n))
    missing = np.zeros((16, n))
    heads = np.zeros((2, 2, n))
    for k, p in enumerate(valid_people):
        pos_gt[:, :, k] = np.round(p['joints_mpii'] + 1, COORD_DECIMALS)
        missing[:, k] = (p['vis_mpii'] == 0).astype(np.float64)
        hb = np.asarray(p['head_box']) + 1
        heads[0, :, k], heads[1, :, k] = hb[0:2], hb[2:4]
    names = np.empty((1, 16), dtype=object)
    for j, nm in enumerate(MPII_MAT_JOINTS):
        names[0, j] = nm
    _savemat_deterministic(os.path.join(ann_dir, 'gt_valid.mat'),
                           {'dataset_joints': names, 'jnt_missing': missing,
                            'pos_gt_src': pos_gt, 'headboxes_src': heads})
    return _write_manifest(root, 'mpii', params, counts)


def _coco_categories():
    return [{'id': 1, 'name': 'person', 'supercategory': 'person', 'keypoints': list(COCO_JOINTS),
             'skeleton': [[a + 1, b + 1] for a, b in COCO_SKELETON]}]


def _r(v):
    return round(float(v), COORD_DECIMALS)


def generate_coco(root, num_train, num_valid, seed=0, image_size=DEFAULT_IMAGE_SIZE,
                  max_people=DEFAULT_MAX_PEOPLE, train_set=DEFAULT_COCO_SETS[0],
                  val_set=DEFAULT_COCO_SETS[1], progress=None):
    """Write a synthetic COCO person-keypoints set into ``root``; return its manifest.

    Layout: ``images/<set>/<12-digit id>.jpg``, ``annotations/person_keypoints_<set>.json`` and
    ``annotations/person_detection_<set>.json`` for both sets, then ``synthetic.json``. Image ids
    run 1..num_train for the training set and continue for the validation set. Keypoints: v=2
    visible, v=1 covered by another person or an occluder, v=0 (x = y = 0) outside the image.
    Detections: every ground-truth box jittered by a few percent with a score in [0.8, 1), plus a
    false positive with a score below 0.4 in about a third of the images.
    """
    params = _check_params(num_train, num_valid, seed, image_size, max_people)
    for name, v in (('train_set', train_set), ('val_set', val_set)):
        if not isinstance(v, str) or not v or os.sep in v or 'test' in v:
            raise SyntheticError('%s must be a plain folder name without "test", got %r' % (name, v))
    if train_set == val_set:
        raise SyntheticError('train_set and val_set must differ, both are %r' % train_set)
    params.update(train_set=train_set, val_set=val_set)
    ann_dir = os.path.join(root, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    w, h = params['image_size']
    counts = {}
    first_id = 1
    ann_id = 1
    for split, set_name, count in (('train', train_set, params['num_train']),
                                   ('valid', val_set, params['num_valid'])):
        img_dir = os.path.join(root, 'images', set_name)
        os.makedirs(img_dir, exist_ok=True)
        images, annotations, detections = [], [], []
        for i, img, people in _scenes(params, split, count, progress):
            image_id = first_id + i
            file_name = '%012d.jpg' % image_id
            _write_jpeg(os.path.join(img_dir, file_name), img)
            images.append({'id': image_id, 'file_name': file_name, 'width': w, 'height': h})
            det_rng = np.random.default_rng([params['seed'], _SPLIT_CODES[split], i, 7])
            for person in people:
                vis = person['vis_coco']
                if not np.any(vis > 0):
                    continue
                kpts = []
                for (x, y), v in zip(person['joints_coco'], vis):
                    kpts += [_r(x), _r(y), int(v)] if v > 0 else [0, 0, 0]
                bx, by, bw, bh = person['bbox']
                annotations.append({
                    'id': ann_id, 'image_id': image_id, 'category_id': 1,
                    'bbox': [_r(bx), _r(by), _r(bw), _r(bh)],
                    'area': float(max(person['area'], 1)), 'iscrowd': 0,
                    'num_keypoints': int(np.count_nonzero(vis > 0)), 'keypoints': kpts,
                    'segmentation': [[_r(bx), _r(by), _r(bx + bw), _r(by), _r(bx + bw), _r(by + bh),
                                      _r(bx), _r(by + bh)]],
                })
                ann_id += 1
                jit = det_rng.normal(0, 0.03, 4) * np.array([bw, bh, bw, bh])
                detections.append({'image_id': image_id, 'category_id': 1,
                                   'bbox': [_r(bx + jit[0]), _r(by + jit[1]),
                                            _r(max(bw + jit[2], 2.0)), _r(max(bh + jit[3], 2.0))],
                                   'score': round(float(det_rng.uniform(0.8, 1.0)), 4)})
            if det_rng.random() < 0.35:
                fw, fh = det_rng.uniform(0.1, 0.4) * w, det_rng.uniform(0.2, 0.6) * h
                detections.append({'image_id': image_id, 'category_id': 1,
                                   'bbox': [_r(det_rng.uniform(0, w - fw)),
                                            _r(det_rng.uniform(0, h - fh)), _r(fw), _r(fh)],
                                   'score': round(float(det_rng.uniform(0.05, 0.4)), 4)})
        _write_json(os.path.join(ann_dir, 'person_keypoints_%s.json' % set_name),
                    {'info': {'description': 'posekit synthetic people', 'version': GENERATOR_VERSION},
                     'images': images, 'annotations': annotations,
                     'categories': _coco_categories()})
        _write_json(os.path.join(ann_dir, 'person_detection_%s.json' % set_name), detections)
        counts[split] = {'images': count, 'persons': len(annotations), 'detections': len(detections)}
        first_id += count
    return _write_manifest(root, 'coco', params, counts)


# ---------------------------------------------------------------------------------------------
# Generate-once

_GENERATORS = {'mpii': generate_mpii, 'coco': generate_coco}


def _expected_files(fmt, params):
    if fmt == 'mpii':
        return [os.path.join('annot', n) for n in ('train.json', 'valid.json', 'gt_valid.mat')]
    return [os.path.join('annotations', '%s_%s.json' % (kind, params[key]))
            for key in ('train_set', 'val_set') for kind in ('person_keypoints', 'person_detection')]


def read_manifest(root):
    """The ``synthetic.json`` manifest of ``root``, or None if there is none (or it is unreadable)."""
    try:
        with open(os.path.join(root, MANIFEST_NAME), 'r', encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _resolve_params(fmt, kw):
    if fmt not in FORMATS:
        raise SyntheticError('unknown synthetic format %r (known: %s)' % (fmt, ', '.join(FORMATS)))
    kw = dict(kw)
    allowed = {'num_train', 'num_valid', 'seed', 'image_size', 'max_people'}
    if fmt == 'coco':
        allowed |= {'train_set', 'val_set'}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise SyntheticError('unknown parameter(s) for the %s generator: %s (known: %s)'
                             % (fmt, ', '.join(unknown), ', '.join(sorted(allowed))))
    if 'num_train' not in kw or 'num_valid' not in kw:
        raise SyntheticError('num_train and num_valid are required')
    params = _check_params(kw['num_train'], kw['num_valid'], kw.get('seed', 0),
                           kw.get('image_size', DEFAULT_IMAGE_SIZE),
                           kw.get('max_people', DEFAULT_MAX_PEOPLE))
    if fmt == 'coco':
        params['train_set'] = kw.get('train_set', DEFAULT_COCO_SETS[0])
        params['val_set'] = kw.get('val_set', DEFAULT_COCO_SETS[1])
    return params


def _is_complete(root, fmt, params):
    m = read_manifest(root)
    return (m is not None and m.get('generator') == 'posekit.data.synthetic'
            and m.get('version') == GENERATOR_VERSION and m.get('format') == fmt
            and m.get('params') == params
            and all(os.path.isfile(os.path.join(root, p)) for p in _expected_files(fmt, params)))


def _sibling_dir(root, tag):
    """A new hidden folder beside ``root`` (same file system, so renames are atomic). Unlike
    ``tempfile.mkdtemp`` it gets the usual permissions, which the dataset keeps after the rename."""
    parent, base = os.path.split(root)
    while True:
        path = os.path.join(parent, '.%s.%s-%d-%s' % (base, tag, os.getpid(), uuid.uuid4().hex[:8]))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def _remove_stale_siblings(root):
    """Delete the temporary folders of earlier runs on ``root`` whose process has gone (a run
    killed outright cannot clean up after itself)."""
    parent, base = os.path.split(root)
    prefixes = ('.%s.tmp-' % base, '.%s.old-' % base)
    for name in os.listdir(parent):
        if not name.startswith(prefixes):
            continue
        try:
            pid = int(name.split('-')[-2])
        except (ValueError, IndexError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except OSError:  # alive (or not ours to probe): leave it
            pass


def ensure_synthetic(root, fmt='mpii', progress=None, force=False, **params):
    """Make sure ``root`` holds the synthetic ``fmt`` set with these parameters; build it if not.

    ``params`` are those of :func:`generate_mpii` / :func:`generate_coco` (``num_train`` and
    ``num_valid`` required). An existing folder is reused when its manifest records the same
    generator version, format and parameters. Otherwise the set is generated into a temporary
    sibling folder and renamed into place, replacing an older synthetic set; a non-empty folder
    without a manifest is never touched (:class:`SyntheticError`). ``force`` regenerates even a
    matching set.

    Returns ``(manifest, created)``.
    """
    params = _resolve_params(fmt, params)
    root = os.path.abspath(os.fspath(root))
    if not force and _is_complete(root, fmt, params):
        return read_manifest(root), False
    if os.path.isdir(root) and os.listdir(root) and read_manifest(root) is None:
        raise SyntheticError('%s exists and is not a synthetic dataset (no %s); refusing to '
                             'overwrite it, choose another folder' % (root, MANIFEST_NAME))
    if os.path.exists(root) and not os.path.isdir(root):
        raise SyntheticError('%s exists and is not a folder' % root)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    _remove_stale_siblings(root)
    tmp = _sibling_dir(root, 'tmp')
    try:
        gen_kw = {k: v for k, v in params.items()}
        manifest = _GENERATORS[fmt](tmp, progress=progress, **gen_kw)
        old = None
        if os.path.isdir(root):
            if os.listdir(root):
                old = _sibling_dir(root, 'old')
                os.rename(root, os.path.join(old, 'data'))
            else:
                os.rmdir(root)
        try:
            os.rename(tmp, root)
        except OSError:
            # Another process finished first: use its folder if it is what we need.
            if not force and _is_complete(root, fmt, params):
                shutil.rmtree(tmp, ignore_errors=True)
                return read_manifest(root), False
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest, True
