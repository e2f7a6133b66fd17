"""Bottom-up training augmentation (SIMPLEPOSE_SPEC 4.2): one affine map per sample that centres
the main person, scales it to 0.6 of the input height, rotates, flips and shifts; an optional
HSV tint; the warp of the image and both masks; the joints through the same map.

Random draws come from the generators passed in, never from global state: the augmentation
choices from anything with ``uniform(a, b)`` (``random.Random`` reproduces the reference's Python
``random`` draws; the datasets pass their per-sample ``numpy.random.Generator``), the tint from a
numpy ``RandomState`` (``randint``, what the reference's ``np.random`` calls are) or
``Generator`` (``integers``). The reference used the global numpy RNG for the tint, which every
DataLoader worker inherits identically (SIMPLEPOSE_SPEC 9.6); per-sample generators fix that.
"""
from math import cos, pi, sin

import cv2
import numpy as np

from posekit.codec.bottomup.layout import LEFT_PARTS, RIGHT_PARTS

__all__ = ['TRANSFORM_PARAMS', 'AugmentSelection', 'distort_color', 'transform_joints',
           'warp_image', 'warp_masks', 'augment_sample', 'IMAGE_BORDER_VALUE']

# config.TransformationParams of the reference (the subset the augmentation uses)
TRANSFORM_PARAMS = {
    'flip_prob': 0.5,
    'tint_prob': 0.2,
    'max_rotate_degree': 40.0,
    'scale_prob': 0.8,
    'scale_min': 0.7,
    'scale_max': 1.3,
    'center_perterb_max': 50.0,   # px, the reference's spelling of "perturb"
    'target_dist': 0.6,           # the main person's height / input height before random scaling
}
IMAGE_BORDER_VALUE = (124, 127, 127)  # BGR fill outside the source image


class AugmentSelection:
    """The random choices of one sample: ``flip``, ``tint``, ``degree`` (rotation), ``crop``
    ((dx, dy) shift in px) and ``scale``."""

    __slots__ = ('flip', 'tint', 'degree', 'crop', 'scale')

    def __init__(self, flip=False, tint=False, degree=0.0, crop=(0, 0), scale=1.0):
        self.flip = bool(flip)
        self.tint = bool(tint)
        self.degree = float(degree)
        self.crop = (int(crop[0]), int(crop[1]))
        self.scale = float(scale)

    @classmethod
    def random(cls, rng, params=None):
        """Draw in the reference's order: flip U, tint U, degree U(-1, 1) * 40, the scale gate U
        (and the scale U only when the gate passes), dx, dy = int(U(-1, 1) * 50) (truncation)."""
        p = TRANSFORM_PARAMS if params is None else dict(TRANSFORM_PARAMS, **params)
        flip = rng.uniform(0., 1.) < p['flip_prob']
        tint = rng.uniform(0., 1.) < p['tint_prob']
        degree = rng.uniform(-1., 1.) * p['max_rotate_degree']
        if rng.uniform(0., 1.) < p['scale_prob']:
            scale = (p['scale_max'] - p['scale_min']) * rng.uniform(0., 1.) + p['scale_min']
        else:
            scale = 1.
        dx = int(rng.uniform(-1., 1.) * p['center_perterb_max'])
        dy = int(rng.uniform(-1., 1.) * p['center_perterb_max'])
        return cls(flip, tint, degree, (dx, dy), scale)

    @classmethod
    def unrandom(cls):
        """Validation: no flip, tint, rotation, scaling or shift (the centring remains)."""
        return cls()

    def to_dict(self):
        return {'flip': self.flip, 'tint': self.tint, 'degree': self.degree,
                'crop': list(self.crop), 'scale': self.scale}

    def __repr__(self):
        return 'AugmentSelection(%s)' % ', '.join('%s=%r' % kv for kv in self.to_dict().items())

    def affine(self, center, scale_provided, input_size=(512, 512),
               target_dist=TRANSFORM_PARAMS['target_dist']):
        """``(M (2, 3), scale_size)``: ``M = T(W/2 - 0.5 + dx, H/2 - 0.5 + dy) F S(k) R T(-center)``
        for column vectors, ``k = target_dist / (scale_provided * H / (H - 1)) * scale``
        (the H / (H - 1) factor is the reference's, SIMPLEPOSE_SPEC 9.6)."""
        width, height = input_size
        scale_self = scale_provided * (height / (height - 1))
        a = cos(self.degree / 180. * pi)
        b = sin(self.degree / 180. * pi)
        scale_size = target_dist / scale_self * self.scale
        cx, cy = center
        # same matrices and product order as the reference, so M agrees to the last bit
        to_origin = np.array([[1., 0., -cx], [0., 1., -cy], [0., 0., 1.]])
        rotate = np.array([[a, b, 0], [-b, a, 0], [0, 0, 1.]])
        scale = np.array([[scale_size, 0, 0], [0, scale_size, 0], [0, 0, 1.]])
        flip = np.array([[-1 if self.flip else 1., 0., 0.], [0., 1., 0.], [0., 0., 1.]])
        to_centre = np.array([[1., 0., width / 2 - 0.5 + self.crop[0]],
                              [0., 1., height / 2 - 0.5 + self.crop[1]], [0., 0., 1.]])
        combined = to_centre.dot(flip).dot(scale).dot(rotate).dot(to_origin)
        return combined[0:2], scale_size


def distort_color(image, rng):
    """HSV tint of a BGR uint8 image: H += U{0..20} - 10 (clipped to [0, 179]), S += U{0..80} - 20,
    V += U{0..60} - 20 (clipped to [0, 255]); three draws in that order from ``rng``."""
    draw = rng.randint if hasattr(rng, 'randint') else rng.integers
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int16)
    hsv[:, :, 0] = np.clip(hsv[:, :, 0] - 10 + int(draw(20 + 1)), 0, 179)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] - 20 + int(draw(80 + 1)), 0, 255)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] - 20 + int(draw(60 + 1)), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def warp_image(image, M, input_size):
    """Bilinear warp to ``input_size`` [W, H], grey-ish fill (124, 127, 127) outside."""
    # The reference passes dsize (H, W): the same for its square crops (SIMPLEPOSE_SPEC 9.6)
    return cv2.warpAffine(image, M, tuple(int(v) for v in input_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=IMAGE_BORDER_VALUE)


def _warp_mask(mask, M, input_size, mask_size, border):
    warped = cv2.warpAffine(mask, M, tuple(int(v) for v in input_size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    small = cv2.resize(warped, tuple(int(v) for v in mask_size), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.


def warp_masks(mask_miss, mask_all, M, input_size, mask_size):
    """``(mask_miss, mask_all)`` float32 of ``mask_size`` [w, h] in [0, 1]: each uint8 0/255 mask
    is warped at input resolution (outside: 255 for ``mask_miss`` = supervised, 0 for
    ``mask_all``), shrunk with ``INTER_AREA`` and divided by 255. ``mask_miss`` None stands for
    an all-255 mask (nothing excluded), which stays all ones."""
    w, h = (int(v) for v in mask_size)
    all_out = _warp_mask(mask_all, M, input_size, mask_size, 0)
    if mask_miss is None:
        return np.ones((h, w), dtype=np.float32), all_out
    return _warp_mask(mask_miss, M, input_size, mask_size, 255), all_out


def transform_joints(joints, M, flip):
    """(N, K, 3) joints -> x, y through ``M`` (every joint, unlabelled ones included; the
    visibility is kept), then left/right rows swapped when ``flip``."""
    joints = np.array(joints, dtype=np.float64)
    points = joints.copy()
    points[:, :, 2] = 1
    joints[:, :, 0:2] = np.matmul(M, points.transpose([0, 2, 1])).transpose([0, 2, 1])
    if flip:
        left, right = list(LEFT_PARTS), list(RIGHT_PARTS)
        joints[:, left + right, :] = joints[:, right + left, :]
    return joints


def augment_sample(image, mask_miss, mask_all, joints, objpos, scale_provided, aug,
                   input_size=(512, 512), stride=4, tint_rng=None):
    """Apply ``aug`` (an :class:`AugmentSelection`) centred on the main person (``objpos``,
    ``scale_provided``: the first person's). Returns ``(image uint8 (H, W, 3), mask_miss,
    mask_all float32 (H/stride, W/stride), joints (N, 18, 3), M)``. The tint (``aug.tint``)
    draws from ``tint_rng``."""
    if aug.tint:
        if tint_rng is None:
            raise ValueError('aug.tint needs a tint_rng')
        image = distort_color(image, tint_rng)
    if scale_provided == 0:
        raise ValueError('scale_provided of the main person is 0 (a zero-height bbox)')
    M, _ = aug.affine(objpos, scale_provided, input_size)
    out = warp_image(image, M, input_size)
    mask_size = (int(input_size[0]) // stride, int(input_size[1]) // stride)
    miss, all_ = warp_masks(mask_miss, mask_all, M, input_size, mask_size)
    return out, miss, all_, transform_joints(joints, M, aug.flip), M
