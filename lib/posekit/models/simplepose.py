"""SimplePose (Li, Su, Wang, AAAI 2020): the 4-stack improved hourglass network "PoseNet" of
[IBP] hellojialee/Improved-Body-Parts (SIMPLEPOSE_SPEC 3), a bottom-up model.

Each stack regresses the 50 maps of :mod:`posekit.codec.bottomup.layout` (30 limbs, 18
keypoints, person mask, max of the keypoints) at 5 scales, strides 4, 8, 16, 32 and 64:

* ``pre`` (stride 4): 7x7/2 conv, BN, LeakyReLU, Residual, 2x2 max-pool, Residual, then six
  dilated 3x3 convs (dilation 3, 3, 4, 4, 5, 5) whose output is concatenated to their input;
* ``hourglass[i]`` (depth 4): level ``d`` works at ``INP_DIM + d * INCREASE`` channels and
  returns its top output plus the innermost result of every level (5 maps);
* ``features[i].before_regress[s]``: two 3x3 conv+BN+LeakyReLU to ``INP_DIM``, squeeze-and-
  excitation (reduction 16); ``outs[i][s]``: 1x1 conv with bias to the 50 maps;
* between stacks, ``merge_preds[i][s](pred) + merge_features[i][s](features)`` (1x1 conv + BN)
  is added to the next hourglass output at every scale, and at stride 4 to its input too.

All BN as the reference (eps 1e-5, torch momentum 0.1), all activations LeakyReLU(0.01).
Parameter names are the released checkpoint's (``weights`` of ``PoseNet_52_epoch.pth``): the
network is the attribute ``posenet`` as in the reference's ``NetworkEval``, and the camelCase
names (``convBlock``, ``skipConv``) are the reference's. BN statistics are ``_mean``/``_variance``.

Input: NCHW float32 **BGR in [0, 1]**, no mean/std (the reference takes NHWC and permutes it
itself; that transpose belongs to the input spec), height and width multiples of 64.
Output: in training mode the 4 stacks x 5 scales (the loss uses them all); in eval mode only the
last stack's stride-4 maps (N, 50, H/4, W/4), the one tensor the reference uses at test time.
The other outputs of the last stack are not computed then (3 % of the MACs); :meth:`forward_all`
returns every output in either mode.
"""
import paddle
import paddle.nn as nn

from posekit.codec.bottomup.layout import NUM_CHANNELS
from posekit.config import ConfigError
from posekit.config.default import MODEL_EXTRA_DEFAULTS
from posekit.errors import PosekitInputError
from posekit.models.layers import bn, bn_init, normal_init

# The valid MODEL.EXTRA keys and their defaults (config schema, in posekit.config.default).
EXTRA_DEFAULTS = MODEL_EXTRA_DEFAULTS['simplepose']

HOURGLASS_DEPTH = 4                 # fixed: the loss supervises exactly 5 scales
NUM_SCALES = HOURGLASS_DEPTH + 1
STRIDE = 4                          # of the first output scale
INPUT_MULTIPLE = STRIDE * 2 ** HOURGLASS_DEPTH  # 64: every max-pool must halve exactly
SE_REDUCTION = 16
LEAKY_SLOPE = 0.01
DILATIONS = (3, 3, 4, 4, 5, 5)      # the dilated convs of ``pre``


def _lrelu():
    return nn.LeakyReLU(LEAKY_SLOPE)


def _conv(cin, cout, kernel, bias=False, dilation=1):
    """Stride-1 conv with 'same' padding (the reference's ``Conv`` and ``DilatedConv``)."""
    return nn.Conv2D(cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                     bias_attr=None if bias else False)


class ConvBlock(nn.Layer):
    """The reference ``Conv``: conv, then BN (conv without bias) or a conv bias, then optionally
    LeakyReLU. Keys ``conv.*``, ``bn.*``."""

    def __init__(self, cin, cout, kernel=3, with_bn=True, relu=True, dilation=1):
        super().__init__()
        self.conv = _conv(cin, cout, kernel, bias=not with_bn, dilation=dilation)
        self.bn = bn(cout) if with_bn else None
        self.act = _lrelu() if relu else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.act is None else self.act(x)


class Residual(nn.Layer):
    """Bottleneck residual: 1x1 to cout/2, 3x3, 1x1 to cout (each BN, the first two LeakyReLU);
    skip = identity, or 1x1 conv + BN when the widths differ; LeakyReLU after the sum. BN is
    always on (the reference's ``bn`` argument is ignored, SIMPLEPOSE_SPEC 3)."""

    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 2
        self.convBlock = nn.Sequential(
            _conv(cin, mid, 1), bn(mid), _lrelu(),
            _conv(mid, mid, 3), bn(mid), _lrelu(),
            _conv(mid, cout, 1), bn(cout))
        self.skipConv = nn.Sequential(_conv(cin, cout, 1), bn(cout)) if cin != cout else None
        self.act = _lrelu()

    def forward(self, x):
        skip = x if self.skipConv is None else self.skipConv(x)
        return self.act(self.convBlock(x) + skip)


class Backbone(nn.Layer):
    """``pre``: stride 4, ``channels`` out (the reference always gives 256 = 128 + 128; its
    ``nFeat`` argument is ignored). Smaller variants scale every width by ``channels / 256``."""

    def __init__(self, channels):
        super().__init__()
        quarter, half = channels // 4, channels // 2
        self.conv1 = nn.Conv2D(3, quarter, 7, stride=2, padding=3, bias_attr=False)
        self.bn1 = bn(quarter)
        self.relu = _lrelu()
        self.res1 = Residual(quarter, half)
        self.pool = nn.MaxPool2D(2, 2)
        self.res2 = Residual(half, half)
        self.dilation = nn.Sequential(*[ConvBlock(half, half, 3, dilation=d) for d in DILATIONS])

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.res2(self.pool(self.res1(x)))
        return paddle.concat([x, self.dilation(x)], axis=1)


class Hourglass(nn.Layer):
    """Hourglass of depth ``depth``; level ``d`` works at ``widths[d] = channels + d * increase``.

    ``hg[d]`` = [Residual(C_d, C_d) (skip branch), Residual(C_d, C_d+1) (after the max-pool),
    Residual(C_d+1, C_d) (before the upsampling), ConvBlock 3x3 (after the upsampling)] and, for
    the innermost level only, a fifth Residual(C_d+1, C_d+1). Level ``d`` returns
    ``skip + conv(nearest_up2(res(low)))`` where ``low`` is the output of level ``d + 1``
    (or of the innermost Residual).
    """

    def __init__(self, depth, channels, increase):
        super().__init__()
        widths = [channels + increase * d for d in range(depth + 1)]
        levels = []
        for d in range(depth):
            level = [Residual(widths[d], widths[d]), Residual(widths[d], widths[d + 1]),
                     Residual(widths[d + 1], widths[d]), ConvBlock(widths[d], widths[d], 3)]
            if d == depth - 1:
                level.append(Residual(widths[d + 1], widths[d + 1]))
            levels.append(nn.LayerList(level))
        self.hg = nn.LayerList(levels)
        self.depth = depth
        self.downsample = nn.MaxPool2D(2, 2)
        self.upsample = nn.Upsample(scale_factor=2, mode='nearest')

    def forward(self, x):
        """``[top output (stride of x), low of level 0 (stride x2), ..., low of level depth-1]``,
        channels ``widths[0], widths[1], ..., widths[depth]``."""
        skips = []
        for d in range(self.depth):
            skips.append(self.hg[d][0](x))
            x = self.hg[d][1](self.downsample(x))
        low = self.hg[self.depth - 1][4](x)
        lows = []
        for d in reversed(range(self.depth)):
            lows.append(low)
            low = skips[d] + self.hg[d][3](self.upsample(self.hg[d][2](low)))
        return [low] + lows[::-1]


class SELayer(nn.Layer):
    """Squeeze-and-excitation: mean over H, W -> Linear(C, C/16) -> LeakyReLU(0.01) ->
    Linear(C/16, C) -> sigmoid -> channel-wise scale. Keys ``fc.0``, ``fc.2``."""

    def __init__(self, channels, reduction=SE_REDUCTION):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), _lrelu(),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x):
        y = self.fc(paddle.mean(x, axis=[2, 3]))
        return x * y.unsqueeze([2, 3])


class Features(nn.Layer):
    """``before_regress[s]``: ConvBlock 3x3 (C_s -> C), ConvBlock 3x3 (C -> C), SE."""

    def __init__(self, channels, increase):
        super().__init__()
        self.before_regress = nn.LayerList([
            nn.Sequential(ConvBlock(channels + s * increase, channels, 3),
                          ConvBlock(channels, channels, 3),
                          SELayer(channels))
            for s in range(NUM_SCALES)])


class Merge(nn.Layer):
    """1x1 conv + BN, no activation (key ``conv.conv``/``conv.bn``)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = ConvBlock(cin, cout, 1, relu=False)

    def forward(self, x, bn_stats_twice=False):
        y = self.conv.conv(x)
        out = self.conv.bn(y)
        if bn_stats_twice and self.training:
            # SIMPLEPOSE_SPEC 3 / 9.5: the reference computes the stride-4 merges twice per
            # stack (same values), so in training these BN layers update their running
            # statistics twice per step. We compute the merge once and repeat only the BN
            # statistics update, on the same batch, outside the graph: same statistics,
            # same values and gradients.
            with paddle.no_grad():
                self.conv.bn(y.detach())
        return out


class PoseNet(nn.Layer):
    def __init__(self, nstack, channels, increase, out_channels=NUM_CHANNELS):
        super().__init__()
        widths = [channels + increase * s for s in range(NUM_SCALES)]
        self.nstack = nstack
        self.pre = Backbone(channels)
        self.hourglass = nn.LayerList(
            [Hourglass(HOURGLASS_DEPTH, channels, increase) for _ in range(nstack)])
        self.features = nn.LayerList([Features(channels, increase) for _ in range(nstack)])
        self.outs = nn.LayerList([
            nn.LayerList([ConvBlock(channels, out_channels, 1, with_bn=False, relu=False)
                          for _ in range(NUM_SCALES)])
            for _ in range(nstack)])
        self.merge_features = nn.LayerList([
            nn.LayerList([Merge(channels, w) for w in widths]) for _ in range(nstack - 1)])
        self.merge_preds = nn.LayerList([
            nn.LayerList([Merge(out_channels, w) for w in widths]) for _ in range(nstack - 1)])

    def forward(self, x, last_only=False):
        """Outputs per stack, each a list over scales. ``last_only``: the last stack computes
        its stride-4 output only (its other scales feed nothing)."""
        x = self.pre(x)
        outputs = []
        cache = None
        for i in range(self.nstack):
            maps = self.hourglass[i](x)
            if cache is not None:  # residual connection across stacks, at every scale
                maps = [m + c for m, c in zip(maps, cache)]
            last = i == self.nstack - 1
            preds, cache = [], []
            for s in range(1 if last and last_only else NUM_SCALES):
                feats = self.features[i].before_regress[s](maps[s])
                pred = self.outs[i][s](feats)
                preds.append(pred)
                if not last:
                    cache.append(self.merge_preds[i][s](pred, bn_stats_twice=s == 0)
                                 + self.merge_features[i][s](feats, bn_stats_twice=s == 0))
            if not last:
                x = x + cache[0]
            outputs.append(preds)
        return outputs


def _check_input(x):
    shape = list(x.shape)
    if len(shape) != 4:
        raise PosekitInputError('simplepose expects an NCHW batch, got a tensor of shape %s'
                                % (shape,))
    # Static shapes only: an exported graph with dynamic sizes (-1) is checked by its caller.
    h, w = shape[2], shape[3]
    if any(isinstance(v, int) and v > 0 and v % INPUT_MULTIPLE for v in (h, w)):
        raise PosekitInputError(
            'simplepose input height and width must be multiples of %d (pad the image), got '
            '%dx%d (HxW)' % (INPUT_MULTIPLE, h, w))


class SimplePose(nn.Layer):
    """The PoseNet under ``posenet`` (the reference's ``NetworkEval``), so that the parameter
    names equal the released checkpoint's ``posenet.*`` keys."""

    def __init__(self, extra):
        super().__init__()
        nstack, channels, increase = _check_extra(extra)
        self.posenet = PoseNet(nstack, channels, increase)

    def forward(self, x):
        """Training: 4 stacks x 5 scales ``(N, 50, H/4/2^s, W/4/2^s)``; eval: the last
        stack's stride-4 maps ``(N, 50, H/4, W/4)`` only."""
        _check_input(x)
        if self.training:
            return self.posenet(x)
        return self.posenet(x, last_only=True)[-1][0]

    def forward_all(self, x):
        """Every output, stacks x scales, in training and in eval mode."""
        _check_input(x)
        return self.posenet(x)

    def init_weights(self, pretrained=''):
        """The reference ``_initialize_weights`` (training from scratch, no ImageNet
        pre-training): every conv N(0, 0.001) with zero bias, BN 1/0, Linear N(0, 0.01) with
        zero bias. Then earlier weights if given (non-strict, reported)."""
        for m in self.sublayers():
            if isinstance(m, nn.Conv2D):
                normal_init(m, 0.001)
            elif isinstance(m, nn.BatchNorm2D):
                bn_init(m)
            elif isinstance(m, nn.Linear):
                normal_init(m, 0.01)
        if pretrained:
            from posekit.checkpoint import load_pretrained
            load_pretrained(self, pretrained)


def _int(extra, key):
    value = extra[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError('MODEL.EXTRA.%s must be an integer, got %r' % (key, value))
    return value


def _check_extra(extra):
    nstack, channels, increase = (_int(extra, k) for k in ('NSTACK', 'INP_DIM', 'INCREASE'))
    if nstack < 1:
        raise ConfigError('MODEL.EXTRA.NSTACK must be at least 1, got %d' % nstack)
    # quarter/half widths in ``pre``, width/16 in the SE layers
    if channels < 2 * SE_REDUCTION or channels % SE_REDUCTION:
        raise ConfigError('MODEL.EXTRA.INP_DIM must be a multiple of %d and at least %d, got %d'
                          % (SE_REDUCTION, 2 * SE_REDUCTION, channels))
    if increase < 0 or increase % 2:  # every Residual halves its width
        raise ConfigError('MODEL.EXTRA.INCREASE must be an even integer >= 0, got %d' % increase)
    return nstack, channels, increase


def check_image_size(cfg):
    w, h = cfg.MODEL.IMAGE_SIZE
    if any(float(v) != int(v) or int(v) % INPUT_MULTIPLE for v in (w, h)):
        raise ConfigError('MODEL.IMAGE_SIZE [W, H] must be multiples of %d for simplepose (the '
                          'hourglass halves the stride-4 maps %d times), got %s'
                          % (INPUT_MULTIPLE, HOURGLASS_DEPTH, list(cfg.MODEL.IMAGE_SIZE)))


def get_pose_net(cfg, is_train=False):
    check_image_size(cfg)
    model = SimplePose(cfg.MODEL.EXTRA)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model


# -- names and the reference's cost figure ------------------------------------------------------

def model_tag(cfg):
    """``simplepose``: output folders are named after ``MODEL.NAME``."""
    return cfg.MODEL.NAME


def model_label(cfg):
    """``simplepose`` for the published network, ``simplepose_n2_c128_i64`` for a variant."""
    extra = cfg.MODEL.EXTRA
    values = [extra.get(k) for k in ('NSTACK', 'INP_DIM', 'INCREASE')]
    if values == [EXTRA_DEFAULTS[k] for k in ('NSTACK', 'INP_DIM', 'INCREASE')]:
        return cfg.MODEL.NAME
    return '%s_n%s_c%s_i%s' % (cfg.MODEL.NAME, *values)


def reference_macs(cfg):
    """MACs of the reference code's forward pass at ``MODEL.IMAGE_SIZE``, batch 1, by the rule
    of :mod:`posekit.models.complexity` (conv ``out.numel * Cin/groups * kh * kw``, Linear
    ``out * in``), as SIMPLEPOSE_SPEC 1 measured it: all stacks x scales, plus the stride-4
    merges computed a second time (SIMPLEPOSE_SPEC 9.5). 268,543,721,472 for the published
    network at 512x512; our eval pass computes less (no duplicate, last stack at stride 4 only).
    """
    nstack, c, inc = _check_extra(cfg.MODEL.EXTRA)
    check_image_size(cfg)
    w, h = (int(v) for v in cfg.MODEL.IMAGE_SIZE)
    widths = [c + inc * s for s in range(NUM_SCALES)]
    k = NUM_CHANNELS

    def area(s):  # output pixels at scale s (stride 4 * 2^s)
        return (h // (STRIDE << s)) * (w // (STRIDE << s))

    def residual(cin, cout, a):
        m = cout // 2
        return a * (cin * m + m * m * 9 + m * cout + (cin * cout if cin != cout else 0))

    half = c // 2
    pre = ((h // 2) * (w // 2) * 3 * (c // 4) * 49 + residual(c // 4, half, (h // 2) * (w // 2))
           + residual(half, half, area(0)) + len(DILATIONS) * area(0) * half * half * 9)
    hourglass = residual(widths[-1], widths[-1], area(HOURGLASS_DEPTH)) + sum(
        residual(widths[d], widths[d], area(d)) + residual(widths[d], widths[d + 1], area(d + 1))
        + residual(widths[d + 1], widths[d], area(d + 1)) + area(d) * widths[d] ** 2 * 9
        for d in range(HOURGLASS_DEPTH))
    se = 2 * c * (c // SE_REDUCTION)
    features = sum(area(s) * (widths[s] + c) * c * 9 + se for s in range(NUM_SCALES))
    outs = sum(area(s) * c * k for s in range(NUM_SCALES))
    merges = sum(area(s) * (c + k) * widths[s] for s in range(NUM_SCALES))
    twice = area(0) * (c + k) * widths[0]
    return (pre + nstack * (hourglass + features + outs)
            + (nstack - 1) * (merges + twice))
