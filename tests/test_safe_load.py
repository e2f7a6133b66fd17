"""Untrusted weights never run (issue 9, item 1).

``paddle.load`` is ``pickle.load``: a ``.pdparams``/``.pdckpt`` could run any code. posekit reads
them with :func:`posekit.checkpoint.read_paddle_file`, a restricted unpickler. Here:

* it gives exactly what ``paddle.load(path, return_numpy=True)`` gives for what our writer and
  ``paddle.save`` write: state dicts, a training checkpoint with Adam or SGD-momentum state, an
  optimiser with an LR scheduler, every pickle protocol, the protocol-2 big-array slices, a bare
  DenseTensor;
* crafted files (a pickle whose reduce runs ``touch <marker>`` or opens a file, and tricks with
  the few allowed globals) are refused with one line naming the file and the global, and the
  marker never appears: in the library and through infer.py, valid.py, export.py, convert.py,
  ``train.py --resume-from`` and ``MODEL.PRETRAINED``;
* a 0-byte or truncated file is one line too.
"""
import math
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict

import numpy as np
import paddle
import pytest

from conftest import ROOT
from posekit.checkpoint import CheckpointFormatError, read_checkpoint, read_paddle_file
from posekit.checkpoint.loading import save_paddle_state_dict
from posekit.config import load_config
from posekit.models import build_model
from posekit.training.trainer import Trainer, build_optimizer, load_optimizer_state

CFG = os.path.join(ROOT, 'experiments', 'synthetic', 'mpii_simplenet_128x128.yaml')
TINY = ['MODEL.IMAGE_SIZE', '64,64', 'MODEL.HEATMAP_SIZE', '16,16']


def assert_same(a, b, where='file'):
    """``a`` and ``b`` are the same object tree: types, keys (and their order), dtypes, shapes
    and every value."""
    assert type(a) is type(b), '%s: %s vs %s' % (where, type(a).__name__, type(b).__name__)
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], '%s[%r]' % (where, k))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, '%s[%d]' % (where, i))
    elif isinstance(a, np.ndarray):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in 'fc'), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, '%s: %r vs %r' % (where, a, b)


def same_as_paddle_load(path):
    ours = read_paddle_file(str(path))
    assert_same(ours, paddle.load(str(path), return_numpy=True))
    return ours


@pytest.fixture(scope='module')
def cfg():
    return load_config(CFG, TINY)


def trained(optimizer, steps=2, seed=0):
    """A model and optimiser after a few steps (every accumulator non-trivial)."""
    cfg = load_config(CFG, TINY + ['TRAIN.OPTIMIZER', optimizer, 'TRAIN.MOMENTUM', '0.9',
                                   'TRAIN.WD', '0.0001'])
    paddle.seed(seed)
    net = build_model(cfg, is_train=True)
    opt = build_optimizer(cfg, net)
    for _ in range(steps):
        net(paddle.randn([2, 3, 64, 64])).square().mean().backward()
        opt.step()
        opt.clear_grad()
    return cfg, net, opt


# ---------------------------------------------------------------------------------------------
# the same objects as paddle.load(return_numpy=True)

@pytest.mark.parametrize('protocol', [2, 3, 4])
def test_state_dicts_read_as_paddle_load_reads_them(cfg, protocol, tmp_path):
    model = build_model(cfg)
    ours = save_paddle_state_dict(model, str(tmp_path / 'model_best.pdparams'))  # our writer
    direct = tmp_path / 'final_state.pdparams'
    paddle.save(model.state_dict(), str(direct), protocol=protocol)
    for path in (ours, direct):
        state = same_as_paddle_load(path)
        assert list(state) == list(model.state_dict())  # the name table is gone
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(state[k], v.numpy(), err_msg=k)
    # read_checkpoint (every --model-file, MODEL.PRETRAINED) goes through it
    state, info = read_checkpoint(str(direct))
    assert info.reader == 'paddle' and list(state) == list(model.state_dict())


@pytest.mark.parametrize('optimizer', ['adam', 'sgd'])
def test_training_checkpoint_reads_as_paddle_load_and_resumes_the_same(optimizer, tmp_path):
    cfg, net, opt = trained(optimizer)
    path = str(tmp_path / 'checkpoint.pdckpt')
    # the trainer's own writer, on a stand-in holding what it saves
    run = types.SimpleNamespace(cfg=cfg, net=net, optimizer=opt, last_perf=np.float64(0.25),
                                best_perf=-math.inf, best_epoch=-1, seed=7, scaler=None,
                                history=[{'epoch': 0, 'perf': 0.25, 'loss': float('nan')}],
                                checkpoint_path=path)
    Trainer.save_checkpoint(run, 1)
    state = same_as_paddle_load(path)
    accumulators = {'adam': ('_moment1_0', '_moment2_0', '_beta1_pow_acc_0', '_beta2_pow_acc_0'),
                    'sgd': ('_velocity_0',)}[optimizer]
    assert state['optimizer'] and all(any(k.endswith(a) for k in state['optimizer'])
                                      for a in accumulators)
    assert all(isinstance(v, np.ndarray) for v in state['optimizer'].values())
    assert state['best_perf'] == -math.inf and state['seed'] == 7 and state['epoch'] == 1

    # resuming from the arrays steps exactly as resuming from paddle.load's tensors did
    tensors = paddle.load(path)
    x = paddle.randn([2, 3, 64, 64])
    after = []
    for loaded in (state, tensors):
        _, net2, opt2 = trained(optimizer, steps=0, seed=1)
        net2.set_state_dict({k: np.asarray(v) for k, v in loaded['state_dict'].items()})
        load_optimizer_state(opt2, net2, loaded['optimizer'])
        net2(x).square().mean().backward()
        opt2.step()
        after.append({k: v.numpy() for k, v in net2.state_dict().items()})
    assert_same(after[0], after[1])


@pytest.mark.parametrize('protocol', [2, 3, 4])
def test_optimizer_with_scheduler_and_nested_objects(protocol, tmp_path):
    _, net, _ = trained('sgd', steps=0)
    scheduler = paddle.optimizer.lr.StepDecay(0.1, 2)
    opt = paddle.optimizer.Momentum(learning_rate=scheduler, momentum=0.9,
                                    parameters=net.parameters())
    net(paddle.randn([1, 3, 64, 64])).mean().backward()
    opt.step()
    scheduler.step()
    t = paddle.to_tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    obj = {'opt': opt.state_dict(), 'dense': t.value().get_tensor(),  # builtins.eval form
           'nested': [t, (t, 'x'), OrderedDict(a=t, b=[1, 2.5, None, True])],
           'scalars': (np.float32(1.5), np.int64(3), np.bool_(True)), 'text': 'é'}
    path = tmp_path / 'misc.pdckpt'
    paddle.save(obj, str(path), protocol=protocol)
    state = same_as_paddle_load(path)
    assert state['opt']['LR_Scheduler'] == {'last_epoch': 1, 'last_lr': 0.1}
    np.testing.assert_array_equal(state['dense'], t.numpy())


def test_big_array_slices_of_protocol_2(tmp_path):
    """paddle.save with protocol 2/3 cuts arrays over 1 GiB into slices; built here by hand at
    a small size in the same layout (paddle/framework/io_utils.py _unpack_saved_dict)."""
    big = np.arange(20, dtype=np.float32).reshape(4, 5)
    flat = big.flatten()
    obj = {'b': np.ones(3, np.float32), 'w@@.0': flat[:8], 'w@@.1': flat[8:16], 'w@@.2': flat[16:],
           'StructuredToParameterName@@': {'w': 'w_0', 'b': 'b_0'},
           'UnpackBigParamInfor@@': {'w': {'OriginShape': (4, 5),
                                           'slices': ['w@@.0', 'w@@.1', 'w@@.2']}}}
    path = tmp_path / 'big.pdparams'
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=2)
    state = same_as_paddle_load(path)
    assert sorted(state) == ['b', 'w']
    np.testing.assert_array_equal(state['w'], big)


# ---------------------------------------------------------------------------------------------
# crafted files: refused, nothing runs

class _Call:
    """Pickles as ``func(*args)``: what an attacker puts in a checkpoint."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def touch(marker):
    return _Call(os.system, 'touch %s' % marker)


def global_name(func):
    return '%s.%s' % (func.__module__, func.__name__)


def crafted(path, payload, kind='pdparams', protocol=4):
    """A realistic file with ``payload`` inside: a state dict or a training checkpoint."""
    weights = {'final_layer.weight': np.ones((2, 2), np.float32)}
    if kind == 'pdckpt':
        obj = {'epoch': 1, 'state_dict': weights, 'optimizer': {}, 'history': [payload]}
    else:
        obj = dict(weights, payload=payload)
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)


def refused(path, *fragments):
    with pytest.raises(CheckpointFormatError) as err:
        read_paddle_file(path)
    text = str(err.value)
    assert '\n' not in text and path in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


@pytest.mark.parametrize('protocol', [2, 4])
@pytest.mark.parametrize('kind', ['pdparams', 'pdckpt'])
def test_a_pickled_call_is_refused_before_it_runs(kind, protocol, tmp_path):
    marker = tmp_path / 'pwned'
    path = crafted(tmp_path / ('evil.' + kind), touch(marker), kind, protocol)
    refused(path, "refusing to load '%s'" % global_name(os.system))
    opener = crafted(tmp_path / ('open.' + kind), _Call(open, str(marker), 'w'), kind, protocol)
    refused(opener, "'%s'" % global_name(open))
    with pytest.raises(CheckpointFormatError):
        read_checkpoint(path)
    assert not marker.exists()
    # the same file through paddle.load opens (creates) the marker: the test can fail
    try:
        paddle.load(opener)
    except Exception:
        pass
    assert marker.exists()


def test_the_allowed_globals_cannot_be_abused(tmp_path):
    marker = tmp_path / 'pwned'
    # builtins.eval is allowed only in the DenseTensor form eval('data', {'data': array})
    code = "__import__('os').system('touch %s')" % marker
    refused(crafted(tmp_path / 'eval.pdparams', _Call(eval, code, {})), 'builtins.eval')
    # numpy.ndarray is only an argument of _reconstruct, never called on a chosen buffer
    refused(crafted(tmp_path / 'ndarray.pdparams', _Call(np.ndarray, (2,), 'f4', b'\0' * 8)),
            'numpy.ndarray')
    refused(crafted(tmp_path / 'bytes.pdparams', _Call(bytes, 10 ** 12)), 'bytes()')
    refused(crafted(tmp_path / 'codecs.pdparams', _Call(__import__('codecs').encode, 'x', 'zlib')),
            '_codecs.encode')
    # BUILD (setting attributes) on an allowed function: refused, the function unchanged
    build = (b'\x80\x02cnumpy._core.multiarray\n_reconstruct\n}X\x0c\x00\x00\x00__defaults__'
             b'K\x01sb.')
    (tmp_path / 'build.pdparams').write_bytes(build)
    refused(str(tmp_path / 'build.pdparams'), 'cannot change')
    # data that only looks plain
    refused(crafted(tmp_path / 'objects.pdparams', np.array([1, 'a'], dtype=object)),
            'Python objects')
    loop = []
    loop.append(loop)
    refused(crafted(tmp_path / 'loop.pdparams', loop), 'contains itself')
    assert not marker.exists()


def test_empty_truncated_and_foreign_files(cfg, tmp_path):
    good = save_paddle_state_dict(build_model(cfg), str(tmp_path / 'good.pdparams'))
    data = open(good, 'rb').read()
    for cut in (1, 100, len(data) // 2, len(data) - 1):
        (tmp_path / 'cut.pdparams').write_bytes(data[:cut])
        refused(str(tmp_path / 'cut.pdparams'), 'truncated')
    (tmp_path / 'empty.pdparams').write_bytes(b'')
    refused(str(tmp_path / 'empty.pdparams'), 'empty (0 bytes)')
    (tmp_path / 'text.pdparams').write_text('hello')
    refused(str(tmp_path / 'text.pdparams'), 'not a file written by paddle.save')
    # a 0-byte .pth, with or without torch: one line (it was an IndexError)
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(CheckpointFormatError, match=r'empty \(0 bytes\)'):
        read_checkpoint(str(tmp_path / 'empty.pth'))


# ---------------------------------------------------------------------------------------------
# every entry point

def small(tmp):
    return TINY + ['OUTPUT_DIR', str(tmp / 'out'), 'LOG_DIR', str(tmp / 'log'),
                   'DATASET.ROOT', str(tmp / 'data'), 'DATASET.SYNTHETIC.NUM_TRAIN', '4',
                   'DATASET.SYNTHETIC.NUM_VALID', '2', 'DATASET.SYNTHETIC.IMAGE_SIZE', '128,128',
                   'WORKERS', '0']


def entry_point(case, weights, tmp):
    """The command line of one entry point reading ``weights``."""
    cfg = ['--cfg', CFG]
    if case == 'infer':
        import cv2
        image = str(tmp / 'person.jpg')
        cv2.imwrite(image, np.full((64, 48, 3), 128, np.uint8))
        return ['infer.py', '--model-file', weights, '--img-file', image,
                '--output', str(tmp / 'infer')] + cfg + small(tmp)
    if case == 'valid':
        return ['valid.py', '--model-file', weights] + cfg + small(tmp)
    if case == 'export':
        return (['export.py', '--model-file', weights, '--output', str(tmp / 'export')]
                + cfg + small(tmp))
    if case == 'convert':
        return (['convert.py', '--src', weights, '--dst', str(tmp / 'converted.pdparams')]
                + cfg + small(tmp))
    if case == 'resume':
        return ['train.py', '--no-progress', '--resume-from', weights] + cfg + small(tmp)
    assert case == 'pretrained'
    return (['train.py', '--no-progress'] + cfg + small(tmp)
            + ['MODEL.INIT_WEIGHTS', 'true', 'MODEL.PRETRAINED', weights])


def run_refused(case, weights, tmp, *fragments):
    args = entry_point(case, weights, tmp)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'pose_estimation', args[0])]
                          + args[1:], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    prog = args[0][:-3]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(prog + ': error: '), proc.stderr[-2000:]
    assert weights in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not os.path.exists(tmp / 'converted.pdparams')
    return lines[0]


@pytest.mark.parametrize('case', ['infer', 'valid', 'export', 'convert', 'resume', 'pretrained'])
def test_entry_points_refuse_a_crafted_paddle_file(case, tmp_path):
    marker = tmp_path / 'pwned'
    weights = crafted(tmp_path / ('evil.pdckpt' if case == 'resume' else 'evil.pdparams'),
                      touch(marker), 'pdckpt' if case == 'resume' else 'pdparams')
    run_refused(case, weights, tmp_path, "refusing to load '%s'" % global_name(os.system))
    assert not marker.exists()


@pytest.mark.parametrize('case', ['infer', 'pretrained'])
def test_entry_points_refuse_a_crafted_torch_file(case, tmp_path):
    torch = pytest.importorskip('torch')
    marker = tmp_path / 'pwned'
    weights = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(2)}, 'x': touch(marker)}, weights)
    run_refused(case, weights, tmp_path, global_name(os.system))
    assert not marker.exists()


def test_entry_points_on_empty_and_truncated_files(cfg, tmp_path):
    pytest.importorskip('torch')  # the IndexError came from the torch.load error message
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    run_refused('export', str(empty), tmp_path, 'empty (0 bytes)')
    good = save_paddle_state_dict(build_model(cfg), str(tmp_path / 'good.pdparams'))
    cut = tmp_path / 'cut.pdparams'
    cut.write_bytes(open(good, 'rb').read()[:5000])
    run_refused('infer', str(cut), tmp_path, 'truncated')


# ---------------------------------------------------------------------------------------------
# the other readers: yaml.safe_load, np.load(allow_pickle=False)

def test_yaml_and_predictions_never_unpickle(tmp_path):
    from posekit.config import ConfigError
    from posekit.evaluation.validate import PredictionsError, load_predictions
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.yaml'
    evil.write_text('MODEL:\n  NAME: !!python/object/apply:os.system ["touch %s"]\n' % marker)
    with pytest.raises(ConfigError, match='python/object/apply:os.system'):
        load_config(str(evil))
    objects = np.array([_Call(os.system, 'touch %s' % marker)], dtype=object)
    np.save(tmp_path / 'preds.npy', objects, allow_pickle=True)
    np.savez(tmp_path / 'preds.npz', preds=objects)
    for name in ('preds.npy', 'preds.npz'):
        with pytest.raises(PredictionsError, match='allow_pickle') as err:
            load_predictions(str(tmp_path / name))
        assert '\n' not in str(err.value)
    assert not marker.exists()
