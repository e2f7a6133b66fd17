"""Dataset loading: parity with the reference fixtures (dataset_db.json, *_getitem.npz) and
clear errors on bad input."""
import json
import os

import numpy as np
import pytest

from conftest import require_fixtures

from posekit.config import load_config
from posekit.data import (COCODataset, DatasetError, MPIIDataset, load_coco_det_records,
                              load_coco_gt_records, load_mpii_records, read_image)
from posekit.io import ImageReadError

COCO_YAML = 'experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml'
MPII_YAML = 'experiments/mpii/resnet50/256x256_d256x3_adam_lr1e-3.yaml'


@pytest.fixture
def real():
    return require_fixtures('real')


@pytest.fixture
def db(real):
    with open(os.path.join(real, 'dataset_db.json')) as f:
        return json.load(f)


def coco_cfg(repo_root, *overrides):
    return load_config(os.path.join(repo_root, COCO_YAML), list(overrides))


def mpii_cfg(repo_root, *overrides):
    return load_config(os.path.join(repo_root, MPII_YAML), list(overrides))


def coco_gt_dataset(repo_root, real, **kw):
    cfg = coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'true')
    return COCODataset(cfg, ann_file=os.path.join(real, 'coco', 'test_coco.json'),
                       image_dir=os.path.join(real, 'coco'), **kw)


def mpii_dataset(repo_root, real, **kw):
    return MPIIDataset(mpii_cfg(repo_root), ann_file=os.path.join(real, 'mpii', 'test_mpii.json'),
                       image_dir=os.path.join(real, 'mpii'), **kw)


def assert_records_match(records, expected, center_dtype):
    assert len(records) == len(expected)
    for rec, exp in zip(records, expected):
        assert os.path.basename(rec['image']) == exp['image']
        np.testing.assert_array_equal(rec['center'], np.asarray(exp['center'], center_dtype))
        np.testing.assert_array_equal(rec['scale'], np.asarray(exp['scale'], center_dtype))
        np.testing.assert_array_equal(rec['joints_3d'], exp['joints_3d'])
        np.testing.assert_array_equal(rec['joints_3d_vis'], exp['joints_3d_vis'])
        if 'score' in exp:
            assert rec['score'] == pytest.approx(exp['score'], abs=0)
        else:
            assert 'score' not in rec


# ---------------------------------------------------------------- records (dataset_db.json)

def test_coco_gt_records_match_reference(repo_root, real, db):
    ds = coco_gt_dataset(repo_root, real)
    assert_records_match(ds.db, db['coco_gt_bbox_db'], np.float32)
    # the function form gives the same records
    recs = load_coco_gt_records(os.path.join(real, 'coco', 'test_coco.json'),
                                os.path.join(real, 'coco'), 192 / 256)
    assert_records_match(recs, db['coco_gt_bbox_db'], np.float32)


def test_coco_det_records_match_reference(repo_root, real, db):
    det = os.path.join(real, 'coco', 'test_coco_det_AP_H_56.json')
    cfg = coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'false', 'TEST.COCO_BBOX_FILE', det,
                   'TEST.IMAGE_THRE', '0.0')
    ds = COCODataset(cfg, ann_file=os.path.join(real, 'coco', 'test_coco.json'),
                     image_dir=os.path.join(real, 'coco'))
    assert len(ds) == 118
    assert_records_match(ds.db, db['coco_det_bbox_db'], np.float32)


def test_coco_det_image_thre_filters(real):
    det = os.path.join(real, 'coco', 'test_coco_det_AP_H_56.json')
    with open(det) as f:
        boxes = json.load(f)
    thr = 0.5
    expected = sum(1 for b in boxes if b['category_id'] == 1 and b['score'] >= thr)
    recs = load_coco_det_records(det, os.path.join(real, 'coco'), 0.75, image_thre=thr)
    assert len(recs) == expected < len(boxes)
    assert all(r['score'] >= thr for r in recs)


def test_coco_image_path_rule(real):
    recs = load_coco_gt_records(os.path.join(real, 'coco', 'test_coco.json'), '/imgs', 0.75,
                                image_set='val2014')
    assert recs[0]['image'] == os.path.join('/imgs', 'COCO_val2014_000000000785.jpg')


def test_mpii_records_match_reference(repo_root, real, db):
    ds = mpii_dataset(repo_root, real)
    assert_records_match(ds.db, db['mpii_db'], np.float64)


def test_mpii_test_set_has_no_joints(real):
    recs = load_mpii_records(os.path.join(real, 'mpii', 'test_mpii.json'),
                             os.path.join(real, 'mpii'), is_test_set=True)
    assert len(recs) == 5
    assert all(not r['joints_3d'].any() and not r['joints_3d_vis'].any() for r in recs)


# ---------------------------------------------------------------- samples (*_getitem.npz)

def check_getitem(ds, npz_path):
    ref = np.load(npz_path)
    assert len(ds) == len(ref['target'])
    h, w = ref['input_bgr_uint8'].shape[1:3]
    for i in range(len(ds)):
        warped, joints, _, _ = ds.prepare(i)
        assert warped.dtype == np.uint8 and warped.shape == (h, w, 3)
        diff = np.abs(warped.astype(np.int16) - ref['input_bgr_uint8'][i].astype(np.int16))
        assert diff.max() <= 1, 'sample %d: crop differs by %d' % (i, diff.max())
        np.testing.assert_allclose(joints, ref['joints_in_crop'][i], rtol=0, atol=1e-6)

        inp, target, target_weight, meta = ds[i]
        assert inp.dtype == np.float32 and inp.shape == (3, h, w)
        np.testing.assert_array_equal(target, ref['target'][i])
        np.testing.assert_array_equal(target_weight, ref['target_weight'][i])
        np.testing.assert_allclose(meta['joints'], ref['joints_in_crop'][i], rtol=0, atol=1e-6)
        assert meta['rotation'] == 0 and meta['score'] == 1
        # the input is the normalised crop (BGR kept, RGB-ordered ImageNet statistics)
        expect = (warped.astype(np.float32) / 255.0 - np.float32([0.485, 0.456, 0.406])) \
            / np.float32([0.229, 0.224, 0.225])
        np.testing.assert_allclose(inp, expect.transpose(2, 0, 1), rtol=0, atol=1e-5)


def test_coco_gtbox_getitem_matches_reference(repo_root, real):
    check_getitem(coco_gt_dataset(repo_root, real), os.path.join(real, 'coco_gtbox_getitem.npz'))


def test_mpii_getitem_matches_reference(repo_root, real):
    check_getitem(mpii_dataset(repo_root, real), os.path.join(real, 'mpii_getitem.npz'))


# ---------------------------------------------------------------- training augmentation

def test_train_augmentation_is_seedable(repo_root, real):
    def samples(seed):
        ds = coco_gt_dataset(repo_root, real, is_train=True, rng=np.random.default_rng(seed))
        return [ds[i] for i in range(len(ds))]

    a, b, c = samples(7), samples(7), samples(8)
    for (ia, ta, wa, ma), (ib, tb, wb, mb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(wa, wb)
        assert ma['rotation'] == mb['rotation']
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    for inp, target, weight, meta in a:
        assert inp.shape == (3, 256, 192) and target.shape == (17, 64, 48)
        assert weight.shape == (17, 1)
        assert abs(meta['rotation']) <= 80


def test_train_flip_mirrors_joints(repo_root, real):
    cfg = coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'true', 'DATASET.SCALE_FACTOR', '0',
                   'DATASET.ROT_FACTOR', '0')

    class AlwaysFlip:  # uniform draws 0 -> rotation branch (r = 0 since rf = 0) and flip taken
        def random(self):
            return 0.0

        def standard_normal(self):
            return 0.0

    ds = COCODataset(cfg, is_train=True, rng=AlwaysFlip(),
                     ann_file=os.path.join(real, 'coco', 'test_coco.json'),
                     image_dir=os.path.join(real, 'coco'))
    ref = COCODataset(cfg, is_train=False, ann_file=os.path.join(real, 'coco', 'test_coco.json'),
                      image_dir=os.path.join(real, 'coco'))
    warped, joints, vis, meta = ds.prepare(0)
    warped0, joints0, vis0, _ = ref.prepare(0)
    img_w = read_image(ref.db[0]['image']).shape[1]
    assert meta['center'][0] == pytest.approx(img_w - ref.db[0]['center'][0] - 1)
    # left shoulder (5) of the flipped sample is the mirrored right shoulder (6) of the original
    for a, b in ((5, 6), (6, 5), (1, 2)):
        assert vis[a, 0] == vis0[b, 0]
        if vis0[b, 0]:
            # x' = W - x - 1 and c_x' = W - c_x - 1, so in the crop x -> 192 - x exactly
            assert joints[a, 0] == pytest.approx(192 - joints0[b, 0], abs=1e-4)
            assert joints[a, 1] == pytest.approx(joints0[b, 1], abs=1e-4)
    # the crop itself is (close to) the mirrored crop
    assert np.abs(warped[:, ::-1].astype(int) - warped0.astype(int)).mean() < 20


def test_half_body_changes_box(repo_root, real):
    cfg = coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'true', 'DATASET.PROB_HALF_BODY', '1.0',
                   'DATASET.SCALE_FACTOR', '0', 'DATASET.ROT_FACTOR', '0', 'DATASET.FLIP', 'false')
    ds = COCODataset(cfg, is_train=True, rng=np.random.default_rng(0),
                     ann_file=os.path.join(real, 'coco', 'test_coco.json'),
                     image_dir=os.path.join(real, 'coco'))
    changed = 0
    for i, rec in enumerate(ds.db):
        _, _, _, meta = ds.prepare(i)
        if rec['joints_3d_vis'][:, 0].sum() > 8:
            changed += not np.allclose(meta['center'], rec['center'])
            assert meta['scale'][0] / meta['scale'][1] == pytest.approx(0.75, rel=1e-5)
        else:
            np.testing.assert_array_equal(meta['center'], rec['center'])
    assert changed > 0


# ---------------------------------------------------------------- bad input

def test_missing_image_names_file(repo_root, real, tmp_path):
    ds = COCODataset(coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'true'),
                     ann_file=os.path.join(real, 'coco', 'test_coco.json'),
                     image_dir=str(tmp_path))
    with pytest.raises(DatasetError, match='000000000785.jpg'):
        ds[0]


def test_unreadable_image_names_file(repo_root, real, tmp_path):
    ann = tmp_path / 'one.json'
    with open(os.path.join(real, 'mpii', 'test_mpii.json')) as f:
        entries = json.load(f)[:1]
    ann.write_text(json.dumps(entries))
    (tmp_path / entries[0]['image']).write_bytes(b'not a jpeg at all')
    ds = MPIIDataset(mpii_cfg(repo_root), ann_file=str(ann), image_dir=str(tmp_path))
    with pytest.raises(DatasetError, match=entries[0]['image']):
        ds[0]
    with pytest.raises(ImageReadError, match='not found'):  # the one reader, posekit.io
        read_image(str(tmp_path / 'nope.jpg'))


@pytest.mark.parametrize('content', ['{"images": [', '', '[{"image": "a.jpg"}]', '{"a": 1}',
                                     '[{"image": "a.jpg", "center": [1, 2], "scale": 1.0, '
                                     '"joints": [[1, 2]], "joints_vis": [1]}]'])
def test_corrupt_mpii_json(repo_root, tmp_path, content):
    path = tmp_path / 'bad_mpii.json'
    path.write_text(content)
    with pytest.raises(DatasetError, match='bad_mpii.json'):
        MPIIDataset(mpii_cfg(repo_root), ann_file=str(path), image_dir=str(tmp_path))


@pytest.mark.parametrize('content', ['{"images": [', '[]', '{"images": [{"id": 1}]}',
                                     '{"images": [{"id": 1, "width": 10, "height": 10}], '
                                     '"annotations": [{"image_id": 1, "bbox": [0, 0, 5, 5], '
                                     '"area": 25, "category_id": 1, "keypoints": [1, 2]}]}'])
def test_corrupt_coco_json(repo_root, tmp_path, content):
    path = tmp_path / 'bad_coco.json'
    path.write_text(content)
    with pytest.raises(DatasetError, match='bad_coco.json'):
        COCODataset(coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'true'), ann_file=str(path),
                    image_dir=str(tmp_path))


@pytest.mark.parametrize('content', ['[{"image_id": 1}]', '{"x": 1}', '[{"image_id": 1, '
                                     '"category_id": 1, "bbox": [1, 2], "score": 0.9}]', 'nan]'])
def test_corrupt_det_json(repo_root, real, tmp_path, content):
    path = tmp_path / 'bad_det.json'
    path.write_text(content)
    cfg = coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'false', 'TEST.COCO_BBOX_FILE', str(path))
    with pytest.raises(DatasetError, match='bad_det.json'):
        COCODataset(cfg, ann_file=os.path.join(real, 'coco', 'test_coco.json'),
                    image_dir=str(tmp_path))


def test_missing_annotation_file(repo_root, tmp_path):
    missing = str(tmp_path / 'absent.json')
    with pytest.raises(DatasetError, match='absent.json'):
        MPIIDataset(mpii_cfg(repo_root), ann_file=missing, image_dir=str(tmp_path))
    cfg = coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'true', 'DATASET.ROOT', str(tmp_path))
    with pytest.raises(DatasetError, match='person_keypoints_val2017.json'):
        COCODataset(cfg)


def test_empty_dataset(repo_root, real, tmp_path):
    empty = tmp_path / 'empty_mpii.json'
    empty.write_text('[]')
    with pytest.raises(DatasetError, match='empty_mpii.json'):
        MPIIDataset(mpii_cfg(repo_root), ann_file=str(empty), image_dir=str(tmp_path))
    coco = tmp_path / 'empty_coco.json'
    coco.write_text(json.dumps({'images': [], 'annotations': [], 'categories': []}))
    with pytest.raises(DatasetError, match='empty_coco.json'):
        COCODataset(coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'true'), ann_file=str(coco),
                    image_dir=str(tmp_path))
    det = os.path.join(real, 'coco', 'test_coco_det_AP_H_56.json')
    cfg = coco_cfg(repo_root, 'TEST.USE_GT_BBOX', 'false', 'TEST.COCO_BBOX_FILE', det,
                   'TEST.IMAGE_THRE', '1.5')
    with pytest.raises(DatasetError, match='test_coco_det_AP_H_56.json'):
        COCODataset(cfg, ann_file=str(coco), image_dir=str(tmp_path))


def test_index_out_of_range(repo_root, real):
    ds = mpii_dataset(repo_root, real)
    with pytest.raises(IndexError):
        ds[len(ds)]
