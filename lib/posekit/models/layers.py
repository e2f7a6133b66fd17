"""Building blocks shared by the model files.

BatchNorm everywhere uses the reference settings: PyTorch momentum 0.1 == Paddle momentum 0.9
(Paddle weighs the old running value), eps 1e-5.
"""
import paddle
import paddle.nn as nn

from posekit.config import ConfigError

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def bn(channels):
    return nn.BatchNorm2D(channels, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)


def conv3x3(in_planes, out_planes, stride=1, groups=1):
    return nn.Conv2D(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias_attr=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2D(in_planes, out_planes, 1, stride=stride, bias_attr=False)


def deconv_padding(kernel):
    """Kernel -> (padding, output_padding) so that every deconvolution exactly doubles the size."""
    table = {4: (1, 0), 3: (1, 1), 2: (0, 0)}
    if kernel not in table:
        raise ConfigError('deconvolution kernel must be 2, 3 or 4, got %r' % (kernel,))
    return table[kernel]


def projection(in_planes, out_planes, stride):
    """Shortcut projection ``downsample``: 1x1 conv (stride) + BN, keys ``downsample.{0,1}``."""
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), bn(out_planes))


class BasicBlock(nn.Layer):
    """ResNet basic block: 3x3 (stride) BN ReLU, 3x3 BN, + shortcut, ReLU."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = bn(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = bn(planes)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Layer):
    """ResNet bottleneck, expansion 4.

    ``style='pytorch'`` puts the stride on the 3x3 conv; ``'caffe'`` on the first 1x1 conv.
    """
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, style='pytorch'):
        super().__init__()
        s1, s3 = (stride, 1) if style == 'caffe' else (1, stride)
        self.conv1 = conv1x1(inplanes, planes, s1)
        self.bn1 = bn(planes)
        self.conv2 = conv3x3(planes, planes, s3)
        self.bn2 = bn(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = bn(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class ResNetTrunk(nn.Layer):
    """What PoseResNet and LPN share: the ResNet stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool),
    four residual stages ``layer1..4`` (planes 64, 128, 256, 512), a ``deconv_layers`` head and a
    ``final_layer``. Subclasses call :meth:`build_trunk` and then create the head."""

    def build_trunk(self, block, layers, strides, block_kwargs=None):
        self.inplanes = 64
        self.conv1 = nn.Conv2D(3, 64, 7, stride=2, padding=3, bias_attr=False)
        self.bn1 = bn(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        for i, (planes, blocks, stride) in enumerate(zip((64, 128, 256, 512), layers, strides)):
            setattr(self, 'layer%d' % (i + 1),
                    self._make_layer(block, planes, blocks, stride, block_kwargs or {}))

    def _make_layer(self, block, planes, blocks, stride, block_kwargs):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = projection(self.inplanes, planes * block.expansion, stride)
        layers = [block(self.inplanes, planes, stride, downsample, **block_kwargs)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, **block_kwargs))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.final_layer(self.deconv_layers(x))


def normal_init(layer, std=0.001):
    """N(0, std) weight, zero bias (the reference head initialisation)."""
    nn.initializer.Normal(0.0, std)(layer.weight)
    if getattr(layer, 'bias', None) is not None:
        nn.initializer.Constant(0.0)(layer.bias)


def bn_init(layer):
    nn.initializer.Constant(1.0)(layer.weight)
    nn.initializer.Constant(0.0)(layer.bias)


def init_head(deconv_layers, final_layer):
    """[MS] head initialisation: deconvs N(0, 0.001), BN 1/0, final conv N(0, 0.001) bias 0."""
    for m in deconv_layers.sublayers(include_self=True):
        if isinstance(m, (nn.Conv2DTranspose, nn.Conv2D)):
            normal_init(m)
        elif isinstance(m, nn.BatchNorm2D):
            bn_init(m)
    normal_init(final_layer)


def init_all_normal(model):
    """[LPN]/[CAV]/HRNet from-scratch initialisation: every conv/deconv N(0, 0.001), BN 1/0.

    Conv biases keep their framework default (as the reference leaves them)."""
    for m in model.sublayers(include_self=True):
        if isinstance(m, (nn.Conv2D, nn.Conv2DTranspose)):
            nn.initializer.Normal(0.0, 0.001)(m.weight)
        elif isinstance(m, nn.BatchNorm2D):
            bn_init(m)


def make_deconv_head(in_channels, num_layers, filters, kernels, with_bias=False, groups_fn=None,
                     pointwise=False):
    """Deconvolution head ``deconv_layers`` as a Sequential whose indices match the reference.

    Plain head ([MS], SimpleNet): ``[Deconv, BN, ReLU] * n`` (keys 0,1 / 3,4 / 6,7).
    ``pointwise`` (LPN): ``[Deconv, BN, ReLU, Conv1x1, BN, ReLU] * n`` (keys 0,1,3,4 / 6,7,9,10).
    ``groups_fn(in, out)`` gives the deconvolution groups (LPN: gcd(in, out)); default 1.
    Returns ``(sequential, out_channels)``.
    """
    if not (num_layers == len(filters) == len(kernels)):
        raise ConfigError('NUM_DECONV_LAYERS (%d) must equal the lengths of NUM_DECONV_FILTERS (%d) '
                          'and NUM_DECONV_KERNELS (%d)' % (num_layers, len(filters), len(kernels)))
    layers = []
    inplanes = in_channels
    for planes, kernel in zip(filters, kernels):
        padding, output_padding = deconv_padding(kernel)
        groups = groups_fn(inplanes, planes) if groups_fn else 1
        layers += [
            nn.Conv2DTranspose(inplanes, planes, kernel, stride=2, padding=padding,
                               output_padding=output_padding, groups=groups,
                               bias_attr=None if with_bias else False),
            bn(planes),
            nn.ReLU(),
        ]
        if pointwise:
            layers += [conv1x1(planes, planes), bn(planes), nn.ReLU()]
        inplanes = planes
    return nn.Sequential(*layers), inplanes


def final_conv(in_channels, num_joints, kernel):
    if kernel not in (1, 3):
        raise ConfigError('FINAL_CONV_KERNEL must be 1 or 3, got %r' % (kernel,))
    return nn.Conv2D(in_channels, num_joints, kernel, stride=1, padding=1 if kernel == 3 else 0)


def count_parameters(model):
    """Trainable parameters (the READMEs' #Params)."""
    return int(sum(int(paddle.numel(p)) for p in model.parameters() if not p.stop_gradient))
