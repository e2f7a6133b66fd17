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
from posekit.codec.topdown import IMAGENET_MEAN, IMAGENET_STD, InputSpec, TopDownHeatmapCodec

__all__ = ['InputSpec', 'TopDownHeatmapCodec', 'IMAGENET_MEAN', 'IMAGENET_STD', 'CODECS',
           'INPUT_SPECS', 'codec_from_dict', 'input_spec_from_dict']

CODECS = {TopDownHeatmapCodec.kind: TopDownHeatmapCodec}
INPUT_SPECS = {InputSpec.kind: InputSpec}


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
