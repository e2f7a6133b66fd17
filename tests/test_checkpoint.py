"""Checkpoint reading, conversion and strict loading (REFERENCE_SPEC 2.7, Appendix A, 10.15/10.16).

PyTorch files are written by the tests themselves (torch is optional: those tests skip without
it) from a small PoseResNet-18 whose every tensor gets a distinct random value.
"""
import logging
import os
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import paddle
import pytest

from conftest import ROOT, require_fixtures
from posekit import checkpoint as ckpt
from posekit.checkpoint import (CheckpointFormatError, CheckpointMismatchError, extract_state_dict,
                                load_checkpoint, load_pretrained, load_state_dict_strict,
                                read_torch_file, save_paddle_state_dict,
                                torch_to_paddle)
from posekit.config import load_config, save_config
from posekit.models import build_model

R18 = ['MODEL.EXTRA.NUM_LAYERS', '18']


@pytest.fixture(scope='module')
def r18_cfg():
    return load_config(None, R18)


@pytest.fixture
def model(r18_cfg):
    return build_model(r18_cfg)


@pytest.fixture(scope='module')
def reference_state(r18_cfg):
    """A PyTorch-named PoseResNet-18 state dict (numpy) with random values everywhere."""
    rng = np.random.default_rng(0)
    state = OrderedDict()
    for key, tensor in build_model(r18_cfg).state_dict().items():
        key = key.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        state[key] = rng.standard_normal(tuple(tensor.shape)).astype(np.float32)
        if key.endswith('.running_var'):
            if key.startswith('bn1.'):
                state[key] = np.abs(state[key]) + 0.5
            state[key[:-len('running_var')] + 'num_batches_tracked'] = np.array(7, np.int64)
    return state


def paddle_name(key):
    return key.replace('.running_mean', '._mean').replace('.running_var', '._variance')


def assert_model_holds(model, reference):
    """Every model tensor equals the reference tensor of the same (converted) name."""
    expected = {paddle_name(k): v for k, v in reference.items() if not k.endswith('num_batches_tracked')}
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for key, tensor in state.items():
        np.testing.assert_array_equal(tensor.numpy(), expected[key], err_msg=key)


def to_torch(obj):
    torch = pytest.importorskip('torch')
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return obj.__class__((k, to_torch(v)) for k, v in obj.items())
    return obj


def torch_save(obj, path, fmt):
    torch = pytest.importorskip('torch')
    torch.save(obj, str(path), _use_new_zipfile_serialization=(fmt == 'zip'))
    return str(path)


def prefixed(state):
    return OrderedDict(('module.' + k, v) for k, v in state.items())


def wrap(kind, state):
    """The reference checkpoint layouts of REFERENCE_SPEC 2.7 (tensors already torch)."""
    torch = pytest.importorskip('torch')
    if kind == 'plain':
        return state
    if kind == 'state_dict':
        return {'state_dict': state}
    if kind == 'module_prefix':
        return prefixed(state)
    # [MS] checkpoint.pth.tar: DataParallel state dict plus training state
    weights = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = torch.optim.Adam(weights, lr=1e-3)
    weights[0].grad = torch.ones(3)
    optimizer.step()
    if kind == 'ms_checkpoint':
        return {'epoch': 5, 'model': ('pose_resnet', 'get_pose_net'), 'state_dict': prefixed(state),
                'perf': 0.75, 'optimizer': optimizer.state_dict()}
    # [LPN]/[CAV] checkpoint.pth: latest (prefixed) and best (unwrapped) weights
    assert kind == 'lpn_checkpoint'
    return {'epoch': 5, 'model': 'lpn', 'state_dict': prefixed(state),
            'best_state_dict': OrderedDict((k, v * 0) for k, v in state.items()),
            'perf': 0.7, 'optimizer': optimizer.state_dict()}


# ---------------------------------------------------------------------------------------------
# round trips through every reference layout and both torch.save formats

@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
@pytest.mark.parametrize('kind', ['plain', 'state_dict', 'module_prefix', 'ms_checkpoint',
                                  'lpn_checkpoint'])
def test_round_trip_reference_layouts(kind, fmt, reference_state, model, tmp_path):
    path = torch_save(wrap(kind, to_torch(reference_state)), tmp_path / 'ckpt.pth.tar', fmt)
    assert ckpt.torch_file_format(path) == fmt
    info = load_checkpoint(model, path)
    assert_model_holds(model, reference_state)
    assert info.format == 'torch-' + fmt
    assert info.module_prefix == (kind != 'plain' and kind != 'state_dict')
    assert info.container == {'plain': 'plain', 'module_prefix': 'plain'}.get(kind, 'state_dict')
    assert len(info.dropped) == sum(k.endswith('num_batches_tracked') for k in reference_state)
    assert info.num_source_tensors == len(reference_state)


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_round_trip_without_torch(fmt, reference_state, model, tmp_path, monkeypatch):
    path = torch_save(wrap('ms_checkpoint', to_torch(reference_state)), tmp_path / 'c.pth.tar', fmt)
    monkeypatch.setattr(ckpt.torch_reader, '_import_torch', lambda: None)
    info = load_checkpoint(model, path)
    assert info.reader == 'python'
    assert_model_holds(model, reference_state)
    with pytest.raises(CheckpointFormatError, match='pip install torch'):
        read_torch_file(path, use_torch=True)


def test_pdparams_round_trip_and_atomic_save(reference_state, model, r18_cfg, tmp_path):
    state = torch_to_paddle(reference_state, model)
    load_state_dict_strict(model, state)
    path = str(tmp_path / 'out' / 'model.pdparams')
    assert save_paddle_state_dict(model, path) == path
    assert os.listdir(tmp_path / 'out') == ['model.pdparams']  # no temp file left behind
    fresh = build_model(r18_cfg)
    info = load_checkpoint(fresh, path)
    assert info.format == 'paddle' and info.container == 'plain'
    assert_model_holds(fresh, reference_state)

    # a training checkpoint holding the weights under 'state_dict' (or 'model')
    for entry in ('state_dict', 'model'):
        wrapped = str(tmp_path / ('%s.pdparams' % entry))
        save_paddle_state_dict({entry: model.state_dict(), 'epoch': 3}, wrapped)
        fresh = build_model(r18_cfg)
        assert load_checkpoint(fresh, wrapped).container == entry
        assert_model_holds(fresh, reference_state)


# ---------------------------------------------------------------------------------------------
# the pure-python reader

def tricky_object(torch):
    """Every storage type and view the reader must handle (weights_only-loadable)."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    state = OrderedDict([
        ('f32', base),
        ('slice', base[1:3, 2:5]),               # view with offset, non-contiguous
        ('transposed', base.t()),                # strides (1, 6)
        ('row', base[2]),                        # storage offset
        ('f64', torch.linspace(-1, 1, 5, dtype=torch.float64)),
        ('f16', torch.tensor([0.5, -2.25, 65504.0], dtype=torch.float16)),
        ('bf16', torch.tensor([1.5, -3.0], dtype=torch.bfloat16)),
        ('i64', torch.tensor([[1, -2], [3, 2 ** 40]], dtype=torch.int64)),
        ('i32', torch.tensor([5, -6], dtype=torch.int32)),
        ('u8', torch.tensor([0, 255], dtype=torch.uint8)),
        ('bool', torch.tensor([True, False])),
        ('scalar', torch.tensor(3)),             # 0-d, like num_batches_tracked
        ('empty', torch.zeros(0, 3)),
        ('expanded', torch.ones(3, 1).expand(3, 4)),  # stride 0
    ])
    return {'state_dict': state, 'epoch': 4, 'model': ('pose_resnet', 'x'), 'perf': 0.5,
            'best': [1, 2.5, None, 'text', True], 'nested': {'t': base[0, :2], 'n': (1, 2)}}


def assert_same_tree(a, b, where='root'):
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same_tree(a[k], b[k], '%s.%s' % (where, k))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, '%s[%d]' % (where, i))
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a.dtype, b.dtype, a.shape, b.shape)
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_python_reader_matches_torch(fmt, tmp_path):
    torch = pytest.importorskip('torch')
    path = torch_save(tricky_object(torch), tmp_path / 'tricky.pth', fmt)
    with_torch = read_torch_file(path, use_torch=True)
    python = read_torch_file(path, use_torch=False)
    assert_same_tree(with_torch, python)
    state = python['state_dict']
    np.testing.assert_array_equal(state['slice'], (np.arange(24).reshape(4, 6) / 7)[1:3, 2:5]
                                  .astype(np.float32))
    assert state['bf16'].dtype == np.float32 and state['bf16'].tolist() == [1.5, -3.0]
    assert state['scalar'].shape == () and state['scalar'].dtype == np.int64
    assert state['i64'][1, 1] == 2 ** 40
    # the arrays are independent copies
    state['f32'][0, 0] = 99
    assert state['row'][0] != 99


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_numpy_values_in_training_checkpoint(fmt, tmp_path):
    # [MS] stores its perf indicator as a numpy float64, which torch's weights-only unpickler
    # refuses; the built-in reader rebuilds it safely.
    torch = pytest.importorskip('torch')
    obj = {'epoch': 2, 'perf': np.float64(0.625), 'state_dict': {'w': torch.ones(2)}}
    path = torch_save(obj, tmp_path / 'checkpoint.pth.tar', fmt)
    loaded = read_torch_file(path)
    assert loaded['perf'] == 0.625 and loaded['epoch'] == 2
    np.testing.assert_array_equal(loaded['state_dict']['w'], np.ones(2, np.float32))


def test_python_reader_on_released_checkpoint():
    torch = pytest.importorskip('torch')  # noqa: F841
    path = require_fixtures('real', 'simplenet_coco_256x192_model_best.pth.tar')
    assert ckpt.torch_file_format(path) == 'legacy'
    assert_same_tree(read_torch_file(path, use_torch=True), read_torch_file(path, use_torch=False))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_readers_never_execute_pickled_code(fmt, tmp_path, monkeypatch):
    torch = pytest.importorskip('torch')
    marker = tmp_path / 'pwned'
    path = torch_save({'state_dict': {'w': torch.ones(2)}, 'x': _Exploit(marker)},
                      tmp_path / 'evil.pth', fmt)
    for use_torch in (None, False):
        with pytest.raises(CheckpointFormatError):
            read_torch_file(path, use_torch=use_torch)
    monkeypatch.setattr(ckpt.torch_reader, '_import_torch', lambda: None)
    with pytest.raises(CheckpointFormatError, match='pip install torch') as err:
        read_torch_file(path)
    assert 'posix.system' in str(err.value) or 'os.system' in str(err.value)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path, model):
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(CheckpointFormatError, match='not a PyTorch checkpoint'):
        load_checkpoint(model, str(text))
    archive = tmp_path / 'other.pth'
    with zipfile.ZipFile(archive, 'w') as zf:
        zf.writestr('readme.txt', 'hello')
    with pytest.raises(CheckpointFormatError):
        load_checkpoint(model, str(archive))
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_checkpoint(model, str(tmp_path / 'nowhere.pth'))


# ---------------------------------------------------------------------------------------------
# unwrapping and conversion

def test_extract_state_dict_layouts():
    w = np.ones(2, np.float32)
    plain = OrderedDict([('a.weight', w), ('a.bias', w)])
    assert list(extract_state_dict(plain)) == ['a.weight', 'a.bias']
    assert list(extract_state_dict({'state_dict': prefixed(plain), 'epoch': 1})) == list(plain)
    assert list(extract_state_dict({'best_state_dict': plain, 'perf': 0.5})) == list(plain)
    assert list(extract_state_dict({'model': plain})) == list(plain)
    # [LPN] checkpoint.pth: the latest weights ('state_dict') win over 'best_state_dict'
    both = {'state_dict': {'x': w}, 'best_state_dict': {'y': w}}
    assert list(extract_state_dict(both)) == ['x']
    # [MS]: 'model' is a name tuple there, the weights are under 'state_dict'
    assert list(extract_state_dict({'model': ('a', 'b'), 'state_dict': plain})) == list(plain)
    with pytest.raises(CheckpointFormatError, match="'epoch'"):
        extract_state_dict({'epoch': 3, 'optimizer': {}})
    with pytest.raises(CheckpointFormatError, match='module'):
        extract_state_dict({'module.a': w, 'a': w})


class _Tiny(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 1)
        self.bn = paddle.nn.BatchNorm2D(4)
        self.norm = paddle.nn.LayerNorm([4, 1, 1])
        self.fc = paddle.nn.Linear(3, 5)


def test_torch_to_paddle_mapping():
    rng = np.random.default_rng(3)
    torch_state = OrderedDict([
        ('conv.weight', rng.standard_normal((4, 3, 1, 1))),          # float64 -> float32
        ('conv.bias', rng.standard_normal(4).astype(np.float16)),
        ('bn.weight', np.ones(4, np.float32)), ('bn.bias', np.zeros(4, np.float32)),
        ('bn.running_mean', np.full(4, 0.5, np.float32)),
        ('bn.running_var', np.full(4, 2.0, np.float32)),
        ('bn.num_batches_tracked', np.array(10, np.int64)),
        ('norm.weight', rng.standard_normal((4, 1, 1)).astype(np.float32)),
        ('norm.bias', rng.standard_normal((4, 1, 1)).astype(np.float32)),
        ('fc.weight', rng.standard_normal((5, 3)).astype(np.float32)),  # torch (out, in)
        ('fc.bias', rng.standard_normal(5).astype(np.float32)),
        ('extra.weight', np.ones(2, np.float32)),  # unknown keys are kept for the strict check
    ])
    model = _Tiny()
    out = torch_to_paddle(torch_state, model)
    assert list(out) == ['conv.weight', 'conv.bias', 'bn.weight', 'bn.bias', 'bn._mean',
                         'bn._variance', 'norm.weight', 'norm.bias', 'fc.weight', 'fc.bias',
                         'extra.weight']
    assert all(v.dtype == np.float32 for v in out.values())
    assert out['norm.weight'].shape == (4,)
    np.testing.assert_array_equal(out['fc.weight'], torch_state['fc.weight'].T)
    np.testing.assert_array_equal(out['bn._variance'], torch_state['bn.running_var'])
    with pytest.raises(CheckpointMismatchError, match='extra.weight'):
        load_state_dict_strict(model, out)
    del out['extra.weight']
    load_state_dict_strict(model, out)
    np.testing.assert_array_equal(model.fc.weight.numpy(), torch_state['fc.weight'].T)
    np.testing.assert_array_equal(model.norm.bias.numpy(), torch_state['norm.bias'].ravel())
    np.testing.assert_array_equal(model.conv.weight.numpy(),
                                  torch_state['conv.weight'].astype(np.float32))


# ---------------------------------------------------------------------------------------------
# strict loading

def test_mismatch_lists_missing_unexpected_and_misshaped(reference_state, model):
    state = torch_to_paddle(reference_state, model)
    del state['layer2.0.bn1._mean']
    state['layer9.0.conv1.weight'] = np.zeros((3, 3), np.float32)
    state['final_layer.weight'] = np.zeros((17, 256, 1, 1), np.float32)
    before = model.final_layer.weight.numpy()
    with pytest.raises(CheckpointMismatchError) as err:
        load_state_dict_strict(model, state, source='/some/dir/model_best.pth.tar')
    message = str(err.value)
    assert isinstance(err.value, ValueError)
    assert '/some/dir/model_best.pth.tar' in message
    assert '1 missing key, 1 unexpected key, 1 mis-shaped key' in message
    assert 'layer2.0.bn1._mean' in message
    assert 'layer9.0.conv1.weight' in message
    assert 'final_layer.weight: (17, 256, 1, 1) vs (16, 256, 1, 1)' in message
    # nothing was loaded
    np.testing.assert_array_equal(model.final_layer.weight.numpy(), before)


def test_checkpoint_of_another_depth_fails(reference_state, tmp_path):
    path = torch_save(to_torch(reference_state), tmp_path / 'pose_resnet_18.pth', 'zip')
    deeper = build_model(load_config(None, ['MODEL.EXTRA.NUM_LAYERS', '34']))
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(deeper, path)
    message = str(err.value)
    assert path in message and '80 missing keys' in message
    assert '... and 70 more' in message  # long listings are summarised


def test_values_are_verified_after_set_state_dict(reference_state, model, monkeypatch):
    state = torch_to_paddle(reference_state, model)
    # Paddle's set_state_dict warns rather than raises when it skips an entry
    monkeypatch.setattr(model, 'set_state_dict', lambda *a, **k: ([], []))
    with pytest.raises(CheckpointMismatchError, match='not set'):
        load_state_dict_strict(model, state, source='x.pdparams')


# ---------------------------------------------------------------------------------------------
# ImageNet initialisation (partial by nature)

BACKBONE = ('conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'layer4')


def imagenet_state(reference_state):
    """A torchvision resnet18 state dict: the backbone plus the classifier fc."""
    state = OrderedDict((k, v) for k, v in reference_state.items() if k.split('.')[0] in BACKBONE)
    state['fc.weight'] = np.ones((1000, 512), np.float32)
    state['fc.bias'] = np.zeros(1000, np.float32)
    return state


def test_load_pretrained_loads_the_backbone(reference_state, model, tmp_path, caplog):
    path = torch_save(to_torch(imagenet_state(reference_state)), tmp_path / 'resnet18.pth', 'zip')
    head_before = {k: v.numpy() for k, v in model.state_dict().items()
                   if k.split('.')[0] not in BACKBONE}
    with caplog.at_level(logging.INFO, logger='posekit.checkpoint'):
        summary = load_pretrained(model, path)
    assert summary.unexpected == ['fc.weight', 'fc.bias']
    assert summary.misshaped == [] and summary.not_selected == []
    assert sorted(summary.not_initialised) == sorted(head_before)
    assert len(summary.loaded) + len(summary.not_initialised) == len(model.state_dict())
    state = model.state_dict()
    for key in summary.loaded:
        np.testing.assert_array_equal(state[key].numpy(), reference_state[
            key.replace('._mean', '.running_mean').replace('._variance', '.running_var')])
    for key, value in head_before.items():
        np.testing.assert_array_equal(state[key].numpy(), value)
    assert 'fc.weight' in caplog.text


def test_load_pretrained_reports_misshaped_and_filters_prefixes(reference_state, r18_cfg,
                                                                 tmp_path, caplog):
    state = imagenet_state(reference_state)
    state['conv1.weight'] = np.zeros((64, 3, 3, 3), np.float32)
    path = torch_save(to_torch(state), tmp_path / 'resnet18.pth', 'legacy')
    model = build_model(r18_cfg)
    conv1_before = model.conv1.weight.numpy()
    with caplog.at_level(logging.WARNING, logger='posekit.checkpoint'):
        summary = load_pretrained(model, path)
    assert summary.misshaped == [('conv1.weight', (64, 3, 3, 3), (64, 3, 7, 7))]
    assert 'conv1.weight' in caplog.text and 'mis-shaped' in caplog.text
    np.testing.assert_array_equal(model.conv1.weight.numpy(), conv1_before)

    model = build_model(r18_cfg)
    summary = load_pretrained(model, path, prefixes=['bn1', 'layer1'])
    assert {k.split('.')[0] for k in summary.loaded} == {'bn1', 'layer1'}
    assert 'layer4.0.conv1.weight' in summary.not_selected
    np.testing.assert_array_equal(model.bn1._variance.numpy(), reference_state['bn1.running_var'])


def test_load_pretrained_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_pretrained(model, str(tmp_path / 'missing.pth'))
    unrelated = str(tmp_path / 'unrelated.pdparams')
    save_paddle_state_dict({'head.weight': np.zeros(3, np.float32)}, unrelated)
    with pytest.raises(CheckpointMismatchError, match='no tensor fits'):
        load_pretrained(model, unrelated)


def test_training_build_loads_pretrained(reference_state, tmp_path):
    path = torch_save(to_torch(imagenet_state(reference_state)), tmp_path / 'resnet18.pth', 'zip')
    cfg = load_config(None, R18 + ['MODEL.INIT_WEIGHTS', 'true', 'MODEL.PRETRAINED', path])
    model = build_model(cfg, is_train=True)
    np.testing.assert_array_equal(model.layer3[1].conv2.weight.numpy(),
                                  reference_state['layer3.1.conv2.weight'])


# ---------------------------------------------------------------------------------------------
# the convert.py command line

def run_convert(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'pose_estimation', 'convert.py')]
                          + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def test_convert_cli(reference_state, r18_cfg, tmp_path):
    src = torch_save(prefixed(to_torch(reference_state)), tmp_path / 'model_best.pth.tar', 'legacy')
    cfg_file = save_config(r18_cfg, str(tmp_path / 'r18.yaml'))
    dst = tmp_path / 'converted' / 'model.pdparams'

    done = run_convert('--cfg', cfg_file, '--src', src, '--dst', dst)
    assert done.returncode == 0, done.stderr
    assert "'module.' prefix stripped" in done.stdout
    assert 'legacy' in done.stdout and 'pose_resnet_18' in done.stdout
    model = build_model(r18_cfg)
    load_checkpoint(model, str(dst))
    assert_model_holds(model, reference_state)
    # the resolved config is written beside the weights
    assert load_config(str(tmp_path / 'converted' / 'model.yaml')) == r18_cfg

    # the same checkpoint against a deeper model: refused, with the listing, no traceback
    failed = run_convert('--cfg', cfg_file, '--src', src, '--dst', tmp_path / 'bad.pdparams',
                         'MODEL.EXTRA.NUM_LAYERS', '34')
    assert failed.returncode != 0
    assert 'Traceback' not in failed.stderr
    assert 'missing' in failed.stderr and 'layer1.2.conv1.weight' in failed.stderr
    assert not (tmp_path / 'bad.pdparams').exists()

    missing = run_convert('--cfg', cfg_file, '--src', tmp_path / 'nope.pth', '--dst', dst)
    assert missing.returncode != 0 and 'Traceback' not in missing.stderr
    assert 'nope.pth' in missing.stderr


# ---------------------------------------------------------------------------------------------
# every model family converts: the PyTorch layout is built here from the reference rules
# (Appendix A), independently of the converter, and must come back exactly

FAMILIES = {
    'lpn_18h_gc': ['MODEL.NAME', 'lpn', 'MODEL.NUM_JOINTS', '17', 'MODEL.EXTRA.NUM_LAYERS', '18'],
    'lpn_50_se': ['MODEL.NAME', 'lpn', 'MODEL.NUM_JOINTS', '17', 'MODEL.EXTRA.ATTENTION', 'SE'],
    'hrnet_w18_small_v1': ['MODEL.NAME', 'pose_hrnet', 'MODEL.NUM_JOINTS', '17',
                           'MODEL.EXTRA.STAGE2.NUM_BLOCKS', '[2,2]', 'MODEL.EXTRA.STAGE2.NUM_CHANNELS', '[16,32]',
                           'MODEL.EXTRA.STAGE3.NUM_MODULES', '1', 'MODEL.EXTRA.STAGE3.NUM_BLOCKS', '[2,2,2]',
                           'MODEL.EXTRA.STAGE3.NUM_CHANNELS', '[16,32,64]',
                           'MODEL.EXTRA.STAGE4.NUM_MODULES', '1', 'MODEL.EXTRA.STAGE4.NUM_BLOCKS', '[2,2,2,2]',
                           'MODEL.EXTRA.STAGE4.NUM_CHANNELS', '[16,32,64,128]'],
    'simplenet': ['MODEL.NAME', 'simplenet', 'MODEL.NUM_JOINTS', '17'],
}


def torch_layout_of(model, rng):
    """(PyTorch-named state dict, expected Paddle values) for ``model`` with random values."""
    import paddle.nn as nn
    linear = {name + '.weight' for name, layer in model.named_sublayers() if isinstance(layer, nn.Linear)}
    layer_norm = {name + suffix for name, layer in model.named_sublayers()
                  if isinstance(layer, nn.LayerNorm) for suffix in ('.weight', '.bias')}
    torch_state, expected = OrderedDict(), {}
    for key, tensor in model.state_dict().items():
        value = rng.standard_normal(tuple(tensor.shape)).astype(np.float32)
        expected[key] = value
        tkey = key.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        if key in linear:
            value = value.T  # torch Linear weight is (out, in)
        elif key in layer_norm:
            value = value.reshape(-1, 1, 1)  # the GC block's LayerNorm over [P, 1, 1]
        torch_state[tkey] = np.ascontiguousarray(value)
        if tkey.endswith('.running_var'):
            torch_state[tkey[:-len('running_var')] + 'num_batches_tracked'] = np.array(3, np.int64)
    return torch_state, expected, linear, layer_norm


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_every_family_converts(family, tmp_path):
    cfg = load_config(None, FAMILIES[family])
    model = build_model(cfg)
    torch_state, expected, linear, layer_norm = torch_layout_of(model, np.random.default_rng(1))
    if family == 'lpn_50_se':
        assert linear
    if family == 'lpn_18h_gc':
        assert layer_norm
    src = torch_save(to_torch(prefixed(torch_state)), tmp_path / 'ckpt.pth', 'zip')
    fresh = build_model(cfg)
    load_checkpoint(fresh, src)
    for key, tensor in fresh.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), expected[key], err_msg=key)
