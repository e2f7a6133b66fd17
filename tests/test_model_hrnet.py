"""pose_hrnet (REFERENCE_SPEC 4.3 / 4.6): parameter counts, key layout, shapes, config checks.

Only the small W18 variants are run at a real input size; W32/W48 are built (and run at a tiny
input) to keep the suite fast on a shared 2-core CPU.
"""
import functools
import json
import sys
import types

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from conftest import require_fixtures
from posekit.config import load_config
from posekit.models import build_model, pose_hrnet
from posekit.models.layers import count_parameters


def _stage(n, modules, blocks, channels):
    p = 'MODEL.EXTRA.STAGE%d.' % n
    return [p + 'NUM_MODULES', str(modules), p + 'NUM_BRANCHES', str(len(channels)),
            p + 'NUM_BLOCKS', str(blocks), p + 'NUM_CHANNELS', str(channels)]


# Stage configurations of spec 4.3 as command-line overrides (W32 = the EXTRA_DEFAULTS).
VARIANTS = {
    'w32': [],
    'w48': (_stage(2, 1, [4, 4], [48, 96]) + _stage(3, 4, [4] * 3, [48, 96, 192])
            + _stage(4, 3, [4] * 4, [48, 96, 192, 384])),
    'w18_small_v1': (_stage(2, 1, [2, 2], [16, 32]) + _stage(3, 1, [2] * 3, [16, 32, 64])
                     + _stage(4, 1, [2] * 4, [16, 32, 64, 128])),
    'w18_small_v2': (_stage(2, 1, [2, 2], [18, 36]) + _stage(3, 3, [2] * 3, [18, 36, 72])
                     + _stage(4, 2, [2] * 4, [18, 36, 72, 144])),
}
LIGHT_LAYER1 = ['MODEL.EXTRA.STAGE1.NUM_BLOCKS', '[1]', 'MODEL.EXTRA.STAGE1.NUM_CHANNELS', '[32]']

# Spec 4.6 / fixtures models.json (trainable parameters of the reference model).
PARAMS = [
    ('w32', 17, 28536113), ('w32', 16, 28536080),
    ('w48', 17, 63595745), ('w48', 16, 63595696),
    ('w18_small_v1', 17, 1602273), ('w18_small_v2', 17, 3757475),
]
# models.json row names for the same cases (the fixture cross-check below).
FIXTURE_ROWS = {
    ('w32', 17): 'hrnet_w32_coco_256x192', ('w32', 16): 'hrnet_w32_mpii_256x256',
    ('w48', 17): 'hrnet_w48_coco_256x192', ('w48', 16): 'hrnet_w48_mpii_256x256',
    ('w18_small_v1', 17): 'hrnet_w18_small_v1_coco_256x192',
    ('w18_small_v2', 17): 'hrnet_w18_small_v2_coco_256x192',
}


def make_cfg(variant='w18_small_v2', joints=17, extra=()):
    return load_config(None, ['MODEL.NAME', 'pose_hrnet', 'MODEL.NUM_JOINTS', str(joints)]
                       + VARIANTS[variant] + list(extra))


@functools.lru_cache(maxsize=None)
def cached_model(variant='w18_small_v2', joints=17):
    """Read-only models shared by several tests (eval mode)."""
    model = build_model(make_cfg(variant, joints))
    model.eval()
    return model


def run(model, h, w, batch=1):
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((batch, 3, h, w)).astype('float32'))
    with paddle.no_grad():
        return model(x)


def expected_keys(extra, joints):
    """The reference state-dict keys, in order, written out from the spec 4.3 text only.

    BatchNorm keys use Paddle's names (Appendix A): weight, bias, _mean, _variance.
    """
    keys = []

    def conv(prefix, bias=False):
        keys.append(prefix + '.weight')
        if bias:
            keys.append(prefix + '.bias')

    def norm(prefix):
        keys.extend(prefix + s for s in ('.weight', '.bias', '._mean', '._variance'))

    def block(prefix, convs, downsample):
        for c in range(1, convs + 1):
            conv('%s.conv%d' % (prefix, c))
            norm('%s.bn%d' % (prefix, c))
        if downsample:
            conv(prefix + '.downsample.0')
            norm(prefix + '.downsample.1')

    conv('conv1'), norm('bn1'), conv('conv2'), norm('bn2')
    s1 = extra['STAGE1']
    bottleneck = s1['BLOCK'] == 'BOTTLENECK'
    expansion = 4 if bottleneck else 1
    stem = extra['STEM_INPLANES']
    for i in range(s1['NUM_BLOCKS'][0]):
        block('layer1.%d' % i, 3 if bottleneck else 2,
              i == 0 and stem != s1['NUM_CHANNELS'][0] * expansion)
    pre = [s1['NUM_CHANNELS'][0] * expansion]
    for n in (2, 3, 4):
        s = extra['STAGE%d' % n]
        cur = list(s['NUM_CHANNELS'])
        t = 'transition%d' % (n - 1)
        for i, c in enumerate(cur):
            if i < len(pre):
                if c != pre[i]:
                    conv('%s.%d.0' % (t, i)), norm('%s.%d.1' % (t, i))
            else:
                for k in range(i + 1 - len(pre)):
                    conv('%s.%d.%d.0' % (t, i, k)), norm('%s.%d.%d.1' % (t, i, k))
        nb = len(cur)
        for m in range(s['NUM_MODULES']):
            p = 'stage%d.%d' % (n, m)
            for b in range(nb):
                for blk in range(s['NUM_BLOCKS'][b]):
                    block('%s.branches.%d.%d' % (p, b, blk), 2, False)
            if nb == 1:
                continue
            outputs = 1 if (n == 4 and m == s['NUM_MODULES'] - 1) else nb
            for i in range(outputs):
                for j in range(nb):
                    if j > i:
                        conv('%s.fuse_layers.%d.%d.0' % (p, i, j))
                        norm('%s.fuse_layers.%d.%d.1' % (p, i, j))
                    elif j < i:
                        for k in range(i - j):
                            conv('%s.fuse_layers.%d.%d.%d.0' % (p, i, j, k))
                            norm('%s.fuse_layers.%d.%d.%d.1' % (p, i, j, k))
        pre = cur
    conv('final_layer', bias=True)
    return keys


def test_extra_defaults_are_w32():
    assert pose_hrnet.EXTRA_DEFAULTS == {
        'PRETRAINED_LAYERS': ['*'], 'FINAL_CONV_KERNEL': 1, 'STEM_INPLANES': 64,
        'STAGE1': {'NUM_MODULES': 1, 'NUM_BRANCHES': 1, 'BLOCK': 'BOTTLENECK', 'NUM_BLOCKS': [4],
                   'NUM_CHANNELS': [64], 'FUSE_METHOD': 'SUM'},
        'STAGE2': {'NUM_MODULES': 1, 'NUM_BRANCHES': 2, 'BLOCK': 'BASIC', 'NUM_BLOCKS': [4, 4],
                   'NUM_CHANNELS': [32, 64], 'FUSE_METHOD': 'SUM'},
        'STAGE3': {'NUM_MODULES': 4, 'NUM_BRANCHES': 3, 'BLOCK': 'BASIC', 'NUM_BLOCKS': [4, 4, 4],
                   'NUM_CHANNELS': [32, 64, 128], 'FUSE_METHOD': 'SUM'},
        'STAGE4': {'NUM_MODULES': 3, 'NUM_BRANCHES': 4, 'BLOCK': 'BASIC', 'NUM_BLOCKS': [4, 4, 4, 4],
                   'NUM_CHANNELS': [32, 64, 128, 256], 'FUSE_METHOD': 'SUM'},
    }


@pytest.fixture
def cheap_init():
    """Constant instead of Kaiming-normal default init: halves the build time of W32/W48 (the
    Gaussian draws dominate); only for tests that look at shapes and counts."""
    zero = nn.initializer.Constant(0.0)
    nn.initializer.set_global_initializer(zero, zero)
    try:
        yield
    finally:
        nn.initializer.set_global_initializer(None, None)


@pytest.mark.parametrize('variant,joints,params', PARAMS)
def test_param_count_keys_and_tiny_forward(variant, joints, params, cheap_init):
    cfg = make_cfg(variant, joints)
    model = build_model(cfg)
    assert count_parameters(model) == params
    # Full key list (order included) as reconstructed from the spec text.
    assert list(model.state_dict().keys()) == expected_keys(cfg.MODEL.EXTRA, joints)
    # Tiny input (the 1/4 map must be divisible by 8): K heatmaps at 1/4 resolution.
    model.eval()
    assert run(model, 32, 64).shape == [1, joints, 8, 16]


def test_counts_match_fixtures():
    with open(require_fixtures('models.json')) as f:
        rows = {r['name']: r for r in json.load(f)['models']}
    for variant, joints, params in PARAMS:
        row = rows[FIXTURE_ROWS[(variant, joints)]]
        assert row['params_trainable'] == params
        assert row['num_joints'] == joints


def test_w18_small_v2_output_shape():
    out = run(cached_model(), 128, 96, batch=2)
    assert out.shape == [2, 17, 32, 24]
    assert np.isfinite(out.numpy()).all()


def test_w18_small_v2_macs_match_reference():
    """True conv MACs and BN output elements at 256x192 equal the reference's (models.json):
    checks every conv's shape and stride and every branch resolution, not just the weights."""
    with open(require_fixtures('models.json')) as f:
        row = {r['name']: r for r in json.load(f)['models']}['hrnet_w18_small_v2_coco_256x192']
    model = cached_model()
    totals = {'macs': 0, 'bn': 0, 'convs': 0}

    def on_conv(layer, inputs, out):
        totals['macs'] += int(np.prod(out.shape)) * int(np.prod(layer.weight.shape[1:]))
        totals['convs'] += 1

    def on_bn(layer, inputs, out):
        totals['bn'] += int(np.prod(out.shape))

    hooks = []
    for layer in model.sublayers():
        if isinstance(layer, nn.Conv2D):
            hooks.append(layer.register_forward_post_hook(on_conv))
        elif isinstance(layer, nn.BatchNorm2D):
            hooks.append(layer.register_forward_post_hook(on_bn))
    try:
        out = run(model, 256, 192)
    finally:
        for h in hooks:
            h.remove()
    assert out.shape == row['output_shape_batch1']
    assert totals['macs'] == row['macs']
    assert totals['convs'] == row['macs_breakdown']['n_conv2d']
    assert totals['bn'] == row['elementwise_counts']['bn_output_elems']


def test_key_layout_spot_checks():
    sd = cached_model().state_dict()
    shapes = {k: list(v.shape) for k, v in sd.items()}
    # Transition1: existing branch 0 (256 -> 18, 3x3/1), new branch 1 (chain index 0, 256 -> 36).
    assert shapes['transition1.0.0.weight'] == [18, 256, 3, 3]
    assert shapes['transition1.0.1._mean'] == [18]
    assert shapes['transition1.1.0.0.weight'] == [36, 256, 3, 3]
    assert shapes['transition2.2.0.0.weight'] == [72, 36, 3, 3]
    assert shapes['transition3.3.0.0.weight'] == [144, 72, 3, 3]
    # Identity transitions and the j == i fusion entries hold no keys.
    assert not any(k.startswith(('transition2.0.', 'transition2.1.', 'transition3.2.')) for k in sd)
    assert not any(k.startswith('stage2.0.fuse_layers.0.0.') for k in sd)
    # j > i: 1x1 conv C_j -> C_i + BN; j < i: chain of stride-2 3x3 convs (C_j->C_j, then C_j->C_i).
    assert shapes['stage2.0.fuse_layers.0.1.0.weight'] == [18, 36, 1, 1]
    assert shapes['stage2.0.fuse_layers.1.0.0.0.weight'] == [36, 18, 3, 3]
    assert shapes['stage3.0.fuse_layers.2.0.0.0.weight'] == [18, 18, 3, 3]
    assert shapes['stage3.0.fuse_layers.2.0.1.0.weight'] == [72, 18, 3, 3]
    assert shapes['stage3.0.fuse_layers.2.0.1.1.weight'] == [72]
    assert shapes['stage4.0.fuse_layers.0.3.0.weight'] == [18, 144, 1, 1]
    assert shapes['stage4.0.branches.3.1.conv2.weight'] == [144, 144, 3, 3]
    assert shapes['layer1.0.downsample.0.weight'] == [256, 64, 1, 1]
    # The last stage4 module fuses into branch 0 only.
    assert 'stage4.1.fuse_layers.0.1.0.weight' in sd
    assert not any(k.startswith('stage4.1.fuse_layers.1.') for k in sd)
    assert shapes['final_layer.weight'] == [17, 18, 1, 1]
    assert shapes['final_layer.bias'] == [17]
    # Reference entries 824 minus 137 num_batches_tracked (not kept by Paddle).
    assert len(sd) == 824 - 137


def test_fusion_is_sum_with_nearest_upsampling():
    """Output 0 of a 2-branch module = ReLU(b0 + nearest_up2(BN(conv1x1(b1))))."""
    module = pose_hrnet.HighResolutionModule(pose_hrnet.BasicBlock, [1, 1], [8, 16], [8, 16])
    module.eval()
    rng = np.random.default_rng(1)
    x0 = paddle.to_tensor(rng.standard_normal((1, 8, 8, 6)).astype('float32'))
    x1 = paddle.to_tensor(rng.standard_normal((1, 16, 4, 3)).astype('float32'))
    with paddle.no_grad():
        out = module([x0, x1])
        b0 = module.branches[0](x0).numpy()
        b1 = module.branches[1](x1)
        up = module.fuse_layers[0][1][1](module.fuse_layers[0][1][0](b1)).numpy()
        down = module.fuse_layers[1][0](paddle.to_tensor(b0)).numpy()
    up = up.repeat(2, axis=2).repeat(2, axis=3)
    np.testing.assert_allclose(out[0].numpy(), np.maximum(b0 + up, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1].numpy(), np.maximum(down + b1.numpy(), 0), rtol=1e-5, atol=1e-6)


def test_lighter_layer1():
    """Classification-style layer1 of the small HRNets (spec 4.3): 1 Bottleneck of planes 32."""
    model = build_model(make_cfg('w18_small_v1', extra=LIGHT_LAYER1))
    n = count_parameters(model)
    assert n < 1602273
    assert n == 1284961  # spec 4.3: "~1.285 M params"
    sd = model.state_dict()
    assert not any(k.startswith('layer1.1.') for k in sd)
    assert list(sd['layer1.0.conv3.weight'].shape) == [128, 32, 1, 1]
    assert list(sd['transition1.0.0.weight'].shape) == [16, 128, 3, 3]
    assert list(sd['transition1.1.0.0.weight'].shape) == [32, 128, 3, 3]
    model.eval()
    assert run(model, 64, 32).shape == [1, 17, 16, 8]


@pytest.mark.parametrize('opts,match', [
    (['MODEL.EXTRA.STAGE3.NUM_CHANNELS', '[32,64]'], 'NUM_BRANCHES'),
    (['MODEL.EXTRA.STAGE2.NUM_BLOCKS', '[4,4,4]'], 'NUM_BRANCHES'),
    (['MODEL.EXTRA.STAGE4.NUM_BRANCHES', '3'], 'NUM_BRANCHES'),
    (['MODEL.EXTRA.STAGE1.NUM_BRANCHES', '2', 'MODEL.EXTRA.STAGE1.NUM_BLOCKS', '[4,4]',
      'MODEL.EXTRA.STAGE1.NUM_CHANNELS', '[64,64]'], 'STAGE1'),
    (['MODEL.EXTRA.STAGE3.NUM_BRANCHES', '1', 'MODEL.EXTRA.STAGE3.NUM_BLOCKS', '[4]',
      'MODEL.EXTRA.STAGE3.NUM_CHANNELS', '[32]'], 'smaller than the previous'),
    (['MODEL.EXTRA.STAGE2.BLOCK', 'BASICBLOCK'], 'BLOCK'),
    (['MODEL.EXTRA.STAGE2.FUSE_METHOD', 'CAT'], 'FUSE_METHOD'),
    (['MODEL.EXTRA.STAGE2.NUM_CHANNELS', '[32,0]'], 'positive'),
    (['MODEL.EXTRA.PRETRAINED_LAYERS', '[conv1,layer_1]'], 'layer_1'),
    (['MODEL.EXTRA.FINAL_CONV_KERNEL', '5'], 'FINAL_CONV_KERNEL'),
])
def test_inconsistent_config_raises(opts, match):
    cfg = load_config(None, ['MODEL.NAME', 'pose_hrnet', 'MODEL.NUM_JOINTS', '17'] + opts)
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


def test_input_size_not_divisible_raises():
    with pytest.raises(ValueError, match='multiples of 32'):
        run(cached_model(), 100, 96)


def test_training_init_and_pretrained_call(monkeypatch):
    calls = []
    fake = types.ModuleType('posekit.checkpoint')
    fake.load_pretrained = lambda model, path, prefixes=None: calls.append((path, prefixes))
    monkeypatch.setitem(sys.modules, 'posekit.checkpoint', fake)

    cfg = make_cfg('w18_small_v1', extra=['MODEL.PRETRAINED', 'imagenet.pdparams',
                                          'MODEL.EXTRA.PRETRAINED_LAYERS', '[conv1,bn1,layer1]'])
    model = build_model(cfg, is_train=True)
    assert calls == [('imagenet.pdparams', ['conv1', 'bn1', 'layer1'])]
    w = np.concatenate([m.weight.numpy().ravel() for m in model.sublayers() if isinstance(m, nn.Conv2D)])
    assert abs(w.std() - 0.001) < 1e-4 and abs(w.mean()) < 1e-4
    assert not model.final_layer.bias.numpy().any()
    assert (model.bn1.weight.numpy() == 1).all()
    assert not model.stage4[0].fuse_layers[0][1][1].bias.numpy().any()

    # No PRETRAINED: initialised, nothing loaded; not training: no init at all.
    calls.clear()
    build_model(make_cfg('w18_small_v1'), is_train=True)
    build_model(make_cfg('w18_small_v1', extra=['MODEL.PRETRAINED', 'x.pdparams']), is_train=False)
    assert calls == []
