"""Export (REFERENCE_SPEC 7.5, 10.13; LANDSCAPE 5.3/5.4) and the runtimes of posekit.runtime.

Every model family is exported at opset 11 from a small variant (128x96 input) with seeded random
weights - BatchNorm statistics far from 0/1 so that a BN folding error would show - and the ONNX
Runtime and Paddle Inference heatmaps must match the dygraph model within 1e-4. The final layer is
scaled so that heatmaps peak near 1, like a trained model's, which makes 1e-4 an absolute bound.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import ROOT, require_fixtures
from posekit.config import load_config
from posekit.inference.deploy_config import DEPLOY_CONFIG_NAME, DeployConfig
from posekit.export.exporter import (CONFIG_NAME, ONNX_NAME, PARITY_TOL, ExportError, ParityError,
                                     default_output_dir, export_model)
from posekit.export.onnx_model import tidy_onnx
from posekit.models import build_model
from posekit.runtime import (DygraphRunner, ModelLoadError, OnnxRunner, PaddleInferenceRunner,
                             build_runner, check_io, paddle_model_files)

SMALL = ['MODEL.IMAGE_SIZE', '96,128', 'MODEL.HEATMAP_SIZE', '24,32']
FAMILIES = {
    'pose_resnet': ('experiments/coco/resnet18/256x192_d256x3_adam_lr1e-3.yaml', SMALL),
    # LPN-50 with the GC attention block and the grouped-deconvolution head
    'lpn': ('experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml', SMALL),
    # HRNet needs input sides divisible by 32
    'pose_hrnet': ('experiments/coco/hrnet/w18_small_v2_256x192_adam_lr1e-3.yaml', SMALL),
    'simplenet': ('experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml', SMALL),
}


def small_cfg(family):
    cfg_file, opts = FAMILIES[family]
    return load_config(os.path.join(ROOT, cfg_file), opts)


def seeded_init(model, seed=0):
    """Deterministic non-trivial weights; heatmaps scaled to peak around 1."""
    rng = np.random.RandomState(seed)
    state = {}
    for key, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if key.endswith('_variance'):
            value = rng.uniform(0.5, 2.0, shape)
        elif key.endswith('_mean'):
            value = rng.normal(0.0, 0.2, shape)
        elif len(shape) == 1:
            value = (rng.uniform(0.5, 1.5, shape) if key.endswith('weight')
                     else rng.normal(0, 0.1, shape))
        else:
            value = rng.normal(0.0, 1.0 / np.sqrt(max(1, int(np.prod(shape[1:])))), shape)
        state[key] = value.astype(np.float32)
    model.set_state_dict(state)
    model.eval()
    x = paddle.to_tensor(rng.standard_normal((1, 3, 128, 96)).astype(np.float32))
    with paddle.no_grad():
        peak = float(paddle.abs(model(x)).max())
    final = model.final_layer
    final.weight.set_value(final.weight.numpy() / peak)
    if final.bias is not None:
        final.bias.set_value(final.bias.numpy() / peak)
    return model


def seeded_model(family, seed=0):
    cfg = small_cfg(family)
    return cfg, seeded_init(build_model(cfg), seed)


PROBE = np.random.RandomState(11).standard_normal((1, 3, 128, 96)).astype(np.float32)


class Exports:
    """Each family exported once per module, on first use: (cfg, model, result, output before)."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._done = {}

    def __getitem__(self, family):
        if family not in self._done:
            cfg, model = seeded_model(family)
            with paddle.no_grad():
                before = model(paddle.to_tensor(PROBE)).numpy()
            out = str(self._tmp.mktemp('export_' + family))
            result = export_model(model, cfg, out, fmt='both', opset=11)
            self._done[family] = (family, cfg, model, result, before)
        return self._done[family]


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
    return Exports(tmp_path_factory)


@pytest.fixture(params=sorted(FAMILIES))
def exported(request, exports):
    return exports[request.param]


def test_every_family_exports_at_opset_11_with_parity(exported):
    import onnx
    family, cfg, _, result, _ = exported
    assert len(result.parity) == 4  # 2 runtimes x (random, picture)
    for label, key, shape, diff, peak in result.parity:
        assert shape == (1, 3, 128, 96)
        assert 0.2 < peak < 5.0, (label, key, peak)  # scaled like a trained model
        assert diff <= PARITY_TOL, (family, label, key, diff)
    model = onnx.load(result.onnx_file)
    assert [o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')] == [11]
    assert [i.name for i in model.graph.input] == ['image']
    assert [o.name for o in model.graph.output] == ['heatmaps']
    ops = {n.op_type for n in model.graph.node}
    assert 'ArgMax' not in ops and 'Constant' not in ops and 'Identity' not in ops
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 128, 96]  # [W, H] = [96, 128] read the right way round (10.13)


def test_written_files_and_deploy_config_round_trip(exported):
    family, cfg, _, result, _ = exported
    names = sorted(os.path.basename(f) for f in result.files)
    assert names == sorted([ONNX_NAME, 'model.json', 'model.pdiparams', DEPLOY_CONFIG_NAME,
                            CONFIG_NAME])
    assert all(os.path.isfile(f) for f in result.files)
    dc = DeployConfig.load(os.path.join(result.output_dir, DEPLOY_CONFIG_NAME))
    assert dc == DeployConfig.from_cfg(cfg)
    assert dc.input_size == [96, 128] and dc.heatmap_size == [24, 32] and dc.num_joints == 17
    assert (dc.input_name, dc.output_name) == ('image', 'heatmaps')
    assert load_config(os.path.join(result.output_dir, CONFIG_NAME)).MODEL.NAME == family


def test_runners_agree_and_fit_the_deploy_config(exported):
    family, cfg, model, result, _ = exported
    dc = result.deploy_config
    onnx_runner = build_runner('ONNX', result.output_dir, threads=1)  # a folder is accepted
    paddle_runner = build_runner('paddle', result.output_dir, threads=1)
    dygraph = DygraphRunner(model, input_size=dc.input_size)
    for runner in (onnx_runner, paddle_runner, dygraph):
        check_io(runner, dc)
        assert runner.input_shape[1:] == [3, 128, 96]
        assert runner.output_shape[1:] == [17, 32, 24]
    assert not onnx_runner.dynamic_batch and not paddle_runner.dynamic_batch
    assert onnx_runner.input_name == 'image'
    # a fixed-batch model still takes any batch: it is run in chunks
    batch = np.random.RandomState(5).standard_normal((3, 3, 128, 96)).astype(np.float32)
    ref = dygraph(batch)
    assert ref.shape == (3, 17, 32, 24)
    for runner in (onnx_runner, paddle_runner):
        out = runner(batch)
        assert out.dtype == np.float32 and out.shape == ref.shape
        assert np.abs(out - ref).max() <= PARITY_TOL
    # HRNet's upsampling and LPN's GC LayerNorm are traced so that oneDNN runs them too
    assert paddle_runner.onednn and paddle_runner.onednn_note is None and not result.notes


def test_export_leaves_the_model_usable(exported):
    family, _, model, _, before = exported
    # the layers traced differently (HRNet Upsample, LPN LayerNorm) got their own forward back,
    # and the model is still a dygraph layer computing what it computed before the export
    assert all('forward' not in layer.__dict__ for layer in model.sublayers(include_self=True))
    assert not isinstance(model.forward, paddle.jit.dy2static.program_translator.StaticFunction)
    with paddle.no_grad():
        np.testing.assert_array_equal(model(paddle.to_tensor(PROBE)).numpy(), before)


def test_paddle_runner_falls_back_to_plain_kernels(tmp_path):
    """A model traced as is (no export-friendly layers) hits Paddle 3.3.1's oneDNN LayerNorm
    limit; the runner notices at creation and runs it on plain CPU kernels instead."""
    paddle.seed(3)

    class Net(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 4, 1)
            self.norm = paddle.nn.LayerNorm([4, 1, 1])

        def forward(self, image):
            pooled = paddle.nn.functional.adaptive_avg_pool2d(self.conv(image), 1)
            return self.norm(pooled) + image[:, :1]

    net = Net()
    net.eval()
    spec = [paddle.static.InputSpec([1, 3, 8, 6], 'float32', name='image')]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True),
                    str(tmp_path / 'model'))
    runner = PaddleInferenceRunner(str(tmp_path / 'model.json'), threads=1)
    assert not runner.onednn and 'Layer Norm' in runner.onednn_note
    x = np.random.RandomState(0).standard_normal((2, 3, 8, 6)).astype(np.float32)
    with paddle.no_grad():
        ref = net(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(runner(x), ref, atol=1e-5)
    assert PaddleInferenceRunner(str(tmp_path), threads=1, mkldnn=False).onednn_note is None


def test_dynamic_batch_accepts_batch_3(tmp_path):
    cfg, model = seeded_model('simplenet', seed=2)
    result = export_model(model, cfg, str(tmp_path), fmt='both', dynamic_batch=True)
    assert all(shape[0] == 3 for _, _, shape, _, _ in result.parity)  # checked on batch 3
    assert result.max_diff <= PARITY_TOL
    batch = np.random.RandomState(1).standard_normal((3, 3, 128, 96)).astype(np.float32)
    ref = DygraphRunner(model)(batch)
    for runner in (OnnxRunner(str(tmp_path / ONNX_NAME), threads=1),
                   PaddleInferenceRunner(str(tmp_path / 'model'), threads=1)):
        assert runner.dynamic_batch and runner.input_shape == [None, 3, 128, 96]
        assert runner.output_shape == [None, 17, 32, 24]
        out = runner(batch)
        assert out.shape == (3, 17, 32, 24)
        assert np.abs(out - ref).max() <= PARITY_TOL


def test_onnx_only_export_keeps_no_paddle_model(tmp_path):
    cfg, model = seeded_model('simplenet', seed=3)
    for stale in ('model.json', 'model.pdiparams', 'model_int8.onnx'):  # an earlier export's
        (tmp_path / stale).write_text('old')
    (tmp_path / 'notes.txt').write_text('kept')
    result = export_model(model, cfg, str(tmp_path), fmt='onnx')
    assert sorted(os.listdir(tmp_path)) == sorted([ONNX_NAME, DEPLOY_CONFIG_NAME, CONFIG_NAME,
                                                   'notes.txt'])
    assert result.notes == ['removed the files of an earlier export: model_int8.onnx, '
                            'model.json, model.pdiparams']
    (tmp_path / 'notes.txt').unlink()
    assert {r[0] for r in result.parity} == {'onnxruntime', 'paddle inference'}
    with pytest.raises(ModelLoadError, match='no Paddle inference model'):
        PaddleInferenceRunner(str(tmp_path))


def test_parity_failure_names_the_difference(tmp_path):
    cfg, model = seeded_model('simplenet', seed=4)
    with pytest.raises(ParityError, match=r'max abs difference [0-9.e-]+ > 1e-12 .*; nothing '
                                          r'was written to '):
        export_model(model, cfg, str(tmp_path), fmt='onnx', tol=1e-12)
    # checked before anything reaches the folder (tests/test_export_atomic.py: over an export)
    assert os.listdir(tmp_path) == []
    assert not [n for n in os.listdir(tmp_path.parent) if n.startswith('.%s.' % tmp_path.name)]


def test_export_arguments_are_checked(tmp_path):
    cfg, model = seeded_model('simplenet')
    with pytest.raises(ExportError, match='unknown export format'):
        export_model(model, cfg, str(tmp_path), fmt='tflite')
    with pytest.raises(ExportError, match='opset 9 is too old'):
        export_model(model, cfg, str(tmp_path), opset=9)
    with pytest.raises(ExportError, match=r'opset 22 is newer than paddle2onnx supports'):
        export_model(model, cfg, str(tmp_path), opset=22)  # paddle2onnx would abort the process


def test_default_output_dir():
    cfg_file = os.path.join(ROOT, FAMILIES['lpn'][0])
    cfg = load_config(cfg_file)
    assert default_output_dir(cfg, cfg_file) == os.path.join(
        'output', 'export', 'coco', 'lpn', 'lpn50_256x192_gd256x2_gc')
    cfg = load_config(cfg_file, SMALL)
    assert default_output_dir(cfg, cfg_file).endswith('lpn50_256x192_gd256x2_gc_96x128')


def test_tidy_onnx_folds_constants_and_identities():
    import onnx
    from onnx import TensorProto, helper
    w = helper.make_tensor('w', TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(
        [helper.make_node('Constant', [], ['c'], value=w),
         helper.make_node('Constant', [], ['unused'], value=w),
         helper.make_node('Identity', ['x'], ['x1']),
         helper.make_node('Mul', ['x1', 'c'], ['y']),
         helper.make_node('Identity', ['y'], ['fetch_name_0'])],
        'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info('fetch_name_0', TensorProto.FLOAT, [1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 11)])
    tidy_onnx(model, input_name='image', output_name='heatmaps', dynamic_batch=True)
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ['Mul']
    assert list(model.graph.node[0].input) == ['image', 'c']
    assert list(model.graph.node[0].output) == ['heatmaps']
    assert [t.name for t in model.graph.initializer] == ['c']
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == 'batch'
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    assert sess.run(None, {'image': np.array([[3.0]], np.float32)})[0][0, 0] == 6.0


# ---- runtime errors ---------------------------------------------------------------------------

def test_runtime_errors_are_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match='ONNX model not found'):
        OnnxRunner(str(tmp_path / 'missing.onnx'))
    bad = tmp_path / 'bad.onnx'
    bad.write_text('this is not a protobuf')
    with pytest.raises(ModelLoadError, match='cannot load ONNX model') as info:
        OnnxRunner(str(bad))
    assert '\n' not in str(info.value)
    with pytest.raises(ModelLoadError, match='Paddle model not found'):
        PaddleInferenceRunner(str(tmp_path / 'nothing'))
    (tmp_path / 'm.json').write_text('not json')
    (tmp_path / 'm.pdiparams').write_bytes(b'x')
    assert paddle_model_files(str(tmp_path / 'm.pdiparams')) == (str(tmp_path / 'm.json'),
                                                                 str(tmp_path / 'm.pdiparams'))
    with pytest.raises(ModelLoadError, match='cannot load Paddle model') as info:
        PaddleInferenceRunner(str(tmp_path / 'm'))
    assert '\n' not in str(info.value)
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        build_runner('tensorrt', str(bad))


def test_check_io_names_the_mismatch(exports):
    result = exports['simplenet'][3]
    runner = OnnxRunner(result.onnx_file, threads=1)
    other = DeployConfig.from_cfg(load_config(os.path.join(ROOT, FAMILIES['simplenet'][0])))
    with pytest.raises(ModelLoadError, match=r'model.onnx expects 1x3x128x96 input but '
                                             r'deploy_config.json says 192x256 \[W,H\]'):
        check_io(runner, other)
    mpii = DeployConfig.from_cfg(load_config(
        os.path.join(ROOT, 'experiments/mpii/mobile/256x256_d256x3_adam_lr1e-3.yaml'),
        SMALL + ['MODEL.NUM_JOINTS', '16']))
    with pytest.raises(ModelLoadError, match='outputs 17 joints but deploy_config.json lists 16'):
        check_io(runner, mpii)
    with pytest.raises(ValueError, match='expects 1x3x128x96 input'):
        runner(np.zeros((1, 3, 64, 48), np.float32))


# ---- command line -----------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'pose_estimation', 'export.py')]
                          + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def load_cli():
    """The module behind pose_estimation/export.py, for in-process runs of its main()."""
    from posekit.tools import export
    return export


def save_weights(model, path):
    paddle.save(model.state_dict(), str(path))
    return str(path)


def test_cli_exports_with_dynamic_batch(tmp_path):
    cfg, model = seeded_model('simplenet', seed=6)
    weights = save_weights(model, tmp_path / 'w.pdparams')
    out = tmp_path / 'out'
    proc = run_cli('--cfg', os.path.join(ROOT, FAMILIES['simplenet'][0]), '--model-file', weights,
                   '--output', out, '--dynamic-batch', '--threads', '1', *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert 'parity' in proc.stdout and 'Traceback' not in proc.stderr
    assert sorted(os.listdir(out)) == sorted(['model.onnx', 'model.json', 'model.pdiparams',
                                              DEPLOY_CONFIG_NAME, CONFIG_NAME])
    runner = OnnxRunner(str(out / ONNX_NAME), threads=1)
    assert runner.dynamic_batch
    assert runner(np.zeros((3, 3, 128, 96), np.float32)).shape == (3, 17, 32, 24)


def test_cli_checkpoint_that_does_not_fit_is_one_line(tmp_path):
    _, model = seeded_model('simplenet')
    weights = save_weights(model, tmp_path / 'simplenet.pdparams')
    proc = run_cli('--cfg', os.path.join(ROOT, FAMILIES['pose_resnet'][0]), '--model-file', weights,
                   '--output', tmp_path / 'out', *SMALL)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('export: error: checkpoint') and 'does not fit the model' in lines[0]
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('case', ['missing weights', 'no weights', 'empty calib dir',
                                  'calib without quantize', 'paddle int8'])
def test_cli_bad_input_is_one_line(case, tmp_path, capsys):
    cli = load_cli()
    cfg_file = os.path.join(ROOT, FAMILIES['simplenet'][0])
    empty = tmp_path / 'empty'
    empty.mkdir()
    args = {'missing weights': ['--model-file', str(tmp_path / 'nope.pdparams')],
            'no weights': [],
            'empty calib dir': ['--model-file', 'x', '--quantize', 'int8',
                                '--calib-dir', str(empty)],
            'calib without quantize': ['--model-file', 'x', '--calib-dir', str(empty)],
            'paddle int8': ['--format', 'paddle', '--quantize', 'int8', '--calib-dir', str(empty)]}
    expect = {'missing weights': 'model file not found', 'no weights': 'give --model-file',
              'empty calib dir': 'no images', 'calib without quantize': 'only used with',
              'paddle int8': 'use --format onnx or both'}
    assert cli.main(['--cfg', cfg_file, '--output', str(tmp_path / 'o')] + args[case]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('export: error: ') and expect[case] in err[0], err


# ---- real weights (shared fixture) -------------------------------------------------------------

def test_real_simplenet_checkpoint_exports_with_parity(tmp_path):
    from posekit.checkpoint import load_checkpoint
    ckpt = require_fixtures('real', 'simplenet_coco_256x192_model_best.pth.tar')
    cfg = load_config(os.path.join(ROOT, FAMILIES['simplenet'][0]))
    model = build_model(cfg)
    load_checkpoint(model, ckpt)
    result = export_model(model, cfg, str(tmp_path), fmt='both')
    assert result.max_diff <= PARITY_TOL
    # the picture input gives a real heatmap response, not noise
    assert max(r[4] for r in result.parity if r[1] == 'image') > 0.2
