"""Geometry and input conventions shared by training, validation, inference and deploy.

Pure numpy + OpenCV, no Paddle. Coordinates are x first, then y; pixel centres sit at integer
coordinates (no half-pixel offsets anywhere, as in the references); ``scale`` is in units of
200 px (``PIXEL_STD``); sizes are ``[W, H]``.
"""
import cv2
import numpy as np

PIXEL_STD = 200.0
# A person box is enlarged by this factor before cropping (all references).
BOX_PADDING = 1.25


def _rotate(point, rot_rad):
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return [point[0] * cs - point[1] * sn, point[0] * sn + point[1] * cs]


def _third_point(a, b):
    """b + (a - b) rotated by 90 degrees: completes the point triple of the affine solve."""
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def get_affine_transform(center, scale, rot, output_size, shift=(0.0, 0.0), inv=False):
    """2x3 matrix mapping the box (center, scale, rotation in degrees) onto ``output_size`` [W, H].

    Reproduces the reference three-point construction (REFERENCE_SPEC 2.4), including the
    float32 point arrays handed to ``cv2.getAffineTransform``: the transform is isotropic and
    fixed by the box *width* (``scale[0]``); with ``inv`` it maps output pixels back to the image.
    """
    if np.isscalar(scale):
        scale = np.array([scale, scale], dtype=np.float32)
    scale_px = np.asarray(scale) * PIXEL_STD
    shift = np.asarray(shift, dtype=np.float32)
    src_w = scale_px[0]
    dst_w, dst_h = output_size[0], output_size[1]
    rot_rad = np.pi * rot / 180
    src_dir = _rotate([0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)

    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    center = np.asarray(center)
    src[0, :] = center + scale_px * shift
    src[1, :] = center + src_dir + scale_px * shift
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    src[2, :] = _third_point(src[0, :], src[1, :])
    dst[2, :] = _third_point(dst[0, :], dst[1, :])
    if inv:
        return cv2.getAffineTransform(np.float32(dst), np.float32(src))
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def affine_points(points, trans):
    """Apply a 2x3 affine matrix to an (N, 2) array of points (float64 result)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homo = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    return homo @ np.asarray(trans, dtype=np.float64).T


def transform_preds(coords, center, scale, heatmap_size):
    """Heatmap coordinates (K, 2) -> image pixels, through the inverse crop at heatmap size."""
    trans = get_affine_transform(center, scale, 0, heatmap_size, inv=True)
    out = coords.copy()
    out[:, 0:2] = affine_points(coords[:, 0:2], trans)
    return out


def fit_aspect_ratio(w, h, aspect_ratio):
    """Expand the short side of a w x h box so that w / h equals ``aspect_ratio`` (W/H)."""
    if w > aspect_ratio * h:
        h = w * 1.0 / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return w, h


def box_to_center_scale(x, y, w, h, aspect_ratio, padding=BOX_PADDING):
    """COCO-style box (top-left x, y, width, height) -> (center, scale) (REFERENCE_SPEC 1.2).

    The short side is expanded to the network aspect ratio ``W/H``, the box is divided by 200
    and enlarged by ``padding`` (1.25). Values are float32 as in the reference records.
    """
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    w, h = fit_aspect_ratio(w, h, aspect_ratio)
    scale = np.array([w * 1.0 / PIXEL_STD, h * 1.0 / PIXEL_STD], dtype=np.float32)
    if center[0] != -1:
        scale = scale * padding
    return center, scale


def crop(image, center, scale, rot, image_size, mirror=False):
    """Warp the person box to the network input size [W, H] (bilinear, constant-0 border).

    ``mirror``: crop the horizontally mirrored image instead (``center`` given in the mirrored
    image's coordinates, as training flips do). The mirror is folded into the affine map, so the
    whole image is never copied.
    """
    trans = get_affine_transform(center, scale, rot, image_size)
    if mirror:
        width = image.shape[1]
        trans = trans @ np.array([[-1.0, 0.0, width - 1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return cv2.warpAffine(image, trans, (int(image_size[0]), int(image_size[1])), flags=cv2.INTER_LINEAR)


def normalize(image_bgr, color_rgb=False, pixel_scale=255.0, mean=(0.485, 0.456, 0.406),
              std=(0.229, 0.224, 0.225)):
    """HWC uint8 BGR crop(s) -> CHW float32 network input (REFERENCE_SPEC 2.6).

    ``color_rgb`` False keeps OpenCV's BGR order, and the mean/std (ImageNet, RGB-ordered) are
    still applied in channel order: the Simple Baselines quirk that its released weights need.
    Accepts one image (H, W, 3) or a stack (N, H, W, 3).
    """
    img = np.asarray(image_bgr)
    if color_rgb:
        img = img[..., ::-1]
    img = img.astype(np.float32) / np.float32(pixel_scale)
    img = (img - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(np.moveaxis(img, -1, -3))
