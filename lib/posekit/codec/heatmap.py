"""The heatmap codec: keypoints -> target heatmaps, heatmaps -> keypoints, flip test.

Framework-free numpy, used by every entry point. Each function reproduces the reference
behaviour named in its docstring (REFERENCE_SPEC sections 2.5, 4.5, 7.1-7.3).

Decoding options of :func:`get_final_preds` (``TEST.*`` keys, carried by
:class:`posekit.codec.TopDownHeatmapCodec`):
argmax with the reference quarter-pixel step (``POST_PROCESS``, the default), [LPN] soft-argmax
(``SOFT_ARGMAX``), or DARK (``DARK``, off by default; not in any reference repository): the
distribution-aware sub-pixel refinement of Zhang et al., CVPR 2020, see :func:`dark_refine`.
"""
import math

import numpy as np

from posekit.codec.transforms import transform_preds

SOFT_ARGMAX_BETA = 160.0


def generate_target(joints, joints_vis, image_size, heatmap_size, sigma):
    """Gaussian target heatmaps (K, H_h, W_h) and target weights (K, 1) (REFERENCE_SPEC 2.5).

    Unnormalised Gaussian (peak 1) on the *rounded* heatmap location; ``int()`` truncation is
    kept as in the reference (it only rounds correctly for non-negative values). Weight 0 for an
    invisible joint or one whose whole (6 sigma + 1) window lies outside the map.
    """
    num_joints = len(joints)
    image_size = np.asarray(image_size)
    heatmap_size = np.asarray(heatmap_size)
    target_weight = np.ones((num_joints, 1), dtype=np.float32)
    target_weight[:, 0] = np.asarray(joints_vis)[:, 0]
    target = np.zeros((num_joints, heatmap_size[1], heatmap_size[0]), dtype=np.float32)
    tmp_size = sigma * 3
    stride = image_size / heatmap_size

    size = 2 * tmp_size + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))

    for k in range(num_joints):
        mu_x = int(joints[k][0] / stride[0] + 0.5)
        mu_y = int(joints[k][1] / stride[1] + 0.5)
        ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
        br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
        if ul[0] >= heatmap_size[0] or ul[1] >= heatmap_size[1] or br[0] < 0 or br[1] < 0:
            target_weight[k] = 0
            continue
        g_x = max(0, -ul[0]), min(br[0], heatmap_size[0]) - ul[0]
        g_y = max(0, -ul[1]), min(br[1], heatmap_size[1]) - ul[1]
        img_x = max(0, ul[0]), min(br[0], heatmap_size[0])
        img_y = max(0, ul[1]), min(br[1], heatmap_size[1])
        if target_weight[k] > 0.5:
            target[k][img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
    return target, target_weight


def get_max_preds(heatmaps):
    """Argmax of every map: coords (B, K, 2) float32 (x, y) and maxvals (B, K, 1).

    The first maximum in row-major order wins; a map whose maximum is <= 0 gets (0, 0).
    """
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError('heatmaps must be B x K x H x W, got shape %s' % (heatmaps.shape,))
    b, k, _, w = heatmaps.shape
    flat = heatmaps.reshape((b, k, -1))
    idx = np.argmax(flat, 2).reshape((b, k, 1))
    maxvals = np.amax(flat, 2).reshape((b, k, 1))
    preds = np.tile(idx, (1, 1, 2)).astype(np.float32)
    preds[:, :, 0] = preds[:, :, 0] % w
    preds[:, :, 1] = np.floor(preds[:, :, 1] / w)
    preds *= np.tile(np.greater(maxvals, 0.0), (1, 1, 2)).astype(np.float32)
    return preds, maxvals


def quarter_offset(heatmaps, coords):
    """Quarter-pixel step toward the higher neighbour (REFERENCE_SPEC 7.2), in place on ``coords``.

    Only joints with 1 < px < W-1 and 1 < py < H-1 are refined (strict: px = 1 is skipped, a
    reference quirk kept for comparable numbers).
    """
    _, _, h, w = heatmaps.shape
    for n in range(coords.shape[0]):
        for p in range(coords.shape[1]):
            hm = heatmaps[n][p]
            px = int(math.floor(coords[n][p][0] + 0.5))
            py = int(math.floor(coords[n][p][1] + 0.5))
            if 1 < px < w - 1 and 1 < py < h - 1:
                diff = np.array([hm[py][px + 1] - hm[py][px - 1], hm[py + 1][px] - hm[py - 1][px]])
                coords[n][p] += np.sign(diff) * .25
    return coords


def soft_argmax(heatmaps, beta=SOFT_ARGMAX_BETA):
    """[LPN] soft-argmax: expected (x, y) under softmax(beta * heatmap) over all pixels.

    Confidence is the heatmap value at the rounded location (REFERENCE_SPEC 4.5).
    """
    heatmaps = np.asarray(heatmaps)
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, -1).astype(np.float64) * beta
    flat = flat - flat.max(axis=2, keepdims=True)
    prob = np.exp(flat)
    prob /= prob.sum(axis=2, keepdims=True)
    prob = prob.reshape(b, k, h, w)
    x = (prob.sum(axis=2) * np.arange(w)).sum(axis=2)
    y = (prob.sum(axis=3) * np.arange(h)).sum(axis=2)
    coords = np.stack([x, y], axis=2)
    xi = np.clip(np.round(x).astype(int), 0, w - 1)
    yi = np.clip(np.round(y).astype(int), 0, h - 1)
    bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing='ij')
    maxvals = heatmaps[bi, ki, yi, xi].astype(np.float64)[..., None]
    return coords.astype(np.float32), maxvals


def dark_kernel_size(sigma):
    """DARK modulation kernel for targets of Gaussian ``sigma``: 6 sigma - 1, odd, >= 3.

    This gives the sizes the DARK authors used (11 for sigma 2, 17 for sigma 3); with
    :func:`dark_refine`'s OpenCV sigma rule they blur with a Gaussian of about ``sigma``.
    """
    return max(3, 2 * int(round(3 * float(sigma))) - 1)


def _blur_kernel_1d(kernel):
    # OpenCV's GaussianBlur(ksize, sigma=0) rule, which the DARK authors relied on.
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    x = np.arange(kernel, dtype=np.float64) - (kernel - 1) / 2.0
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def dark_refine(heatmaps, coords, kernel=11):
    """DARK sub-pixel refinement (Zhang et al., CVPR 2020): refined copy of ``coords`` (B, K, 2).

    ``coords`` are argmax locations (x, y) in heatmap pixels, e.g. from :func:`get_max_preds`.
    Each map is *modulated*: blurred with a ``kernel`` x ``kernel`` Gaussian (sigma from OpenCV's
    rule 0.3 ((kernel - 1) / 2 - 1) + 0.8, zero outside the map), rescaled to its original
    maximum, clamped to >= 1e-10 and taken to the log. Around the integer location (the rounded
    coordinate) the log-map is a quadratic, so one Newton step finds its maximum:
    coord -= H^-1 g, with g and H the central-difference gradient and Hessian (3-point stencils).
    A joint is left unchanged when its location is on the map border (no neighbours on one side),
    when H is not negative definite (no maximum there: flat, all-zero or saddle-shaped maps) or
    when the step would exceed one pixel on either axis (a near-flat top, not a peak).
    ``kernel`` should match the training sigma, see :func:`dark_kernel_size`.
    """
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError('heatmaps must be B x K x H x W, got shape %s' % (heatmaps.shape,))
    kernel = int(kernel)
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError('DARK kernel size must be a positive odd number, got %d' % kernel)
    b, k, h, w = heatmaps.shape
    coords = np.asarray(coords)
    out = coords.copy()
    if b * k == 0 or h < 3 or w < 3:
        return out

    from scipy.ndimage import convolve1d  # only DARK needs scipy here

    hm = heatmaps.astype(np.float64)
    g1 = _blur_kernel_1d(kernel)
    blurred = convolve1d(convolve1d(hm, g1, axis=3, mode='constant'), g1, axis=2, mode='constant')
    orig_max = hm.max(axis=(2, 3), keepdims=True)
    blur_max = blurred.max(axis=(2, 3), keepdims=True)
    # Keep each map's original peak height; maps without a positive peak are left unscaled.
    ok = (blur_max > 0) & (orig_max > 0)
    ratio = np.where(ok, orig_max / np.where(ok, blur_max, 1.0), 1.0)
    logmap = np.log(np.maximum(blurred * ratio, 1e-10))

    px = np.floor(coords[..., 0].astype(np.float64) + 0.5).astype(np.int64)
    py = np.floor(coords[..., 1].astype(np.float64) + 0.5).astype(np.int64)
    inside = (px >= 1) & (px <= w - 2) & (py >= 1) & (py <= h - 2)
    xc = np.clip(px, 1, w - 2)
    yc = np.clip(py, 1, h - 2)
    bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing='ij')

    def at(dx, dy):
        return logmap[bi, ki, yc + dy, xc + dx]

    centre = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2 * centre + at(-1, 0)
    hyy = at(0, 1) - 2 * centre + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy ** 2
    # Only a negative definite Hessian describes a maximum of the local quadratic.
    refine = inside & (hxx < 0) & (det > 0)
    safe_det = np.where(refine, det, 1.0)
    dx = -(hyy * gx - hxy * gy) / safe_det
    dy = -(-hxy * gx + hxx * gy) / safe_det
    # The argmax sample lies within half a pixel of a round peak's maximum; a step of more than
    # a pixel comes from a near-flat top (plateau, rounding noise), not a peak: keep the argmax.
    refine &= (np.abs(dx) <= 1) & (np.abs(dy) <= 1)
    out[..., 0] = np.where(refine, px + dx, coords[..., 0])
    out[..., 1] = np.where(refine, py + dy, coords[..., 1])
    return out


def get_final_preds(heatmaps, center, scale, post_process=True, soft_argmax_beta=None, bias=0.0,
                    dark=False, dark_kernel=11):
    """Heatmaps (B, K, H, W) -> keypoints in image pixels (B, K, 2) and confidences (B, K, 1).

    argmax (or soft-argmax when ``soft_argmax_beta`` is given, LPN), then a sub-pixel
    refinement: the quarter-pixel step if ``post_process`` (the reference), or DARK
    (:func:`dark_refine` with a ``dark_kernel`` Gaussian) if ``dark`` -- DARK replaces the
    quarter step, so ``post_process`` is ignored when ``dark`` is on, and DARK cannot follow
    soft-argmax (ValueError). Then the inverse crop at heatmap resolution, and ``bias`` is
    subtracted from both coordinates ([LPN] ``TEST.BIAS``). Confidences are the argmax values
    in every mode. Joints whose map is all <= 0 decode to (0, 0) in heatmap space and are still
    mapped back (the crop's top-left corner), as the reference does.
    """
    heatmaps = np.asarray(heatmaps)
    if dark and soft_argmax_beta:
        raise ValueError('DARK decoding and soft-argmax are exclusive: turn off TEST.DARK or '
                         'TEST.SOFT_ARGMAX')
    if soft_argmax_beta:
        coords, maxvals = soft_argmax(heatmaps, soft_argmax_beta)
    else:
        coords, maxvals = get_max_preds(heatmaps)
    _, _, h, w = heatmaps.shape
    if dark:
        coords = dark_refine(heatmaps, coords, dark_kernel)
    elif post_process:
        quarter_offset(heatmaps, coords)
    preds = coords.copy()
    for i in range(coords.shape[0]):
        preds[i] = transform_preds(coords[i], center[i], scale[i], [w, h])
    if bias:
        preds = preds - bias
    return preds, maxvals


def flip_back(heatmaps, flip_pairs):
    """Heatmaps of a mirrored input -> heatmaps of the original: mirror the width axis and swap
    the left/right channels. Returns a new array (the reference also mutated its argument)."""
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError('flip_back expects B x K x H x W heatmaps, got shape %s' % (heatmaps.shape,))
    out = heatmaps[:, :, :, ::-1].copy()
    for a, b in flip_pairs:
        tmp = out[:, a].copy()
        out[:, a] = out[:, b]
        out[:, b] = tmp
    return out


def fuse_flip(heatmaps, heatmaps_flipped_input, flip_pairs, shift=True):
    """Flip test (REFERENCE_SPEC 7.3): average the maps with those of the mirrored input.

    With ``shift`` the flipped-back maps move one pixel right; column 0 keeps its value (it is
    not zeroed). This compensates the 0.75-pixel offset between image and heatmap mirroring.
    """
    back = flip_back(heatmaps_flipped_input, flip_pairs)
    if shift:
        back[:, :, :, 1:] = back.copy()[:, :, :, 0:-1]
    return (np.asarray(heatmaps) + back) * 0.5


def flip_test(run, inputs, flip_pairs=None, shift=True):
    """Heatmaps of a network input batch, with the flip test when ``flip_pairs`` is given.

    ``run`` maps a float32 NCHW numpy batch to heatmaps (any backend). The flip test mirrors
    the *normalised* input along its width, runs it again and fuses the two outputs with
    :func:`fuse_flip`. The one implementation behind validation, infer.py and deploy.py.
    """
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    out = np.asarray(run(inputs))
    if flip_pairs is not None:
        mirrored = np.asarray(run(np.ascontiguousarray(inputs[:, :, :, ::-1])))
        out = fuse_flip(out, mirrored, flip_pairs, shift=shift)
    return out
