"""PoseResNet, the Simple Baselines network (REFERENCE_SPEC 4.1).

A torchvision-style ResNet without avgpool/fc, three stride-2 deconvolutions and a 1x1 conv.
Keys match the [MS] state dicts: ``conv1``, ``bn1``, ``layer{1..4}``, ``deconv_layers.{0,1,3,4,6,7}``,
``final_layer``.
"""
from posekit.config import ConfigError
from posekit.config.default import MODEL_EXTRA_DEFAULTS
from posekit.models.layers import BasicBlock, Bottleneck, ResNetTrunk, final_conv, init_head, make_deconv_head

# The valid MODEL.EXTRA keys and their defaults: config schema, declared in
# posekit.config.default so that loading a config needs no network code.
EXTRA_DEFAULTS = MODEL_EXTRA_DEFAULTS['pose_resnet']

RESNET_SPEC = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class PoseResNet(ResNetTrunk):
    def __init__(self, block, layers, num_joints, extra, style='pytorch'):
        super().__init__()
        kwargs = {'style': style} if block is Bottleneck else {}
        self.build_trunk(block, layers, strides=(1, 2, 2, 2), block_kwargs=kwargs)
        self.deconv_layers, planes = make_deconv_head(
            self.inplanes, extra.NUM_DECONV_LAYERS, extra.NUM_DECONV_FILTERS,
            extra.NUM_DECONV_KERNELS, with_bias=extra.DECONV_WITH_BIAS)
        self.final_layer = final_conv(planes, num_joints, extra.FINAL_CONV_KERNEL)

    def init_weights(self, pretrained=''):
        """Training initialisation of [MS]: head N(0, 0.001), then the ImageNet backbone if given."""
        init_head(self.deconv_layers, self.final_layer)
        if pretrained:
            from posekit.checkpoint import load_pretrained
            load_pretrained(self, pretrained)


def get_pose_net(cfg, is_train=False):
    extra = cfg.MODEL.EXTRA
    if extra.NUM_LAYERS not in RESNET_SPEC:
        raise ConfigError('MODEL.EXTRA.NUM_LAYERS for pose_resnet must be one of %s, got %r'
                          % (sorted(RESNET_SPEC), extra.NUM_LAYERS))
    block, layers = RESNET_SPEC[extra.NUM_LAYERS]
    model = PoseResNet(block, layers, cfg.MODEL.NUM_JOINTS, extra, style=cfg.MODEL.STYLE)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model


# -- names: run folders ([MS] layout), model_info, the result table ------------------------------

def model_tag(cfg):
    """``pose_resnet_<depth>``, as [MS] names its output folders."""
    return 'pose_resnet_%d' % cfg.MODEL.EXTRA.NUM_LAYERS


def model_label(cfg):
    """``pose_resnet_50``, ``pose_resnet_50 (caffe style)``."""
    label = 'pose_resnet_%s' % cfg.MODEL.EXTRA.get('NUM_LAYERS', '?')
    if cfg.MODEL.get('STYLE', 'pytorch') == 'caffe':
        label += ' (caffe style)'
    return label


def arch_suffix(cfg):
    """[MS] ends its result-table row label with the deconv widths: ``_d256d256d256``."""
    filters = cfg.MODEL.EXTRA.get('NUM_DECONV_FILTERS', [256] * 3)
    return '_' + ''.join('d%d' % int(c) for c in filters)
