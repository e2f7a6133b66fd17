"""The new user's path on a real photo: convert the released SimpleNet checkpoint, export it,
run deploy.py (onnxruntime) and infer.py (Paddle) on a real picture: same keypoints, and a
sensible skeleton (confident joints, head above hips above ankles)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, require_fixtures

CFG = os.path.join(ROOT, 'experiments', 'coco', 'mobile', '256x192_d256x3_adam_lr1e-3.yaml')


def run(tool, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'pose_estimation', tool)] + list(args),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def keypoints(path):
    data = json.load(open(path))
    return np.array([[[k['x'], k['y'], k['score']] for k in p['keypoints']]
                     for p in data['persons']])


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    src = require_fixtures('real', 'simplenet_coco_256x192_model_best.pth.tar')
    photo = require_fixtures('real', 'coco', '000000000785.jpg')
    root = tmp_path_factory.mktemp('real_deploy')
    image = str(root / 'skier.jpg')
    shutil.copy(photo, image)
    weights = str(root / 'simplenet.pdparams')
    proc = run('convert.py', '--cfg', CFG, '--src', src, '--dst', weights)
    assert proc.returncode == 0, proc.stderr
    proc = run('export.py', '--cfg', CFG, '--model-file', weights, '--output', str(root / 'export'))
    assert proc.returncode == 0, proc.stderr
    return root, weights, image


def test_deploy_on_a_real_photo_matches_infer_and_draws_a_sensible_skeleton(work):
    root, weights, image = work
    # the skier's ground-truth box in the COCO fixture annotation
    anno = json.load(open(require_fixtures('real', 'coco', 'test_coco.json')))
    box = [a['bbox'] for a in anno['annotations'] if a['image_id'] == 785][0]
    box_args = ['--box'] + ['%g' % v for v in box]
    proc = run('infer.py', '--cfg', CFG, '--model-file', weights, '--img-file', image, *box_args,
               '--flip-test', '--output', str(root / 'infer'))
    assert proc.returncode == 0, proc.stderr
    proc = run('deploy.py', '--img', image, '--model', str(root / 'export' / 'model.onnx'),
               *box_args, '--flip-test', '--threads', '1', '--output', str(root / 'deploy'))
    assert proc.returncode == 0, proc.stderr
    ref = keypoints(root / 'infer' / 'skier_keypoints.json')[0]
    got = keypoints(root / 'deploy' / 'skier_keypoints.json')[0]
    # the README's "0.0 px apart": equal at the 0.1 px the keypoints are printed with
    assert np.abs(got[:, :2] - ref[:, :2]).max() < 0.05
    assert np.abs(got[:, 2] - ref[:, 2]).max() < 1e-4
    assert os.path.isfile(root / 'deploy' / 'skier_pose.jpg')

    # sensible: confident on average, joints inside the person box, anatomy in order
    x, y, w, h = box
    assert got[:, 2].mean() > 0.3
    assert np.all((got[:, 0] > x - 0.15 * w) & (got[:, 0] < x + 1.15 * w))
    assert np.all((got[:, 1] > y - 0.15 * h) & (got[:, 1] < y + 1.15 * h))
    nose, hips, ankles = got[0, 1], got[11:13, 1].mean(), got[15:17, 1].mean()
    assert nose < hips < ankles
    # and close to the annotated keypoints where they are visible
    gt = np.array([a['keypoints'] for a in anno['annotations'] if a['image_id'] == 785][0],
                  dtype=float).reshape(17, 3)
    vis = gt[:, 2] > 0
    err = np.linalg.norm(got[vis, :2] - gt[vis, :2], axis=1)
    assert np.median(err) < 0.1 * h, err
