"""Bottom-up (SimplePose) test-time maps: the whole image in, full-resolution keypoint and limb
maps out (SIMPLEPOSE_SPEC 6.1, the reference's ``evaluate.predict``).

Input side: the image is resized so that its height becomes ``boxsize * scale`` (640 for scale 1)
with cubic interpolation, the factor clamped so that the result stays within 2600 x 3800 px;
then padded at the right and bottom to a multiple of 64 (the network's total down-sampling) with
grey 128, divided by 255 (BGR, no mean/std) and batched with its horizontal mirror.

Output side: the network's last-stack stride-4 maps of the image and of its mirror are averaged
(the mirror's flipped back and its left/right channels swapped, no pixel shift), upsampled x4
(cubic), cropped to the resized image, and resized (cubic) to the original image size. Several
scales are averaged in float64.

Everything here is numpy + OpenCV and reproduces the reference's arithmetic step by step: the
maps are bit-identical to the reference's for the same network output (float32 intermediates,
the same ``cv2.resize`` calls).
"""
import cv2
import numpy as np

from posekit.codec.bottomup.layout import (FLIP_HEAT_ORDER, FLIP_PAF_ORDER, HEAT_START,
                                           NUM_CHANNELS, NUM_LIMBS, PAF_START)

__all__ = ['BOXSIZE', 'MAX_DOWNSAMPLE', 'PAD_VALUE', 'STRIDE', 'MAX_RESIZED_HW', 'test_scale',
           'pad_right_bottom', 'resize_and_pad', 'input_batch', 'fuse_flip', 'to_image_size',
           'image_maps', 'average_scales']

BOXSIZE = 640            # target height of the resized image at scale 1 (not the 512 of training)
MAX_DOWNSAMPLE = 64      # inputs are padded to a multiple of this
PAD_VALUE = 128          # grey of the padding (uint8, before /255)
STRIDE = 4               # output stride of the maps used at test time (last stack, scale 0)
MAX_RESIZED_HW = (2600, 3800)   # evaluate.py's clamp [H, W] (demo_image.py uses 2300 x 3200)


def test_scale(image_hw, scale=1.0, boxsize=BOXSIZE, max_hw=MAX_RESIZED_HW):
    """The resize factor for one ``scale_search`` entry: height -> ``boxsize * scale``, clamped
    so that the resized image stays within ``max_hw`` [H, W] (SIMPLEPOSE_SPEC 6.1)."""
    h, w = int(image_hw[0]), int(image_hw[1])
    f = scale * boxsize / h
    if f * h > max_hw[0] or f * w > max_hw[1]:
        f = min(max_hw[0] / h, max_hw[1] / w)
    return f


def pad_right_bottom(image, multiple=MAX_DOWNSAMPLE, value=PAD_VALUE):
    """``image`` (H, W, C) padded at the bottom and right to multiples of ``multiple`` with
    ``value``; returns ``(padded, pad)`` with ``pad`` = [up, left, down, right] (up = left = 0)."""
    h, w = image.shape[:2]
    down = (-h) % multiple
    right = (-w) % multiple
    padded = np.full((h + down, w + right) + image.shape[2:], value, dtype=image.dtype)
    padded[:h, :w] = image
    return padded, [0, 0, down, right]


def resize_and_pad(image_bgr, factor, multiple=MAX_DOWNSAMPLE, pad_value=PAD_VALUE):
    """The uint8 network picture for a resize ``factor`` (:func:`test_scale`): cubic resize with
    ``fx = fy = factor`` (OpenCV rounds the size), then :func:`pad_right_bottom`.
    Returns ``(padded (Hp, Wp, 3), pad, resized_hw)``."""
    resized = cv2.resize(image_bgr, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    padded, pad = pad_right_bottom(resized, multiple, pad_value)
    return padded, pad, list(resized.shape[:2])


def input_batch(padded, flip=True, pixel_scale=255.0):
    """(B, 3, Hp, Wp) float32 network input of a padded HWC picture: ``float32(x / 255)`` (the
    division in float64, as the reference), no mean/std, BGR kept; with ``flip`` the batch is
    [picture, its horizontal mirror] (one forward pass for the flip test)."""
    x = np.float32(padded / pixel_scale)
    x = np.ascontiguousarray(x.transpose(2, 0, 1))[None]
    if flip:
        x = np.concatenate([x, x[:, :, :, ::-1]], axis=0)
    return x


def fuse_flip(outputs):
    """(h, w, 30) limb and (h, w, 20) keypoint maps (HWC float32) of the network output
    (B, 50, h, w): with B = 2 ([picture, mirror]) the mirror's maps are flipped back, their
    channels permuted with ``FLIP_PAF_ORDER`` / ``FLIP_HEAT_ORDER`` and averaged with the
    picture's, ``(a + b) / 2`` in float32 without any pixel shift (SIMPLEPOSE_SPEC 6.1); with
    B = 1 the maps are returned as they are."""
    out = np.asarray(outputs, dtype=np.float32)
    if out.ndim != 4 or out.shape[0] not in (1, 2) or out.shape[1] < NUM_CHANNELS:
        raise ValueError('expected bottom-up network outputs (1 or 2, %d, h, w), got shape %s'
                         % (NUM_CHANNELS, out.shape))
    a = out[0].transpose(1, 2, 0)
    paf = a[:, :, PAF_START:PAF_START + NUM_LIMBS]
    heat = a[:, :, HEAT_START:NUM_CHANNELS]
    if out.shape[0] == 2:
        b = out[1].transpose(1, 2, 0)[:, ::-1]
        paf = (paf + b[:, :, PAF_START:PAF_START + NUM_LIMBS][:, :, list(FLIP_PAF_ORDER)]) / 2
        heat = (heat + b[:, :, HEAT_START:NUM_CHANNELS][:, :, list(FLIP_HEAT_ORDER)]) / 2
    return np.ascontiguousarray(paf), np.ascontiguousarray(heat)


def to_image_size(maps_hwc, padded_hw, pad, image_hw, stride=STRIDE):
    """Stride-``stride`` maps (h, w, C) -> image pixels (H, W, C): cubic x``stride``
    upsampling, crop of the padding, cubic resize to the image size (the reference's two
    ``cv2.resize`` calls, kept as they are so the values are the same)."""
    up = cv2.resize(maps_hwc, (0, 0), fx=stride, fy=stride, interpolation=cv2.INTER_CUBIC)
    if up.ndim == 2:
        up = up[:, :, None]
    hp, wp = padded_hw
    up = up[pad[0]:hp - pad[2], pad[1]:wp - pad[3]]
    out = cv2.resize(up, (int(image_hw[1]), int(image_hw[0])), interpolation=cv2.INTER_CUBIC)
    return out.reshape(out.shape[:2] + (maps_hwc.shape[2],))


def image_maps(outputs, padded_hw, pad, image_hw, stride=STRIDE):
    """``(heat (H, W, 20), paf (H, W, 30))`` float32 in image pixels for one scale's network
    output (B, 50, h, w): :func:`fuse_flip` then :func:`to_image_size`."""
    paf, heat = fuse_flip(outputs)
    return (to_image_size(heat, padded_hw, pad, image_hw, stride),
            to_image_size(paf, padded_hw, pad, image_hw, stride))


def average_scales(maps):
    """The average of per-scale maps (a list of same-shaped arrays), accumulated in float64 as
    the reference does (``avg += m / n`` with ``m / n`` in float32). One scale is returned as it
    is: its float64 average would hold the same values (``0.0 + m / 1`` is exact), so the float32
    array avoids a conversion and half the memory."""
    maps = list(maps)
    if len(maps) == 1:
        return maps[0]
    n = len(maps)
    avg = np.zeros(maps[0].shape, np.float64)
    for m in maps:
        avg = avg + m / n
    return avg
