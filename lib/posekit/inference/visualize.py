"""Drawing predictions: skeleton, joints, joint names, person boxes and scores.

Limbs are coloured by body side, read from the joint names (``left_*``/``l_*`` and
``right_*``/``r_*``; anything else, or a limb joining the two sides, is the centre), so the
same code serves COCO, MPII and any other joint list. Line widths, joint radii and text scale
grow with the image so a 4K frame and a 200 px crop both stay readable. Colours are BGR.
"""
import cv2
import numpy as np

__all__ = ['SIDE_COLORS', 'BOX_COLOR', 'joint_side', 'limb_side', 'drawing_sizes', 'draw_pose',
           'draw_result', 'display_available', 'show_image']

# Left orange, right blue, centre green (BGR): the colours also tell a left/right swap at a glance.
SIDE_COLORS = {'left': (0, 140, 255), 'right': (255, 120, 0), 'centre': (60, 200, 60)}
BOX_COLOR = (0, 220, 255)
TEXT_COLOR = (255, 255, 255)


def joint_side(name):
    """'left', 'right' or 'centre' from a joint name (``left_knee``, ``l_knee``, ``nose``)."""
    n = str(name).lower()
    if n.startswith(('left', 'l_')):
        return 'left'
    if n.startswith(('right', 'r_')):
        return 'right'
    return 'centre'


def limb_side(joint_names, a, b):
    """Side of the limb joining joints ``a`` and ``b``: shared side, else 'centre'."""
    sa, sb = joint_side(joint_names[a]), joint_side(joint_names[b])
    return sa if sa == sb else 'centre'


def drawing_sizes(image_shape):
    """(line thickness, joint radius, font scale) for an image of ``image_shape`` (H, W, ...).

    Scaled by the image diagonal: 1 px lines on a ~300 px image, ~4 px on a 1080p frame.
    """
    h, w = image_shape[:2]
    diag = float(np.hypot(h, w))
    thickness = max(1, int(round(diag / 500.0)))
    radius = max(2, int(round(diag / 300.0)))
    font_scale = max(0.35, diag / 2000.0)
    return thickness, radius, font_scale


def _pt(xy):
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def _label(img, text, org, font_scale, color, thickness):
    """Text with a dark outline so it reads on any background."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, thickness, cv2.LINE_AA)


def draw_pose(image, keypoints, skeleton, joint_names, boxes=None, scores=None, kpt_thr=0.3,
              draw_names=False, draw_boxes=True):
    """A copy of ``image`` (H, W, 3 BGR uint8) with the predictions drawn.

    ``keypoints`` (N, K, 3) x, y, score (or (K, 3) for one person); ``skeleton`` 0-based joint
    pairs; ``boxes`` (N, 4) x, y, w, h and ``scores`` (N,) drawn when given. A joint is drawn
    when its score is at least ``kpt_thr``, a limb when both its joints are.
    """
    img = np.ascontiguousarray(np.array(image, dtype=np.uint8, copy=True))
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.ndim == 2:
        kps = kps[None]
    if kps.size and (kps.ndim != 3 or kps.shape[2] < 2):
        raise ValueError('keypoints must be (N, K, 3) x, y, score, got shape %s' % (kps.shape,))
    thickness, radius, font_scale = drawing_sizes(img.shape)
    text_th = max(1, thickness // 2)

    if draw_boxes and boxes is not None:
        for n, box in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
            x, y, w, h = box
            cv2.rectangle(img, _pt((x, y)), _pt((x + w, y + h)), BOX_COLOR, thickness, cv2.LINE_AA)
            if scores is not None and n < len(scores):
                _label(img, '%.2f' % float(scores[n]), _pt((x + 2, y + 4 + 20 * font_scale)),
                       font_scale, BOX_COLOR, text_th)

    for person in kps:
        conf = person[:, 2] if person.shape[1] > 2 else np.ones(len(person))
        visible = np.isfinite(person[:, :2]).all(axis=1) & (conf >= kpt_thr)
        for a, b in skeleton:
            if a < len(person) and b < len(person) and visible[a] and visible[b]:
                color = SIDE_COLORS[limb_side(joint_names, a, b)]
                cv2.line(img, _pt(person[a]), _pt(person[b]), color, thickness + 1, cv2.LINE_AA)
        for k, kp in enumerate(person):
            if not visible[k]:
                continue
            name = joint_names[k] if k < len(joint_names) else str(k)
            color = SIDE_COLORS[joint_side(name)]
            cv2.circle(img, _pt(kp), radius, color, -1, cv2.LINE_AA)
            cv2.circle(img, _pt(kp), radius, (255, 255, 255), max(1, thickness // 2), cv2.LINE_AA)
            if draw_names:
                org = _pt((kp[0] + radius + 2, kp[1] - radius))
                _label(img, name, org, font_scale * 0.8, TEXT_COLOR, text_th)
    return img


def draw_result(image, result, deploy_config, kpt_thr=0.3, draw_names=False, draw_boxes=None):
    """:func:`draw_pose` for a :class:`posekit.inference.predictor.PoseResult` and its deploy
    config.

    ``draw_boxes`` None: the person boxes of a top-down model (where the keypoints were looked
    for) are drawn with their scores; a bottom-up model's people are drawn as skeletons only
    (their boxes are only the extent of the keypoints)."""
    if draw_boxes is None:
        draw_boxes = getattr(deploy_config, 'pipeline', 'topdown') == 'topdown'
    return draw_pose(image, result.keypoints, deploy_config.skeleton, deploy_config.joint_names,
                     boxes=result.boxes, scores=result.scores, kpt_thr=kpt_thr,
                     draw_names=draw_names, draw_boxes=draw_boxes)


def display_available():
    """Whether a window can be opened: a display on Linux, and an OpenCV built with a GUI."""
    import os
    import sys
    if sys.platform.startswith('linux') and not (os.environ.get('DISPLAY')
                                                 or os.environ.get('WAYLAND_DISPLAY')):
        return False
    info = cv2.getBuildInformation()
    gui = info[info.find('GUI:'):].splitlines()[0] if 'GUI:' in info else ''
    return 'NONE' not in gui.upper()


def show_image(image, title='pose', wait_ms=0):
    """Show ``image`` in a window until a key is pressed; False (nothing shown) when there is no
    display or this OpenCV has no GUI (opencv-python-headless)."""
    if not display_available():
        return False
    try:
        cv2.imshow(title, image)
        cv2.waitKey(wait_ms)
        cv2.destroyWindow(title)
    except cv2.error:
        return False
    return True
