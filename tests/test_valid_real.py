"""valid.py end to end on the real MPII and COCO fixture images with converted reference weights.

The COCO run uses the released SimpleNet checkpoint; the MPII run the seeded PoseResNet-50 of the
conversion fixtures (random weights: the numbers are meaningless, the pipeline is what is
checked). Predictions equal to the ground truth must give PCKh 100 and AP 1.0.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from conftest import real_coco_root, ROOT, require_fixtures

COCO_CFG = 'experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml'
MPII_CFG = 'experiments/mpii/resnet50/256x256_d256x3_adam_lr1e-3.yaml'


def run(script, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'pose_estimation', script)] + list(args),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    return proc


def table(stdout):
    """name -> value of the markdown table valid.py logs."""
    lines = [line.split(' ', 2)[-1] for line in stdout.splitlines()]
    lines = [line for line in lines if line.startswith('|')]
    header = [c.strip() for c in lines[-3].strip('|').split('|')][1:]
    values = [float(c) for c in lines[-1].strip('|').split('|')[1:]]
    assert set(lines[-2]) <= set('|-'), lines[-2]
    return dict(zip(header, values))


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    return real_coco_root(tmp_path_factory.mktemp('coco'), detections=True)


@pytest.fixture(scope='module')
def simplenet_weights(tmp_path_factory):
    src = require_fixtures('real', 'simplenet_coco_256x192_model_best.pth.tar')
    dst = str(tmp_path_factory.mktemp('w') / 'simplenet.pdparams')
    proc = run('convert.py', '--cfg', COCO_CFG, '--src', src, '--dst', dst)
    assert proc.returncode == 0, proc.stderr
    return dst


def test_coco_ground_truth_boxes_with_flip(coco_root, simplenet_weights, tmp_path):
    proc = run('valid.py', '--cfg', COCO_CFG, '--model-file', simplenet_weights, '--flip-test',
               '--use-gt-bbox', '--output', str(tmp_path), 'DATASET.ROOT', str(coco_root),
               'DATASET.TEST_SET', 'val2017', 'WORKERS', '0')
    assert proc.returncode == 0, proc.stderr
    stats = table(proc.stdout)
    assert list(stats) == ['AP', 'Ap .5', 'AP .75', 'AP (M)', 'AP (L)', 'AR', 'AR .5', 'AR .75',
                           'AR (M)', 'AR (L)']
    # a trained (early) checkpoint finds people: far above zero, below perfect
    assert 0.05 < stats['AP'] < 1.0 and stats['AR .5'] > 0.2
    results = json.load(open(tmp_path / 'results' / 'keypoints_val2017_results.json'))
    assert results and len(results[0]['keypoints']) == 51
    assert {r['image_id'] for r in results} == {785, 40083, 197388, 196141}


def test_coco_detection_boxes(coco_root, simplenet_weights, tmp_path):
    proc = run('valid.py', '--cfg', COCO_CFG, '--model-file', simplenet_weights,
               '--use-detect-bbox', '--coco-bbox-file', str(coco_root / 'det.json'),
               '--output', str(tmp_path), 'DATASET.ROOT', str(coco_root), 'DATASET.TEST_SET',
               'val2017', 'TEST.IMAGE_THRE', '0.5', 'WORKERS', '0')
    assert proc.returncode == 0, proc.stderr
    assert 0.05 < table(proc.stdout)['AP'] < 1.0
    assert 'samples' in proc.stdout


def test_coco_ground_truth_predictions_give_ap_1(coco_root, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, 'lib'))
    from posekit.config import load_config
    from posekit.data import build_dataset
    cfg = load_config(os.path.join(ROOT, COCO_CFG), ['DATASET.ROOT', str(coco_root),
                                                      'DATASET.TEST_SET', 'val2017',
                                                      'TEST.USE_GT_BBOX', 'True'])
    preds = np.stack([r['joints_3d'][:, :2] for r in build_dataset(cfg).db])
    np.save(tmp_path / 'gt.npy', preds)
    proc = run('valid.py', '--cfg', COCO_CFG, '--predictions', str(tmp_path / 'gt.npy'),
               '--use-gt-bbox', '--output', str(tmp_path), 'DATASET.ROOT', str(coco_root),
               'DATASET.TEST_SET', 'val2017')
    assert proc.returncode == 0, proc.stderr
    assert set(table(proc.stdout).values()) == {1.0}
    # one joint moved far away in every person: no longer perfect
    preds[:, 0] += 60
    np.save(tmp_path / 'off.npy', preds)
    proc = run('valid.py', '--cfg', COCO_CFG, '--predictions', str(tmp_path / 'off.npy'),
               '--use-gt-bbox', '--output', str(tmp_path), 'DATASET.ROOT', str(coco_root),
               'DATASET.TEST_SET', 'val2017')
    assert table(proc.stdout)['AP'] < 1.0


@pytest.fixture(scope='module')
def mpii_root(tmp_path_factory):
    """The five real MPII people as a validation set; gt_valid.mat made from their json (head
    boxes: the square around head top and upper neck, as MPII draws them)."""
    src = require_fixtures('real', 'mpii')
    root = tmp_path_factory.mktemp('mpii')
    os.makedirs(root / 'annot')
    os.makedirs(root / 'images')
    for name in os.listdir(src):
        if name.endswith('.jpg'):
            shutil.copy(os.path.join(src, name), root / 'images' / name)
    anno = json.load(open(os.path.join(src, 'test_mpii.json')))
    json.dump(anno, open(root / 'annot' / 'valid.json', 'w'))
    joints = np.array([a['joints'] for a in anno], dtype=np.float64)  # N x 16 x 2, 1-based
    vis = np.array([a['joints_vis'] for a in anno], dtype=np.float64)
    head, neck = joints[:, 9], joints[:, 8]
    size = np.linalg.norm(head - neck, axis=1)[:, None]
    mid = (head + neck) / 2
    boxes = np.stack([mid - size / 2, mid + size / 2], axis=1)  # N x 2 x 2
    savemat(root / 'annot' / 'gt_valid.mat', {
        'jnt_missing': (1 - vis).T, 'pos_gt_src': joints.transpose(1, 2, 0),
        'headboxes_src': boxes.transpose(1, 2, 0)})
    return root


def test_mpii_converted_reference_checkpoint(mpii_root, tmp_path):
    pytest.importorskip('torch')
    import importlib.util
    import torch
    spec = importlib.util.spec_from_file_location('mk', require_fixtures('make_ckpt.py'))
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    layout = json.load(open(require_fixtures('layout_pose_resnet_50.json')))
    pth = tmp_path / 'pose_resnet_50.pth'
    torch.save(mk.fill(layout, 7), pth)
    weights = str(tmp_path / 'pose_resnet_50.pdparams')
    proc = run('convert.py', '--cfg', MPII_CFG, '--src', str(pth), '--dst', weights)
    assert proc.returncode == 0, proc.stderr
    os.remove(pth)
    proc = run('valid.py', '--cfg', MPII_CFG, '--model-file', weights, '--flip-test', '--output',
               str(tmp_path), 'DATASET.ROOT', str(mpii_root), 'WORKERS', '0')
    assert proc.returncode == 0, proc.stderr
    values = table(proc.stdout)
    assert list(values)[:9] == ['Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle',
                                'Mean', 'Mean@0.1']
    assert all(0.0 <= v <= 100.0 for v in values.values())
    preds = loadmat(tmp_path / 'pred.mat')['preds']
    assert preds.shape == (5, 16, 2)
    # the pred.mat round trip: re-evaluating it gives the same table
    again = run('valid.py', '--cfg', MPII_CFG, '--predictions', str(tmp_path / 'pred.mat'),
                '--output', str(tmp_path / 'again'), 'DATASET.ROOT', str(mpii_root))
    assert again.returncode == 0, again.stderr
    assert table(again.stdout) == values


def test_mpii_ground_truth_predictions_give_100(mpii_root, tmp_path):
    anno = json.load(open(mpii_root / 'annot' / 'valid.json'))
    preds = np.array([a['joints'] for a in anno], dtype=np.float64) - 1  # 0-based
    np.save(tmp_path / 'gt.npy', preds)
    proc = run('valid.py', '--cfg', MPII_CFG, '--predictions', str(tmp_path / 'gt.npy'),
               '--output', str(tmp_path), 'DATASET.ROOT', str(mpii_root))
    assert proc.returncode == 0, proc.stderr
    values = table(proc.stdout)
    assert values['Mean'] == 100.0 and values['Head'] == 100.0 and values['Mean@0.1'] == 100.0


def test_valid_errors_are_one_line(tmp_path, mpii_root):
    proc = run('valid.py', '--cfg', MPII_CFG, '--model-file', str(tmp_path / 'missing.pdparams'),
               'DATASET.ROOT', str(mpii_root))
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr and 'missing.pdparams' in proc.stderr
    proc = run('valid.py', '--cfg', MPII_CFG, '--predictions', str(tmp_path / 'none.npy'),
               'DATASET.ROOT', str(mpii_root))
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    np.save(tmp_path / 'bad.npy', np.zeros((3, 16, 2)))
    proc = run('valid.py', '--cfg', MPII_CFG, '--predictions', str(tmp_path / 'bad.npy'),
               'DATASET.ROOT', str(mpii_root))
    assert proc.returncode == 1 and '5 x 16' in proc.stderr and 'Traceback' not in proc.stderr
