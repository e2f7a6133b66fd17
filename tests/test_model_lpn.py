"""LPN (REFERENCE_SPEC 4.2): sizes, key layout and numerical parity with the PyTorch reference."""
import importlib.util
import json
import sys
import types

import numpy as np
import paddle
import pytest

from conftest import require_fixtures
from posekit.config import load_config
from posekit.models import build_model
from posekit.models.layers import count_parameters


def lpn_cfg(*opts, joints=17):
    return load_config(None, ['MODEL.NAME', 'lpn', 'MODEL.NUM_JOINTS', str(joints)] + list(opts))


@pytest.fixture(scope='module')
def lpn50():
    model = build_model(lpn_cfg())
    model.eval()
    return model


def forward(model, h, w):
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((1, 3, h, w)).astype('float32'))
    with paddle.no_grad():
        return model(x)


# REFERENCE_SPEC 4.6 / fixtures models.json: trainable parameters of the reference code, COCO.
@pytest.mark.parametrize('layers, params', [
    (18, 508473), (34, 662641), (50, 2911153), (100, 6710914), (101, 5353458), (152, 7377459)])
def test_parameter_count_coco(layers, params):
    model = build_model(lpn_cfg('MODEL.EXTRA.NUM_LAYERS', str(layers)))
    assert count_parameters(model) == params


def test_parameter_count_mpii():
    assert count_parameters(build_model(lpn_cfg(joints=16))) == 2910896


def test_output_stride_4(lpn50):
    out = forward(lpn50, 128, 96)
    assert tuple(out.shape) == (1, 17, 32, 24)


@pytest.mark.parametrize('opts', [
    ('MODEL.EXTRA.NUM_LAYERS', '18'),
    ('MODEL.EXTRA.NUM_LAYERS', '18', 'MODEL.EXTRA.BASIC_GROUP_WIDTH', '1'),
    ('MODEL.EXTRA.ATTENTION', 'SE'),
    ('MODEL.EXTRA.ATTENTION', 'NONE'),
])
def test_variants_forward(opts):
    model = build_model(lpn_cfg(*opts))
    model.eval()
    assert tuple(forward(model, 64, 64).shape) == (1, 17, 16, 16)


def test_attention_variants_change_the_block():
    gc = build_model(lpn_cfg())
    se = build_model(lpn_cfg('MODEL.EXTRA.ATTENTION', 'SE'))
    none = build_model(lpn_cfg('MODEL.EXTRA.ATTENTION', ''))
    assert type(gc.layer1[0].att).__name__ == 'GCBlock'
    assert type(se.layer1[0].att).__name__ == 'SELayer'
    assert none.layer1[0].att is None
    # SE keys as in [LPN]: bias-free fc.0 / fc.2; Paddle Linear weight is (in, out).
    names = {k: tuple(v.shape) for k, v in se.state_dict().items() if k.startswith('layer4.0.att.')}
    assert names == {'layer4.0.att.fc.0.weight': (512, 32), 'layer4.0.att.fc.2.weight': (32, 512)}
    assert count_parameters(none) < count_parameters(se) < count_parameters(gc)


def _paddle_name(torch_name):
    return torch_name.replace('running_mean', '_mean').replace('running_var', '_variance')


def test_state_dict_matches_reference_layout(lpn50):
    with open(require_fixtures('layout_lpn_50.json')) as f:
        layout = [(k, tuple(s)) for k, s, _ in json.load(f) if not k.endswith('num_batches_tracked')]
    ours = [(k, tuple(v.shape)) for k, v in lpn50.state_dict().items()]
    assert [_paddle_name(k) for k, _ in layout] == [k for k, _ in ours]  # same names, same order
    for (key, ref_shape), (_, shape) in zip(layout, ours):
        if '.channel_add_conv.1.' in key:
            # GC LayerNorm over [P, 1, 1]: PyTorch keeps (P, 1, 1), Paddle a flat (P,).
            assert len(ref_shape) == 3 and ref_shape[1:] == (1, 1) and shape == ref_shape[:1], key
        else:
            assert shape == ref_shape, key


def _load_make_ckpt():
    spec = importlib.util.spec_from_file_location('_posekit_make_ckpt', require_fixtures('make_ckpt.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matches_reference_output(lpn50):
    """The reference LPN-50 with deterministic weights (fixtures README 3) vs ours with the same weights."""
    pytest.importorskip('torch')
    expected = np.load(require_fixtures('expected_lpn_50.npy'))
    with open(require_fixtures('layout_lpn_50.json')) as f:
        layout = json.load(f)
    torch_sd = _load_make_ckpt().fill(layout, 11)
    ours = lpn50.state_dict()
    converted = {}
    for key, value in torch_sd.items():
        if key.endswith('num_batches_tracked'):
            continue
        name = _paddle_name(key)
        converted[name] = value.numpy().reshape(ours[name].shape)
    model = build_model(lpn_cfg())
    model.set_state_dict(converted)
    model.eval()
    x = np.random.default_rng(1234).standard_normal((2, 3, 256, 192)).astype(np.float32)
    with paddle.no_grad():
        out = model(paddle.to_tensor(x)).numpy()
    assert out.shape == expected.shape == (2, 17, 64, 48)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)


def test_basic_group_width():
    h = {n: count_parameters(build_model(lpn_cfg('MODEL.EXTRA.NUM_LAYERS', str(n)))) for n in (18, 34)}
    dw = {n: count_parameters(build_model(lpn_cfg('MODEL.EXTRA.NUM_LAYERS', str(n),
                                                  'MODEL.EXTRA.BASIC_GROUP_WIDTH', '1')))
          for n in (18, 34)}
    assert dw[18] < h[18] and dw[34] < h[34]
    # Fully depthwise reproduces the README's non-"h" rows 0.47 M / 0.59 M (REFERENCE_SPEC 4.2).
    assert round(dw[18] / 1e6, 2) == 0.47 and round(dw[34] / 1e6, 2) == 0.59
    model = build_model(lpn_cfg('MODEL.EXTRA.NUM_LAYERS', '18', 'MODEL.EXTRA.BASIC_GROUP_WIDTH', '1'))
    assert tuple(model.layer2[0].conv1.weight.shape) == (128, 1, 3, 3)
    model = build_model(lpn_cfg('MODEL.EXTRA.NUM_LAYERS', '18'))
    assert tuple(model.layer2[0].conv1.weight.shape) == (128, 2, 3, 3)  # the [CAV] layout


def test_bad_basic_group_width():
    with pytest.raises(ValueError, match='BASIC_GROUP_WIDTH'):
        build_model(lpn_cfg('MODEL.EXTRA.NUM_LAYERS', '18', 'MODEL.EXTRA.BASIC_GROUP_WIDTH', '3'))
    with pytest.raises(ValueError, match='BASIC_GROUP_WIDTH'):
        build_model(lpn_cfg('MODEL.EXTRA.BASIC_GROUP_WIDTH', '0'))


def test_bad_num_layers():
    with pytest.raises(ValueError, match=r'NUM_LAYERS.*\[18, 34, 50, 100, 101, 152\].*42'):
        build_model(lpn_cfg('MODEL.EXTRA.NUM_LAYERS', '42'))


def _std(p):
    return float(np.asarray(p.numpy()).std())


def test_training_init_from_scratch():
    cfg = lpn_cfg()
    default = build_model(cfg)
    assert _std(default.layer4[0].conv1.weight) > 0.01  # framework default, not the LPN init
    model = build_model(cfg, is_train=True)
    for weight in (model.conv1.weight, model.layer4[0].conv1.weight, model.layer3[0].conv2.weight,
                   model.layer4[0].att.conv_mask.weight, model.layer4[0].att.channel_add_conv[3].weight,
                   model.deconv_layers[0].weight, model.deconv_layers[3].weight, model.final_layer.weight):
        assert abs(_std(weight) - 0.001) < 0.0002
    assert np.all(model.layer2[1].bn2.weight.numpy() == 1) and np.all(model.deconv_layers[1].bias.numpy() == 0)
    # GC biases keep their zero init ([LPN] only overwrites conv weights).
    assert np.all(model.layer4[0].att.channel_add_conv[3].bias.numpy() == 0)


def test_training_init_with_pretrained(monkeypatch):
    calls = []
    fake = types.ModuleType('posekit.checkpoint')
    fake.load_pretrained = lambda model, path: calls.append((model, path))
    monkeypatch.setitem(sys.modules, 'posekit.checkpoint', fake)
    model = build_model(lpn_cfg('MODEL.PRETRAINED', 'stage0.pdparams'), is_train=True)
    assert calls == [(model, 'stage0.pdparams')]
    assert abs(_std(model.final_layer.weight) - 0.001) < 0.0002
    assert np.all(model.final_layer.bias.numpy() == 0)
    calls.clear()
    build_model(lpn_cfg('MODEL.PRETRAINED', 'x', 'MODEL.INIT_WEIGHTS', 'false'), is_train=True)
    assert calls == []


def test_unknown_attention_is_an_error():
    with pytest.raises(ValueError, match='ATTENTION'):
        build_model(lpn_cfg('MODEL.EXTRA.ATTENTION', 'gc'))
