"""SimplePose network (SIMPLEPOSE_SPEC 3) and the conversion of its released checkpoint format.

Parity with the reference (fixtures ``simplepose/``, README section 1): the fixtures' seeded
weights (``make_ckpt.py``, seed 5) are saved in the released format
``{'weights', 'optimizer_weight', 'train_loss', 'epoch'}``, converted by ``convert.py``'s main,
loaded strictly, and every saved output (4 stacks x 5 scales, square and non-square input) must
come back within atol 1e-4. The published network (129 M parameters) is built once per module;
behaviour checks use a tiny variant.
"""
import contextlib
import hashlib
import importlib.util
import io
import json
from collections import OrderedDict

import numpy as np
import paddle
import pytest

from conftest import ROOT, require_fixtures
from posekit.checkpoint import load_checkpoint
from posekit.codec.bottomup.layout import NUM_CHANNELS
from posekit.config import ConfigError, load_config, save_config
from posekit.errors import PosekitInputError
from posekit.models import build_model, model_label, model_tag, simplepose
from posekit.models.complexity import count_complexity, count_parameters, model_info

EXPERIMENT = ROOT + '/experiments/coco/simplepose/simplepose_512x512.yaml'
TINY = ['MODEL.NAME', 'simplepose', 'MODEL.IMAGE_SIZE', '192,128', 'MODEL.EXTRA.NSTACK', '2',
        'MODEL.EXTRA.INP_DIM', '32', 'MODEL.EXTRA.INCREASE', '16']
PARAMS = 128998760  # SIMPLEPOSE_SPEC 1

# MACs by the reference's rule (conv out.numel * Cin/groups * kh * kw, Linear out * in),
# fixtures README 1: conv 268,543,557,632 + linear 163,840 at 512x512. The reference computes
# the stride-4 merges of stacks 0-2 twice: 3 x 128^2 x (256 + 50) x 256 of it is that duplicate.
REF_CONV_512 = 268543557632
REF_LINEAR = 163840
DUPLICATE_512 = 3 * 128 * 128 * (256 + 50) * 256
SE_MACS = 2 * 256 * 16  # one SE layer


def tiny_cfg(*opts):
    return load_config(None, TINY + list(opts))


def nchw(seed, h, w):
    """The fixtures' input rule (NHWC in [0, 1)) as our NCHW batch, with its sha256."""
    x = np.random.default_rng(seed).random((1, h, w, 3)).astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), hashlib.sha256(x.tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# a tiny variant: outputs, input checks, config checks, training init, BN statistics

@pytest.fixture(scope='module')
def tiny():
    paddle.seed(3)
    return build_model(tiny_cfg(), is_train=True)


def test_outputs_in_training_and_eval(tiny):
    x = paddle.to_tensor(np.random.default_rng(0).random((2, 3, 128, 192)).astype(np.float32))
    tiny.train()
    outs = tiny(x)
    assert len(outs) == 2 and all(len(stack) == 5 for stack in outs)
    for stack in outs:
        for s, out in enumerate(stack):
            assert list(out.shape) == [2, NUM_CHANNELS, 32 >> s, 48 >> s]
    tiny.eval()
    with paddle.no_grad():
        last = tiny(x)
        every = tiny.forward_all(x)
    assert list(last.shape) == [2, NUM_CHANNELS, 32, 48]
    def shapes(stacks):
        return [[list(o.shape) for o in stack] for stack in stacks]
    assert shapes(every) == shapes(outs)
    np.testing.assert_array_equal(last.numpy(), every[-1][0].numpy())


def test_inputs_must_be_multiples_of_64(tiny):
    with pytest.raises(ConfigError, match='multiples of 64.*\\[160, 128\\]'):
        build_model(tiny_cfg('MODEL.IMAGE_SIZE', '160,128'))
    tiny.eval()
    with pytest.raises(PosekitInputError, match='multiples of 64.*96x128'):
        tiny(paddle.zeros([1, 3, 96, 128]))
    with pytest.raises(PosekitInputError, match='NCHW'):
        tiny.forward_all(paddle.zeros([3, 64, 64]))


@pytest.mark.parametrize('key, value, words', [
    ('NSTACK', '0', 'NSTACK must be at least 1'),
    ('INP_DIM', '40', 'INP_DIM must be a multiple of 16'),
    ('INP_DIM', '16', 'at least 32'),
    ('INCREASE', '7', 'INCREASE must be an even'),
])
def test_bad_extra_values(key, value, words):
    with pytest.raises(ConfigError, match=words):
        build_model(tiny_cfg('MODEL.EXTRA.' + key, value))


def test_unknown_extra_key_is_refused():
    with pytest.raises(ConfigError, match='NSTACK'):
        tiny_cfg('MODEL.EXTRA.NSTACKS', '2')


def test_names():
    tiny = tiny_cfg()
    assert (model_tag(tiny), model_label(tiny)) == ('simplepose', 'simplepose_n2_c32_i16')
    cfg = load_config(EXPERIMENT)
    assert (model_tag(cfg), model_label(cfg)) == ('simplepose', 'simplepose')


def test_training_init_is_the_reference_one(tiny):
    """_initialize_weights: conv N(0, 0.001) bias 0, BN 1/0, Linear N(0, 0.01) bias 0."""
    convs, linears = [], []
    for layer in tiny.sublayers():
        if isinstance(layer, paddle.nn.Conv2D):
            convs.append(layer.weight.numpy().ravel())
            if layer.bias is not None:
                assert not layer.bias.numpy().any()
        elif isinstance(layer, paddle.nn.Linear):
            linears.append(layer.weight.numpy().ravel())
            assert not layer.bias.numpy().any()
        elif isinstance(layer, paddle.nn.BatchNorm2D):
            assert (layer.weight.numpy() == 1).all() and not layer.bias.numpy().any()
    assert len(linears) == 2 * 2 * 5
    conv, linear = np.concatenate(convs), np.concatenate(linears)
    assert abs(conv.std() - 0.001) < 2e-5 and abs(conv.mean()) < 1e-5
    assert abs(linear.std() - 0.01) < 1e-3


def test_stride4_merge_bn_statistics_update_twice():
    """SIMPLEPOSE_SPEC 3: the reference's duplicated stride-4 merges update those BN running
    statistics twice per training step; every other BN once (torch momentum 0.1)."""
    paddle.seed(4)
    model = build_model(tiny_cfg(), is_train=True)
    model.train()
    seen = {}
    merges = {s: model.posenet.merge_features[0][s] for s in (0, 1)}
    hooks = [m.register_forward_pre_hook(lambda layer, args, s=s: seen.__setitem__(s, args[0]))
             for s, m in merges.items()]
    x = paddle.to_tensor(np.random.default_rng(1).random((2, 3, 128, 128)).astype(np.float32))
    model(x)
    for h in hooks:
        h.remove()
    for s, factor in ((0, 1 - 0.9 ** 2), (1, 0.1)):
        with paddle.no_grad():
            batch_mean = merges[s].conv.conv(seen[s]).numpy().mean(axis=(0, 2, 3))
        np.testing.assert_allclose(merges[s].conv.bn._mean.numpy(), factor * batch_mean,
                                   rtol=1e-4, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# the published network: parameters, layout, conversion and parity

@pytest.fixture(scope='module')
def layout():
    with open(require_fixtures('simplepose', 'layout_posenet.json'), 'r', encoding='utf-8') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def meta():
    path = require_fixtures('simplepose', 'model_meta_1x128x128x3_seed5_in0.json')
    with open(path, 'r', encoding='utf-8') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def model():
    m = build_model(load_config(EXPERIMENT), is_train=False)
    m.eval()
    return m


def test_parameter_count(model, meta):
    assert count_parameters(model) == PARAMS == meta['params_trainable']
    by_top = {}
    for name, p in model.named_parameters():
        if not p.stop_gradient:
            top = name.split('.')[1]
            by_top[top] = by_top.get(top, 0) + int(np.prod(p.shape))
    assert by_top == meta['params_by_top_module']


def test_state_dict_layout_is_the_reference(model, layout):
    """Same keys, order and shapes as the reference state_dict, up to Paddle's BN names, the
    dropped num_batches_tracked and the (in, out) Linear weights."""
    linear = {name + '.weight' for name, layer in model.named_sublayers()
              if isinstance(layer, paddle.nn.Linear)}
    expected = []
    for key, shape, dtype in layout:
        if key.endswith('.num_batches_tracked'):
            assert dtype == 'torch.int64'
            continue
        key = key.replace('.running_mean', '._mean').replace('.running_var', '._variance')
        expected.append((key, shape[::-1] if key in linear else shape))
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert len(ours) == 1848 - 288 and len(linear) == 40
    assert ours == expected


def _make_ckpt():
    spec = importlib.util.spec_from_file_location('simplepose_make_ckpt',
                                                  require_fixtures('simplepose', 'make_ckpt.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def released_checkpoint(torch, state, path):
    """``torch.save`` in the layout of ``PoseNet_52_epoch.pth`` (SIMPLEPOSE_SPEC 1), with a real
    (small) optimizer state that the conversion must ignore."""
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=1e-4, momentum=0.9, weight_decay=5e-4)
    param.grad = torch.ones(3)
    optimizer.step()
    torch.save({'weights': state, 'optimizer_weight': optimizer.state_dict(),
                'train_loss': 123.25, 'epoch': 52}, str(path))
    return str(path)


def run_convert(capsys, *args):
    from posekit.tools.convert import main
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope='module')
def converted(layout, meta, tmp_path_factory):
    """The fixtures' seed-5 weights, released format -> convert.py -> .pdparams (path, stdout)."""
    torch = pytest.importorskip('torch')
    state = _make_ckpt().fill(layout, meta['weights_seed'])
    digest = hashlib.sha256()  # over the raw bytes of every tensor, in layout order
    for tensor in state.values():
        digest.update(tensor.numpy().tobytes())
    weights_ok = digest.hexdigest() == meta['weights_sha256']
    folder = tmp_path_factory.mktemp('simplepose_ckpt')
    src = released_checkpoint(torch, state, folder / 'PoseNet_52_epoch.pth')
    del state
    dst = folder / 'converted' / 'simplepose.pdparams'
    from posekit.tools.convert import main
    out, err = io.StringIO(), io.StringIO()  # capsys is function-scoped
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(['--cfg', EXPERIMENT, '--src', src, '--dst', str(dst)])
    return {'code': code, 'stdout': out.getvalue(), 'stderr': err.getvalue(), 'dst': str(dst),
            'weights_ok': weights_ok}


def test_seeded_weights_are_the_fixture_weights(converted):
    assert converted['weights_ok'], 'make_ckpt.py no longer gives the weights of the fixtures'


def test_convert_reads_the_released_format(converted):
    assert converted['code'] == 0, converted['stderr']
    out = converted['stdout']
    assert "entry 'weights'" in out
    assert '1848 in the checkpoint -> 1560 Paddle tensors (288 num_batches_tracked dropped' in out
    assert '40 Linear transposed' in out
    assert '128,998,760 trainable parameters' in out


@pytest.fixture(scope='module')
def loaded(model, converted):
    """The published network with the converted seed-5 weights, loaded strictly."""
    assert converted['code'] == 0, converted['stderr']
    load_checkpoint(model, converted['dst'])
    return model


@pytest.mark.parametrize('name, seed, h, w', [
    ('expected_posenet_1x128x128x3_seed5_in0.npz', 0, 128, 128),
    ('expected_posenet_1x128x192x3_seed5_in1.npz', 1, 128, 192),
])
def test_reference_outputs(name, seed, h, w, loaded):
    model = loaded
    expected = np.load(require_fixtures('simplepose', name))
    with open(require_fixtures('simplepose', name.replace('expected_posenet', 'model_meta')
                               .replace('.npz', '.json')), 'r', encoding='utf-8') as f:
        input_sha = json.load(f).get('input_sha256')
    x, sha = nchw(seed, h, w)
    if input_sha:
        assert sha == input_sha
    model.eval()
    with paddle.no_grad():
        every = model.forward_all(paddle.to_tensor(x))
        last = model(paddle.to_tensor(x)).numpy()
    assert len(expected.files) in (6, 20)
    for key in expected.files:
        i, s = int(key[5]), int(key[-1])
        np.testing.assert_allclose(every[i][s].numpy(), expected[key], rtol=0, atol=1e-4,
                                   err_msg=key)
    np.testing.assert_allclose(last, expected['stack3_scale0'], rtol=0, atol=1e-4)


def tiny_torch_state(model):
    """``model``'s state dict under the reference's PyTorch names and layouts (numpy)."""
    linear = {name + '.weight' for name, layer in model.named_sublayers()
              if isinstance(layer, paddle.nn.Linear)}
    rng = np.random.default_rng(2)
    state = OrderedDict()
    for key, tensor in model.state_dict().items():
        value = rng.standard_normal(tuple(tensor.shape)).astype(np.float32)
        tkey = key.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        state[tkey] = np.ascontiguousarray(value.T if key in linear else value)
        if tkey.endswith('.running_var'):
            state[tkey[:-len('running_var')] + 'num_batches_tracked'] = np.array(0, np.int64)
    return state


def test_convert_refuses_a_checkpoint_with_a_missing_key(tmp_path, capsys):
    torch = pytest.importorskip('torch')
    cfg = tiny_cfg()
    cfg_file = save_config(cfg, str(tmp_path / 'tiny.yaml'))
    state = tiny_torch_state(build_model(cfg))
    dropped = 'posenet.outs.1.3.conv.bias'
    del state[dropped]
    weights = OrderedDict((k, torch.from_numpy(v)) for k, v in state.items())
    src = released_checkpoint(torch, weights, tmp_path / 'tiny.pth')
    dst = tmp_path / 'tiny.pdparams'
    code, out, err = run_convert(capsys, '--cfg', cfg_file, '--src', src, '--dst', dst)
    assert code == 1 and not dst.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('convert: error: ')
    assert '1 missing key' in lines[0] and dropped in lines[0]

    # a file cut short: one line too
    truncated = tmp_path / 'cut.pth'
    truncated.write_bytes(open(src, 'rb').read()[:5000])
    code, out, err = run_convert(capsys, '--cfg', cfg_file, '--src', truncated, '--dst', dst)
    assert code == 1 and not dst.exists()
    assert len(err.strip().splitlines()) == 1 and 'cut.pth' in err


# ---------------------------------------------------------------------------------------------
# MACs (counted at 128x128, where everything is 16x smaller than at 512x512 except the SE Linears)

class _AllOutputs(paddle.nn.Layer):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_all(x)


def test_macs_match_the_reference(model):
    every = count_complexity(_AllOutputs(model), [128, 128])['macs_breakdown']
    # all stacks x scales, each merge once; plus the duplicate = the reference's figure
    assert every['linear'] == REF_LINEAR and every['n_linear'] == 40
    assert every['conv2d'] * 16 + DUPLICATE_512 == REF_CONV_512

    cfg = load_config(EXPERIMENT)
    assert simplepose.reference_macs(cfg) == REF_CONV_512 + REF_LINEAR == 268543721472
    small = load_config(EXPERIMENT, ['MODEL.IMAGE_SIZE', '128,128'])
    info = model_info(small, model=model)
    assert info['params'] == PARAMS
    assert info['macs_reference_code'] == REF_CONV_512 // 16 + REF_LINEAR
    # our eval pass: no duplicate, and the last stack's scales 1-4 (features, SE, outs) skipped
    last_stack_extra = sum((32 >> s) ** 2 * ((256 + 128 * s) * 256 * 9 + 256 * 256 * 9 + 256 * 50)
                           for s in range(1, 5))
    assert info['macs'] == every['conv2d'] - last_stack_extra + REF_LINEAR - 4 * SE_MACS
    assert info['heatmap_shape'] == [1, NUM_CHANNELS, 32, 32]


# ---------------------------------------------------------------------------------------------
# the path of a new user: a released checkpoint converted, then validated and run on a photo

def test_converted_checkpoint_through_the_test_time_pipeline(loaded):
    """Fixtures README 5: the real photo 196141 through our input spec at the reference's
    scale_search 0.25 (height 640 x 0.25, padded to 192 x 256, with its mirror) and the converted
    network gives the reference network's output within 1e-4."""
    from posekit.codec import BottomUpInputSpec
    from posekit.io import read_image
    from posekit.runtime.dygraph import DygraphRunner
    folder = require_fixtures('simplepose', 'e2e')
    expected = np.load(folder + '/e2e_196141_seed5_ss0.25.npz')
    image = read_image(require_fixtures('real', 'coco', '000000196141.jpg'))
    inputs, meta = BottomUpInputSpec(scale=0.25).prepare(image)
    np.testing.assert_array_equal(
        inputs, expected['input_uint8'].transpose(0, 3, 1, 2).astype(np.float32) / 255)
    loaded.eval()
    out = DygraphRunner(loaded)(inputs)
    np.testing.assert_allclose(out, expected['net_out_last_stack_scale0'], rtol=0, atol=1e-4)


def test_valid_on_the_converted_checkpoint(converted, tmp_path):
    """valid.py prints the ten COCO stats of the converted published network on the real COCO
    photos (at a small test height for speed; infer.py and deploy.py on a bottom-up model:
    test_bottomup_deploy.py)."""
    from conftest import real_coco_root
    from tool_runs import run
    assert converted['code'] == 0, converted['stderr']
    root = real_coco_root(tmp_path / 'coco')
    small = ['TEST.BOXSIZE', '128', 'DATASET.TEST_SET', 'val2017']
    res = run('valid.py', '--cfg', EXPERIMENT, '--model-file', converted['dst'], '--flip-test',
              '--output', tmp_path / 'valid', 'DATASET.ROOT', root, *small)
    assert res.returncode == 0, res.stderr[-3000:]
    table = [line for line in res.stdout.splitlines() if '| 512x512_simplepose |' in line]
    assert len(table) == 1 and len(table[0].split('|')) == 13, res.stdout[-3000:]
