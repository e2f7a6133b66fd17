"""The heatmap codec: keypoints -> target heatmaps, heatmaps -> keypoints, flip test.

Framework-free numpy, used by every entry point. Each function reproduces the reference
behaviour named in its docstring (REFERENCE_SPEC sections 2.5, 4.5, 7.1-7.3).
"""
import math

import numpy as np

from .transforms import transform_preds

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


def get_final_preds(heatmaps, center, scale, post_process=True, soft_argmax_beta=None, bias=0.0):
    """Heatmaps (B, K, H, W) -> keypoints in image pixels (B, K, 2) and confidences (B, K, 1).

    argmax (or soft-argmax when ``soft_argmax_beta`` is given, LPN), the quarter-pixel step if
    ``post_process``, the inverse crop at heatmap resolution, then ``bias`` is subtracted from
    both coordinates ([LPN] ``TEST.BIAS``). Joints whose map is all <= 0 decode to (0, 0) in
    heatmap space and are still mapped back (the crop's top-left corner), as the reference does.
    """
    heatmaps = np.asarray(heatmaps)
    if soft_argmax_beta:
        coords, maxvals = soft_argmax(heatmaps, soft_argmax_beta)
    else:
        coords, maxvals = get_max_preds(heatmaps)
    _, _, h, w = heatmaps.shape
    if post_process:
        quarter_offset(heatmaps, coords)
    preds = coords.copy()
    for i in range(coords.shape[0]):
        preds[i] = transform_preds(coords[i], center[i], scale[i], [w, h])
    if bias:
        preds = preds - bias
    return preds, maxvals


def decode_from_cfg(heatmaps, center, scale, cfg):
    """:func:`get_final_preds` with the options of ``cfg.TEST``."""
    t = cfg.TEST
    return get_final_preds(heatmaps, center, scale, post_process=t.POST_PROCESS,
                           soft_argmax_beta=SOFT_ARGMAX_BETA if t.SOFT_ARGMAX else None, bias=t.BIAS)


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
