"""posekit.benchmark: timing summaries, conditioned random-weight models and the export cache.

The export itself is replaced by a stand-in that writes the files and counts its calls (the real
export is exercised by test_benchmark_infer.py and test_export.py): what is checked here is when
the cache is reused and when it is rebuilt.
"""
import os
import subprocess
import sys
import types

import numpy as np
import paddle
import pytest

from conftest import ROOT
from posekit.benchmark import export_cache, summary, time_predictor
from posekit.benchmark.models import (calibrate_batchnorm, conditioned_model,
                                      write_calibration_pictures)
from posekit.config import load_config
from posekit.export.quantize import load_calibration_inputs
from posekit.inference.deploy_config import DeployConfig

COCO_SIMPLENET = os.path.join(ROOT, 'experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml')
CALIB_SIZE = (96, 128)


# -- timing ------------------------------------------------------------------------------------

def test_summary_statistics():
    s = summary([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s['median'] == 3.0 and s['min'] == 1.0
    # numpy's linear interpolation: the 10th percentile of 1..5 lies 0.4 of the way from 1 to 2
    assert s['p10'] == pytest.approx(1.4) and s['p90'] == pytest.approx(4.6)
    assert s['samples'] == [5.0, 1.0, 3.0, 2.0, 4.0]  # measurement order is kept
    assert summary([2.0, 4.0])['median'] == 3.0
    assert summary([1.234567])['samples'] == [1.2346]
    with pytest.raises(ValueError):
        summary([])


class CountingRunner:
    """Heatmaps with one peak per joint; counts the batches it is given."""

    def __init__(self, num_joints, heatmap_size):
        self.calls = 0
        w, h = heatmap_size
        self.maps = np.zeros((num_joints, h, w), np.float32)
        for k in range(num_joints):
            self.maps[k, (3 * k) % h, (5 * k) % w] = 1.0

    def __call__(self, batch):
        self.calls += 1
        return np.repeat(self.maps[None], len(batch), axis=0)


def test_time_predictor_interleaves_flip_off_and_on():
    cfg = load_config(COCO_SIMPLENET)
    dc = DeployConfig.from_cfg(cfg)
    runner = CountingRunner(cfg.MODEL.NUM_JOINTS, cfg.MODEL.HEATMAP_SIZE)
    image = np.full((120, 160, 3), 127, np.uint8)
    t = time_predictor(dc, runner, image, [[20, 10, 60, 90]], runs=3, warmup=2)
    # every predict call once without and once with flip test (two runner calls)
    assert runner.calls == (2 + 3) * (1 + 2)
    assert set(t) == {'off', 'on'}
    for flip in ('off', 'on'):
        assert set(t[flip]) == {'e2e', 'inference', 'preprocess', 'decode'}
        for stage in t[flip].values():
            assert len(stage['samples']) == 3
            assert stage['min'] <= stage['median'] <= stage['p90']
        parts = sum(t[flip][s]['median'] for s in ('inference', 'preprocess', 'decode'))
        assert t[flip]['e2e']['min'] >= 0 and parts >= 0


def test_time_predictor_wants_one_person():
    cfg = load_config(COCO_SIMPLENET)
    runner = CountingRunner(cfg.MODEL.NUM_JOINTS, cfg.MODEL.HEATMAP_SIZE)
    with pytest.raises(RuntimeError, match='expected one person, got 2'):
        time_predictor(DeployConfig.from_cfg(cfg), runner, np.zeros((50, 50, 3), np.uint8),
                       [[0, 0, 20, 20], [10, 10, 20, 20]], runs=1, warmup=0)


# -- conditioning ------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def calib_batch(tmp_path_factory):
    cfg = load_config(COCO_SIMPLENET)
    paths = write_calibration_pictures(str(tmp_path_factory.mktemp('calib')), 2, CALIB_SIZE, 1)
    return load_calibration_inputs(paths, DeployConfig.from_cfg(cfg))[0]


def _state(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_calibration_pictures_are_made_once(tmp_path):
    folder = str(tmp_path / 'calib')
    paths = write_calibration_pictures(folder, 3, CALIB_SIZE, 5)
    assert [os.path.basename(p) for p in paths] == ['calib_00.png', 'calib_01.png',
                                                    'calib_02.png']
    before = [os.path.getmtime(p) for p in paths]
    with open(paths[0], 'rb') as f:
        first = f.read()
    assert write_calibration_pictures(folder, 3, CALIB_SIZE, 5) == paths
    assert [os.path.getmtime(p) for p in paths] == before
    os.remove(paths[1])
    write_calibration_pictures(folder, 3, CALIB_SIZE, 5)  # a missing picture is made again
    with open(paths[0], 'rb') as f:
        assert f.read() == first


def test_conditioning_is_deterministic_for_a_seed(calib_batch):
    cfg = load_config(COCO_SIMPLENET)
    a, note = conditioned_model(cfg, calib_batch, seed=0)
    b, _ = conditioned_model(cfg, calib_batch, seed=0)
    c, _ = conditioned_model(cfg, calib_batch, seed=1)
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert sa.keys() == sb.keys()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert any(not np.array_equal(sa[k], sc[k]) for k in sa)
    assert note.startswith('random seeded weights; ') and 'BatchNorm layers' in note
    # the heatmaps of a conditioned model peak near 1, like a trained model's
    with paddle.no_grad():
        peak = float(paddle.abs(a(paddle.to_tensor(calib_batch))).max())
    assert peak == pytest.approx(1.0, rel=1e-3)


def test_batchnorm_gets_the_statistics_of_its_own_input(calib_batch):
    cfg = load_config(COCO_SIMPLENET)
    model = conditioned_model(cfg, calib_batch, seed=0)[0]
    bns = [m for m in model.sublayers() if hasattr(m, '_mean') and hasattr(m, '_variance')]
    first = bns[0]
    seen = {}
    handle = first.register_forward_pre_hook(lambda layer, inputs: seen.update(x=inputs[0].numpy()))
    with paddle.no_grad():
        model(paddle.to_tensor(calib_batch))
    handle.remove()
    x = seen['x']
    assert np.allclose(first._mean.numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert np.allclose(first._variance.numpy(), x.var(axis=(0, 2, 3)), rtol=1e-3, atol=1e-5)
    assert calibrate_batchnorm(model, calib_batch) == len(bns)


# -- the export cache --------------------------------------------------------------------------

class FakeExport:
    """Stands for export_model / quantize_model: writes the files, counts the calls."""

    def __init__(self):
        self.exports = 0
        self.quantizations = 0
        self.fail = None

    def export_model(self, model, cfg, output_dir, fmt='both', opset=11, **kw):
        self.exports += 1
        if self.fail:
            raise RuntimeError(self.fail)
        for name in ('model.onnx', 'model.json'):
            with open(os.path.join(output_dir, name), 'w') as f:
                f.write('export %d' % self.exports)
        return types.SimpleNamespace(notes=['exported %d' % self.exports],
                                     onnx_file=os.path.join(output_dir, 'model.onnx'),
                                     paddle_file=os.path.join(output_dir, 'model.json'),
                                     max_diff=0.0)

    def quantize_model(self, fp32_path, int8_path, calib_dir, deploy_config, threads=None, **kw):
        self.quantizations += 1
        assert os.path.isfile(fp32_path) and len(os.listdir(calib_dir)) == 2
        with open(int8_path, 'w') as f:
            f.write('int8')
        return types.SimpleNamespace(agreement={'median_px': 0.0})


@pytest.fixture
def fake(monkeypatch):
    fake = FakeExport()
    monkeypatch.setattr('posekit.export.exporter.export_model', fake.export_model)
    monkeypatch.setattr('posekit.export.quantize.quantize_model', fake.quantize_model)
    return fake


def _prepare(folder, cfg, want_int8=True):
    key = export_cache.cache_key('SimpleNet', cfg, calib_images=2)
    return key, export_cache.prepare(folder, cfg, key, want_int8=want_int8, calib_size=CALIB_SIZE)


ALL = ['dygraph', 'paddle', 'onnx', 'onnx-int8']


def test_cache_is_reused_when_nothing_changed(tmp_path, fake):
    folder = export_cache.model_dir(str(tmp_path), 'SimpleNet')
    assert folder == os.path.join(str(tmp_path), 'simplenet')
    cfg = load_config(COCO_SIMPLENET)
    key, m = _prepare(folder, cfg)
    assert (fake.exports, fake.quantizations) == (1, 1)
    assert m['export']['onnx'] == 'model.onnx' and m['int8']['onnx'] == 'model_int8.onnx'
    assert m['notes'][0].startswith('random seeded weights') and m['notes'][1] == 'exported 1'
    weights = os.path.join(folder, export_cache.WEIGHTS)
    assert m['weights_sha256'] == export_cache.file_sha256(weights)

    # a second process (the orchestrator) sees a complete folder, from the config alone
    again = export_cache.cache_key('SimpleNet', load_config(COCO_SIMPLENET), calib_images=2)
    assert again == key
    cached = export_cache.cached_manifest(folder, again)
    assert cached == m
    assert not export_cache.needs_prepare(folder, cached, ALL)
    stamp = os.path.getmtime(weights)
    _, m2 = _prepare(folder, cfg)
    assert (fake.exports, fake.quantizations) == (1, 1)
    assert m2 == m and os.path.getmtime(weights) == stamp
    for backend in ALL:
        assert export_cache.precheck_error(m2, backend) is None


def test_cache_is_rebuilt_when_the_weights_change(tmp_path, fake):
    folder = str(tmp_path / 'simplenet')
    cfg = load_config(COCO_SIMPLENET)
    key, m = _prepare(folder, cfg)
    weights = os.path.join(folder, export_cache.WEIGHTS)
    state = paddle.load(weights)
    name = next(k for k in state if k.endswith('weight'))
    state[name] = state[name] * 2
    paddle.save(state, weights)
    new_hash = export_cache.file_sha256(weights)

    cached = export_cache.cached_manifest(folder, key)
    assert cached is not None  # the key still matches: only the export is stale
    assert not export_cache.export_is_current(folder, cached)
    assert export_cache.needs_prepare(folder, cached, ['onnx'])
    assert not export_cache.needs_prepare(folder, cached, ['dygraph'])
    _, m2 = _prepare(folder, cfg)
    assert (fake.exports, fake.quantizations) == (2, 2)
    # the changed weights are kept and exported, not replaced by new random ones
    assert export_cache.file_sha256(weights) == new_hash
    assert m2['weights_sha256'] == m2['export']['weights_sha256'] == new_hash
    assert m2['int8']['weights_sha256'] == new_hash
    assert m2['notes'] == [m['notes'][0], 'exported 2']
    assert not export_cache.needs_prepare(folder, m2, ALL)


def test_cache_is_rebuilt_when_the_config_changes(tmp_path, fake):
    folder = str(tmp_path / 'simplenet')
    key, m = _prepare(folder, load_config(COCO_SIMPLENET), want_int8=False)
    weights = os.path.join(folder, export_cache.WEIGHTS)
    # int8 is made only when asked for, from the current export
    assert m['int8'] is None and fake.quantizations == 0
    assert export_cache.needs_prepare(folder, m, ['onnx-int8'])

    cfg2 = load_config(COCO_SIMPLENET, ['MODEL.EXTRA.NUM_DECONV_FILTERS', '[128,128,128]'])
    key2 = export_cache.cache_key('SimpleNet', cfg2, calib_images=2)
    assert key2['config'] != key['config']
    assert export_cache.cached_manifest(folder, key2) is None
    assert export_cache.needs_prepare(folder, None, ['dygraph'])
    _, m2 = _prepare(folder, cfg2)
    assert (fake.exports, fake.quantizations) == (2, 1)
    assert m2['key'] == key2 and m2['weights_sha256'] != m['weights_sha256']
    assert export_cache.file_sha256(weights) == m2['weights_sha256']
    # the new weights fit the new config
    assert paddle.load(weights)['final_layer.weight'].shape[1] == 128

    # a different seed or number of calibration pictures is another key as well
    assert export_cache.cache_key('SimpleNet', cfg2, seed=1, calib_images=2) != key2
    assert export_cache.cache_key('SimpleNet', cfg2, calib_images=3) != key2


def test_a_failed_export_is_recorded_and_retried(tmp_path, fake):
    folder = str(tmp_path / 'simplenet')
    cfg = load_config(COCO_SIMPLENET)
    fake.fail = 'Paddle2ONNX Error: unsupported op /some/long/path/op.cc'
    key, m = _prepare(folder, cfg)
    assert m['export'] is None and m['int8'] is None and fake.quantizations == 0
    assert m['export_error'] == 'export: Paddle2ONNX Error: unsupported op op.cc'
    assert export_cache.precheck_error(m, 'onnx') == m['export_error']
    assert export_cache.precheck_error(m, 'onnx-int8') == m['export_error']
    assert export_cache.precheck_error(m, 'dygraph') is None
    assert export_cache.needs_prepare(folder, m, ['onnx'])
    fake.fail = None
    _, m2 = _prepare(folder, cfg)
    assert m2['export_error'] is None and m2['export']['onnx'] == 'model.onnx'
    assert export_cache.precheck_error(m2, 'onnx-int8') is None


def test_orchestrating_needs_no_paddle():
    code = ('import sys; import posekit.tools.benchmark_infer, posekit.benchmark.export_cache; '
            'assert "paddle" not in sys.modules, "paddle imported"')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
