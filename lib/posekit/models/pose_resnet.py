"""PoseResNet, the Simple Baselines network (REFERENCE_SPEC 4.1).

A torchvision-style ResNet without avgpool/fc, three stride-2 deconvolutions and a 1x1 conv.
Keys match the [MS] state dicts: ``conv1``, ``bn1``, ``layer{1..4}``, ``deconv_layers.{0,1,3,4,6,7}``,
``final_layer``.
"""
import paddle.nn as nn

from .layers import (BasicBlock, Bottleneck, bn, final_conv, init_head, make_deconv_head, projection)

EXTRA_DEFAULTS = {
    'NUM_LAYERS': 50,
    'DECONV_WITH_BIAS': False,
    'NUM_DECONV_LAYERS': 3,
    'NUM_DECONV_FILTERS': [256, 256, 256],
    'NUM_DECONV_KERNELS': [4, 4, 4],
    'FINAL_CONV_KERNEL': 1,
}

RESNET_SPEC = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class PoseResNet(nn.Layer):
    def __init__(self, block, layers, num_joints, extra, style='pytorch'):
        super().__init__()
        self.inplanes = 64
        self.style = style
        self.conv1 = nn.Conv2D(3, 64, 7, stride=2, padding=3, bias_attr=False)
        self.bn1 = bn(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)

        self.deconv_layers, planes = make_deconv_head(
            self.inplanes, extra.NUM_DECONV_LAYERS, extra.NUM_DECONV_FILTERS,
            extra.NUM_DECONV_KERNELS, with_bias=extra.DECONV_WITH_BIAS)
        self.final_layer = final_conv(planes, num_joints, extra.FINAL_CONV_KERNEL)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = projection(self.inplanes, planes * block.expansion, stride)
        kwargs = {'style': self.style} if block is Bottleneck else {}
        layers = [block(self.inplanes, planes, stride, downsample, **kwargs)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, **kwargs))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.deconv_layers(x)
        return self.final_layer(x)

    def init_weights(self, pretrained=''):
        """Training initialisation of [MS]: head N(0, 0.001), then the ImageNet backbone if given."""
        init_head(self.deconv_layers, self.final_layer)
        if pretrained:
            from posekit.checkpoint import load_pretrained
            load_pretrained(self, pretrained)


def get_pose_net(cfg, is_train=False):
    extra = cfg.MODEL.EXTRA
    if extra.NUM_LAYERS not in RESNET_SPEC:
        raise ValueError('MODEL.EXTRA.NUM_LAYERS for pose_resnet must be one of %s, got %r'
                         % (sorted(RESNET_SPEC), extra.NUM_LAYERS))
    block, layers = RESNET_SPEC[extra.NUM_LAYERS]
    model = PoseResNet(block, layers, cfg.MODEL.NUM_JOINTS, extra, style=cfg.MODEL.STYLE)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model
