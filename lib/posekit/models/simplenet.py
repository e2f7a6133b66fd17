"""SimpleNet, the ultra-light mobile pose network of [SN] (REFERENCE_SPEC 4.4).

[SN] ships no code; the architecture was recovered from its released checkpoint: a MobileNetV2-
style backbone (stem conv + 13 inverted-residual blocks, output stride 32) followed by the Simple
Baselines head (three plain deconvolutions to 24 channels, 1x1 conv to the heatmaps).

Keys match the checkpoint (after stripping its DataParallel ``module.`` prefix):
``features.0.{0,1}`` stem conv/BN, ``features.{1..13}.conv.{0,1,3,4,6,7}`` (expand 1x1 / BN,
depthwise 3x3 / BN, project 1x1 / BN), ``deconv_layers.{0,1,3,4,6,7}``, ``final_layer``.
"""
import paddle.nn as nn

from posekit.config import ConfigError
from posekit.config.default import MODEL_EXTRA_DEFAULTS
from posekit.models.layers import bn, conv1x1, conv3x3, final_conv, init_head, make_deconv_head

# The valid MODEL.EXTRA keys and their defaults: config schema, declared in
# posekit.config.default so that loading a config needs no network code.
EXTRA_DEFAULTS = MODEL_EXTRA_DEFAULTS['simplenet']

_ACTIVATIONS = {'relu6': nn.ReLU6, 'relu': nn.ReLU}


def _activation(name):
    key = str(name).lower()
    if key not in _ACTIVATIONS:
        raise ConfigError("MODEL.EXTRA.ACTIVATION for simplenet must be one of %s, got %r"
                          % (sorted(_ACTIVATIONS), name))
    return _ACTIVATIONS[key]


class InvertedResidual(nn.Layer):
    """1x1 expand BN act, 3x3 depthwise (stride) BN act, 1x1 project BN (linear bottleneck).

    The expand conv is present even when hidden == in (block 1 of the checkpoint has one).
    Identity shortcut when stride 1 and in == out (MobileNetV2 rule).
    """

    def __init__(self, inplanes, hidden, planes, stride, act):
        super().__init__()
        self.use_residual = stride == 1 and inplanes == planes
        self.conv = nn.Sequential(
            conv1x1(inplanes, hidden), bn(hidden), act(),
            conv3x3(hidden, hidden, stride, groups=hidden), bn(hidden), act(),
            conv1x1(hidden, planes), bn(planes),
        )

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_residual else out


class SimpleNet(nn.Layer):
    def __init__(self, num_joints, extra):
        super().__init__()
        act = _activation(extra.ACTIVATION)
        if extra.STEM_STRIDE not in (1, 2):
            raise ConfigError('MODEL.EXTRA.STEM_STRIDE must be 1 or 2, got %r' % (extra.STEM_STRIDE,))
        stem = extra.STEM_CHANNELS
        features = [nn.Sequential(
            nn.Conv2D(3, stem, 3, stride=extra.STEM_STRIDE, padding=1, bias_attr=False),
            bn(stem), act())]
        inplanes = stem
        for i, row in enumerate(extra.BLOCKS):
            if len(row) != 3 or row[2] not in (1, 2) or min(row[:2]) <= 0:
                raise ConfigError('MODEL.EXTRA.BLOCKS[%d] must be [hidden, out, stride] with positive '
                                  'channels and stride 1 or 2, got %r' % (i, row))
            hidden, planes, stride = row
            features.append(InvertedResidual(inplanes, hidden, planes, stride, act))
            inplanes = planes
        self.features = nn.Sequential(*features)

        self.deconv_layers, planes = make_deconv_head(
            inplanes, extra.NUM_DECONV_LAYERS, extra.NUM_DECONV_FILTERS,
            extra.NUM_DECONV_KERNELS, with_bias=extra.DECONV_WITH_BIAS)
        self.final_layer = final_conv(planes, num_joints, extra.FINAL_CONV_KERNEL)

    def forward(self, x):
        return self.final_layer(self.deconv_layers(self.features(x)))

    def init_weights(self, pretrained=''):
        """[SN] was trained with the [MS] scripts: head N(0, 0.001) / BN 1/0 (backbone keeps the
        framework default init), then the ImageNet/earlier weights if given (non-strict)."""
        init_head(self.deconv_layers, self.final_layer)
        if pretrained:
            from posekit.checkpoint import load_pretrained
            load_pretrained(self, pretrained)


def get_pose_net(cfg, is_train=False):
    model = SimpleNet(cfg.MODEL.NUM_JOINTS, cfg.MODEL.EXTRA)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model


# -- names: run folders, model_info, the result table -------------------------------------------

def model_tag(cfg):
    """``simplenet``: output folders are named after ``MODEL.NAME``."""
    return cfg.MODEL.NAME


def model_label(cfg):
    return cfg.MODEL.NAME
