"""LPN, the Lightweight Pose Network of [LPN]/[CAV] (REFERENCE_SPEC 4.2).

A ResNet-shaped backbone built from light blocks (expansion 1, layer4 without downsampling, so the
backbone stops at stride 16), a global-context (GC) attention block in every residual block, and a
head of two *group* deconvolutions (groups = gcd(in, out)), each followed by a 1x1 conv, then a 1x1
conv to the heatmaps (output stride 4).

Keys match the reference state dicts: ``conv1``, ``bn1``, ``layer{1..4}.{i}.conv{1,2,3}``,
``bn{1,2,3}``, ``downsample.{0,1}``, ``att.conv_mask``, ``att.channel_add_conv.{0,1,3}``,
``deconv_layers.{0,1,3,4,6,7,9,10}``, ``final_layer``. The GC LayerNorm is over ``[P, 1, 1]``;
PyTorch stores its gain/bias as ``(P, 1, 1)``, Paddle as a flat ``(P,)`` (Appendix A: reshape when
converting). The optional SE attention uses Linear layers, whose weights are transposed between
the frameworks.
"""
import math

import paddle
import paddle.nn as nn

from posekit.config import ConfigError
from posekit.config.default import MODEL_EXTRA_DEFAULTS
from posekit.models.layers import (ResNetTrunk, bn, conv1x1, conv3x3, final_conv, init_all_normal, init_head,
                     make_deconv_head)

# The valid MODEL.EXTRA keys and their defaults: config schema, declared in
# posekit.config.default so that loading a config needs no network code.
EXTRA_DEFAULTS = MODEL_EXTRA_DEFAULTS['lpn']


def _attention_hidden(channels):
    # [LPN]: hidden width C // 16, but never below 16 (same rule for GC and SE).
    return max(channels // 16, 16)


class GCBlock(nn.Layer):
    """Global-context block, 'att' pooling with 'channel_add' fusion only (the LPN configuration).

    context = sum over positions of x * softmax(conv_mask(x)); out = x + transform(context), with
    transform = 1x1 conv C->P, LayerNorm over [P,1,1], ReLU, 1x1 conv P->C.
    """

    def __init__(self, channels, hidden):
        super().__init__()
        self.conv_mask = nn.Conv2D(channels, 1, 1)
        self.channel_add_conv = nn.Sequential(
            nn.Conv2D(channels, hidden, 1),
            nn.LayerNorm([hidden, 1, 1], epsilon=1e-5),
            nn.ReLU(),
            nn.Conv2D(hidden, channels, 1),
        )
        # The block's own initialisation (GCNet, kept by [LPN]): Kaiming-normal (fan_in) mask conv
        # with zero bias, zero last conv so the block starts as the identity. A from-scratch
        # training init (init_all_normal) later overwrites the conv weights, not the biases.
        nn.initializer.KaimingNormal(nonlinearity='relu')(self.conv_mask.weight)
        nn.initializer.Constant(0.0)(self.conv_mask.bias)
        last = self.channel_add_conv[3]
        nn.initializer.Constant(0.0)(last.weight)
        nn.initializer.Constant(0.0)(last.bias)

    def forward(self, x):
        # [N, 1, HW]: attention weights over the spatial positions.
        mask = nn.functional.softmax(paddle.flatten(self.conv_mask(x), 2), axis=2)
        # [N, C, HW] x [N, HW, 1] -> [N, C, 1] -> [N, C, 1, 1]
        context = paddle.matmul(paddle.flatten(x, 2), mask, transpose_y=True).unsqueeze(-1)
        return x + self.channel_add_conv(context)


class SELayer(nn.Layer):
    """Squeeze-and-excitation as defined (but never configured) by [LPN]: bias-free Linear layers,
    keys ``fc.0`` / ``fc.2``. Paddle Linear weights are (in, out): transpose the PyTorch (out, in)."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias_attr=False),
            nn.ReLU(),
            nn.Linear(hidden, channels, bias_attr=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        y = self.fc(paddle.flatten(self.avg_pool(x), 1))
        return x * y.unsqueeze([2, 3])


ATTENTION_KINDS = ('GC', 'SE', 'NONE', '')


def make_attention(kind, channels):
    """``att`` sub-layer of a block, or None for 'NONE' / ''.

    The reference silently disabled attention for any unknown name (a typo such as 'gc' would
    train a different network); here only the listed names are accepted.
    """
    if kind == 'GC':
        return GCBlock(channels, _attention_hidden(channels))
    if kind == 'SE':
        return SELayer(channels, _attention_hidden(channels))
    return None


class LWBottleneck(nn.Layer):
    """[LPN] LW_Bottleneck, expansion 1: 1x1 BN ReLU, 3x3 depthwise (stride) BN ReLU, 1x1 BN,
    attention, + shortcut, ReLU. All convs bias-free.

    ``group_width`` is accepted for a uniform block signature and ignored: the bottleneck's 3x3 is
    always fully depthwise.
    """
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, attention='GC', group_width=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = bn(planes)
        self.conv2 = conv3x3(planes, planes, stride, groups=planes)
        self.bn2 = bn(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = bn(planes * self.expansion)
        self.relu = nn.ReLU()
        # downsample before att: the reference registers them in this order, so the state dict
        # lists layer{s}.0.downsample.* before layer{s}.0.att.* (REFERENCE_SPEC 4.2 key layout).
        self.downsample = downsample
        self.att = make_attention(attention, planes * self.expansion)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.att is not None:
            out = self.att(out)
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class LWBasicBlock(nn.Layer):
    """[CAV] LW_BasicBlock: 3x3 grouped (stride) BN ReLU, 3x3 grouped BN, attention, + shortcut, ReLU.

    ``group_width`` channels per group: 2 gives the [CAV] code's groups C_in/2 and p/2 ("h" rows),
    1 makes both convs depthwise.
    """
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, attention='GC', group_width=2):
        super().__init__()
        for c in (inplanes, planes):
            if c % group_width:
                raise ConfigError('MODEL.EXTRA.BASIC_GROUP_WIDTH %d does not divide %d channels'
                                  % (group_width, c))
        self.conv1 = conv3x3(inplanes, planes, stride, groups=inplanes // group_width)
        self.bn1 = bn(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes, groups=planes // group_width)
        self.bn2 = bn(planes)
        self.downsample = downsample  # registered before att, as in the reference
        self.att = make_attention(attention, planes * self.expansion)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.att is not None:
            out = self.att(out)
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


# NUM_LAYERS -> (block, blocks per stage). 50/101/152 from [LPN], 18/34/100 from [CAV].
LPN_SPEC = {
    18: (LWBasicBlock, [2, 2, 2, 2]),
    34: (LWBasicBlock, [3, 4, 6, 3]),
    50: (LWBottleneck, [3, 4, 6, 3]),
    100: (LWBottleneck, [3, 13, 30, 3]),
    101: (LWBottleneck, [3, 4, 23, 3]),
    152: (LWBottleneck, [3, 8, 36, 3]),
}


class LPN(ResNetTrunk):
    def __init__(self, block, layers, num_joints, extra):
        super().__init__()
        # layer4 keeps the resolution: the backbone ends at stride 16 and two deconvs reach 1/4.
        self.build_trunk(block, layers, strides=(1, 2, 2, 1),
                         block_kwargs={'attention': extra.ATTENTION,
                                       'group_width': extra.BASIC_GROUP_WIDTH})
        self.deconv_layers, planes = make_deconv_head(
            self.inplanes, extra.NUM_DECONV_LAYERS, extra.NUM_DECONV_FILTERS,
            extra.NUM_DECONV_KERNELS, with_bias=extra.DECONV_WITH_BIAS,
            groups_fn=math.gcd, pointwise=True)
        self.final_layer = final_conv(planes, num_joints, extra.FINAL_CONV_KERNEL)

    def init_weights(self, pretrained=''):
        """Training initialisation of [LPN]/[CAV].

        LPN trains from scratch: every conv/deconv N(0, 0.001), BN 1/0 (GC conv biases keep their
        zero init). With ``pretrained`` (e.g. a previous stage of iterative training) the head is
        re-initialised as in PoseResNet and the file is loaded non-strictly over it.
        """
        init_all_normal(self)
        if pretrained:
            init_head(self.deconv_layers, self.final_layer)
            from posekit.checkpoint import load_pretrained
            load_pretrained(self, pretrained)


def get_pose_net(cfg, is_train=False):
    extra = cfg.MODEL.EXTRA
    if extra.NUM_LAYERS not in LPN_SPEC:
        raise ConfigError('MODEL.EXTRA.NUM_LAYERS for lpn must be one of %s, got %r'
                          % (sorted(LPN_SPEC), extra.NUM_LAYERS))
    if extra.BASIC_GROUP_WIDTH < 1:
        raise ConfigError('MODEL.EXTRA.BASIC_GROUP_WIDTH must be a positive number of channels per '
                          'group, got %r' % (extra.BASIC_GROUP_WIDTH,))
    if extra.ATTENTION not in ATTENTION_KINDS:
        raise ConfigError("MODEL.EXTRA.ATTENTION must be one of 'GC', 'SE' or 'NONE', got %r"
                          % (extra.ATTENTION,))
    block, layers = LPN_SPEC[extra.NUM_LAYERS]
    model = LPN(block, layers, cfg.MODEL.NUM_JOINTS, extra)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model


# -- names: run folders, model_info, the result table -------------------------------------------

def model_tag(cfg):
    """``lpn``: [LPN]/[CAV] name output folders after ``MODEL.NAME``."""
    return cfg.MODEL.NAME


def model_label(cfg):
    """``lpn_50``, ``lpn_18h``, ``lpn_50 (SE attention)``, ``lpn_50 (no attention)``."""
    extra = cfg.MODEL.EXTRA
    depth = extra.get('NUM_LAYERS', '?')
    label = 'lpn_%s' % depth
    # LW_BasicBlock with 2 channels per group is the README's "h" (half-depthwise) row.
    if depth in (18, 34) and extra.get('BASIC_GROUP_WIDTH', 2) == 2:
        label += 'h'
    attention = extra.get('ATTENTION', 'GC')
    if attention not in ('GC', 'SE'):
        label += ' (no attention)'
    elif attention == 'SE':
        label += ' (SE attention)'
    return label
