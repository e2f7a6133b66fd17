"""HRNet for pose estimation, ``pose_hrnet`` (REFERENCE_SPEC 4.3).

stem (two 3x3/2 convs, 1/4 resolution) -> layer1 (residual blocks) -> transition1 -> stage2 ->
transition2 -> stage3 -> transition3 -> stage4 -> 1x1 ``final_layer`` on the highest-resolution branch.

State-dict keys follow the reference (spec 4.3 "Key layout") so converted reference checkpoints
and the ImageNet HRNet files load by name: ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``layer1.{i}``,
``transition{t}.{b}.{0,1}`` (existing branch) / ``transition{t}.{b}.{k}.{0,1}`` (new branch, chain
index k), ``stage{n}.{m}.branches.{b}.{blk}``, ``stage{n}.{m}.fuse_layers.{i}.{j}.{0,1}`` (j > i) /
``.{i}.{j}.{k}.{0,1}`` (j < i), ``final_layer``.

Where the reference keeps ``None`` (identity transitions, the j == i fusion entry) we keep a
parameter-free ``nn.Identity`` so that list indices, and therefore keys, stay the same (a Paddle
``LayerList`` cannot hold ``None``; [CAV] does the same with its ``NoOpModule``).

``MODEL.EXTRA.STAGE1`` is our addition (spec 4.3: "make layer1 configurable"): the reference pose
code always builds 4 Bottlenecks of planes 64, which is the default here; the classification-style
small HRNets use a lighter layer1 (e.g. 1 Bottleneck of planes 32 for W18-small-v1).
"""
import paddle.nn as nn

from posekit.config import ConfigError
from posekit.config.default import MODEL_EXTRA_DEFAULTS
from posekit.models.layers import BasicBlock, Bottleneck, bn, bn_init, conv1x1, conv3x3, final_conv, normal_init, projection

# The valid MODEL.EXTRA keys and their defaults: config schema, declared in
# posekit.config.default so that loading a config needs no network code.
EXTRA_DEFAULTS = MODEL_EXTRA_DEFAULTS['pose_hrnet']

BLOCKS = {'BASIC': BasicBlock, 'BOTTLENECK': Bottleneck}

# First dotted component of every parameter key; PRETRAINED_LAYERS selects among these ('*' = all).
TOP_LEVEL_NAMES = ('conv1', 'bn1', 'conv2', 'bn2', 'layer1', 'transition1', 'stage2', 'transition2',
                   'stage3', 'transition3', 'stage4', 'final_layer')

_STAGES = ('STAGE1', 'STAGE2', 'STAGE3', 'STAGE4')


def _conv_bn(in_ch, out_ch, stride, relu):
    """3x3 conv (no bias) + BN [+ ReLU]: a transition step or a j < i fusion step."""
    layers = [conv3x3(in_ch, out_ch, stride), bn(out_ch)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _residual_stack(block, inplanes, planes, num_blocks):
    """``num_blocks`` blocks at stride 1; a 1x1 projection in the first if the width changes."""
    downsample = None
    if inplanes != planes * block.expansion:
        downsample = projection(inplanes, planes * block.expansion, 1)
    layers = [block(inplanes, planes, 1, downsample)]
    for _ in range(1, num_blocks):
        layers.append(block(planes * block.expansion, planes))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Layer):
    """Parallel branches followed by the all-to-all fusion (spec 4.3 "HighResolutionModule").

    Output i = ReLU(sum_j f_ij(branch_j)) with f_ii = identity, f_ij (j > i) = 1x1 conv + BN +
    nearest upsampling x2^(j-i), f_ij (j < i) = (i-j) stride-2 3x3 conv+BN steps (ReLU between
    them, none after the last). With ``multi_scale_output`` off only output 0 is produced.
    """

    def __init__(self, block, num_blocks, num_inchannels, num_channels, multi_scale_output=True):
        super().__init__()
        if not (len(num_blocks) == len(num_inchannels) == len(num_channels)):
            raise ConfigError('HighResolutionModule: NUM_BLOCKS (%d), input channels (%d) and '
                              'NUM_CHANNELS (%d) must have one entry per branch'
                              % (len(num_blocks), len(num_inchannels), len(num_channels)))
        self.num_branches = len(num_channels)
        self.multi_scale_output = multi_scale_output
        self.branches = nn.LayerList([
            _residual_stack(block, cin, planes, n)
            for cin, planes, n in zip(num_inchannels, num_channels, num_blocks)])
        # Channels of each branch's output (what the fusion and the next module see).
        self.num_inchannels = [planes * block.expansion for planes in num_channels]
        self.fuse_layers = self._make_fuse_layers()

    def _make_fuse_layers(self):
        # A single branch has nothing to fuse: no fuse_layers keys (reference: None).
        if self.num_branches == 1:
            return nn.LayerList()
        ch = self.num_inchannels
        num_outputs = self.num_branches if self.multi_scale_output else 1
        fuse_layers = []
        for i in range(num_outputs):
            row = []
            for j in range(self.num_branches):
                if j > i:
                    row.append(nn.Sequential(
                        conv1x1(ch[j], ch[i]), bn(ch[i]),
                        nn.Upsample(scale_factor=2 ** (j - i), mode='nearest')))
                elif j == i:
                    row.append(nn.Identity())  # placeholder: keeps index j (reference: None)
                else:
                    steps = [_conv_bn(ch[j], ch[j], 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(ch[j], ch[i], 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.LayerList(row))
        return nn.LayerList(fuse_layers)

    def forward(self, xs):
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.num_branches == 1:
            return xs
        out = []
        # Summation order as in the reference (j = 0, 1, ...), so float results match closely.
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, self.num_branches):
                y = y + (xs[j] if j == i else row[j](xs[j]))
            out.append(nn.functional.relu(y))
        return out


def _make_transition(pre_channels, cur_channels):
    """Transition between stages (spec 4.3 "Transition").

    Existing branch i: 3x3/1 conv+BN+ReLU if the width changes, else identity. New branch i: a chain
    of 3x3/2 conv+BN+ReLU from the last previous branch (intermediate steps keep its width, the
    last maps to the new width), keys ``{i}.{k}.{0,1}``.
    """
    layers = []
    for i, cur in enumerate(cur_channels):
        if i < len(pre_channels):
            if cur != pre_channels[i]:
                layers.append(_conv_bn(pre_channels[i], cur, 1, relu=True))
            else:
                layers.append(nn.Identity())  # placeholder: keeps index i (reference: None)
        else:
            last = pre_channels[-1]
            n_steps = i + 1 - len(pre_channels)
            steps = [_conv_bn(last, last if k < n_steps - 1 else cur, 2, relu=True)
                     for k in range(n_steps)]
            layers.append(nn.Sequential(*steps))
    return nn.LayerList(layers)


def _make_stage(stage_cfg, num_inchannels, multi_scale_output=True):
    """NUM_MODULES HighResolutionModules; with ``multi_scale_output`` off, only the last module's
    fusion is reduced to output 0 (the reference's stage4)."""
    block = BLOCKS[stage_cfg['BLOCK']]
    n = stage_cfg['NUM_MODULES']
    modules = []
    for m in range(n):
        module = HighResolutionModule(block, stage_cfg['NUM_BLOCKS'], num_inchannels,
                                      stage_cfg['NUM_CHANNELS'],
                                      multi_scale_output=multi_scale_output or m < n - 1)
        num_inchannels = module.num_inchannels
        modules.append(module)
    return nn.Sequential(*modules), num_inchannels


def check_extra(extra):
    """Validate ``MODEL.EXTRA`` of pose_hrnet; raises ValueError with the offending key."""
    def positive_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    if not positive_int(extra['STEM_INPLANES']):
        raise ConfigError('MODEL.EXTRA.STEM_INPLANES must be a positive int, got %r'
                          % (extra['STEM_INPLANES'],))
    if extra['FINAL_CONV_KERNEL'] not in (1, 3):
        raise ConfigError('MODEL.EXTRA.FINAL_CONV_KERNEL must be 1 or 3, got %r'
                          % (extra['FINAL_CONV_KERNEL'],))
    layers = list(extra['PRETRAINED_LAYERS'])
    bad = [name for name in layers if name != '*' and name not in TOP_LEVEL_NAMES]
    if bad:
        raise ConfigError('MODEL.EXTRA.PRETRAINED_LAYERS: unknown layer name(s) %s; valid: * or %s'
                          % (', '.join(map(repr, bad)), ', '.join(TOP_LEVEL_NAMES)))
    prev_branches = 1
    for name in _STAGES:
        s = extra[name]
        key = 'MODEL.EXTRA.%s' % name
        if s['BLOCK'] not in BLOCKS:
            raise ConfigError("%s.BLOCK must be 'BASIC' or 'BOTTLENECK', got %r" % (key, s['BLOCK']))
        if s['FUSE_METHOD'] != 'SUM':
            raise ConfigError("%s.FUSE_METHOD: only 'SUM' exists, got %r" % (key, s['FUSE_METHOD']))
        nb, blocks, channels = s['NUM_BRANCHES'], list(s['NUM_BLOCKS']), list(s['NUM_CHANNELS'])
        if not (nb == len(blocks) == len(channels)):
            raise ConfigError('%s: NUM_BRANCHES (%r) must equal len(NUM_BLOCKS) (%d) and '
                              'len(NUM_CHANNELS) (%d)' % (key, nb, len(blocks), len(channels)))
        if not all(positive_int(v) for v in blocks + channels):
            raise ConfigError('%s: NUM_BLOCKS and NUM_CHANNELS must be positive ints, got %r / %r'
                              % (key, blocks, channels))
        if not positive_int(s['NUM_MODULES']):
            raise ConfigError('%s.NUM_MODULES must be a positive int, got %r' % (key, s['NUM_MODULES']))
        if name == 'STAGE1':
            # layer1 is a single residual stack, not a multi-branch stage.
            if nb != 1 or s['NUM_MODULES'] != 1:
                raise ConfigError('%s describes layer1: NUM_BRANCHES and NUM_MODULES must be 1, got %r and %r'
                                  % (key, nb, s['NUM_MODULES']))
        elif nb < prev_branches:
            # A stage only adds lower-resolution branches (2 / 3 / 4 in every HRNet).
            raise ConfigError('%s.NUM_BRANCHES (%d) must not be smaller than the previous stage\'s (%d)'
                              % (key, nb, prev_branches))
        prev_branches = nb


class PoseHighResolutionNet(nn.Layer):
    def __init__(self, extra, num_joints):
        super().__init__()
        check_extra(extra)
        self.pretrained_layers = list(extra['PRETRAINED_LAYERS'])

        # Stem: two 3x3/2 convs -> 1/4 resolution.
        stem = extra['STEM_INPLANES']
        self.conv1 = nn.Conv2D(3, stem, 3, stride=2, padding=1, bias_attr=False)
        self.bn1 = bn(stem)
        self.conv2 = nn.Conv2D(stem, stem, 3, stride=2, padding=1, bias_attr=False)
        self.bn2 = bn(stem)
        self.relu = nn.ReLU()

        s1 = extra['STAGE1']
        block1 = BLOCKS[s1['BLOCK']]
        self.layer1 = _residual_stack(block1, stem, s1['NUM_CHANNELS'][0], s1['NUM_BLOCKS'][0])
        channels = [s1['NUM_CHANNELS'][0] * block1.expansion]

        def widths(stage_cfg):
            return [c * BLOCKS[stage_cfg['BLOCK']].expansion for c in stage_cfg['NUM_CHANNELS']]

        s2, s3, s4 = extra['STAGE2'], extra['STAGE3'], extra['STAGE4']
        self.transition1 = _make_transition(channels, widths(s2))
        self.stage2, channels = _make_stage(s2, widths(s2))
        self.transition2 = _make_transition(channels, widths(s3))
        self.stage3, channels = _make_stage(s3, widths(s3))
        self.transition3 = _make_transition(channels, widths(s4))
        # Only the highest-resolution output is used: the last module fuses into branch 0 only.
        self.stage4, channels = _make_stage(s4, widths(s4), multi_scale_output=False)

        self.final_layer = final_conv(channels[0], num_joints, extra['FINAL_CONV_KERNEL'])
        # The j > i fusions upsample by exact powers of two: the 1/4-resolution map must be divisible
        # by 2^(deepest branch index) or the branch sizes stop matching.
        self._size_multiple = 2 ** (s4['NUM_BRANCHES'] - 1)

    @staticmethod
    def _transit(transition, xs):
        # Existing branch i takes branch i; a new branch takes the lowest-resolution (last) one.
        # (The reference feeds the last branch also to an existing branch whose width changes, which
        # cannot run; with identity transitions, i.e. every shipped config, both agree.)
        return [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(transition)]

    def _check_size(self, x):
        h, w = x.shape[2], x.shape[3]
        m = self._size_multiple
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 and (h % m or w % m):
            raise ConfigError('pose_hrnet: the 1/4-resolution feature map (%dx%d) must be divisible by %d '
                              '(input height and width multiples of %d)' % (h, w, m, 4 * m))

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        self._check_size(x)
        xs = [self.layer1(x)]
        xs = self.stage2(self._transit(self.transition1, xs))
        xs = self.stage3(self._transit(self.transition2, xs))
        xs = self.stage4(self._transit(self.transition3, xs))
        return self.final_layer(xs[0])

    def init_weights(self, pretrained=''):
        """Training initialisation (spec 4.3): every conv N(0, 0.001) with zero bias, BN 1/0; then,
        if ``pretrained`` is given, the keys whose first component is in PRETRAINED_LAYERS."""
        for m in self.sublayers():
            if isinstance(m, (nn.Conv2D, nn.Conv2DTranspose)):
                normal_init(m)
            elif isinstance(m, nn.BatchNorm2D):
                bn_init(m)
        if pretrained:
            from posekit.checkpoint import load_pretrained  # lazy: optional at model-build time
            load_pretrained(self, pretrained, prefixes=list(self.pretrained_layers))


def get_pose_net(cfg, is_train=False):
    model = PoseHighResolutionNet(cfg.MODEL.EXTRA, cfg.MODEL.NUM_JOINTS)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model


# -- names: run folders, model_info, the result table -------------------------------------------

# HRNet variants are told apart by their stage-2 width; the two small ones are named as [CAV] does.
_VARIANT_NAMES = {16: 'w18_small_v1', 18: 'w18_small_v2'}


def model_tag(cfg):
    """``pose_hrnet``: output folders are named after ``MODEL.NAME``."""
    return cfg.MODEL.NAME


def model_label(cfg):
    """``pose_hrnet_w32``, ``pose_hrnet_w18_small_v2`` (``pose_hrnet`` without a stage-2 width)."""
    try:
        width = int(cfg.MODEL.EXTRA.STAGE2.NUM_CHANNELS[0])
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return cfg.MODEL.NAME
    return 'pose_hrnet_%s' % _VARIANT_NAMES.get(width, 'w%d' % width)
