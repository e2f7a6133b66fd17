"""Static int8 quantisation (LANDSCAPE 5.2): calibration images, crops, QDQ model, agreement.

The calibration images are drawn by the tests (shapes on a gradient, cv2) into a tmp folder;
the model is a small PoseResNet-18 (128x96) with seeded weights, exported by posekit.export.exporter.
"""
import os
import re

import cv2
import numpy as np
import pytest

from conftest import ROOT, require_fixtures
from posekit.inference.deploy_config import DeployConfig
from posekit.export.quantize import (INT8_NAME, QuantizeError, calibration_images, heatmap_agreement,
                              int8_advice, load_calibration_inputs, quantize_model)
from posekit.runtime import OnnxRunner
from posekit.codec.transforms import box_to_center_scale, crop, normalize
from test_export import FAMILIES, seeded_model


def draw_image(path, seed, size=(160, 220)):
    rng = np.random.RandomState(seed)
    w, h = size
    ramp = np.linspace(40, 200, w, dtype=np.float32)[None, :, None]
    img = np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8).copy()
    for _ in range(6):
        color = tuple(int(c) for c in rng.randint(0, 256, 3))
        cx, cy = int(rng.randint(0, w)), int(rng.randint(0, h))
        if rng.rand() < 0.5:
            cv2.circle(img, (cx, cy), int(rng.randint(5, 40)), color, -1)
        else:
            corner = (cx + int(rng.randint(5, 50)), cy + int(rng.randint(5, 80)))
            cv2.rectangle(img, (cx, cy), corner, color, -1)
    cv2.line(img, (w // 2, h // 5), (w // 2, h * 3 // 5), (20, 20, 230), 6)
    assert cv2.imwrite(str(path), img)
    return str(path)


@pytest.fixture(scope='module')
def ort_quantization():
    """onnxruntime.quantization imports ml_dtypes, which onnxruntime does not install."""
    try:
        from onnxruntime import quantization  # noqa: F401
    except ImportError as e:
        pytest.skip('onnxruntime.quantization unavailable (%s): pip install ml_dtypes' % e)


@pytest.fixture(scope='module')
def calib_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('calib')
    for i in range(6):
        draw_image(folder / ('img_%02d.%s' % (i, 'png' if i % 2 else 'jpg')), i)
    (folder / 'notes.txt').write_text('not an image')
    (folder / 'zz_broken.jpg').write_bytes(b'not a jpeg at all')
    return str(folder)


@pytest.fixture(scope='module')
def exported_r18(tmp_path_factory):
    from posekit.export.exporter import export_model
    cfg, model = seeded_model('pose_resnet', seed=7)
    out = str(tmp_path_factory.mktemp('r18'))
    result = export_model(model, cfg, out, fmt='onnx', check=False)
    return result


def test_calibration_images(calib_dir, tmp_path):
    files = calibration_images(calib_dir)
    assert [os.path.basename(f) for f in files] == ['img_%02d.%s' % (i, 'png' if i % 2 else 'jpg')
                                                    for i in range(6)] + ['zz_broken.jpg']
    assert len(calibration_images(calib_dir, 2)) == 2
    with pytest.raises(QuantizeError, match='calibration folder not found'):
        calibration_images(str(tmp_path / 'nope'))
    with pytest.raises(QuantizeError, match='no images'):
        calibration_images(str(tmp_path))
    with pytest.raises(QuantizeError, match='--calib-dir'):
        calibration_images('')
    with pytest.raises(QuantizeError, match='must be positive'):
        calibration_images(calib_dir, 0)
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'a.jpg').write_bytes(b'xx')
    with pytest.raises(QuantizeError, match='none of the 1 calibration images could be read'):
        load_calibration_inputs(calibration_images(str(broken)), DeployConfig.from_cfg(
            seeded_model('pose_resnet')[0]))


def test_whole_image_crop_is_the_library_preprocessing(calib_dir):
    dc = DeployConfig.from_cfg(seeded_model('pose_resnet')[0])
    image = cv2.imread(calibration_images(calib_dir)[0])
    x = dc.input_spec.prepare(image)[0][0]
    assert x.shape == (3, 128, 96) and x.dtype == np.float32
    center, scale = box_to_center_scale(0, 0, image.shape[1], image.shape[0], 96 / 128.0)
    spec = dc.input_spec
    expected = normalize(crop(image, center, scale, 0, [96, 128]), spec.color_rgb,
                         spec.pixel_scale, spec.mean, spec.std)
    np.testing.assert_array_equal(x, expected)
    inputs, used, skipped = load_calibration_inputs(calibration_images(calib_dir), dc)
    assert inputs.shape == (6, 3, 128, 96)
    assert len(used) == 6 and [os.path.basename(p) for p in skipped] == ['zz_broken.jpg']


def test_heatmap_agreement_counts_moved_joints():
    hm = np.zeros((2, 3, 8, 6), np.float32)
    hm[:, :, 4, 3] = 1.0
    hm[1, 2, 4, 3] = 0.1  # an unconfident joint
    other = hm.copy()
    other[0, 1, 4, 3], other[0, 1, 1, 3] = 0.0, 1.0  # argmax moved 3 px up
    other[1, 2, 4, 3], other[1, 2, 4, 4] = 0.0, 0.1  # unconfident joint moved 1 px
    a = heatmap_agreement(hm, other)
    assert a['num_joints'] == 6
    assert a['max_px'] == pytest.approx(3.0) and a['mean_px'] == pytest.approx(4.0 / 6)
    assert a['moved_share'] == pytest.approx(2.0 / 6)
    assert a['confident_joints'] == 5 and a['confident_max_px'] == pytest.approx(3.0)
    assert a['confident_mean_px'] == pytest.approx(3.0 / 5)
    assert heatmap_agreement(hm, hm)['max_px'] == 0.0
    with pytest.raises(ValueError, match='shapes differ'):
        heatmap_agreement(hm, hm[:1])


def test_int8_advice_follows_the_measurement():
    assert int8_advice(20.0, 10.0).startswith('int8 is 2.0x faster (fp32 20.00 ms, int8 10.00 ms')
    assert int8_advice(10.0, 10.4).startswith('int8 is not faster')
    assert int8_advice(10.0, 15.0).startswith('int8 is 1.5x slower')
    for text in (int8_advice(20.0, 10.0), int8_advice(10.0, 15.0)):
        assert text.endswith('measure its accuracy with valid.py --model-file model_int8.onnx')

def test_quantize_static_qdq_int8(ort_quantization, exported_r18, calib_dir, tmp_path):
    import onnx
    dc = exported_r18.deploy_config
    int8_path = str(tmp_path / INT8_NAME)
    report = quantize_model(exported_r18.onnx_file, int8_path, calib_dir, dc, threads=1)
    model = onnx.load(int8_path)
    ops = [n.op_type for n in model.graph.node]
    assert 'QuantizeLinear' in ops and 'DequantizeLinear' in ops
    # per-channel weight scales: DequantizeLinear with 'axis' needs opset 13
    assert max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')) >= 13
    assert [i.name for i in model.graph.input] == ['image']
    assert [o.name for o in model.graph.output] == ['heatmaps']
    weight_scales = [t for t in model.graph.initializer
                     if t.name.endswith('_scale') and len(t.dims) == 1 and t.dims[0] > 1]
    assert weight_scales, 'expected per-channel weight scales'
    runner = OnnxRunner(int8_path, threads=1)
    out = runner(np.zeros((2, 3, 128, 96), np.float32))
    assert out.shape == (2, 17, 32, 24) and out.dtype == np.float32
    a = report.agreement
    assert len(report.images) == 6 and len(report.skipped) == 1
    assert a['num_joints'] == 6 * 17
    assert 0.0 <= a['mean_px'] <= a['max_px'] and 0.0 <= a['moved_share'] <= 1.0
    assert report.speed['fp32_ms'] > 0 and report.speed['int8_ms'] > 0  # both models timed
    text = report.describe()
    assert 'calibrated on 6 images' in text and 'moved >= 1 px' in text
    assert 'speed  : int8 is ' in text and 'valid.py --model-file model_int8.onnx' in text


def test_cli_quantize_writes_int8_model(ort_quantization, calib_dir, tmp_path):
    from test_export import run_cli, save_weights
    cfg, model = seeded_model('simplenet', seed=8)
    weights = save_weights(model, tmp_path / 'w.pdparams')
    out = tmp_path / 'out'
    proc = run_cli('--cfg', os.path.join(ROOT, FAMILIES['simplenet'][0]), '--model-file', weights,
                   '--output', out, '--format', 'onnx', '--quantize', 'int8', '--calib-dir',
                   calib_dir, '--calib-num', '3', '--threads', '1', *FAMILIES['simplenet'][1])
    assert proc.returncode == 0, proc.stderr
    assert (out / INT8_NAME).is_file()
    assert 'calibrated on 3 images' in proc.stdout
    # the advice comes from timing both models here, not from the backbone's name
    assert re.search(r'speed  : int8 is .*fp32 [0-9.]+ ms, int8 [0-9.]+ ms per crop', proc.stdout)


def test_real_simplenet_int8_agreement(ort_quantization, tmp_path):
    """Real weights on the real COCO images of the fixtures: int8 keeps confident joints close."""
    from posekit.checkpoint import load_checkpoint
    from posekit.config import load_config
    from posekit.export.exporter import export_model
    from posekit.models import build_model
    ckpt = require_fixtures('real', 'simplenet_coco_256x192_model_best.pth.tar')
    images = require_fixtures('real', 'coco')
    cfg = load_config(os.path.join(ROOT, FAMILIES['simplenet'][0]))
    model = build_model(cfg)
    load_checkpoint(model, ckpt)
    result = export_model(model, cfg, str(tmp_path), fmt='onnx', check=False)
    report = quantize_model(result.onnx_file, str(tmp_path / INT8_NAME), images,
                            result.deploy_config, threads=1)
    a = report.agreement
    assert a['confident_joints'] > 0
    assert a['confident_mean_px'] < 2.0, a
