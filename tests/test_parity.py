"""Converted reference weights give the reference outputs (fixtures README sections 3 and 6).

The seeded checkpoints are regenerated with the fixtures' own ``make_ckpt.py`` (needs torch)
into ``tmp_path``, converted, loaded strictly into our model and run on the fixed input; the
heatmaps must match the PyTorch reference outputs ``expected_<name>.npy``.
"""
import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest

from conftest import ROOT, require_fixtures
from posekit.checkpoint import load_checkpoint, read_checkpoint
from posekit.config import load_config
from posekit.codec import InputSpec, TopDownHeatmapCodec
from posekit.codec.heatmap import flip_test
from posekit.runtime import DygraphRunner
from posekit.data.descriptors import dataset_info
from posekit.models import build_model
from posekit.models.layers import count_parameters

TOLERANCE = 1e-4

# name -> (experiment yaml, equivalent overrides if the yaml is absent, seed, input (H, W))
CASES = {
    'pose_resnet_50': ('experiments/mpii/resnet50/256x256_d256x3_adam_lr1e-3.yaml',
                       ['MODEL.NAME', 'pose_resnet', 'MODEL.NUM_JOINTS', '16',
                        'MODEL.IMAGE_SIZE', '[256,256]', 'MODEL.HEATMAP_SIZE', '[64,64]',
                        'MODEL.EXTRA.NUM_LAYERS', '50'],
                       7, (256, 256)),
    'lpn_50': ('experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml',
               ['MODEL.NAME', 'lpn', 'MODEL.NUM_JOINTS', '17', 'MODEL.IMAGE_SIZE', '[192,256]',
                'MODEL.HEATMAP_SIZE', '[48,64]', 'MODEL.EXTRA.NUM_LAYERS', '50'],
               11, (256, 192)),
}


def experiment_config(yaml_path, overrides):
    path = os.path.join(ROOT, yaml_path)
    return load_config(path) if os.path.isfile(path) else load_config(None, overrides)


def make_ckpt_module():
    path = require_fixtures('make_ckpt.py')
    spec = importlib.util.spec_from_file_location('fixtures_make_ckpt', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tensor_bytes_sha256(state_dict):
    digest = hashlib.sha256()
    for value in state_dict.values():
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize('name', sorted(CASES))
def test_converted_checkpoint_reproduces_reference_heatmaps(name, tmp_path):
    torch = pytest.importorskip('torch')
    import paddle
    meta = json.load(open(require_fixtures('conversion_meta.json')))[name]
    expected = np.load(require_fixtures('expected_%s.npy' % name))
    layout = json.load(open(require_fixtures('layout_%s.json' % name)))
    yaml_path, overrides, seed, (height, width) = CASES[name]
    assert meta['seed'] == seed

    state = make_ckpt_module().fill(layout, seed)
    assert tensor_bytes_sha256(state) == meta['ckpt_tensor_bytes_sha256']
    src = str(tmp_path / ('%s.pth' % name))
    torch.save(state, src)
    del state

    cfg = experiment_config(yaml_path, overrides)
    model = build_model(cfg)
    info = load_checkpoint(model, src)
    assert info.num_source_tensors == meta['n_tensors']
    assert len(info.dropped) == sum(1 for key, _, _ in layout if key.endswith('num_batches_tracked'))
    model.eval()

    x = np.random.default_rng(1234).standard_normal((2, 3, height, width)).astype(np.float32)
    assert hashlib.sha256(x.tobytes()).hexdigest() == meta['input_sha256']
    with paddle.no_grad():
        out = model(paddle.to_tensor(x)).numpy()
    assert out.shape == tuple(meta['output_shape']) == expected.shape
    diff = float(np.abs(out - expected).max())
    assert diff <= TOLERANCE, '%s: max abs diff %.3g' % (name, diff)

    # The reference flip test (validate() glue): the library's flip test must give the same maps.
    expected_flip = np.load(require_fixtures('expected_%s_flip.npy' % name))
    flip_pairs = dataset_info(cfg.DATASET.DATASET, num_joints=cfg.MODEL.NUM_JOINTS).flip_pairs
    assert [list(p) for p in flip_pairs] == meta['flip_pairs']
    assert cfg.TEST.SHIFT_HEATMAP == meta['shift_heatmap']
    out_flip = flip_test(DygraphRunner(model), x, flip_pairs, cfg.TEST.SHIFT_HEATMAP)
    diff = float(np.abs(out_flip - expected_flip).max())
    assert diff <= TOLERANCE, '%s flip test: max abs diff %.3g' % (name, diff)
    # and the flip test is not a no-op on these maps
    assert np.abs(expected_flip - expected).max() > 100 * TOLERANCE


def test_released_simplenet_checkpoint_loads_strictly():
    pytest.importorskip('posekit.models.simplenet')
    import paddle
    path = require_fixtures('real', 'simplenet_coco_256x192_model_best.pth.tar')
    cfg = experiment_config('experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml',
                            ['MODEL.NAME', 'simplenet', 'MODEL.NUM_JOINTS', '17',
                             'MODEL.IMAGE_SIZE', '[192,256]', 'MODEL.HEATMAP_SIZE', '[48,64]'])
    model = build_model(cfg)
    info = load_checkpoint(model, path)
    assert info.module_prefix and info.format == 'torch-legacy'
    assert count_parameters(model) == 578097  # REFERENCE_SPEC 4.4

    # the released file (legacy torch.save) reads the same with and without torch
    state, _ = read_checkpoint(path, model)
    state_python, info_python = read_checkpoint(path, model, use_torch=False)
    assert info_python.reader == 'python'
    assert list(state) == list(state_python)
    for key in state:
        assert state[key].dtype == state_python[key].dtype
        np.testing.assert_array_equal(state[key], state_python[key])

    model.eval()
    with paddle.no_grad():
        out = model(paddle.zeros([1, 3, 256, 192]))
    assert tuple(out.shape) == (1, 17, 64, 48)
    assert np.isfinite(out.numpy()).all()


def test_released_simplenet_checkpoint_gives_confident_heatmaps():
    """The real SimpleNet weights on the [PD] test photo, through the library's own crop,
    normalisation (BGR, /255, ImageNet mean/std as configured) and decoding: confident maps
    (REFERENCE_SPEC 4.4: mean peak 0.464) and an upright, plausibly ordered skeleton."""
    import cv2
    path = require_fixtures('real', 'simplenet_coco_256x192_model_best.pth.tar')
    image = cv2.imread(require_fixtures('real', 'paddle', 'test.jpg'))
    cfg = experiment_config('experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml', [])
    assert cfg.DATASET.COLOR_RGB is False  # the [MS] convention the weights were trained with
    model = build_model(cfg)
    load_checkpoint(model, path)

    h, w = image.shape[:2]
    x, meta = InputSpec.from_cfg(cfg).prepare(image)
    center, scale = meta['centers'][0], meta['scales'][0]
    run = DygraphRunner(model)
    heatmaps = run(x)
    peaks = heatmaps.reshape(17, -1).max(axis=1)
    assert abs(float(peaks.mean()) - 0.464) < 0.01, peaks.mean()

    # RGB order (the wrong convention for these weights) gives clearly weaker maps
    cfg_rgb = load_config(os.path.join(ROOT, 'experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml'),
                          ['DATASET.COLOR_RGB', 'true'])
    x_rgb = InputSpec.from_cfg(cfg_rgb).prepare(image)[0]
    assert run(x_rgb).reshape(17, -1).max(axis=1).mean() < peaks.mean() - 0.1

    preds, maxvals = TopDownHeatmapCodec.from_cfg(cfg, ()).decode(heatmaps, center[None], scale[None])
    kp = preds[0]
    assert np.all((kp[:, 0] >= 0) & (kp[:, 0] < w) & (kp[:, 1] >= 0) & (kp[:, 1] < h))
    names = dataset_info(num_joints=17).joint_names
    y = {n: kp[i, 1] for i, n in enumerate(names)}
    # head above shoulders above hips above knees above ankles (image y grows downwards)
    for upper, lower in [('nose', 'left_shoulder'), ('left_shoulder', 'left_hip'),
                         ('right_shoulder', 'right_hip'), ('left_hip', 'left_knee'),
                         ('right_hip', 'right_knee'), ('left_knee', 'left_ankle'),
                         ('right_knee', 'right_ankle')]:
        assert y[upper] < y[lower], (upper, lower, y[upper], y[lower])
