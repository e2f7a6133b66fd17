"""Synthetic dataset generator: the scenes, the MPII and COCO writers (checked through the real
loaders and evaluators), determinism, generate-once and the command line."""
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import loadmat

from posekit.data import synthetic
from posekit.evaluation.coco_eval import evaluate_coco, image_id_from_path
from posekit.config import load_config
from posekit.data import COCODataset, MPIIDataset
from posekit.data.descriptors import COCO_JOINTS, COCO_SKELETON, MPII_JOINTS
from posekit.evaluation.pckh import evaluate_pckh
from posekit.data.synthetic import (SyntheticError, ensure_synthetic, generate_coco, generate_mpii,
                               read_manifest, render_scene)

MPII_YAML = 'experiments/mpii/mobile/256x256_d256x3_adam_lr1e-3.yaml'
COCO_YAML = 'experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml'
SEED = 3


@pytest.fixture(scope='module')
def mpii_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('syn') / 'mpii')
    generate_mpii(root, 6, 6, seed=SEED)
    return root


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('syn') / 'coco')
    generate_coco(root, 6, 6, seed=SEED)
    return root


def scenes(n, seed=0, **kw):
    return [render_scene(np.random.default_rng([seed, i]), **kw) for i in range(n)]


def tree_files(root):
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(out)


def assert_same_tree(a, b):
    files = tree_files(a)
    assert files == tree_files(b)
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors


# --- scenes ----------------------------------------------------------------------------------

def test_both_joint_sets_come_from_one_model():
    shared = [n for n in COCO_JOINTS if n not in ('nose', 'left_eye', 'right_eye', 'left_ear',
                                                 'right_ear')]
    for img, people in scenes(8, image_size=(320, 256)):
        assert img.shape == (256, 320, 3) and img.dtype == np.uint8
        assert 1 <= len(people) <= synthetic.DEFAULT_MAX_PEOPLE
        for p in people:
            assert p['joints_mpii'].shape == (16, 2) and p['joints_coco'].shape == (17, 2)
            for name in shared:  # e.g. MPII l_shoulder is COCO left_shoulder
                m = MPII_JOINTS.index(name.replace('left_', 'l_').replace('right_', 'r_'))
                c = COCO_JOINTS.index(name)
                np.testing.assert_array_equal(p['joints_mpii'][m], p['joints_coco'][c])
                assert p['vis_mpii'][m] == p['vis_coco'][c]
            # the face points lie in the head box, the head box is about one head long
            x1, y1, x2, y2 = p['head_box']
            face = p['joints_coco'][0:5]
            assert np.all((face >= [x1, y1]) & (face <= [x2, y2]))
            head_len = np.linalg.norm(p['joints_mpii'][9] - p['joints_mpii'][8])
            assert 0.95 * head_len <= x2 - x1 <= 1.25 * head_len
            assert x2 - x1 == pytest.approx(y2 - y1, abs=0.02)  # a square
            # visibility: 0 exactly for the joints outside the image
            outside = ((p['joints_coco'] < 0) | (p['joints_coco'] > [319, 255])).any(axis=1)
            np.testing.assert_array_equal(p['vis_coco'] == 0, outside)


def test_people_face_the_camera_and_left_right_is_symmetric():
    """The person's right side is on the image left (facing cue), and the poses are drawn from a
    mirror-symmetric distribution, so flipped training images are as plausible as the originals."""
    r_off, l_off = [], []
    for _, people in scenes(60, seed=1):
        for p in people:
            j = p['joints_mpii']
            assert j[12, 0] < j[13, 0]  # r_shoulder left of l_shoulder
            assert j[2, 0] < j[3, 0]  # r_hip left of l_hip
            r_off.append((j[10, 0] - j[12, 0]) / p['height'])  # wrist relative to shoulder
            l_off.append((j[15, 0] - j[13, 0]) / p['height'])
    assert np.mean(r_off) < -0.03 and np.mean(l_off) > 0.03  # arms open outwards on average
    assert np.mean(r_off) == pytest.approx(-np.mean(l_off), abs=0.025)


def test_figures_are_drawn_over_the_background():
    """Midpoints of the limbs differ from the plain background (the background is the first thing
    drawn from the scene's random stream, so it can be redrawn alone)."""
    diffs = []
    for i in range(10):
        img, people = render_scene(np.random.default_rng([5, i]))
        bg = synthetic.scene._background(np.random.default_rng([5, i]), 256, 256)
        for p in people:
            j, v = p['joints_mpii'], p['vis_mpii']
            for a, b in ([12, 11], [11, 10], [13, 14], [14, 15], [2, 1], [1, 0], [3, 4], [4, 5],
                         [7, 6]):
                if v[a] == 2 and v[b] == 2:
                    x, y = np.round((j[a] + j[b]) / 2).astype(int)
                    diffs.append(np.abs(img[y, x].astype(int) - bg[y, x].astype(int)).max())
    assert len(diffs) > 50
    assert np.median(diffs) > 40
    assert np.mean(np.asarray(diffs) > 15) > 0.85


# --- MPII ------------------------------------------------------------------------------------

def test_mpii_layout_and_loader(mpii_root, repo_root):
    manifest = read_manifest(mpii_root)
    assert manifest['format'] == 'mpii' and manifest['params']['seed'] == SEED
    images = sorted(os.listdir(os.path.join(mpii_root, 'images')))
    assert images == ['%09d.jpg' % i for i in range(1, 13)]
    cfg = load_config(os.path.join(repo_root, MPII_YAML), ['DATASET.ROOT', mpii_root])
    with open(os.path.join(mpii_root, 'annot', 'valid.json')) as f:
        valid = json.load(f)
    assert set(valid[0]) == {'image', 'center', 'scale', 'joints', 'joints_vis'}
    ds = MPIIDataset(cfg, image_set='valid')
    assert len(ds) == len(valid) == manifest['counts']['valid']['persons'] >= 6
    size = cfg.MODEL.IMAGE_SIZE[0]
    for i in range(len(ds)):
        _, joints, joints_vis, _ = ds.prepare(i)
        vis = joints_vis[:, 0] > 0
        assert vis.sum() >= synthetic.MPII_MIN_JOINTS_IN_IMAGE
        # the person of interest is centred and whole, with a margin: joints well inside the crop
        assert np.all(joints[vis, :2] >= 0.05 * size) and np.all(joints[vis, :2] <= 0.95 * size)
        c = joints[vis, :2].mean(axis=0)
        assert np.all(np.abs(c - size / 2) < 0.25 * size)
    train = MPIIDataset(cfg, image_set='train', is_train=True, rng=np.random.default_rng(0))
    inp, target, weight, _ = train[0]
    assert inp.shape == (3, 256, 256) and target.shape == (16, 64, 64) and weight.sum() > 0


def test_mpii_gt_mat_matches_json_and_perfect_pckh_is_100(mpii_root):
    with open(os.path.join(mpii_root, 'annot', 'valid.json')) as f:
        valid = json.load(f)
    gt_path = os.path.join(mpii_root, 'annot', 'gt_valid.mat')
    gt = loadmat(gt_path)
    joints = np.array([e['joints'] for e in valid])  # 1-based, as the .mat
    vis = np.array([e['joints_vis'] for e in valid])
    np.testing.assert_array_equal(gt['pos_gt_src'], joints.transpose(1, 2, 0))
    np.testing.assert_array_equal(gt['jnt_missing'], 1 - vis.T)
    assert gt['headboxes_src'].shape == (2, 2, len(valid))

    preds = joints - 1  # evaluate_pckh takes 0-based predictions
    assert evaluate_pckh(preds, gt_path)['Mean'] == 100.0
    # the head size makes sense: moving every joint by ~0.3 head lengths keeps it correct, by
    # ~0.7 head lengths does not (PCKh@0.5 = half of 0.6 x the head box diagonal)
    head_len = np.linalg.norm(joints[:, 9] - joints[:, 8], axis=1)[:, None]
    assert evaluate_pckh(preds + [0.3, 0] * head_len[:, :, None], gt_path)['Mean'] == 100.0
    assert evaluate_pckh(preds + [0.7, 0] * head_len[:, :, None], gt_path)['Mean'] == 0.0


# --- COCO ------------------------------------------------------------------------------------

def test_coco_annotation_file(coco_root):
    with open(os.path.join(coco_root, 'annotations', 'person_keypoints_val2017.json')) as f:
        data = json.load(f)
    assert [im['id'] for im in data['images']] == list(range(7, 13))  # after the 6 training ids
    for im in data['images']:
        assert im['file_name'] == '%012d.jpg' % im['id'] and (im['width'], im['height']) == (256, 256)
        assert os.path.isfile(os.path.join(coco_root, 'images', 'val2017', im['file_name']))
    cat = data['categories'][0]
    assert cat['id'] == 1 and cat['name'] == 'person' and cat['keypoints'] == COCO_JOINTS
    assert cat['skeleton'] == [[a + 1, b + 1] for a, b in COCO_SKELETON]
    assert data['annotations']
    for ann in data['annotations']:
        k = np.array(ann['keypoints']).reshape(17, 3)
        assert set(k[:, 2]) <= {0, 1, 2}
        assert np.all(k[k[:, 2] == 0, :2] == 0)
        assert ann['num_keypoints'] == np.count_nonzero(k[:, 2])
        x, y, w, h = ann['bbox']
        assert x >= 0 and y >= 0 and x + w <= 255 and y + h <= 255 and ann['area'] > 0
        seen = k[k[:, 2] > 0, :2]
        assert np.all(seen >= [x, y]) and np.all(seen <= [x + w, y + h])
        assert ann['category_id'] == 1 and ann['iscrowd'] == 0


def test_coco_loads_and_perfect_predictions_give_ap_1(coco_root, repo_root):
    cfg = load_config(os.path.join(repo_root, COCO_YAML),
                      ['DATASET.ROOT', coco_root, 'TEST.USE_GT_BBOX', 'true'])
    ds = COCODataset(cfg, image_set='val2017')
    assert len(ds) == read_manifest(coco_root)['counts']['valid']['persons']
    inp, target, weight, _ = ds[0]
    assert inp.shape == (3, 256, 192) and target.shape == (17, 64, 48)
    preds = np.array([np.concatenate([r['joints_3d'][:, :2], np.ones((17, 1))], axis=1)
                      for r in ds.db])
    boxes = np.array([np.r_[r['center'], r['scale'], 200 ** 2 * np.prod(r['scale']), 1.0]
                      for r in ds.db])
    ids = [image_id_from_path(r['image']) for r in ds.db]
    stats, _ = evaluate_coco(ds.ann_file, preds, boxes, ids)
    assert stats['AP'] == pytest.approx(1.0)
    assert evaluate_coco(ds.ann_file, preds + [8, 8, 0], boxes, ids)[0]['AP'] < 0.5


def test_coco_detection_boxes(coco_root, repo_root):
    det_file = os.path.join(coco_root, 'annotations', 'person_detection_val2017.json')
    with open(det_file) as f:
        dets = json.load(f)
    with open(os.path.join(coco_root, 'annotations', 'person_keypoints_val2017.json')) as f:
        gt = json.load(f)
    scores = np.array([d['score'] for d in dets])
    assert np.sum(scores >= 0.8) == len(gt['annotations'])  # one good box per person
    assert {d['image_id'] for d in dets} == {im['id'] for im in gt['images']}
    cfg = load_config(os.path.join(repo_root, COCO_YAML),
                      ['DATASET.ROOT', coco_root, 'TEST.USE_GT_BBOX', 'false',
                       'TEST.COCO_BBOX_FILE', det_file, 'TEST.IMAGE_THRE', '0.0'])
    ds = COCODataset(cfg, image_set='val2017')
    assert len(ds) == len(dets)
    assert ds[0][0].shape == (3, 256, 192)


# --- determinism, generate-once, command line ------------------------------------------------

def test_same_seed_same_files_other_seed_other_files(tmp_path, mpii_root, coco_root):
    generate_mpii(str(tmp_path / 'm'), 6, 6, seed=SEED)
    assert_same_tree(mpii_root, str(tmp_path / 'm'))
    generate_coco(str(tmp_path / 'c'), 6, 6, seed=SEED)
    assert_same_tree(coco_root, str(tmp_path / 'c'))
    generate_mpii(str(tmp_path / 'o'), 6, 6, seed=SEED + 1)
    for name in ('train.json', 'valid.json'):
        assert not filecmp.cmp(os.path.join(mpii_root, 'annot', name),
                               os.path.join(tmp_path, 'o', 'annot', name), shallow=False)
    assert not filecmp.cmp(os.path.join(mpii_root, 'images', '000000001.jpg'),
                           os.path.join(tmp_path, 'o', 'images', '000000001.jpg'), shallow=False)


def test_ensure_synthetic_generates_once_and_atomically(tmp_path, monkeypatch):
    root = str(tmp_path / 'data')
    kw = dict(num_train=2, num_valid=2, seed=0, image_size=(128, 128))
    manifest, created = ensure_synthetic(root, 'mpii', **kw)
    assert created and manifest['params']['image_size'] == [128, 128]
    stamp = os.path.getmtime(os.path.join(root, 'annot', 'train.json'))
    manifest2, created = ensure_synthetic(root, 'mpii', **kw)
    assert not created and manifest2 == manifest
    assert os.path.getmtime(os.path.join(root, 'annot', 'train.json')) == stamp
    # other parameters: rebuilt in place
    manifest3, created = ensure_synthetic(root, 'mpii', **dict(kw, num_train=3))
    assert created and len(os.listdir(os.path.join(root, 'images'))) == 5
    assert os.listdir(str(tmp_path)) == ['data']  # no temporary folders left behind

    # an interrupted generation leaves neither a half set nor a temporary folder
    def interrupted(tmp, **_):
        os.makedirs(os.path.join(tmp, 'annot'))
        open(os.path.join(tmp, 'annot', 'train.json'), 'w').close()
        raise KeyboardInterrupt
    monkeypatch.setitem(synthetic.cache._GENERATORS, 'mpii', interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(str(tmp_path / 'other'), 'mpii', **kw)
    assert os.listdir(str(tmp_path)) == ['data']
    with pytest.raises(KeyboardInterrupt):  # the old complete set survives a failed rebuild
        ensure_synthetic(root, 'mpii', **dict(kw, seed=1))
    assert read_manifest(root) == manifest3 and os.listdir(str(tmp_path)) == ['data']
    # the temporary folder of a run that was killed outright is removed by the next run
    from posekit.io import _host_tag
    stale = tmp_path / ('.data.new-%s-%d-0123abcd' % (_host_tag(), dead_pid()))
    (stale / 'annot').mkdir(parents=True)
    monkeypatch.undo()
    ensure_synthetic(root, 'mpii', **dict(kw, seed=2))
    assert os.listdir(str(tmp_path)) == ['data'] and read_manifest(root)['params']['seed'] == 2


def dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_ensure_synthetic_refuses_foreign_folders_and_bad_parameters(tmp_path):
    foreign = tmp_path / 'real_mpii'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('real data')
    with pytest.raises(SyntheticError, match='not a synthetic dataset'):
        ensure_synthetic(str(foreign), 'mpii', num_train=1, num_valid=1)
    assert (foreign / 'keep.txt').read_text() == 'real data'
    for bad in (dict(num_train=0, num_valid=1), dict(num_train=1, num_valid=1, image_size=(32, 32)),
                dict(num_train=1, num_valid=1, max_people=0), dict(num_train=1, num_valid=1, seed=-1),
                dict(num_train=1, num_valid=1, colour='red')):
        with pytest.raises(SyntheticError):
            ensure_synthetic(str(tmp_path / 'x'), 'mpii', **bad)
    with pytest.raises(SyntheticError, match='unknown synthetic format'):
        ensure_synthetic(str(tmp_path / 'x'), 'lsp', num_train=1, num_valid=1)
    assert not (tmp_path / 'x').exists()


def run_cli(repo_root, *args):
    return subprocess.run([sys.executable, os.path.join(repo_root, 'pose_estimation', 'make_synthetic.py')]
                          + list(args), capture_output=True, text=True, timeout=120)


def test_cli(tmp_path, repo_root):
    root = str(tmp_path / 'syn')
    args = ['--format', 'both', '--root', root, '--num-train', '2', '--num-valid', '1',
            '--seed', '4', '--image-size', '160', '128', '--max-people', '2']
    res = run_cli(repo_root, *args)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert 'mpii train: 2/2 images' in lines
    assert lines[-1].startswith('make_synthetic: coco ') and 'generated in' in lines[-1]
    assert read_manifest(os.path.join(root, 'mpii'))['params']['image_size'] == [160, 128]
    assert os.path.isfile(os.path.join(root, 'coco', 'annotations', 'person_keypoints_val2017.json'))
    res = run_cli(repo_root, *args)
    assert res.returncode == 0 and res.stdout.count('reused') == 2

    for bad in (['--root', root, '--num-train', '0'], ['--root', root, '--format', 'lsp'],
                ['--root', root, '--image-size', '20', '20'], ['--num-train', '3']):
        res = run_cli(repo_root, *bad)
        assert res.returncode == 2
        assert len(res.stderr.strip().splitlines()) == 1
        assert res.stderr.startswith('make_synthetic: error: ')
    os.makedirs(os.path.join(root, 'other'))
    open(os.path.join(root, 'other', 'file'), 'w').close()
    res = run_cli(repo_root, '--root', os.path.join(root, 'other'), '--num-train', '1')
    assert res.returncode == 1 and 'not a synthetic dataset' in res.stderr
