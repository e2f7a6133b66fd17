"""Bottom-up ground truth: people's ours-18 joints -> the 50 target maps (SIMPLEPOSE_SPEC 4.3).

Framework-free numpy (+ ``cv2.erode``). The output, ``(50, H/4, W/4)`` float32 for an input of
``[W, H]`` px, holds in this order (layout of :mod:`.layout`):

* channels 0-29, limbs ("body parts"): a Gaussian (sigma 7 px) of the distance to the *infinite*
  line through the two joints, inside the cells of the joints' bounding box enlarged by 4 px;
  values <= 0.015 become 0.01 and overlapping people are *averaged* (the 0.01 floors included);
* channels 30-47, keypoints: a Gaussian (sigma 9 px) on a 15 x 15-cell window around each joint,
  combined over people with the maximum;
* channel 48: the person mask (``mask_all`` at the output size) eroded by a 3 x 3 square;
* channel 49: the maximum over the keypoint channels.

Everything is then clipped to [0, 1]. A joint is drawn iff its visibility is < 2 (ours: 0
occluded, 1 visible, 2 unlabelled). The cell (i, j) is centred on input pixel
``(stride j + stride/2 - 0.5, stride i + stride/2 - 0.5)``.

The arithmetic follows the reference heatmapper step by step so that the maps agree to float32
rounding: joints are float32, keypoint Gaussians are float32, limb distances float64 accumulated
into float32 maps person by person, and window bounds use Python's ``round`` (half to even).
"""
import math

import cv2
import numpy as np

from posekit.codec.bottomup.layout import (BKG_START, HEAT_START, LIMBS, NUM_CHANNELS, NUM_LIMBS,
                                           NUM_PARTS, PAF_START)

__all__ = ['BottomUpEncoder', 'STRIDE', 'KEYPOINT_SIGMA', 'LIMB_SIGMA', 'GAUSSIAN_THRE',
           'LIMB_FLOOR']

STRIDE = 4
KEYPOINT_SIGMA = 9       # px at input resolution (for 512 inputs; the reference uses 7 for 384)
LIMB_SIGMA = 7           # px
GAUSSIAN_THRE = 0.015    # sizes the keypoint window; limb values at or below it are floored
LIMB_FLOOR = 0.01        # what limb values <= GAUSSIAN_THRE become (not 0: SIMPLEPOSE_SPEC 9.6)


class BottomUpEncoder:
    """Target maps of one training sample (SIMPLEPOSE_SPEC 4.3).

    ``input_size`` is ``[W, H]`` of the network input; the maps are ``[W, H] / stride``.
    ``encode(joints, mask_all)`` takes ``joints`` (N, 18, 3) = x, y, visibility in input pixels
    (any float dtype; used as float32 like the reference) and ``mask_all`` (H/4, W/4) in [0, 1]
    (None: no person mask) and returns (50, H/4, W/4) float32.
    """

    def __init__(self, input_size=(512, 512), stride=STRIDE, sigma=KEYPOINT_SIGMA,
                 limb_sigma=LIMB_SIGMA, gaussian_thre=GAUSSIAN_THRE, limb_floor=LIMB_FLOOR):
        w, h = (int(v) for v in input_size)
        self.input_size = (w, h)
        self.stride = int(stride)
        self.out_w, self.out_h = w // self.stride, h // self.stride
        # 2 sigma^2 as the reference holds it (an int for int sigma), used as a float32 divisor
        self.double_sigma2 = 2 * sigma * sigma
        self._div32 = np.float32(self.double_sigma2)
        self.limb_double_sigma2 = 2 * limb_sigma ** 2
        self.gaussian_thre = gaussian_thre
        self.limb_floor = limb_floor
        # window of ceil(sqrt(-2 sigma^2 ln thre) / stride) * 2 cells (14 for sigma 9, stride 4):
        # columns [round(x / stride) - 7, round(x / stride) + 8)
        size = math.ceil(math.sqrt(-self.double_sigma2 * math.log(gaussian_thre)) / self.stride) * 2
        self.half_window = size // 2
        # limb boxes are enlarged by one stride (the reference's paf_thre = 1 * stride)
        self.limb_margin = 1 * self.stride
        centre = self.stride / 2 - 0.5
        # cell centres in float64 for the limbs (the keypoints use them in float32)
        self.grid_x = np.arange(self.out_w) * self.stride + centre
        self.grid_y = np.arange(self.out_h) * self.stride + centre
        self._erode_kernel = np.ones((3, 3), np.uint8)

    # ------------------------------------------------------------------------------------------
    def encode(self, joints, mask_all=None):
        joints = np.asarray(joints, dtype=np.float32).reshape(-1, NUM_PARTS, 3)
        maps = np.zeros((NUM_CHANNELS, self.out_h, self.out_w), dtype=np.float32)
        self.put_keypoints(maps, joints)
        self.put_limbs(maps, joints)
        if mask_all is not None:
            mask = np.asarray(mask_all, dtype=np.float32)
            if mask.shape != (self.out_h, self.out_w):
                raise ValueError('mask_all must be %dx%d (H x W), got %s'
                                 % (self.out_h, self.out_w, mask.shape))
            # default border: the image edge is not eroded (SIMPLEPOSE_SPEC 4.3)
            maps[BKG_START] = cv2.erode(mask, self._erode_kernel)
        np.amax(maps[HEAT_START:HEAT_START + NUM_PARTS], axis=0, out=maps[BKG_START + 1])
        # the reference clips every channel to [0, 1]; only the mask channel can leave it (the
        # Gaussians are <= 1 and an average of values <= 1 stays <= 1 in float32)
        np.clip(maps[BKG_START], 0.0, 1.0, out=maps[BKG_START])
        return maps

    __call__ = encode

    # ------------------------------------------------------------------------------------------
    def put_keypoints(self, maps, joints):
        """Keypoint Gaussians into ``maps[30 + p]`` (max over people)."""
        parts, people = np.nonzero((joints[:, :, 2] < 2).T)
        if not len(parts):
            return
        pts = joints[people, parts, :2]                                      # (J, 2) float32
        half = self.half_window
        # round(x / stride) of a float32: exact division by a power of two, half to even
        cells = np.rint(pts / np.float32(self.stride)).astype(np.int64)
        # window [c - half, c + half] (skipped if its end is < 0, start clipped to 0)
        keep = (cells + half + 1 >= 0).all(axis=1)
        parts, pts, cells = parts[keep], pts[keep], cells[keep]
        # the 1D Gaussians of every window at once: exp(-(centre - x)^2 / 2 sigma^2) in float32
        # element by element as the reference, centres stride * j + stride / 2 - 0.5
        idx = cells[:, None, :] + np.arange(-half, half + 1)[None, :, None]  # (J, 15, 2)
        grid = (idx * self.stride).astype(np.float32) + np.float32(self.stride / 2 - 0.5)
        g = np.exp(-(grid - pts[:, None, :]) ** 2 / self._div32)
        # their outer products (np.outer's products), scattered with a maximum (exact in any
        # order) onto the cells inside the map
        values = g[:, :, None, 1] * g[:, None, :, 0]                          # (J, 15, 15)
        rows = np.broadcast_to(idx[:, :, None, 1], values.shape)
        cols = np.broadcast_to(idx[:, None, :, 0], values.shape)
        inside = (rows >= 0) & (rows < self.out_h) & (cols >= 0) & (cols < self.out_w)
        chan = np.broadcast_to((HEAT_START + parts)[:, None, None], values.shape)
        np.maximum.at(maps, (chan[inside], rows[inside], cols[inside]), values[inside])

    def put_limbs(self, maps, joints):
        """Limb maps into ``maps[k]`` (averaged over the people whose box covers a cell)."""
        limbs = np.asarray(LIMBS)
        a = joints[:, limbs[:, 0]]                                           # (N, 30, 3)
        b = joints[:, limbs[:, 1]]
        # float32 differences and squared length, as the reference
        d = b[..., :2] - a[..., :2]
        length2 = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]
        drawn = (a[..., 2] < 2) & (b[..., 2] < 2) & (length2 != 0)  # zero length: skipped
        # cell box, bounds inclusive, round half to even of float32 values; the box is the
        # joints' extent enlarged by one stride (the reference's paf_thre)
        stride32, margin32 = np.float32(self.stride), np.float32(self.limb_margin)
        lo = np.rint((np.minimum(a[..., :2], b[..., :2]) - margin32) / stride32).astype(np.int64)
        hi = np.rint((np.maximum(a[..., :2], b[..., :2]) + margin32) / stride32).astype(np.int64)
        drawn &= (hi >= 0).all(axis=-1)
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi + 1, (self.out_w, self.out_h))                      # exclusive
        drawn &= (hi > lo).all(axis=-1)
        # pairs (limb k, person i), limb-major and people in order within a limb
        ks, people = np.nonzero(drawn.T)
        if not len(ks):
            return
        a, d, lo, hi = a[people, ks, :2], d[people, ks], lo[people, ks], hi[people, ks]
        # |AB| + 1e-6 as the reference: float32 scalar ** 2 (libm powf, which is not always
        # x * x), summed in float32, math.sqrt in float64
        scale = np.array([math.sqrt(dx ** 2 + dy ** 2) for dx, dy in d]) + 1e-6
        a64, d64 = a.astype(np.float64), d.astype(np.float64)
        # the reference's float64 terms (x2 - x1)(y1 - Y) and (x1 - X)(y2 - y1) on every row
        # and column, then per cell of each box their difference: the same operations element
        # by element, for all boxes at once in one flat array
        row_term = (a64[:, 1:2] - self.grid_y[None, :]) * d64[:, 0:1]          # (P, out_h)
        col_term = (a64[:, 0:1] - self.grid_x[None, :]) * d64[:, 1:2]          # (P, out_w)
        w, h = (hi - lo).T
        sizes = w * h
        pair = np.repeat(np.arange(len(ks)), sizes)
        local = np.arange(pair.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        rows = lo[pair, 1] + local // w[pair]
        cols = lo[pair, 0] + local % w[pair]
        g = row_term[pair, rows] - col_term[pair, cols]
        g /= scale[pair]
        np.square(g, out=g)                          # |d|^2 = d^2 bit for bit
        g /= -float(self.limb_double_sigma2)        # -(d^2) / 98: rounding is sign-symmetric
        np.exp(g, out=g)
        g[g <= self.gaussian_thre] = self.limb_floor
        # people add up in order into the float32 map (float64 sum rounded to float32 at each
        # step, as the reference's +=), then each cell is divided by its count of boxes
        ends = np.cumsum(sizes)
        for k, (c0, r0), (c1, r1), end, size, width in zip(
                (PAF_START + ks).tolist(), lo.tolist(), hi.tolist(), ends.tolist(),
                sizes.tolist(), w.tolist()):
            maps[k, r0:r1, c0:c1] += g[end - size:end].reshape(-1, width)
        # a cell covered by n > 1 boxes is divided by n (float32 / float32), the others keep
        # their value (x / 1 = x)
        flat = (ks[pair] * self.out_h + rows) * self.out_w + cols
        cells, count = np.unique(flat, return_counts=True)
        shared = count > 1
        if shared.any():
            limb_maps = maps[PAF_START:PAF_START + NUM_LIMBS].reshape(-1)
            cells = cells[shared]
            limb_maps[cells] /= count[shared].astype(np.float32)
