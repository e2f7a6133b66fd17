"""The codec stage: how images become network inputs and how network outputs become keypoints.

Framework-free numpy. Two kinds of objects, each with a serialised form (``to_dict`` /
:func:`input_spec_from_dict`, :func:`codec_from_dict`) that is what ``deploy_config.json``
stores:

* an *input spec*: ``prepare(image_bgr, boxes=None) -> (inputs NCHW float32, meta)``.
  Top-down (:class:`InputSpec`): one crop per person box. A bottom-up spec takes the whole
  image (resized and padded) and ignores ``boxes``;
* a *codec*: ``encode(...)`` (training targets), ``decode(...)``, ``flip_test(run, inputs,
  flip)`` and ``keypoints(outputs, meta) -> (N, K, 3)`` (x, y, score in image pixels, one row
  per person). Top-down (:class:`TopDownHeatmapCodec`): one heatmap per joint per crop. A
  bottom-up codec decodes keypoint and limb maps by grouping, and returns one row per person
  found.

The predictor, validation and export only use ``prepare``, ``flip_test`` and ``keypoints``, so a
second pipeline is a second pair of classes registered here, not a branch in the callers.
"""
from posekit.config import is_bottom_up
from posekit.codec.topdown import IMAGENET_MEAN, IMAGENET_STD, InputSpec, TopDownHeatmapCodec
from posekit.codec.bottomup.codec import BottomUpInputSpec, BottomUpPartsCodec

__all__ = ['InputSpec', 'TopDownHeatmapCodec', 'BottomUpInputSpec', 'BottomUpPartsCodec',
           'IMAGENET_MEAN', 'IMAGENET_STD', 'CODECS', 'INPUT_SPECS', 'codec_from_dict',
           'input_spec_from_dict', 'input_spec_from_cfg', 'codec_from_cfg']

CODECS = {TopDownHeatmapCodec.kind: TopDownHeatmapCodec,
          BottomUpPartsCodec.kind: BottomUpPartsCodec}
INPUT_SPECS = {InputSpec.kind: InputSpec,
               BottomUpInputSpec.kind: BottomUpInputSpec}


def _from_dict(table, data, what):
    if not isinstance(data, dict):
        raise ValueError('%s must be a mapping, got %s' % (what, type(data).__name__))
    kind = data.get('type')
    if kind not in table:
        raise ValueError('unknown %s type %r (known: %s)' % (what, kind, ', '.join(sorted(table))))
    return table[kind].from_dict(data)


def codec_from_dict(data):
    """A codec from its ``to_dict`` form (``type`` names the class)."""
    return _from_dict(CODECS, data, 'codec')


def input_spec_from_dict(data):
    """An input spec from its ``to_dict`` form (``type`` names the class)."""
    return _from_dict(INPUT_SPECS, data, 'input spec')


def input_spec_from_cfg(cfg):
    """The input spec of a training config, the one place every entry point takes it from.

    Bottom-up (:func:`posekit.config.is_bottom_up`): the whole image at height ``TEST.BOXSIZE``
    (640 in the reference), batched with its mirror when ``TEST.FLIP_TEST``; BGR / 255 as the
    bottom-up training data, whatever ``DATASET.MEAN/STD/PIXEL_SCALE`` say. Top-down:
    :meth:`InputSpec.from_cfg` (person crops of ``MODEL.IMAGE_SIZE``)."""
    if is_bottom_up(cfg):
        return BottomUpInputSpec(boxsize=int(cfg.TEST.BOXSIZE), flip=bool(cfg.TEST.FLIP_TEST))
    return InputSpec.from_cfg(cfg)


def codec_from_cfg(cfg, flip_pairs=None):
    """The codec of a training config. Bottom-up: :class:`BottomUpPartsCodec` with the
    reference's stride and grouping thresholds (its left/right swap is fixed by the channel
    layout). Top-down: :meth:`TopDownHeatmapCodec.from_cfg` with the dataset's ``flip_pairs``
    (``posekit.data.dataset_info``; the codec stage does not read dataset descriptions)."""
    if is_bottom_up(cfg):
        return BottomUpPartsCodec()
    if flip_pairs is None:
        raise ValueError('a top-down codec needs the dataset\'s flip_pairs')
    return TopDownHeatmapCodec.from_cfg(cfg, flip_pairs)
