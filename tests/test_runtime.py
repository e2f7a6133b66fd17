"""The runner contract of posekit.runtime: chunking of fixed-batch models, the dygraph runner's
train/eval bookkeeping, open_runner's choice of runtime, and an ONNX path free of Paddle."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from posekit.errors import PosekitInputError
from posekit.runtime import (ModelLoadError, OnnxRunner, PaddleInferenceRunner, Runner,
                             RunnerInputError, build_runner, check_shapes, exported_kind,
                             open_runner, runner_kind)


def tiny_onnx(path, batch=1, joints=2, height=8, width=6):
    """A 1x1 convolution 3 -> ``joints`` channels: image (batch, 3, H, W) -> heatmaps."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.RandomState(0)
    weight = numpy_helper.from_array(rng.standard_normal((joints, 3, 1, 1)).astype(np.float32),
                                     'w')
    graph = helper.make_graph(
        [helper.make_node('Conv', ['image', 'w'], ['heatmaps'])], 'tiny',
        [helper.make_tensor_value_info('image', TensorProto.FLOAT, [batch, 3, height, width])],
        [helper.make_tensor_value_info('heatmaps', TensorProto.FLOAT,
                                       [batch, joints, height, width])],
        initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 11)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return str(path), numpy_helper.to_array(weight)[:, :, 0, 0]


class FixedBatchRunner(Runner):
    """A fake backend whose graph takes exactly 2 samples; records the batches it was given."""
    name = 'fixed.onnx'
    input_shape = [2, 3, 4, 4]
    output_shape = [2, 1, 4, 4]

    def __init__(self):
        self.seen = []

    def _run(self, batch):
        assert batch.shape[0] == 2 and batch.dtype == np.float32 and batch.flags.c_contiguous
        self.seen.append(batch.copy())
        return batch.sum(axis=1, keepdims=True) + 1.0


def test_fixed_batch_is_run_in_chunks():
    runner = FixedBatchRunner()
    assert not runner.dynamic_batch
    batch = np.random.RandomState(1).standard_normal((5, 3, 4, 4))  # float64: converted
    out = runner(batch)
    assert out.dtype == np.float32 and out.shape == (5, 1, 4, 4)
    np.testing.assert_array_equal(out, batch.astype(np.float32).sum(axis=1, keepdims=True) + 1)
    assert len(runner.seen) == 3
    np.testing.assert_array_equal(runner.seen[2][1], 0)  # the last chunk is zero-padded
    assert runner(np.zeros((0, 3, 4, 4), np.float32)).shape == (0, 1, 4, 4)
    with pytest.raises(RunnerInputError, match='expects 2x3x4x4 input'):
        runner(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(RunnerInputError, match='add a batch axis'):
        runner(np.zeros((3, 4, 4), np.float32))


def test_onnx_model_with_batch_1_takes_any_batch(tmp_path):
    path, weight = tiny_onnx(tmp_path / 'fixed.onnx', batch=1)
    runner = OnnxRunner(path, threads=1)
    assert runner.input_shape == [1, 3, 8, 6] and runner.output_shape == [1, 2, 8, 6]
    assert (runner.name, runner.model_path, runner.input_name, runner.threads) == \
        ('fixed.onnx', path, 'image', 1)
    batch = np.random.RandomState(2).standard_normal((3, 3, 8, 6)).astype(np.float32)
    out = runner(batch)
    assert out.shape == (3, 2, 8, 6)
    np.testing.assert_allclose(out, np.einsum('kc,bchw->bkhw', weight, batch), atol=1e-5)


def test_dygraph_runner_restores_each_layers_mode():
    import paddle
    from posekit.runtime import DygraphRunner
    paddle.seed(0)

    class Net(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 4, 1)
            self.bn = paddle.nn.BatchNorm2D(4)
            self.drop = paddle.nn.Dropout(0.5)
            self.head = paddle.nn.Conv2D(4, 2, 1)

        def forward(self, image):
            features = self.drop(self.bn(self.conv(image)))
            return [features, self.head(features)]  # the last map is the heatmap

    net = Net()
    x = np.random.RandomState(3).standard_normal((2, 3, 8, 6)).astype(np.float32)
    net.eval()
    with paddle.no_grad():
        expected = net(paddle.to_tensor(x))[-1].numpy()
    net.train()
    net.drop.eval()  # a layer frozen on its own keeps its own mode
    stats = net.bn._mean.numpy().copy()
    runner = DygraphRunner(net, input_size=[6, 8])
    assert runner.output_shape == [None, 2, 8, 6] and runner.threads is None
    out = runner(x)
    np.testing.assert_array_equal(out, expected)  # eval mode: no dropout, running BN stats
    assert net.training and net.conv.training and net.bn.training and not net.drop.training
    np.testing.assert_array_equal(net.bn._mean.numpy(), stats)  # no statistics were updated
    assert out.dtype == np.float32 and paddle.is_grad_enabled()
    net.eval()
    np.testing.assert_array_equal(runner(x), expected)
    assert not net.training and not net.bn.training


def test_open_runner_tells_the_runtime_from_the_path(tmp_path):
    path, _ = tiny_onnx(tmp_path / 'model_int8.onnx')
    assert isinstance(open_runner(path, threads=1), OnnxRunner)
    assert isinstance(open_runner(str(tmp_path), threads=1), OnnxRunner)  # its folder
    # an explicit kind wins over the file name
    odd = tmp_path / 'weights.bin'
    odd.write_bytes(open(path, 'rb').read())
    assert isinstance(open_runner(str(odd), kind='ONNX', threads=1), OnnxRunner)

    paddle_dir = tmp_path / 'paddle'
    paddle_dir.mkdir()
    for name in ('model.json', 'model.pdiparams'):
        (paddle_dir / name).write_text('x')
    for p in ('model.json', 'model.pdiparams', 'model', ''):
        assert runner_kind(str(paddle_dir / p)) == 'paddle', p
    assert exported_kind(str(tmp_path / 'old.pdmodel')) == 'paddle'
    assert exported_kind(str(tmp_path / 'model.pdparams')) is None
    with pytest.raises(ModelLoadError, match='cannot load Paddle model'):
        open_runner(str(paddle_dir))  # Paddle Inference was chosen and read the bad file


@pytest.mark.parametrize('case', ['unknown file', 'missing', 'checkpoint', 'empty folder',
                                  'unknown kind'])
def test_open_runner_errors_are_one_line(case, tmp_path):
    target = {'unknown file': tmp_path / 'notes.txt', 'missing': tmp_path / 'gone.onnx.bak',
              'checkpoint': tmp_path / 'final_state.pdparams', 'empty folder': tmp_path / 'e',
              'unknown kind': tmp_path / 'model.onnx'}[case]
    if case == 'empty folder':
        target.mkdir()
    elif case != 'missing':
        target.write_text('x')
    expect = {'unknown file': 'cannot tell which runtime runs', 'missing': 'model not found',
              'checkpoint': 'weights only', 'empty folder': 'holds no exported model',
              'unknown kind': "unknown runtime 'tensorrt'; use one of: onnx, paddle"}[case]
    with pytest.raises(ModelLoadError) as info:
        open_runner(str(target), kind='tensorrt' if case == 'unknown kind' else None)
    message = str(info.value)
    assert expect in message and '\n' not in message, message
    assert isinstance(info.value, PosekitInputError) and isinstance(info.value, ValueError)


def test_build_runner_keeps_its_signature(tmp_path):
    path, _ = tiny_onnx(tmp_path / 'model.onnx', batch=None)
    runner = build_runner('onnx', path, threads=1)
    assert runner.dynamic_batch and runner(np.zeros((3, 3, 8, 6), np.float32)).shape[0] == 3
    with pytest.raises(ModelLoadError, match='Paddle model not found'):
        build_runner('paddle', path)
    assert PaddleInferenceRunner.__module__ == 'posekit.runtime.paddle_inference'


def test_check_shapes_names_the_source(tmp_path):
    path, _ = tiny_onnx(tmp_path / 'model.onnx')
    runner = OnnxRunner(path, threads=1)
    check_shapes(runner, [6, 8], [6, 8], 2, 'the config')
    with pytest.raises(ModelLoadError, match=r'^model.onnx expects 1x3x8x6 input but the config '
                                             r'says 8x8 \[W,H\]; model.onnx outputs 2 joints but '
                                             r'the config lists 17$'):
        check_shapes(runner, [8, 8], [6, 8], 17, 'the config')


def test_onnx_runtime_imports_and_runs_without_paddle(tmp_path):
    path, _ = tiny_onnx(tmp_path / 'model.onnx')
    code = textwrap.dedent('''
        import sys

        class NoPaddle:
            def find_spec(self, name, path=None, target=None):
                if name == 'paddle' or name.startswith('paddle.'):
                    raise ImportError('paddle is blocked in this test')

        sys.meta_path.insert(0, NoPaddle())
        try:
            import paddle
        except ImportError:
            pass
        else:
            raise SystemExit('the block does not work')
        import posekit.runtime.onnx
        import posekit.runtime
        import numpy as np
        runner = posekit.runtime.open_runner(sys.argv[1], threads=1)
        assert runner(np.zeros((2, 3, 8, 6), np.float32)).shape == (2, 2, 8, 6)
        assert not [m for m in sys.modules if m == 'paddle' or m.startswith('paddle.')]
        print('ok')
    ''')
    proc = subprocess.run([sys.executable, '-c', code, path], capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0 and proc.stdout.strip() == 'ok', proc.stderr
