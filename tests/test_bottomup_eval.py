"""Bottom-up (SimplePose) COCO results and evaluation against the reference's own files
(fixtures README section 4, SIMPLEPOSE_SPEC 6.4 "Output")."""
import json
import os

import numpy as np
import pytest

from conftest import require_fixtures
from posekit.errors import PosekitInputError
from posekit.evaluation.bottomup import (BottomUpResultsError, bottomup_keypoint_results,
                                         bottomup_keypoint_stats, evaluate_bottomup,
                                         load_bottomup_results, save_bottomup_results)
from posekit.evaluation.coco_eval import STATS_NAMES
from posekit.io import InputFileError

VARIANTS = ('clean', 'noisy', 'dropped')
IMAGE_IDS = (196141, 40083)  # the order of the reference run (results files list 196141 first)


@pytest.fixture(scope='module')
def postproc():
    folder = require_fixtures('simplepose', 'postproc')
    with open(os.path.join(folder, 'postproc.json')) as f:
        return folder, json.load(f)


@pytest.fixture(scope='module')
def gt_path():
    return require_fixtures('real', 'coco', 'test_coco.json')


def reference_persons(data, variant):
    """The reference's per-image ``keypoints`` (COCO-17 x, y) and ``scores``, in image order."""
    return {image_id: (data['images'][str(image_id)][variant]['keypoints'],
                       data['images'][str(image_id)][variant]['scores'])
            for image_id in IMAGE_IDS}


@pytest.mark.parametrize('variant', VARIANTS)
def test_records_reproduce_the_reference_results_file(postproc, variant):
    folder, data = postproc
    records = bottomup_keypoint_results(reference_persons(data, variant))
    with open(os.path.join(folder, 'results_%s.json' % variant)) as f:
        expected = json.load(f)
    assert records == expected  # exact floats, same order and keys
    assert [list(r) for r in records] == [list(r) for r in expected]
    assert all(type(v) is int for r in records for v in r['keypoints'][2::3])


def test_written_file_reads_back_unchanged(postproc, tmp_path):
    _, data = postproc
    records = bottomup_keypoint_results(reference_persons(data, 'noisy'))
    path = save_bottomup_results(str(tmp_path / 'results.json'), records)
    assert load_bottomup_results(path) == records
    assert os.listdir(tmp_path) == ['results.json']  # no temporary file left behind


@pytest.mark.parametrize('variant', VARIANTS)
def test_cocoeval_stats_of_the_reference_results(postproc, gt_path, variant):
    folder, data = postproc
    path = os.path.join(folder, 'results_%s.json' % variant)
    stats = bottomup_keypoint_stats(gt_path, path, IMAGE_IDS)
    assert list(stats) == STATS_NAMES
    np.testing.assert_allclose(list(stats.values()), data['cocoeval_stats']['%s/all' % variant],
                               rtol=0, atol=1e-12)
    records = load_bottomup_results(path)
    for image_id in IMAGE_IDS:
        stats = bottomup_keypoint_stats(gt_path, records, [image_id])
        np.testing.assert_allclose(list(stats.values()),
                                   data['cocoeval_stats']['%s/%d' % (variant, image_id)],
                                   rtol=0, atol=1e-12)


def test_evaluate_from_persons(postproc, gt_path):
    _, data = postproc
    persons = reference_persons(data, 'clean')
    stats, records = evaluate_bottomup(gt_path, persons)  # scores the images of ``persons``
    np.testing.assert_allclose(list(stats.values()), data['cocoeval_stats']['clean/all'],
                               rtol=0, atol=1e-12)
    assert len(records) == sum(len(s) for _, s in persons.values())
    # an evaluated image where nobody was found still counts (as misses)
    persons[IMAGE_IDS[1]] = (np.zeros((0, 17, 3)), np.zeros(0))
    stats, _ = evaluate_bottomup(gt_path, persons)
    assert stats['AR'] < data['cocoeval_stats']['clean/all'][5]
    np.testing.assert_allclose(list(stats.values()),
                               list(evaluate_bottomup(gt_path, persons, IMAGE_IDS)[0].values()))


def test_unknown_image_ids_are_one_line_errors(postproc, gt_path):
    _, data = postproc
    persons = reference_persons(data, 'clean')
    with pytest.raises(BottomUpResultsError, match='1 image id.s. not in the annotation file'):
        evaluate_bottomup(gt_path, {123456: persons[196141]}, IMAGE_IDS)
    with pytest.raises(BottomUpResultsError, match='image id 123 to evaluate'):
        evaluate_bottomup(gt_path, persons, [196141, 123])


def test_visibility_rule_and_shapes():
    # v = 1 iff x > 0 or y > 0 (reference quirk: (0, 0) and both-negative joints are unscored);
    # a third column (joint scores) is ignored
    pts = np.zeros((1, 17, 3))
    pts[0, :5, :2] = [[0, 0], [-3, -4], [0, 2], [5, -1], [-1, 0.5]]
    pts[0, :, 2] = 0.7
    rec = bottomup_keypoint_results({7: (pts, [-0.5])})[0]
    assert rec['keypoints'][:15] == [0, 0, 0, -3, -4, 0, 0, 2, 1, 5, -1, 1, -1, 0.5, 1]
    assert rec['score'] == -0.5 and rec['image_id'] == 7 and rec['category_id'] == 1
    assert bottomup_keypoint_results({7: ([], [])}) == []
    with pytest.raises(ValueError, match='P x 17 x 2'):
        bottomup_keypoint_results({1: (np.zeros((2, 18, 2)), [1, 1])})
    with pytest.raises(ValueError, match='2 keypoint sets but 1 scores'):
        bottomup_keypoint_results({1: (np.zeros((2, 17, 2)), [1])})


def good_record():
    return {'image_id': 1, 'category_id': 1, 'keypoints': [1.0, 2.0, 1] * 17, 'score': 0.5}


@pytest.mark.parametrize('content, message', [
    ('{"image_id": 1}', 'expected a json list'),
    ([dict(good_record(), keypoints=[1.0] * 50)], 'record 0 keypoints should be a list of 51'),
    ([good_record(), {'image_id': 1, 'keypoints': []}], 'record 1 lacks category_id, score'),
    ([dict(good_record(), score=None)], 'record 0 has score None'),
    ([dict(good_record(), image_id='000001')], 'record 0 has image_id'),
    ([dict(good_record(), keypoints=[1.0, 2.0, True] * 17)], 'not a finite number'),
    ([5], r'record 0 is not a mapping \(got int\)'),
])
def test_bad_results_files(tmp_path, content, message):
    path = tmp_path / 'r.json'
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(BottomUpResultsError, match=message) as e:
        load_bottomup_results(str(path))
    assert str(path) in str(e.value) and '\n' not in str(e.value)
    assert isinstance(e.value, PosekitInputError)


def test_missing_or_damaged_results_file(tmp_path):
    with pytest.raises(InputFileError, match='not found'):
        load_bottomup_results(str(tmp_path / 'none.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text('[{"image_id": 1,')
    with pytest.raises(InputFileError, match='cannot parse bottom-up results file'):
        load_bottomup_results(str(bad))
    nan = tmp_path / 'nan.json'
    nan.write_text(json.dumps([dict(good_record(), score=float('nan'))]))
    with pytest.raises(BottomUpResultsError, match='score nan'):
        load_bottomup_results(str(nan))
