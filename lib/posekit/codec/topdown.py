"""The top-down codec as two objects: how an image and person boxes become a network input
(:class:`InputSpec`), and how keypoints become target heatmaps and heatmaps become keypoints
(:class:`TopDownHeatmapCodec`).

They are the only carriers of the pre- and post-processing parameters. Training and validation
(the datasets), inference (the predictor), export parity, int8 calibration and the benchmarks
all build them once (``from_cfg`` or from the deploy config) and call their methods; the numpy
functions they wrap live in :mod:`posekit.codec.transforms` and :mod:`posekit.codec.heatmap`.
Their ``to_dict`` forms are what ``deploy_config.json`` stores (see :mod:`posekit.codec`).
"""
import numpy as np

from posekit.config import ConfigError
from posekit.codec import heatmap as hm
from posekit.codec import transforms
from posekit.codec.forms import DictForm

__all__ = ['InputSpec', 'TopDownHeatmapCodec', 'IMAGENET_MEAN', 'IMAGENET_STD']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _size(value, what):
    size = [int(v) for v in value]
    if len(size) != 2 or min(size) <= 0:
        raise ConfigError('%s must be [W, H] with positive values, got %s' % (what, list(value)))
    return size


def _pairs(value):
    return [[int(a), int(b)] for a, b in value]


class InputSpec(DictForm):
    """Person boxes of a BGR image -> a normalised NCHW float32 batch (REFERENCE_SPEC 1.2, 2.4,
    2.6).

    ``input_size`` [W, H]; ``color_rgb`` False keeps OpenCV's BGR order while ``mean``/``std``
    (RGB-ordered ImageNet statistics) are applied in channel order: the Simple Baselines quirk
    their released weights need. ``pixel_scale`` divides the pixels first (255; the old Paddle
    port forgot it: 1.0). A box (x, y, w, h) is widened to the input's aspect ratio and
    enlarged by ``padding`` (1.25) before cropping.
    """
    kind = 'topdown_crop'

    def __init__(self, input_size, color_rgb=False, pixel_scale=255.0, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, padding=transforms.BOX_PADDING):
        self.input_size = _size(input_size, 'input_size')
        self.color_rgb = bool(color_rgb)
        self.pixel_scale = float(pixel_scale)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.padding = float(padding)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError('mean and std need 3 values each (std > 0)')
        if self.pixel_scale <= 0:
            raise ConfigError('pixel_scale must be > 0, got %g' % self.pixel_scale)

    @property
    def aspect_ratio(self):
        return self.input_size[0] / float(self.input_size[1])

    def centers_scales(self, boxes):
        """(N, 2) centres and (N, 2) scales (units of 200 px) of (N, 4+) x, y, w, h boxes."""
        cs = [transforms.box_to_center_scale(b[0], b[1], b[2], b[3], self.aspect_ratio,
                                             self.padding) for b in boxes]
        centers = np.array([c for c, _ in cs], dtype=np.float32).reshape(-1, 2)
        scales = np.array([s for _, s in cs], dtype=np.float32).reshape(-1, 2)
        return centers, scales

    def crop(self, image_bgr, center, scale, rotation=0, mirror=False):
        """The box warped to ``input_size`` (HWC uint8); see :func:`transforms.crop`."""
        return transforms.crop(image_bgr, center, scale, rotation, self.input_size, mirror=mirror)

    def normalize(self, crops_bgr):
        """HWC (or NHWC) uint8 BGR crop(s) -> CHW (NCHW) float32 network input."""
        return transforms.normalize(crops_bgr, self.color_rgb, self.pixel_scale, self.mean,
                                    self.std)

    def prepare(self, image_bgr, boxes=None):
        """``(inputs (N, 3, H, W) float32, meta)`` for person ``boxes`` (N, 4+) of one image;
        the whole image is one box when ``boxes`` is None. ``meta`` holds ``centers``,
        ``scales`` and ``boxes`` (N, 4), what :meth:`TopDownHeatmapCodec.keypoints` needs."""
        image_bgr = np.asarray(image_bgr)
        if boxes is None:
            h, w = image_bgr.shape[:2]
            boxes = [[0.0, 0.0, float(w), float(h)]]
        boxes = np.asarray(boxes, dtype=np.float32)
        boxes = boxes.reshape(-1, boxes.shape[-1] if boxes.size else 4)
        centers, scales = self.centers_scales(boxes)
        if len(centers) == 0:
            w, h = self.input_size
            return np.zeros((0, 3, h, w), np.float32), {'centers': centers, 'scales': scales,
                                                        'boxes': boxes[:, :4]}
        crops = np.stack([self.crop(image_bgr, centers[i], scales[i]) for i in range(len(centers))])
        return self.normalize(crops), {'centers': centers, 'scales': scales, 'boxes': boxes[:, :4]}

    def with_input_size(self, input_size):
        data = self.to_dict()
        data['input_size'] = _size(input_size, 'input_size')
        return InputSpec.from_dict(data)

    def to_dict(self):
        return {'type': self.kind, 'input_size': list(self.input_size),
                'color_rgb': self.color_rgb, 'pixel_scale': self.pixel_scale,
                'mean': list(self.mean), 'std': list(self.std), 'padding': self.padding}

    @classmethod
    def from_cfg(cls, cfg):
        """From ``MODEL.IMAGE_SIZE`` and ``DATASET.COLOR_RGB/PIXEL_SCALE/MEAN/STD``."""
        d = cfg.DATASET
        return cls(cfg.MODEL.IMAGE_SIZE, color_rgb=d.COLOR_RGB, pixel_scale=d.PIXEL_SCALE,
                   mean=d.MEAN, std=d.STD)


class TopDownHeatmapCodec(DictForm):
    """Keypoints <-> one Gaussian heatmap per joint, for person crops.

    ``encode``: unnormalised Gaussians of ``sigma`` on the rounded heatmap location, with
    target weights (REFERENCE_SPEC 2.5). ``decode``: argmax, then the quarter-pixel step
    (``post_process``, the reference), or [LPN] soft-argmax (``soft_argmax``) with ``bias``
    subtracted, or DARK (``dark``, with a ``dark_kernel`` blur that follows ``sigma``), then the
    inverse crop (4.5, 7.1, 7.2). ``flip_test``: the mirrored input's maps flipped back with
    ``flip_pairs`` and averaged, shifted one pixel when ``shift_heatmap`` (7.3).
    Sizes are [W, H].
    """
    kind = 'topdown_heatmap'

    def __init__(self, input_size, heatmap_size, sigma=2.0, flip_pairs=(), post_process=True,
                 shift_heatmap=True, soft_argmax=False, bias=0.0, dark=False, dark_kernel=None):
        self.input_size = _size(input_size, 'input_size')
        self.heatmap_size = _size(heatmap_size, 'heatmap_size')
        self.sigma = float(sigma)
        self.flip_pairs = _pairs(flip_pairs)
        self.post_process = bool(post_process)
        self.shift_heatmap = bool(shift_heatmap)
        self.soft_argmax = bool(soft_argmax)
        self.bias = float(bias)
        self.dark = bool(dark)
        self.dark_kernel = int(hm.dark_kernel_size(self.sigma) if dark_kernel is None else dark_kernel)
        if self.dark_kernel < 1 or self.dark_kernel % 2 == 0:
            raise ConfigError('dark_kernel must be odd and positive, got %d' % self.dark_kernel)
        if self.dark and self.soft_argmax:
            raise ConfigError('DARK decoding and soft-argmax are exclusive: turn off TEST.DARK or '
                              'TEST.SOFT_ARGMAX')

    # -- encode -------------------------------------------------------------------------------
    def encode(self, joints, joints_vis):
        """Target heatmaps (K, Hh, Wh) and weights (K, 1) for joints in input-crop pixels."""
        return hm.generate_target(joints, joints_vis, self.input_size, self.heatmap_size,
                                  self.sigma)

    # -- decode -------------------------------------------------------------------------------
    def decode(self, heatmaps, centers, scales):
        """Heatmaps (B, K, h, w) of crops with these centres/scales -> keypoints in image pixels
        (B, K, 2) and confidences (B, K, 1)."""
        return hm.get_final_preds(
            heatmaps, centers, scales, post_process=self.post_process,
            soft_argmax_beta=hm.SOFT_ARGMAX_BETA if self.soft_argmax else None, bias=self.bias,
            dark=self.dark, dark_kernel=self.dark_kernel)

    def keypoints(self, heatmaps, meta):
        """(B, K, 3) x, y, confidence for :meth:`InputSpec.prepare`'s ``meta``."""
        preds, maxvals = self.decode(heatmaps, meta['centers'], meta['scales'])
        return np.concatenate([preds, maxvals], axis=2).astype(np.float32)

    def flip_test(self, run, inputs, flip=True):
        """Heatmaps of ``run(inputs)``, averaged with the mirrored input's when ``flip``."""
        return hm.flip_test(run, inputs, self.flip_pairs if flip else None,
                            shift=self.shift_heatmap)

    # -- forms --------------------------------------------------------------------------------
    def with_input_size(self, input_size):
        """The same codec for another input size (heatmaps at the same stride)."""
        input_size = _size(input_size, 'input_size')
        stride_x = self.input_size[0] / float(self.heatmap_size[0])
        stride_y = self.input_size[1] / float(self.heatmap_size[1])
        if input_size[0] % stride_x or input_size[1] % stride_y:
            raise ConfigError('input size %dx%d must be a multiple of the heatmap stride %g'
                              % (input_size[0], input_size[1], stride_x))
        data = self.to_dict()
        data['input_size'] = input_size
        data['heatmap_size'] = [int(input_size[0] / stride_x), int(input_size[1] / stride_y)]
        return TopDownHeatmapCodec.from_dict(data)

    def to_dict(self):
        return {'type': self.kind, 'input_size': list(self.input_size),
                'heatmap_size': list(self.heatmap_size), 'sigma': self.sigma,
                'flip_pairs': [list(p) for p in self.flip_pairs],
                'post_process': self.post_process, 'shift_heatmap': self.shift_heatmap,
                'soft_argmax': self.soft_argmax, 'bias': self.bias, 'dark': self.dark,
                'dark_kernel': self.dark_kernel}

    @classmethod
    def from_cfg(cls, cfg, flip_pairs):
        """From ``MODEL.IMAGE_SIZE/HEATMAP_SIZE/SIGMA`` and ``TEST.POST_PROCESS/SHIFT_HEATMAP/
        SOFT_ARGMAX/BIAS/DARK``; ``flip_pairs`` are the dataset's."""
        t = cfg.TEST
        return cls(cfg.MODEL.IMAGE_SIZE, cfg.MODEL.HEATMAP_SIZE, sigma=cfg.MODEL.SIGMA,
                   flip_pairs=flip_pairs, post_process=t.POST_PROCESS,
                   shift_heatmap=t.SHIFT_HEATMAP, soft_argmax=t.SOFT_ARGMAX, bias=t.BIAS,
                   dark=bool(t.DARK))
