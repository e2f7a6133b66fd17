"""One synthetic scene: a cluttered background, 1 to ``max_people`` cartoon people placed with
little overlap (nearer people in front), occluders, blur and sensor noise; with the joints of
every person in MPII and COCO order and their visibility.

Coordinates are 0-based image pixels with pixel centres at integers (the convention of
:mod:`posekit.codec.transforms`), rounded to ``COORD_DECIMALS`` so that the written annotation
files and the returned arrays hold the same numbers.
"""
import math

import cv2
import numpy as np

from posekit.data.synthetic.figure import (_COCO_IDX, _MPII_IDX, _ONE, _POINT_INDEX, _POINT_NAMES,
                                           _SHIFT, _angle_dir, _body_shapes, _colour, _draw_person,
                                           _fx, _sample_body, _sample_look, _shapes_extent,
                                           _skeleton, _to_image)

DEFAULT_IMAGE_SIZE = (256, 256)  # [W, H]
DEFAULT_MAX_PEOPLE = 3
COORD_DECIMALS = 2


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
