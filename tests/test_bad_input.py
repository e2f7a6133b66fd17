"""Bad values and bad files end as one line and a non-zero exit, before any work is done; inputs
that are used anyway (skipped boxes, a head box of size 0, a truncated image) are named in a
warning with their count (issue 9, points 4 and 6).

The entry-point cases run as real subprocesses (``pose_estimation/*.py``), a few at a time, on
tiny data sets written here; none loads a model or reads an image.
"""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import yaml
from scipy.io import savemat

from conftest import ROOT

from posekit.config import ConfigError, load_config
from posekit.config.checks import RULES
from posekit.data.base import DatasetError
from posekit.data.coco import BoxWarning, COCODataset
from posekit.data.mpii import MPIIDataset
from posekit.evaluation.coco_eval import NoGroundTruthWarning, check_coco_ground_truth
from posekit.evaluation.pckh import HeadBoxWarning, evaluate_pckh
from posekit.evaluation.validate import PredictionsError, check_ground_truth, load_predictions
from posekit.io import TruncatedImageWarning, read_image

MPII_CFG = os.path.join(ROOT, 'experiments', 'synthetic', 'mpii_simplenet_128x128.yaml')
COCO_CFG = os.path.join(ROOT, 'experiments', 'coco', 'mobile', '256x192_d256x3_adam_lr1e-3.yaml')


# ------------------------------------------------------------------------------ tiny data sets

def _mpii_people(n):
    rng = np.random.default_rng(0)
    return rng.uniform(20, 180, size=(n, 16, 2)).round(1)  # 1-based pixels, as MPII


def make_mpii(root, n=3, zero_head=(), gt_people=None):
    """``root/annot/{train,valid}.json`` + ``gt_valid.mat`` (head boxes of size 0 for the
    persons in ``zero_head``; ``gt_people`` persons in the .mat). No images."""
    os.makedirs(os.path.join(root, 'annot'), exist_ok=True)
    joints = _mpii_people(n)
    anno = [{'image': 'p%d.jpg' % i, 'center': [100.0, 100.0], 'scale': 1.0,
             'joints': joints[i].tolist(), 'joints_vis': [1] * 16} for i in range(n)]
    for name in ('train.json', 'valid.json'):
        with open(os.path.join(root, 'annot', name), 'w') as f:
            json.dump(anno, f)
    m = n if gt_people is None else gt_people
    gj = _mpii_people(m)
    gj[:min(m, n)] = joints[:min(m, n)]
    boxes = np.array([[[10.0, 10.0], [40.0, 40.0]]] * m)  # N x 2 x 2
    for i in zero_head:
        boxes[i, 1] = boxes[i, 0]
    savemat(os.path.join(root, 'annot', 'gt_valid.mat'), {
        'jnt_missing': np.zeros((16, m)), 'pos_gt_src': gj.transpose(1, 2, 0),
        'headboxes_src': boxes.transpose(1, 2, 0)})
    return joints - 1  # 0-based: predictions equal to the ground truth


def _coco_person(x, y, w, h):
    kpts = []
    for k in range(17):
        kpts += [x + w * (k % 4 + 1) / 5.0, y + h * (k // 4 + 1) / 6.0, 2]
    return kpts


def make_coco(root, annotation_keys=None):
    """``root/annotations/person_keypoints_val2017.json``: two images, one person each."""
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    images = [{'id': 1, 'width': 200, 'height': 160, 'file_name': '000000000001.jpg'},
              {'id': 2, 'width': 200, 'height': 160, 'file_name': '000000000002.jpg'}]
    anns = []
    for i, (img, box) in enumerate([(1, [20, 10, 60, 120]), (2, [100, 20, 50, 100])]):
        anns.append({'id': i + 1, 'image_id': img, 'category_id': 1, 'iscrowd': 0,
                     'bbox': box, 'area': box[2] * box[3] * 0.6, 'num_keypoints': 17,
                     'keypoints': _coco_person(*box)})
    if annotation_keys is not None:
        anns = [{k: v for k, v in a.items() if k in annotation_keys} for a in anns]
    gt = {'images': images, 'annotations': anns,
          'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person'}]}
    path = os.path.join(root, 'annotations', 'person_keypoints_val2017.json')
    with open(path, 'w') as f:
        json.dump(gt, f)
    return path


def write_det(path, boxes):
    # json.dump writes NaN as the bare word NaN, which json.load (and detectors' output) accept
    with open(path, 'w') as f:
        json.dump([{'image_id': img, 'category_id': 1, 'bbox': box, 'score': 0.9}
                   for img, box in boxes], f)
    return path


# ------------------------------------------------------------------------------ entry points

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """Every file the entry-point cases need, written once."""
    d = tmp_path_factory.mktemp('bad_input')
    out = {'root': d}
    out['mpii_corrupt'] = str(d / 'mpii_corrupt')
    make_mpii(out['mpii_corrupt'])
    with open(os.path.join(out['mpii_corrupt'], 'annot', 'gt_valid.mat'), 'wb') as f:
        f.write(b'MATLAB 5.0 MAT-file' + b'\0' * 200)  # a header, then nothing usable
    out['mpii_head'] = str(d / 'mpii_head')
    np.save(d / 'mpii_head_gt.npy', make_mpii(out['mpii_head'], n=3, zero_head=(1,)))
    (d / 'zero.npz').write_bytes(b'')
    out['coco'] = str(d / 'coco')
    make_coco(out['coco'])
    # one good box, then one of each kind that cannot be used
    write_det(d / 'det_mixed.json', [(1, [20, 10, 60, 120]), (1, [float('nan'), 10, 60, 120]),
                                     (2, [100, 20, 0, 100]), (2, [500, 400, 30, 30]),
                                     (7, [10, 10, 30, 30])])
    write_det(d / 'det_nan.json', [(1, [float('nan')] * 4), (2, [1, 2, float('inf'), 3])])
    one = np.asarray(_coco_person(20, 10, 60, 120)).reshape(1, 17, 3)[:, :, :2]
    np.save(d / 'coco_one.npy', one)
    out['coco_nokp'] = str(d / 'coco_nokp')
    make_coco(out['coco_nokp'], annotation_keys=('id', 'image_id', 'category_id', 'keypoints',
                                                 'area', 'bbox', 'iscrowd'))
    # untrained SimpleNet weights: valid.py loads them, then must stop on the ground truth
    # before running them (the images do not exist: running would fail on those instead)
    from posekit.checkpoint import save_paddle_state_dict
    from posekit.models import build_model
    cfg = load_config(MPII_CFG, ['DATASET.SYNTHETIC.ENABLED', 'false'])
    save_paddle_state_dict(build_model(cfg, is_train=False).state_dict(),
                           str(d / 'simplenet.pdparams'))
    (d / 'empty.yaml').write_text('# nothing but a comment\n')
    return out


def _cases(d):
    root = d['root']
    mpii = ['DATASET.SYNTHETIC.ENABLED', 'false', 'OUTPUT_DIR', str(root / 'out'),
            'LOG_DIR', str(root / 'log')]
    coco = ['--output', str(root / 'coco_out'), 'DATASET.ROOT', d['coco'],
            'DATASET.TEST_SET', 'val2017', 'OUTPUT_DIR', str(root / 'out'),
            'LOG_DIR', str(root / 'log')]
    train = ['train.py', '--cfg', MPII_CFG, '--no-progress']
    valid = ['valid.py', '--cfg', MPII_CFG]
    weights = ['--model-file', str(root / 'simplenet.pdparams')]
    one_coco = ['--predictions', str(root / 'coco_one.npy')]
    det = ['valid.py', '--cfg', COCO_CFG, '--use-detect-bbox', '--coco-bbox-file']
    return {
        # (argv, exit code, words of the one error line / of a warning)
        'train batch -4': (train + mpii + ['TRAIN.BATCH_SIZE_PER_GPU', '-4'], 1,
                           ["'TRAIN.BATCH_SIZE_PER_GPU'", 'got -4']),
        'adamw': (train + mpii + ['TRAIN.OPTIMIZER', 'adamw'], 1,
                  ["'TRAIN.OPTIMIZER'", 'adam, sgd', "'adamw'"]),
        'lr -1': (train + mpii + ['TRAIN.LR', '-1'], 1, ["'TRAIN.LR'", '> 0']),
        'workers -2': (train + mpii + ['WORKERS', '-2'], 1, ["'WORKERS'", '>= 0']),
        'end epoch 0': (train + mpii + ['TRAIN.END_EPOCH', '0'], 1,
                        ["'TRAIN.END_EPOCH'", 'TRAIN.BEGIN_EPOCH']),
        'empty yaml': (['train.py', '--cfg', str(root / 'empty.yaml')], 1,
                       ['empty config file', 'empty.yaml']),
        'valid test batch 0': (valid + weights + mpii + ['TEST.BATCH_SIZE_PER_GPU', '0'], 1,
                               ["'TEST.BATCH_SIZE_PER_GPU'"]),
        'corrupt gt_valid.mat': (valid + weights + mpii + ['DATASET.ROOT', d['mpii_corrupt']], 1,
                                 ['gt_valid.mat', 'corrupt']),
        'train corrupt gt': (train + mpii + ['DATASET.ROOT', d['mpii_corrupt'], 'WORKERS', '0'],
                             1, ['gt_valid.mat', 'corrupt']),
        'empty npz': (valid + ['--predictions', str(root / 'zero.npz')] + mpii
                      + ['DATASET.ROOT', d['mpii_head']], 1, ['zero.npz', 'empty']),
        'det all NaN': (det + [str(root / 'det_nan.json')] + one_coco + coco, 1,
                        ['det_nan.json', 'no usable box', '2 with a non-finite value']),
        'coco gt lacks num_keypoints': (
            ['valid.py', '--cfg', COCO_CFG, '--use-gt-bbox'] + one_coco + coco[:2]
            + ['DATASET.ROOT', d['coco_nokp']] + coco[4:], 1,
            ['person_keypoints_val2017.json', 'num_keypoints']),
        # used anyway, with a warning that counts
        'det mixed': (det + [str(root / 'det_mixed.json')] + one_coco + coco, 0,
                      ['det_mixed.json', '4 box(es) skipped', '1 with a non-finite value',
                       '1 of zero or negative size', '1 entirely outside the image',
                       '1 on images not in the annotation file', '1 used']),
        'head box 0': (valid + ['--predictions', str(root / 'mpii_head_gt.npy')] + mpii
                       + ['DATASET.ROOT', d['mpii_head']], 0,
                       ['gt_valid.mat', '1 person(s)', 'head box of size 0',
                        '16 visible joints count as misses']),
    }


@pytest.fixture(scope='module')
def runs(data):
    """Every case's (returncode, stdout, stderr), two processes at a time."""
    cases = _cases(data)

    def run(name, argv):
        # each case writes in a folder of its own: two runs at a time on one output folder are
        # refused (posekit.outputs.hold_output_folder)
        own = str(data['root'] / 'runs' / name.replace(' ', '_'))
        argv = [own if i and argv[i - 1] in ('--output', 'OUTPUT_DIR') else a
                for i, a in enumerate(argv)]
        script = os.path.join(ROOT, 'pose_estimation', argv[0])
        return subprocess.run([sys.executable, script] + argv[1:], cwd=str(data['root']),
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(run, name, case[0]) for name, case in cases.items()}
        return {name: f.result() for name, f in futures.items()}


ERROR_CASES = ['train batch -4', 'adamw', 'lr -1', 'workers -2', 'end epoch 0', 'empty yaml',
               'valid test batch 0', 'corrupt gt_valid.mat', 'train corrupt gt', 'empty npz',
               'det all NaN', 'coco gt lacks num_keypoints']
WARNING_CASES = ['det mixed', 'head box 0']


def test_every_case_is_checked(data):
    assert sorted(ERROR_CASES + WARNING_CASES) == sorted(_cases(data))


@pytest.mark.parametrize('name', ERROR_CASES)
def test_one_line_and_non_zero_exit(name, runs, data):
    proc = runs[name]
    _, code, words = _cases(data)[name]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ': error: ' in ln]
    assert proc.returncode == code, proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], errors[0]


def test_config_errors_come_before_any_output(runs, data):
    # a bad value stops train.py before a run folder, a log or data exist
    assert not os.path.exists(data['root'] / 'out' / 'mpii' / 'simplenet' / 'mpii_simplenet_128x128'
                              / 'config.yaml')
    for name in ('train batch -4', 'adamw', 'end epoch 0'):
        assert runs[name].stdout == '', runs[name].stdout


@pytest.mark.parametrize('name', WARNING_CASES)
def test_used_anyway_with_a_counting_warning(name, runs, data):
    proc = runs[name]
    _, code, words = _cases(data)[name]
    assert proc.returncode == 0, proc.stderr
    warnings_ = [ln for ln in proc.stderr.splitlines() if ': warning: ' in ln]
    hits = [ln for ln in warnings_ if all(w in ln for w in words)]
    assert len(hits) == 1, proc.stderr


def test_head_box_of_size_0_counts_as_misses(runs):
    # the numbers stay the reference's: person 1's 16 joints are misses, the others hits
    rows = [ln[ln.index('|'):] for ln in runs['head box 0'].stdout.splitlines() if '|' in ln]
    table = dict(zip([c.strip() for c in rows[-3].split('|')],
                     [c.strip() for c in rows[-1].split('|')]))
    assert float(table['Mean']) == pytest.approx(100.0 * 2 / 3, abs=1e-3)


# ------------------------------------------------------------------------------ config table

BAD_VALUES = [
    ('TRAIN.BATCH_SIZE_PER_GPU', '0'), ('TEST.BATCH_SIZE_PER_GPU', '-1'), ('TRAIN.LR', '0'),
    ('TRAIN.LR', 'nan'), ('TRAIN.LR', 'inf'), ('WORKERS', '-1'), ('PRINT_FREQ', '-5'),
    ('TRAIN.OPTIMIZER', 'rmsprop'), ('TRAIN.LR_TYPE', 'cosine'), ('TRAIN.LR_FACTOR', '0'),
    ('TRAIN.LR_STEP', '[10, -1]'), ('TRAIN.WARMUP_EPOCHS', '-1'), ('TRAIN.MOMENTUM', '1.5'),
    ('TRAIN.WD', '-0.1'), ('TRAIN.BEGIN_EPOCH', '-1'), ('TRAIN.END_EPOCH', '-3'),
    ('MODEL.SIGMA', '0'), ('MODEL.IMAGE_SIZE', '[0, 256]'), ('MODEL.HEATMAP_SIZE', '-64'),
    ('MODEL.NUM_JOINTS', '0'), ('MODEL.TARGET_TYPE', 'offset'), ('MODEL.STYLE', 'keras'),
    ('DATASET.STD', '[0.2, 0, 0.2]'), ('DATASET.MEAN', '[0.5, 0.5]'),
    ('DATASET.PIXEL_SCALE', '0'), ('DATASET.SCALE_FACTOR', '-0.1'), ('DATASET.ROT_FACTOR', '-1'),
    ('DATASET.NUM_JOINTS_HALF_BODY', '-1'), ('TEST.OKS_THRE', '2'), ('TEST.IN_VIS_THRE', '-1'),
    ('LOSS.TOPK', '0'), ('TEST.BOXSIZE', '0'), ('TEST.MAX_IMAGES', '-1'),
]


@pytest.mark.parametrize('key, value', BAD_VALUES)
def test_bad_value_names_its_key(key, value):
    with pytest.raises(ConfigError) as e:
        load_config(None, [key, value])
    msg = str(e.value)
    assert "'%s' (command line) must be" % key in msg and '\n' not in msg


def test_every_rule_is_tested():
    assert {rule[0] for rule in RULES} == {k for k, _ in BAD_VALUES}


def test_end_epoch_is_checked_against_begin_epoch():
    with pytest.raises(ConfigError, match="'TRAIN.END_EPOCH' \\(default\\)"):
        load_config(None, ['TRAIN.BEGIN_EPOCH', '140'])


def test_boundaries_and_spellings_that_stay_valid():
    cfg = load_config(None, ['WORKERS', '0', 'PRINT_FREQ', '0', 'TRAIN.OPTIMIZER', 'SGD',
                             'TRAIN.LR_TYPE', 'poly', 'TRAIN.BEGIN_EPOCH', '3',
                             'TRAIN.END_EPOCH', '4', 'DATASET.PROB_HALF_BODY', '-1.0',
                             'TRAIN.LR_FACTOR', '1e30'])
    assert cfg.TRAIN.OPTIMIZER == 'SGD' and cfg.WORKERS == 0


def test_source_of_a_bad_value_is_named(tmp_path):
    path = tmp_path / 'exp.yaml'
    path.write_text(yaml.safe_dump({'TRAIN': {'BATCH_SIZE_PER_GPU': 0}}))
    with pytest.raises(ConfigError, match="'TRAIN.BATCH_SIZE_PER_GPU' \\(%s\\)" % str(path)):
        load_config(str(path))
    empty = tmp_path / 'empty.yaml'
    empty.write_text('')
    with pytest.raises(ConfigError, match='empty config file'):
        load_config(str(empty))


# ------------------------------------------------------------------------------ data and images

def test_coco_ground_truth_boxes_outside_the_image_are_counted(tmp_path):
    path = make_coco(str(tmp_path))
    with open(path) as f:
        gt = json.load(f)
    gt['annotations'][1]['bbox'] = [300, 200, 40, 40]  # beyond the 200 x 160 image
    gt['annotations'].append(dict(gt['annotations'][0], id=3, area=0))
    with open(path, 'w') as f:
        json.dump(gt, f)
    cfg = load_config(COCO_CFG, ['TEST.USE_GT_BBOX', 'true', 'DATASET.ROOT', str(tmp_path),
                                 'DATASET.TEST_SET', 'val2017'])
    with pytest.warns(BoxWarning, match=r'2 person\(s\) with keypoints skipped.*\(1 used\)'):
        ds = COCODataset(cfg)
    assert len(ds) == 1


def test_coco_detection_boxes_without_annotation_file_check_their_own_values(tmp_path):
    det = write_det(str(tmp_path / 'det.json'), [(1, [1, 2, 30, 40]), (1, [1, 2, -3, 40])])
    cfg = load_config(COCO_CFG, ['TEST.USE_GT_BBOX', 'false', 'TEST.COCO_BBOX_FILE', det,
                                 'DATASET.ROOT', str(tmp_path), 'DATASET.TEST_SET', 'val2017'])
    with pytest.warns(BoxWarning, match=r'1 box\(es\) skipped \(1 of zero or negative size\)'):
        assert len(COCODataset(cfg)) == 1


def test_mpii_person_box_of_size_0_is_an_error(tmp_path):
    make_mpii(str(tmp_path), n=2)
    path = tmp_path / 'annot' / 'valid.json'
    anno = json.loads(path.read_text())
    anno[1]['scale'] = 0
    path.write_text(json.dumps(anno))
    cfg = load_config(MPII_CFG, ['DATASET.ROOT', str(tmp_path)])
    with pytest.raises(DatasetError, match='valid.json: malformed entry 1.*scale'):
        MPIIDataset(cfg)


def test_head_box_warning_only_for_people_with_visible_joints():
    n = 3
    gt = {'jnt_missing': np.zeros((16, n)), 'pos_gt_src': np.zeros((16, 2, n)),
          'headboxes_src': np.zeros((2, 2, n))}
    gt['headboxes_src'][1, :, 0] = 10  # person 0 has a head box; 1 and 2 do not
    gt['jnt_missing'][:, 2] = 1  # person 2 has no visible joint: nothing to count
    with pytest.warns(HeadBoxWarning, match=r'1 person\(s\).*16 visible joints.*person 1'):
        values = evaluate_pckh(np.full((n, 16, 2), -1.0), gt)
    assert values['Head'] == pytest.approx(50.0)


def test_truncated_jpeg_is_named(tmp_path):
    img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    full = str(tmp_path / 'full.jpg')
    cv2.imwrite(full, img)
    data = open(full, 'rb').read()
    cut = tmp_path / 'cut.jpg'
    cut.write_bytes(data[:len(data) // 2])
    (tmp_path / 'tail.jpg').write_bytes(data + b'\0' * 64)  # bytes after the end marker: fine
    with pytest.warns(TruncatedImageWarning, match='cut.jpg'):
        image = read_image(str(cut))
    assert image.shape == img.shape  # decoded partly, as OpenCV does, and used
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        read_image(full)
        read_image(str(tmp_path / 'tail.jpg'))


# ------------------------------------------------------------------------------ valid.py's files

@pytest.mark.parametrize('name, words', [
    ('zero.npy', 'is empty'), ('object.npz', 'Object arrays'), ('object.npy', 'Object arrays'),
    ('nothing.npz', 'no array preds (it has: nothing)'), ('text.npz', 'numeric array'),
    ('junk.mat', 'cannot read predictions'), ('other.mat', 'no variable preds'),
])
def test_unusable_predictions_files(tmp_path, name, words):
    path = tmp_path / name
    if name == 'zero.npy':
        path.write_bytes(b'')
    elif name == 'object.npz':
        np.savez(path, preds=np.array([None, 1.0], dtype=object))
    elif name == 'object.npy':
        np.save(path, np.array([None, 1.0], dtype=object), allow_pickle=True)
    elif name == 'nothing.npz':
        np.savez(path)
    elif name == 'text.npz':
        np.savez(path, preds=np.array(['a', 'b']))
    elif name == 'junk.mat':
        path.write_bytes(b'junk' * 50)
    else:
        savemat(path, {'x': 1})
    with pytest.raises(PredictionsError) as e:
        load_predictions(str(path))
    assert words in str(e.value) and name in str(e.value)


def test_ground_truth_must_hold_the_annotated_people(tmp_path):
    make_mpii(str(tmp_path), n=3, gt_people=5)
    cfg = load_config(MPII_CFG, ['DATASET.ROOT', str(tmp_path)])
    with pytest.raises(DatasetError, match=r'gt_valid.mat has 5 people but .*valid.json has 3'):
        check_ground_truth(cfg, MPIIDataset(cfg))


def test_coco_ground_truth_without_keypoints_is_named(tmp_path):
    path = make_coco(str(tmp_path))
    with open(path) as f:
        gt = json.load(f)
    for ann in gt['annotations']:
        ann['num_keypoints'] = 0
    with open(path, 'w') as f:
        json.dump(gt, f)
    with pytest.warns(NoGroundTruthWarning, match='no person with keypoints.*-1'):
        check_coco_ground_truth(path)
