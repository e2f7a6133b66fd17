"""COCO results and evaluation of bottom-up (SimplePose) persons (SIMPLEPOSE_SPEC 6.4 "Output").

Pure functions, numpy and pycocotools only. The persons come from the grouping
(:mod:`posekit.codec.bottomup.grouping`: COCO-17 keypoints with (0, 0) for a missing joint and
the person score ``1 - 1/total``), which also formats one image's records (``coco_results``);
this module adds what evaluation needs around it:

* :func:`bottomup_keypoint_results` - many images' persons -> the records the reference
  ``format_results`` writes; :func:`save_bottomup_results` writes them atomically and
  :func:`load_bottomup_results` reads and checks a saved file (``valid.py --predictions``);
* :func:`bottomup_keypoint_stats` / :func:`evaluate_bottomup` - COCOeval ('keypoints', default
  maxDets 20) on given image ids, through
  :func:`posekit.evaluation.coco_eval.coco_keypoint_stats`.

Reproduced knowingly (SIMPLEPOSE_SPEC 9.7): scores ``1 - 1/total`` may be negative; a joint's
visibility is ``1 if x > 0 or y > 0 else 0`` (a real joint at (0, 0), or with both coordinates
negative, is not scored); no OKS-NMS and no per-image cap; records stay in grouping order.
"""
import contextlib
import io
import math
import numbers

import numpy as np

from posekit.codec.bottomup.grouping import coco_results
from posekit.evaluation.coco_eval import PERSON_CATEGORY_ID, STATS_NAMES, coco_keypoint_stats
from posekit.io import InputFileError, read_json, write_json

__all__ = ['NUM_COCO_KEYPOINTS', 'BottomUpResultsError', 'bottomup_keypoint_results',
           'save_bottomup_results', 'load_bottomup_results', 'bottomup_keypoint_stats',
           'evaluate_bottomup', 'STATS_NAMES']

NUM_COCO_KEYPOINTS = 17


class BottomUpResultsError(InputFileError):
    """A bottom-up results file (COCO keypoint result records) that cannot be used."""


def bottomup_keypoint_results(per_image, category_id=PERSON_CATEGORY_ID):
    """COCO keypoint result records of many images, exactly as the reference ``format_results``
    writes them (one image at a time by :func:`posekit.codec.bottomup.grouping.coco_results`).

    Args:
        per_image: mapping ``image_id -> (keypoints, scores)`` in processing order, e.g.
            ``{image_id: (g.keypoints, g.scores)}`` of each image's grouping ``g``: keypoints
            ``(P, 17, >=2)`` COCO-17 ``x, y`` ((0, 0) for a missing joint; further columns, the
            joint scores, are ignored), scores ``(P,)``.

    Returns:
        ``[{image_id, category_id, keypoints: [x, y, v] * 17, score}]``, images in the given
        order, persons in grouping order, ``v = 1 if x > 0 or y > 0 else 0``.
    """
    records = []
    for image_id, (keypoints, scores) in per_image.items():
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.size == 0:
            kp = kp.reshape(0, NUM_COCO_KEYPOINTS, 2)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if kp.ndim != 3 or kp.shape[1] != NUM_COCO_KEYPOINTS or kp.shape[2] < 2:
            raise ValueError('image %s: keypoints should be P x 17 x 2 (COCO x, y), got %s'
                             % (image_id, kp.shape))
        if scores.shape[0] != kp.shape[0]:
            raise ValueError('image %s: %d keypoint sets but %d scores'
                             % (image_id, kp.shape[0], scores.shape[0]))
        for rec in coco_results(kp, scores, image_id):
            rec['category_id'] = category_id
            records.append(rec)
    return records


def save_bottomup_results(path, records):
    """Write result records as a json list, atomically (:func:`posekit.io.write_json`)."""
    return write_json(path, records)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_finite(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _record_problem(rec):
    if not isinstance(rec, dict):
        return 'is not a mapping (got %s)' % type(rec).__name__
    missing = [k for k in ('image_id', 'category_id', 'keypoints', 'score') if k not in rec]
    if missing:
        return 'lacks %s' % ', '.join(missing)
    if not _is_int(rec['image_id']):
        return 'has image_id %r (expected an integer)' % (rec['image_id'],)
    if not _is_int(rec['category_id']):
        return 'has category_id %r (expected an integer)' % (rec['category_id'],)
    kp = rec['keypoints']
    if not isinstance(kp, list) or len(kp) != 3 * NUM_COCO_KEYPOINTS:
        return 'keypoints should be a list of %d numbers (x, y, v per COCO joint), got %s' % (
            3 * NUM_COCO_KEYPOINTS, '%d values' % len(kp) if isinstance(kp, list)
            else type(kp).__name__)
    if not all(_is_finite(v) for v in kp):
        return 'keypoints hold a value that is not a finite number'
    if not _is_finite(rec['score']):
        return 'has score %r (expected a finite number)' % (rec['score'],)
    return None


def load_bottomup_results(path):
    """Result records saved by :func:`save_bottomup_results` (or the reference
    ``format_results``), checked: a json list of ``{image_id, category_id, keypoints (51
    numbers), score}``. Anything else raises one-line :class:`BottomUpResultsError` (a missing
    or unparsable file :class:`posekit.io.InputFileError`) naming the file."""
    data = read_json(path, 'bottom-up results file')
    if not isinstance(data, list):
        raise BottomUpResultsError('bottom-up results file %s: expected a json list of COCO '
                                   'keypoint results, got a %s' % (path, type(data).__name__))
    for i, rec in enumerate(data):
        problem = _record_problem(rec)
        if problem:
            raise BottomUpResultsError('bottom-up results file %s: record %d %s'
                                       % (path, i, problem))
    return data


def _coco(gt):
    from pycocotools.coco import COCO
    if isinstance(gt, COCO):
        return gt
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(gt)


def bottomup_keypoint_stats(gt, results, image_ids=None):
    """COCOeval ('keypoints', default maxDets 20) of result records on ``image_ids`` (all images
    of the annotation file when None), as the reference ``evaluate.validation``.

    ``gt``: annotation json path or a ``pycocotools.coco.COCO``; ``results``: records or a
    results file (checked by :func:`load_bottomup_results`). Returns the ten stats (an
    OrderedDict, reference names). Result or requested image ids that the annotation file does
    not have raise :class:`BottomUpResultsError` (pycocotools would fail an assert)."""
    where = 'bottom-up results'
    if isinstance(results, str):
        where, results = 'bottom-up results file %s' % results, load_bottomup_results(results)
    coco_gt = _coco(gt)
    known = set(coco_gt.getImgIds())
    unknown = sorted({r['image_id'] for r in results} - known)
    if unknown:
        raise BottomUpResultsError('%s: %d image id(s) not in the annotation file (first: %d)'
                                   % (where, len(unknown), unknown[0]))
    if image_ids is not None:
        image_ids = [int(i) for i in image_ids]
        missing = [i for i in image_ids if i not in known]
        if missing:
            raise BottomUpResultsError('image id %d to evaluate is not in the annotation file'
                                       % missing[0])
    return coco_keypoint_stats(coco_gt, results, image_ids)


def evaluate_bottomup(gt, per_image, image_ids=None):
    """Records (:func:`bottomup_keypoint_results`) then stats (:func:`bottomup_keypoint_stats`);
    returns ``(stats, records)``. ``image_ids`` default to every image of ``per_image``, as the
    reference scores the images it processed (val2017[:500]): an image where nobody was found
    still counts (as misses)."""
    records = bottomup_keypoint_results(per_image)
    if image_ids is None:
        image_ids = list(per_image)
    return bottomup_keypoint_stats(gt, records, image_ids), records
