"""Paths the README relies on that no other test walks:

* the training loader with worker processes gives the samples of the in-process loader, in the
  same order, with the same augmentation (the quick start uses ``WORKERS 1``, reference yamls
  4-24); train.py with ``WORKERS 1`` ends with the weights of ``WORKERS 0``;
* ``TRAIN.AMP true`` on a CPU: one warning line, and the run is the float32 run;
* the VisualDL scalars train.py writes, read back with VisualDL's ``LogReader``;
* soft OKS-NMS (``TEST.SOFT_NMS true``) in valid.py on the real COCO fixtures;
* infer.py with ``--det-json`` over a folder of real photos, and with the HOG people detector;
* convert.py's command line on LPN (the reference key layout of LPN-50, its SE variant, LPN-18h)
  and HRNet.

(``deploy.py --img-dir`` is walked by test_infer_deploy.py::test_deploy_folder_skips_a_bad_image.)
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import real_coco_root, ROOT, require_fixtures

MPII_CFG = os.path.join(ROOT, 'experiments', 'synthetic', 'mpii_simplenet_128x128.yaml')
COCO_CFG = os.path.join(ROOT, 'experiments', 'coco', 'mobile', '256x192_d256x3_adam_lr1e-3.yaml')
RUN = os.path.join('mpii', 'simplenet', 'mpii_simplenet_128x128')
SIMPLENET_PTH = ('real', 'simplenet_coco_256x192_model_best.pth.tar')


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'pose_estimation', script)]
                          + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def small(data, out, *extra):
    return ['DATASET.ROOT', str(data), 'OUTPUT_DIR', str(out), 'LOG_DIR', str(out) + '_log',
            'DATASET.SYNTHETIC.NUM_TRAIN', '24', 'DATASET.SYNTHETIC.NUM_VALID', '6',
            'DATASET.SYNTHETIC.IMAGE_SIZE', '128,128', 'MODEL.IMAGE_SIZE', '64,64',
            'MODEL.HEATMAP_SIZE', '16,16', 'TRAIN.BATCH_SIZE_PER_GPU', '8',
            'TEST.BATCH_SIZE_PER_GPU', '16', 'SEED', '3', 'PRINT_FREQ', '1',
            'TRAIN.LR_STEP', '50,60', 'TRAIN.END_EPOCH', '1'] + list(extra)


def weights(path):
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


def iou(a, b):
    """IoU of two x, y, w, h boxes."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


# ---------------------------------------------------------------------------------------------
# the training loader with worker processes; AMP on a CPU; VisualDL scalars

@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    """The small generated MPII set and a config over it."""
    from posekit.config import load_config
    from posekit.data import prepare_synthetic
    root = tmp_path_factory.mktemp('paths') / 'mpii'
    cfg = load_config(MPII_CFG, small(root, root.parent / 'unused'))
    prepare_synthetic(cfg)
    return root, cfg


def batches(loader, epochs=(0, 1), sampler=None, seeded=None):
    out = []
    for epoch in epochs:
        if sampler is not None:
            sampler.set_epoch(epoch)
            seeded.set_epoch(epoch)
        for inputs, target, weight, meta in loader:
            out.append((np.asarray(inputs), np.asarray(target), np.asarray(weight),
                        np.asarray(meta['index']).reshape(-1)))
    return out


def assert_same_batches(a, b):
    assert len(a) == len(b) > 0
    for i, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(x[3], y[3], err_msg='sample indices of batch %d' % i)
        for j in range(3):
            np.testing.assert_array_equal(x[j], y[j], err_msg='batch %d, item %d' % (i, j))


def test_loader_workers_give_the_samples_of_the_in_process_loader(synthetic):
    from posekit.data import build_dataset
    from posekit.data.loader import build_eval_loader, build_loader
    _, cfg = synthetic
    train = build_dataset(cfg, is_train=True)
    seen = {}
    for workers in (0, 2):
        loader, seeded, sampler = build_loader(train, 5, shuffle=True, workers=workers, seed=3)
        seen[workers] = batches(loader, sampler=sampler, seeded=seeded)
    assert_same_batches(seen[0], seen[2])
    # shuffled and augmented: epoch 1 is another order of the same samples, not a copy
    half = len(seen[0]) // 2
    order = [np.concatenate([b[3] for b in seen[0][:half]]),
             np.concatenate([b[3] for b in seen[0][half:]])]
    assert sorted(order[0]) == sorted(order[1]) == list(range(len(train)))
    assert list(order[0]) != list(order[1])

    valid = build_dataset(cfg, is_train=False)
    one = batches(build_eval_loader(valid, 4, workers=0), epochs=(0,))
    two = batches(build_eval_loader(valid, 4, workers=1), epochs=(0,))
    assert_same_batches(one, two)
    assert list(np.concatenate([b[3] for b in one])) == list(range(len(valid)))


@pytest.fixture(scope='module')
def plain_run(synthetic, tmp_path_factory):
    """One epoch of train.py with the in-process loader."""
    root, _ = synthetic
    out = tmp_path_factory.mktemp('plain') / 'out'
    proc = run('train.py', '--cfg', MPII_CFG, '--no-progress', *small(root, out, 'WORKERS', '0'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_train_with_a_loader_worker_and_amp_on_a_cpu_is_the_plain_run(synthetic, plain_run,
                                                                       tmp_path):
    root, _ = synthetic
    out = tmp_path / 'out'
    proc = run('train.py', '--cfg', MPII_CFG, '--no-progress',
               *small(root, out, 'WORKERS', '1', 'TRAIN.AMP', 'true'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # AMP asked on a CPU: one warning line, then float32 training
    text = proc.stdout + proc.stderr
    amp_lines = [line for line in text.splitlines() if 'needs a GPU' in line]
    assert len(amp_lines) == 1, text[-3000:]
    assert 'TRAIN.AMP' in amp_lines[0] and 'float32' in amp_lines[0]
    assert 'Traceback' not in text
    a = weights(os.path.join(plain_run[0], RUN, 'final_state.pdparams'))
    b = weights(os.path.join(out, RUN, 'final_state.pdparams'))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_visualdl_scalars(plain_run):
    from visualdl import LogReader
    out, proc = plain_run
    records = glob.glob(os.path.join(str(out) + '_log', 'mpii', 'simplenet',
                                     'mpii_simplenet_128x128_*', 'vdlrecords.*.log'))
    assert len(records) == 1, records
    reader = LogReader(file_path=records[0])
    tags = reader.get_tags()['scalar']
    metrics = ['Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle', 'Mean', 'Mean@0.1',
               'PCKh@0.1']
    assert sorted(tags) == sorted(['train_loss', 'train_acc', 'lr', 'valid_loss', 'valid_acc']
                                  + ['valid/' + m for m in metrics])
    # train_* and lr: one point per logged iteration (PRINT_FREQ 1), the values of the log lines
    logged = [line for line in proc.stdout.splitlines() if 'Epoch: [0][' in line]
    loss = reader.get_data('scalar', 'train_loss')
    assert [p.id for p in loss] == list(range(len(logged)))
    for point, line in zip(loss, logged):
        assert point.value == pytest.approx(float(line.split('Loss ')[1].split()[0]), abs=1e-5)
    assert [p.value for p in reader.get_data('scalar', 'lr')] == pytest.approx([0.002] * len(logged))
    # valid/*: one point for epoch 0, the numbers of the printed table
    row = [line for line in proc.stdout.splitlines() if '| 64x64_simplenet |' in line][-1]
    table = [float(v) for v in row.split('|')[2:-1]]
    for name, value in zip(metrics, table):
        points = reader.get_data('scalar', 'valid/' + name)
        assert [p.id for p in points] == [0]
        assert points[0].value == pytest.approx(value, abs=1e-3), name
    assert [p.id for p in reader.get_data('scalar', 'valid_loss')] == [0]


# ---------------------------------------------------------------------------------------------
# soft OKS-NMS in valid.py on the real COCO fixtures

@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    return real_coco_root(tmp_path_factory.mktemp('coco_nms'))


def test_soft_oks_nms_in_valid(coco_root, tmp_path):
    det = require_fixtures('real', 'coco', 'test_coco_det_AP_H_56.json')
    pth = require_fixtures(*SIMPLENET_PTH)
    thre = 0.3
    results, tables = {}, {}
    for mode in ('hard', 'soft'):
        proc = run('valid.py', '--cfg', COCO_CFG, '--model-file', pth, '--use-detect-bbox',
                   '--coco-bbox-file', det, '--no-flip-test', '--output', tmp_path / mode,
                   'DATASET.ROOT', coco_root, 'DATASET.TEST_SET', 'val2017', 'WORKERS', '0',
                   'TEST.IMAGE_THRE', thre, 'TEST.SOFT_NMS', str(mode == 'soft'))
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(tmp_path / mode / 'results' / 'keypoints_val2017_results.json') as f:
            results[mode] = json.load(f)
        tables[mode] = [line for line in proc.stdout.splitlines() if '| ' in line][-1]

    # the detections valid.py runs on: person boxes scoring >= TEST.IMAGE_THRE
    with open(det) as f:
        boxes = [d for d in json.load(f) if d['category_id'] == 1 and d['score'] >= thre]
    per_image = {i: sum(d['image_id'] == i for d in boxes) for i in {d['image_id'] for d in boxes}}

    def count(records):
        return {i: sum(r['image_id'] == i for r in records) for i in per_image}

    def key(r):
        return r['image_id'], round(r['score'], 9), tuple(np.round(r['keypoints'], 4))

    # soft OKS-NMS only re-orders (and keeps at most 20 per image); greedy OKS-NMS drops the
    # near-duplicates (OKS above TEST.OKS_THRE 0.9) among these overlapping detections
    assert count(results['soft']) == {i: min(n, 20) for i, n in per_image.items()}
    hard = count(results['hard'])
    assert all(hard[i] <= per_image[i] for i in per_image)
    assert sum(hard.values()) < sum(per_image.values())
    assert {key(r) for r in results['hard']} < {key(r) for r in results['soft']}
    assert tables['hard'] != tables['soft']


# ---------------------------------------------------------------------------------------------
# infer.py with detections from a json and with the HOG people detector, on real photos

def persons(path):
    with open(path) as f:
        data = json.load(f)
    return data, [(p['box'], np.array([[k['x'], k['y'], k['score']] for k in p['keypoints']]))
                  for p in data['persons']]


def assert_in_crop(box, kps):
    """Keypoints lie in the crop the model saw: the box padded by 1.25 at the 3:4 aspect."""
    x, y, w, h = box[:4]
    half_w, half_h = max(w, h * 0.75) * 0.625, max(h, w / 0.75) * 0.625
    assert np.all(np.abs(kps[:, 0] - (x + w / 2)) <= half_w + 1)
    assert np.all(np.abs(kps[:, 1] - (y + h / 2)) <= half_h + 1)


def test_infer_det_json_over_a_folder_of_real_photos(tmp_path):
    folder = require_fixtures('real', 'coco')
    det = require_fixtures('real', 'coco', 'test_coco_det_AP_H_56.json')
    pth = require_fixtures(*SIMPLENET_PTH)
    out = tmp_path / 'out'
    proc = run('infer.py', '--cfg', COCO_CFG, '--model-file', pth, '--img-dir', folder,
               '--det-json', det, '--det-thre', '0.9', '--no-flip-test', '--output', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr and 'warning' not in proc.stderr, proc.stderr
    with open(det) as f:
        dets = json.load(f)
    photos = sorted(n for n in os.listdir(folder) if n.endswith('.jpg'))
    assert sorted(os.listdir(out)) == sorted(
        n[:-4] + s for n in photos for s in ('_keypoints.json', '_pose.jpg'))
    for name in photos:
        image_id = int(name[:-4])   # COCO file names are the image id
        expected = sorted(([d['bbox'], d['score']] for d in dets
                           if d['image_id'] == image_id and d['score'] >= 0.9),
                          key=lambda b: -b[1])
        data, found = persons(out / (name[:-4] + '_keypoints.json'))
        assert 'detections' in data['box_source']
        assert len(found) == len(expected) > 0, name
        for (box, kps), (want, _) in zip(found, expected):
            np.testing.assert_allclose(box[:4], want, rtol=1e-5, err_msg=name)
            assert kps.shape == (17, 3)
            assert_in_crop(box, kps)
    # the skier (the one person of 000000000785): close to the annotation
    with open(require_fixtures('real', 'coco', 'test_coco.json')) as f:
        anno = [a for a in json.load(f)['annotations'] if a['image_id'] == 785][0]
    _, [(box, kps)] = persons(out / '000000000785_keypoints.json')
    gt = np.array(anno['keypoints'], dtype=float).reshape(17, 3)
    vis = gt[:, 2] > 0
    assert np.median(np.linalg.norm(kps[vis, :2] - gt[vis, :2], axis=1)) < 0.1 * anno['bbox'][3]


def test_infer_with_the_hog_detector_on_real_photos(tmp_path):
    from posekit.inference.detector import hog_available
    if not hog_available():
        pytest.skip('this OpenCV has no HOG people detector (OpenCV 5 without contrib)')
    folder = require_fixtures('real', 'coco')
    pth = require_fixtures(*SIMPLENET_PTH)
    with open(require_fixtures('real', 'coco', 'test_coco.json')) as f:
        gt_boxes = {}
        for a in json.load(f)['annotations']:
            gt_boxes.setdefault(a['image_id'], []).append(a['bbox'])
    out = tmp_path / 'out'
    proc = run('infer.py', '--cfg', COCO_CFG, '--model-file', pth, '--img-dir', folder,
               '--detector', 'hog', '--no-flip-test', '--output', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    photos = sorted(n for n in os.listdir(folder) if n.endswith('.jpg'))
    done = sorted(n[:-len('_keypoints.json')] for n in os.listdir(out) if n.endswith('.json'))
    # HOG (upright, unoccluded, >= ~100 px tall people) misses people in these photos: the
    # photos where it finds nobody are skipped, each with one warning line
    skipped = [n[:-4] for n in photos if n[:-4] not in done]
    warnings_ = proc.stderr.strip().splitlines() if proc.stderr.strip() else []
    assert len(warnings_) == len(skipped), proc.stderr
    for stem, line in zip(skipped, warnings_):
        assert line.startswith('infer: warning:') and stem in line and 'no person detected' in line
    # what it does find is a person: every box overlaps an annotated person (IoU >= 0.5),
    # and the pose is run in it
    found = 0
    for stem in done:
        data, people = persons(out / (stem + '_keypoints.json'))
        assert data['box_source'] == 'hog detector'
        for box, kps in people:
            assert max(iou(box[:4], g) for g in gt_boxes[int(stem)]) >= 0.5, (stem, box)
            assert kps.shape == (17, 3)
            assert_in_crop(box, kps)
            found += 1
    assert found >= 2, (done, proc.stdout)   # at the time of writing: one in 196141, one in 197388


# ---------------------------------------------------------------------------------------------
# convert.py's command line on LPN and HRNet

def convert(cfg_file, src, dst, *opts):
    return run('convert.py', '--cfg', cfg_file, '--src', src, '--dst', dst, *opts)


def test_convert_cli_lpn50_reference_layout_gives_the_reference_output(tmp_path):
    """The LPN-50 key layout of the reference (fixture), filled as the reference output was made:
    the converted weights give the reference network's output."""
    torch = pytest.importorskip('torch')
    import importlib.util
    spec = importlib.util.spec_from_file_location('_make_ckpt', require_fixtures('make_ckpt.py'))
    make_ckpt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_ckpt)
    with open(require_fixtures('layout_lpn_50.json')) as f:
        layout = json.load(f)
    src = tmp_path / 'lpn_50.pth'
    torch.save({'state_dict': make_ckpt.fill(layout, 11)}, str(src))
    cfg_file = os.path.join(ROOT, 'experiments', 'coco', 'lpn', 'lpn50_256x192_gd256x2_gc.yaml')
    dst = tmp_path / 'lpn_50.pdparams'
    proc = convert(cfg_file, src, dst)
    assert proc.returncode == 0, proc.stderr
    assert 'LayerNorm reshaped' in proc.stdout and 'lpn_50' in proc.stdout

    from posekit.checkpoint import load_checkpoint
    from posekit.config import load_config
    from posekit.models import build_model
    model = build_model(load_config(str(tmp_path / 'lpn_50.yaml')))
    load_checkpoint(model, str(dst))
    model.eval()
    x = np.random.default_rng(1234).standard_normal((2, 3, 256, 192)).astype(np.float32)
    with paddle.no_grad():
        out = model(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(out, np.load(require_fixtures('expected_lpn_50.npy')),
                               rtol=0, atol=1e-4)


CLI_FAMILIES = {
    'lpn_50_se': ('coco/lpn/lpn50_256x192_gd256x2_gc.yaml', ['MODEL.EXTRA.ATTENTION', 'SE'],
                  'Linear transposed'),
    'lpn_18h_gc': ('coco/lpn/lpn18h_256x192_gd256x2_gc.yaml', [], 'LayerNorm reshaped'),
    'hrnet_w18_small_v1': ('coco/hrnet/w18_small_v1_256x192_adam_lr1e-3.yaml', [], None),
}


@pytest.mark.parametrize('family', sorted(CLI_FAMILIES))
def test_convert_cli_lpn_and_hrnet(family, tmp_path):
    """Seeded random weights in the PyTorch key layout (built from the reference naming rules
    by test_checkpoint.torch_layout_of), DataParallel-prefixed, through the command line."""
    from test_checkpoint import prefixed, to_torch, torch_layout_of, torch_save
    from posekit.config import load_config
    from posekit.models import build_model
    rel, opts, note = CLI_FAMILIES[family]
    cfg_file = os.path.join(ROOT, 'experiments', rel)
    cfg = load_config(cfg_file, opts)
    torch_state, expected, linear, layer_norm = torch_layout_of(build_model(cfg),
                                                                np.random.default_rng(5))
    src = torch_save({'epoch': 3, 'state_dict': to_torch(prefixed(torch_state))},
                     tmp_path / 'model_best.pth.tar', 'zip')
    dst = tmp_path / 'converted.pdparams'
    proc = convert(cfg_file, src, dst, *opts)
    assert proc.returncode == 0, proc.stderr
    assert "'module.' prefix stripped" in proc.stdout
    if note:
        assert note in proc.stdout
    if family == 'lpn_50_se':
        assert linear and '%d Linear transposed' % len(linear) in proc.stdout
    if family == 'lpn_18h_gc':
        assert layer_norm and '%d LayerNorm reshaped' % len(layer_norm) in proc.stdout
    got = weights(dst)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    # the written config builds the same model
    assert load_config(str(tmp_path / 'converted.yaml')) == cfg
