"""The bottom-up (SimplePose) codec as two objects, the counterparts of the top-down
:class:`posekit.codec.InputSpec` / :class:`posekit.codec.TopDownHeatmapCodec`:

* :class:`BottomUpInputSpec` (``bottomup_whole_image``): a BGR image -> the network batch
  [image, mirror] resized to height 640 and padded to a multiple of 64 (:mod:`.maps`);
* :class:`BottomUpPartsCodec` (``bottomup_parts``): the network's limb and keypoint maps ->
  people, by peak search and greedy grouping (:mod:`.grouping`), one row per person found.

The predictor, validation and export call ``prepare``, ``flip_test`` and ``keypoints``, as for
the top-down pair; the ``to_dict`` forms are what ``deploy_config.json`` stores.
"""
import numpy as np

from posekit.config import ConfigError
from posekit.errors import PosekitInputError
from posekit.codec.bottomup import maps
from posekit.codec.bottomup.grouping import GroupingParams, group
from posekit.codec.bottomup.layout import NUM_CHANNELS
from posekit.codec.forms import DictForm

__all__ = ['BottomUpInputSpec', 'BottomUpPartsCodec']


class BottomUpInputSpec(DictForm):
    """A whole BGR image -> the (B, 3, Hp, Wp) float32 network input (SIMPLEPOSE_SPEC 6.1).

    The image is resized (cubic) by ``f = scale * boxsize / H`` - its height becomes
    ``boxsize * scale`` - with ``f`` lowered when the result would exceed ``max_size`` [W, H]
    (3800 x 2600, ``evaluate.py``); padded at the right and bottom to a multiple of
    ``multiple`` with ``pad_value``; divided by ``pixel_scale`` (BGR kept, no mean/std: what the
    reference network was trained on). With ``flip`` the batch is [image, horizontal mirror]
    (B = 2), the reference's flip test in one forward pass; else B = 1. Boxes are ignored: the
    people are found in the whole image.
    """
    kind = 'bottomup_whole_image'

    def __init__(self, boxsize=maps.BOXSIZE, scale=1.0, max_size=maps.MAX_RESIZED_HW[::-1],
                 multiple=maps.MAX_DOWNSAMPLE, pad_value=maps.PAD_VALUE, pixel_scale=255.0,
                 flip=True):
        self.boxsize = int(boxsize)
        self.scale = float(scale)
        self.max_size = [int(v) for v in max_size]
        self.multiple = int(multiple)
        self.pad_value = int(pad_value)
        self.pixel_scale = float(pixel_scale)
        self.flip = bool(flip)
        if self.boxsize <= 0 or self.scale <= 0 or self.multiple <= 0 or self.pixel_scale <= 0:
            raise ConfigError('boxsize, scale, multiple and pixel_scale must be > 0')
        if len(self.max_size) != 2 or min(self.max_size) <= 0:
            raise ConfigError('max_size must be [W, H] with positive values, got %s'
                              % list(max_size))
        if not 0 <= self.pad_value <= 255:
            raise ConfigError('pad_value must be a grey level 0..255, got %d' % self.pad_value)

    def prepare(self, image_bgr, boxes=None):
        """``(inputs (B, 3, Hp, Wp) float32, meta)`` for one H x W x 3 uint8 BGR image;
        ``boxes`` is ignored. ``meta``: ``image_size`` [W, H], ``factor`` (the resize factor),
        ``resized_size`` [w, h], ``padded_size`` [Wp, Hp], ``pad`` [up, left, down, right] and
        ``flip`` (the batch holds the mirror as its second image)."""
        image_bgr = np.asarray(image_bgr)
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or min(image_bgr.shape[:2]) < 1:
            raise PosekitInputError('expected an H x W x 3 BGR image, got shape %s'
                                    % (image_bgr.shape,))
        if image_bgr.dtype != np.uint8:
            raise PosekitInputError('expected a uint8 BGR image, got %s' % image_bgr.dtype)
        h, w = image_bgr.shape[:2]
        factor = maps.test_scale((h, w), self.scale, self.boxsize, self.max_size[::-1])
        padded, pad, resized_hw = maps.resize_and_pad(image_bgr, factor, self.multiple,
                                                      self.pad_value)
        inputs = maps.input_batch(padded, self.flip, self.pixel_scale)
        meta = {'image_size': [w, h], 'factor': factor,
                'resized_size': [resized_hw[1], resized_hw[0]],
                'padded_size': [padded.shape[1], padded.shape[0]], 'pad': pad,
                'flip': self.flip}
        return inputs, meta

    def to_dict(self):
        return {'type': self.kind, 'boxsize': self.boxsize, 'scale': self.scale,
                'max_size': list(self.max_size), 'multiple': self.multiple,
                'pad_value': self.pad_value, 'pixel_scale': self.pixel_scale, 'flip': self.flip}


class BottomUpPartsCodec(DictForm):
    """Keypoint ("part") and limb maps -> people (SIMPLEPOSE_SPEC 6.1-6.4).

    The network output is the last stack's stride-``stride`` maps (B, 50, h, w): 30 limbs, 18
    keypoints, the person mask and the keypoint maximum. :meth:`maps` fuses the mirror's maps
    (B = 2) and brings them to image pixels; :meth:`decode` groups them into people with the
    thresholds of :class:`~posekit.codec.bottomup.grouping.GroupingParams` (the reference's:
    peaks >= ``thre1`` = 0.1, ...). :meth:`keypoints` gives (N, 17, 3) COCO keypoints: x, y in
    image pixels and, per joint, the refined peak score (the mean of the 5x5 box around the
    peak; the reference writes only x, y and a visibility flag, so this score is ours). The
    reference's person score ``1 - 1 / total`` is :meth:`decode`'s ``scores``.
    """
    kind = 'bottomup_parts'
    num_joints = 17           # COCO-17 out (the network's 18 parts include a neck)
    num_channels = NUM_CHANNELS

    def __init__(self, stride=maps.STRIDE, **grouping):
        self.stride = int(stride)
        if self.stride <= 0:
            raise ConfigError('stride must be > 0, got %d' % self.stride)
        unknown = sorted(set(grouping) - set(GroupingParams.FIELDS))
        if unknown:
            raise ConfigError('unknown bottom-up grouping option(s) %s (known: %s)'
                              % (', '.join(unknown), ', '.join(GroupingParams.FIELDS)))
        try:
            self.params = GroupingParams(**grouping)
        except (TypeError, ValueError) as e:
            raise ConfigError('bad bottom-up grouping option: %s' % e) from None

    # -- network side ---------------------------------------------------------------------------
    def flip_test(self, run, inputs, flip=True):
        """Stride-4 maps (1, 50, h, w) of ``run`` on a prepared batch: with ``flip`` the
        picture's and the mirror's outputs fused (:func:`maps.fuse_flip`; the mirror is made
        here when the batch has only the picture), else the picture's alone. ``run`` maps a
        float32 NCHW batch to the (B, 50, h, w) last-stack maps, whatever the backend."""
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        if flip:
            if len(inputs) == 1:
                inputs = np.concatenate([inputs, inputs[:, :, :, ::-1]], axis=0)
            out = np.asarray(run(inputs), dtype=np.float32)
            self._check(out, 2)
        else:
            out = np.asarray(run(inputs[:1]), dtype=np.float32)
            self._check(out, 1)
        paf, heat = maps.fuse_flip(out[:2])
        fused = np.concatenate([paf, heat], axis=2).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(fused)

    def _check(self, out, batch):
        if out.ndim != 4 or out.shape[0] != batch or out.shape[1] != self.num_channels:
            raise ValueError('the model returned maps of shape %s for a batch of %d; expected '
                             '(%d, %d, h, w)' % (out.shape, batch, batch, self.num_channels))

    # -- decode ---------------------------------------------------------------------------------
    def maps(self, outputs, meta):
        """``(heat (H, W, 20), paf (H, W, 30))`` in image pixels from the network output
        (B, 50, h, w) (B = 2: [picture, mirror], fused here; B = 1: used as it is) and
        :meth:`BottomUpInputSpec.prepare`'s ``meta``."""
        w, h = meta['image_size']
        wp, hp = meta['padded_size']
        return maps.image_maps(outputs, (hp, wp), meta['pad'], (h, w), self.stride)

    def decode(self, outputs, meta, branches=None):
        """The people of one image: a :class:`~posekit.codec.bottomup.grouping.Grouping`
        (keypoints (N, 17, 3) float64, person ``scores``, and the peaks, connections and
        assembly behind them)."""
        heat, paf = self.maps(outputs, meta)
        return group(heat, paf, meta['image_size'][1], self.params, branches)

    def keypoints(self, outputs, meta):
        """(N, 17, 3) float32: x, y, peak score per COCO joint, one row per person found
        ((0, 0, 0) for a missing joint); person scores: :meth:`decode`."""
        return self.decode(outputs, meta).keypoints.astype(np.float32)

    # -- forms ----------------------------------------------------------------------------------
    def to_dict(self):
        data = {'type': self.kind, 'stride': self.stride}
        data.update(self.params.to_dict())
        return data
