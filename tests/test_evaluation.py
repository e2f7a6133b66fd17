"""Evaluation functions: MPII PCKh, OKS / OKS-NMS / soft OKS-NMS, COCO keypoint results and stats.

Parity against the shared reference fixtures (skipped when absent) plus small hand-made cases.
"""
import json
import os
import warnings

import numpy as np
import pytest
from conftest import require_fixtures

from posekit.evaluation import coco_eval

from posekit.evaluation import oks

from posekit.evaluation import pckh

PCKH_KEYS = ['Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle', 'Mean', 'Mean@0.1']


def _load_json(*parts):
    with open(require_fixtures(*parts)) as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------- PCKh

def test_pckh_matches_reference():
    folder = require_fixtures('postproc', 'mpii_pckh')
    preds = np.load(os.path.join(folder, 'preds.npy'))
    expected = _load_json('postproc', 'mpii_pckh', 'name_value.json')
    got = pckh.evaluate_pckh(preds, os.path.join(folder, 'gt_valid.mat'))
    assert list(got) == expected['order'] == PCKH_KEYS
    for key in PCKH_KEYS:
        assert got[key] == pytest.approx(expected['name_value'][key], abs=1e-9), key
    assert got['Mean'] == pytest.approx(expected['perf_indicator'], abs=1e-9)


def test_pckh_true_01_is_separate_key():
    folder = require_fixtures('postproc', 'mpii_pckh')
    preds = np.load(os.path.join(folder, 'preds.npy'))
    got = pckh.evaluate_pckh(preds, os.path.join(folder, 'gt_valid.mat'), with_true_pckh01=True)
    assert list(got)[:9] == PCKH_KEYS and list(got)[9:] == [pckh.TRUE_PCKH01_KEY]
    # On this fixture the 0.11 quirk and the true 0.1 differ.
    assert got[pckh.TRUE_PCKH01_KEY] < got['Mean@0.1']


def _toy_gt(n=3, seed=0):
    """A hand-made ground truth dict: upright people, head boxes of side 50 px (head size 0.6*50*sqrt2)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(100, 400, size=(16, 2, n)) + 1.0  # 1-based
    heads = np.zeros((2, 2, n))
    heads[0] = pos[9] - 25.0
    heads[1] = pos[9] + 25.0
    missing = np.zeros((16, n))
    missing[5, 0] = 1  # one missing ankle
    joints = np.empty((1, 16), dtype=object)
    for i, name in enumerate(pckh.MPII_MAT_JOINTS):
        joints[0, i] = np.array([name])
    return {'dataset_joints': joints, 'jnt_missing': missing, 'pos_gt_src': pos,
            'headboxes_src': heads}


def test_pckh_perfect_predictions_give_100(tmp_path):
    gt = _toy_gt()
    preds = np.transpose(gt['pos_gt_src'], [2, 0, 1]) - 1.0  # 0-based
    got = pckh.evaluate_pckh(preds, gt)
    assert all(v == pytest.approx(100.0) for v in got.values())
    # Same through a real .mat file.
    from scipy.io import savemat
    path = tmp_path / 'gt_valid.mat'
    savemat(path, gt)
    assert pckh.evaluate_pckh(preds, str(path)) == got


def test_pckh_mean_at_01_uses_threshold_011():
    gt = _toy_gt(n=2)
    headsize = np.linalg.norm(gt['headboxes_src'][1] - gt['headboxes_src'][0], axis=0) * pckh.SC_BIAS
    preds = np.transpose(gt['pos_gt_src'], [2, 0, 1]) - 1.0
    # Every joint off by 0.105 head sizes: wrong at 0.10, right at 0.11.
    preds[:, :, 0] += 0.105 * headsize[:, None]
    got = pckh.evaluate_pckh(preds, gt, with_true_pckh01=True)
    assert got['Mean@0.1'] == pytest.approx(100.0)
    assert got[pckh.TRUE_PCKH01_KEY] == pytest.approx(0.0)
    assert got['Mean'] == pytest.approx(100.0)


def test_pckh_threshold_inclusive_and_pelvis_thorax_masked():
    gt = _toy_gt(n=1)
    gt['jnt_missing'][:] = 0  # a joint never visible would give NaN, as in the reference
    headsize = np.linalg.norm(gt['headboxes_src'][1] - gt['headboxes_src'][0], axis=0)[0] * pckh.SC_BIAS
    preds = np.transpose(gt['pos_gt_src'], [2, 0, 1]) - 1.0
    preds[0, 3, 1] += 0.5 * headsize - 1e-9  # just inside -> counted
    preds[0, 6:8, :] += 1000.0  # pelvis and thorax wrong: not in Mean
    got = pckh.evaluate_pckh(preds, gt)
    assert got['Hip'] == pytest.approx(100.0)
    assert got['Mean'] == pytest.approx(100.0)
    preds[0, 3, 1] += 0.01 * headsize  # now outside
    assert pckh.evaluate_pckh(preds, gt)['Hip'] == pytest.approx(50.0)


def test_pckh_errors(tmp_path):
    gt = _toy_gt(n=3)
    preds = np.zeros((2, 16, 2))
    with pytest.raises(ValueError, match='2 predictions.*3 people'):
        pckh.evaluate_pckh(preds, gt)
    with pytest.raises(FileNotFoundError):
        pckh.evaluate_pckh(np.zeros((3, 16, 2)), str(tmp_path / 'nope.mat'))
    bad = tmp_path / 'gt_valid.mat'
    bad.write_bytes(b'this is not a mat file at all' * 10)
    with pytest.raises(ValueError, match='corrupt'):
        pckh.evaluate_pckh(np.zeros((3, 16, 2)), str(bad))
    broken = dict(gt)
    del broken['headboxes_src']
    with pytest.raises(ValueError, match='headboxes_src'):
        pckh.evaluate_pckh(np.zeros((3, 16, 2)), broken)


def test_write_pred_mat_is_one_based(tmp_path):
    from scipy.io import loadmat
    preds = np.arange(2 * 16 * 3, dtype=np.float64).reshape(2, 16, 3)
    path = tmp_path / 'out' / 'pred.mat'
    pckh.write_pred_mat(preds, str(path))
    saved = loadmat(str(path))['preds']
    assert saved.shape == (2, 16, 2)
    np.testing.assert_array_equal(saved, preds[:, :, :2] + 1.0)


def test_format_table():
    table = pckh.format_table({'Head': 96.3, 'Mean': 88.53}, '256x256_pose_resnet_50_d256d256d256')
    assert table.split('\n') == [
        '| Arch | Head | Mean |',
        '|---|---|---|',
        '| 256x256_pose_resnet_50_d256d256d256 | 96.300 | 88.530 |',
    ]


# ------------------------------------------------------------------------------------------ OKS

@pytest.fixture(scope='module')
def nms_inputs():
    d = np.load(require_fixtures('postproc', 'oks_nms_inputs.npz'))
    return {k: d[k] for k in d.files}


def _records(inp, img):
    idx = np.where(inp['image'] == img)[0]
    return idx, [{'keypoints': inp['keypoints'][i], 'score': inp['scores'][i], 'area': inp['areas'][i]}
                 for i in idx]


def test_oks_iou_matches_reference(nms_inputs):
    idx = np.where(nms_inputs['image'] == np.unique(nms_inputs['image'])[0])[0]
    kp = nms_inputs['keypoints'][idx].reshape(len(idx), -1)
    ar = nms_inputs['areas'][idx]
    np.testing.assert_allclose(oks.oks_iou(kp[0], kp[1:], ar[0], ar[1:]),
                               nms_inputs['oks_iou_det0_vs_rest_img0'], rtol=0, atol=1e-12)
    np.testing.assert_allclose(oks.oks_iou(kp[0], kp[1:], ar[0], ar[1:], in_vis_thre=0.2),
                               nms_inputs['oks_iou_det0_vs_rest_img0_invis02'], rtol=0, atol=1e-12)


@pytest.mark.parametrize('case', ['thr0.9', 'thr0.9_invis0.2', 'thr0.5'])
def test_oks_nms_matches_reference(nms_inputs, case):
    spec = _load_json('postproc', 'oks_nms_keep.json')[case]
    images = list(dict.fromkeys(nms_inputs['image'].tolist()))
    for n, img in enumerate(images):
        idx, recs = _records(nms_inputs, img)
        keep = oks.oks_nms(recs, spec['thresh'], in_vis_thre=spec['in_vis_thre'])
        assert keep == spec['keep_local'][n]
        assert idx[keep].tolist() == spec['keep_global'][n]
        arr = oks.oks_nms_arrays(nms_inputs['keypoints'][idx], nms_inputs['scores'][idx],
                                 nms_inputs['areas'][idx], spec['thresh'], in_vis_thre=spec['in_vis_thre'])
        assert arr == keep


@pytest.mark.parametrize('thr', ['0.9', '0.5'])
def test_soft_oks_nms_matches_reference(nms_inputs, thr):
    ref = _load_json('postproc', 'soft_oks_nms_rescore.json')
    spec = ref['soft_oks_nms_thr' + thr]
    assert spec['max_dets'] == oks.SOFT_NMS_MAX_DETS
    images = list(dict.fromkeys(nms_inputs['image'].tolist()))
    for n, img in enumerate(images):
        idx, recs = _records(nms_inputs, img)
        keep = oks.soft_oks_nms(recs, spec['thresh'])
        assert keep == spec['keep_local'][n]
        assert idx[keep].tolist() == spec['keep_global'][n]
        # The LPN repo's plain oks_nms gives the msft result.
        assert idx[oks.oks_nms(recs, float(thr))].tolist() == ref['oks_nms_thr%s_lpn_repo' % thr]['keep_global'][n]


def test_soft_oks_nms_caps_at_max_dets():
    rng = np.random.default_rng(1)
    kp = np.concatenate([rng.uniform(0, 1000, (30, 17, 2)), rng.uniform(0.5, 1, (30, 17, 1))], axis=2)
    keep = oks.soft_oks_nms_arrays(kp, rng.uniform(0.3, 1, 30), np.full(30, 1000.0), 0.9)
    assert len(keep) == 20 and len(set(keep)) == 20


def test_rescore_matches_reference():
    ref = _load_json('postproc', 'soft_oks_nms_rescore.json')['rescore']
    overlap, scores = np.array(ref['overlap']), np.array(ref['scores'])
    before = scores.copy()
    np.testing.assert_allclose(oks.rescore(overlap, scores, 0.9), ref['gaussian_thr0p9'], rtol=0, atol=1e-12)
    np.testing.assert_allclose(oks.rescore(overlap, scores, 0.5), ref['gaussian_thr0p5'], rtol=0, atol=1e-12)
    np.testing.assert_allclose(oks.rescore(overlap, scores, 0.5, 'linear'), ref['linear_thr0p5'],
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(scores, before)


def test_oks_visibility_quirk_uses_detection_only():
    g = np.zeros((17, 3))
    g[:, 2] = 0.0  # reference person: all scores low
    d = np.zeros((1, 17, 3))
    d[0, :, 2] = 1.0
    d[0, 0, 0] = 10.0  # one joint off
    d[0, 1:, 2] = 0.0  # only joint 0 passes the detection's filter
    full = oks.oks_iou(g, d, 100.0, np.array([100.0]))[0]
    filt = oks.oks_iou(g, d, 100.0, np.array([100.0]), in_vis_thre=0.2)[0]
    assert filt < full  # only the (wrong) joint 0 counted, although g's own scores are all 0
    assert oks.oks_nms([], 0.9) == [] and oks.soft_oks_nms([], 0.9) == []


# ----------------------------------------------------------------------------------------- COCO

def test_coco_stats_gt_as_dt_and_noise():
    ref = _load_json('real', 'coco_eval_stats.json')['pycocotools']
    gt = require_fixtures('real', 'coco', 'test_coco.json')
    for case in ('gt_as_dt', 'gt_plus_noise3px'):
        results = _load_json('real', ref[case]['results_file'])
        stats = coco_eval.coco_keypoint_stats(gt, results)
        assert list(stats) == ref['stat_names'] == coco_eval.STATS_NAMES
        np.testing.assert_allclose(list(stats.values()), ref[case]['stats'], rtol=0, atol=1e-9)


def test_coco_evaluate_pipeline_matches_reference():
    inp = np.load(require_fixtures('real', 'coco_evaluate_pipeline_inputs.npz'))
    expected = _load_json('real', 'coco_evaluate_pipeline_results.json')
    ref = _load_json('real', 'coco_eval_stats.json')['reference_COCODataset_evaluate']
    results = coco_eval.coco_keypoint_results(inp['preds'], inp['all_boxes'], inp['image_ids'],
                                              in_vis_thre=ref['in_vis_thre'], oks_thre=ref['oks_thre'])
    assert len(results) == len(expected) == ref['n_written']
    for got, exp in zip(results, expected):
        assert set(got) == set(exp)
        assert got['image_id'] == exp['image_id'] and got['category_id'] == exp['category_id'] == 1
        for key in ('keypoints', 'center', 'scale'):
            np.testing.assert_allclose(got[key], exp[key], rtol=0, atol=1e-9)
        assert got['score'] == pytest.approx(exp['score'], abs=1e-12)
    json.dumps(results)  # writable as the results json
    stats = coco_eval.coco_keypoint_stats(require_fixtures('real', 'coco', 'test_coco.json'), results)
    for key, value in ref['name_value'].items():
        assert stats[key] == pytest.approx(value, abs=1e-9), key
    assert list(stats) == list(ref['name_value'])


def test_coco_empty_results_warn_and_give_zeros():
    gt = require_fixtures('real', 'coco', 'test_coco.json')
    with pytest.warns(UserWarning, match='no keypoint results'):
        stats = coco_eval.coco_keypoint_stats(gt, [])
    assert list(stats) == coco_eval.STATS_NAMES and all(v == 0.0 for v in stats.values())
    assert coco_eval.coco_keypoint_results(np.zeros((0, 17, 3)), np.zeros((0, 6)), []) == []


def test_coco_rescoring_and_nms_by_hand():
    kp = np.zeros((3, 17, 3))
    kp[:, :, 0] = np.arange(17) * 10.0
    kp[:, :, 1] = 50.0
    kp[0, :, 2] = 0.1  # no joint above 0.2 -> score 0
    kp[1, :, 2] = 0.8
    kp[1, 0, 2] = 0.15  # ignored in the mean
    kp[2, :, 2] = 0.9
    kp[2, :, 0] += 500.0  # a different person in the other image
    boxes = np.zeros((3, 6))
    boxes[:, 4] = 10000.0
    boxes[:, 5] = [1.0, 0.5, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        res = coco_eval.coco_keypoint_results(kp, boxes, [7, 7, 9], in_vis_thre=0.2, oks_thre=0.9)
    # Image 7: persons 0 and 1 identical -> NMS keeps the better-scored person 1 only.
    assert [r['image_id'] for r in res] == [7, 9]
    assert res[0]['score'] == pytest.approx(0.4)
    assert res[1]['score'] == pytest.approx(0.9)
    assert len(res[0]['keypoints']) == 51
    assert coco_eval.image_id_from_path('/data/coco/images/val2017/000000397133.jpg') == 397133


def test_nms_on_no_detections():
    from posekit.evaluation.oks import oks_nms_arrays, soft_oks_nms_arrays
    assert oks_nms_arrays(np.zeros((0, 17, 3)), [], [], 0.9) == []
    assert soft_oks_nms_arrays([], [], [], 0.9) == []
