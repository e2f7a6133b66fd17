"""COCO keypoint evaluation as the reference ``COCODataset.evaluate`` does it (REFERENCE_SPEC 6.3).

Two pure functions:

* :func:`coco_keypoint_results` - predictions + boxes + image ids -> rescored, per-image OKS-NMSed
  result records in the results-json format the reference writes.
* :func:`coco_keypoint_stats` - pycocotools ``COCOeval(..., 'keypoints')`` with ``useSegm = None`` on
  those records, returning the ten stats under the reference names.

Reproduced knowingly: the person score is ``box score x mean of the keypoint scores > in_vis_thre``
(0 when none qualifies); OKS uses the enlarged box area ``all_boxes[:, 4]``; the OKS-NMS call passes
no ``in_vis_thre`` (as the reference); if NMS keeps nothing, every person of the image is kept.
"""
import copy
import json
import warnings
from collections import OrderedDict

import numpy as np

from posekit.data.base import DatasetError, load_json
from posekit.evaluation.oks import oks_nms_arrays, soft_oks_nms_arrays

STATS_NAMES = ['AP', 'Ap .5', 'AP .75', 'AP (M)', 'AP (L)', 'AR', 'AR .5', 'AR .75', 'AR (M)', 'AR (L)']
PERSON_CATEGORY_ID = 1


def image_id_from_path(img_path):
    """COCO image id as the reference derives it: the 12 characters before ``.jpg``."""
    return int(img_path[-16:-4])


def rescore_persons(keypoint_scores, box_scores, in_vis_thre):
    """``box score x mean(keypoint scores > in_vis_thre)``; the mean is 0 when no joint qualifies."""
    ks = np.asarray(keypoint_scores, dtype=np.float64)
    box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    out = np.zeros(ks.shape[0])
    for n in range(ks.shape[0]):
        # Python-float accumulation in joint order, as the reference loop.
        kpt_score, valid = 0, 0
        for t_s in ks[n]:
            if t_s > in_vis_thre:
                kpt_score = kpt_score + t_s
                valid += 1
        if valid != 0:
            kpt_score = kpt_score / valid
        out[n] = kpt_score * box_scores[n]
    return out


def coco_keypoint_results(preds, boxes, image_ids, in_vis_thre=0.2, oks_thre=0.9, soft=False,
                          category_id=PERSON_CATEGORY_ID):
    """Rescore and OKS-NMS predictions per image; return the reference result records.

    Args:
        preds: ``(N, K, 3)`` keypoints in image pixels: x, y, score (maxval).
        boxes: ``(N, 6)``: centre x, centre y, scale x, scale y, area (``200^2 s_x s_y``), box score.
        image_ids: ``(N,)`` integer COCO image ids (see :func:`image_id_from_path`).
        in_vis_thre: keypoint scores above this count towards the person score.
        oks_thre: OKS-NMS threshold.
        soft: use soft OKS-NMS ([LPN]/[CAV] ``TEST.SOFT_NMS``) instead of greedy OKS-NMS.

    Returns:
        A list of ``{image_id, category_id, keypoints (3K floats), score, center, scale}``; images in
        order of first appearance, persons within an image in NMS keep order.
    """
    preds = np.asarray(preds, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    image_ids = np.asarray(image_ids).reshape(-1)
    n = preds.shape[0]
    if preds.ndim != 3 or preds.shape[2] != 3:
        raise ValueError('preds should be N x K x 3 (x, y, score), got %s' % (preds.shape,))
    if boxes.shape != (n, 6):
        raise ValueError('boxes should be %d x 6 (cx, cy, sw, sh, area, score), got %s' % (n, boxes.shape))
    if image_ids.shape[0] != n:
        raise ValueError('got %d image ids for %d predictions' % (image_ids.shape[0], n))

    scores = rescore_persons(preds[:, :, 2], boxes[:, 5], in_vis_thre)
    groups = OrderedDict()
    for i, img in enumerate(image_ids.tolist()):
        groups.setdefault(int(img), []).append(i)

    nms = soft_oks_nms_arrays if soft else oks_nms_arrays
    results = []
    for img, idx in groups.items():
        idx = np.asarray(idx)
        keep = nms(preds[idx], scores[idx], boxes[idx, 4], oks_thre)
        if len(keep) == 0:
            keep = list(range(len(idx)))
        for k in keep:
            i = int(idx[k])
            results.append({
                'image_id': img,
                'category_id': category_id,
                'keypoints': [float(v) for v in preds[i].reshape(-1)],
                'score': float(scores[i]),
                'center': [float(v) for v in boxes[i, 0:2]],
                'scale': [float(v) for v in boxes[i, 2:4]],
            })
    return results


# what pycocotools reads of the ground truth when it evaluates keypoints
_GT_IMAGE_KEYS = ('id',)
_GT_ANNOTATION_KEYS = ('id', 'image_id', 'category_id', 'keypoints', 'num_keypoints', 'area',
                       'bbox')


class NoGroundTruthWarning(UserWarning):
    """The annotation file has no person with keypoints: every COCO stat will be -1."""


def check_coco_ground_truth(gt_json_path):
    """Check before a model runs that ``gt_json_path`` has what the keypoint evaluation reads
    (pycocotools would stop at the end of the run otherwise); warn when it has no person with
    keypoints (the stats would all be -1). Raises :class:`DatasetError` naming the file."""
    data = load_json(gt_json_path, 'COCO annotation file')
    if not isinstance(data, dict):
        raise DatasetError('COCO annotation file %s: expected a mapping with images, annotations '
                           'and categories, got %s' % (gt_json_path, type(data).__name__))
    for section, keys in (('images', _GT_IMAGE_KEYS), ('annotations', _GT_ANNOTATION_KEYS),
                          ('categories', ('id',))):
        entries = data.get(section)
        if not isinstance(entries, list):
            raise DatasetError('COCO annotation file %s has no list "%s" (the evaluation needs '
                               'it)' % (gt_json_path, section))
        for i, entry in enumerate(entries):
            missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
            if missing:
                raise DatasetError('COCO annotation file %s: %s entry %d lacks %s (the evaluation '
                                   'needs %s)' % (gt_json_path, section, i, ', '.join(missing),
                                                  ', '.join(keys)))
    if not any(not a.get('iscrowd', 0) and _positive(a['num_keypoints'])
               for a in data['annotations']):
        warnings.warn('COCO annotation file %s has no person with keypoints: every COCO stat '
                      'will be -1' % gt_json_path, NoGroundTruthWarning, stacklevel=2)


def _positive(value):
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def coco_keypoint_stats(gt_json_path, results, image_ids=None):
    """Run pycocotools keypoint evaluation; return an OrderedDict of the ten stats (reference names).

    Args:
        gt_json_path: COCO annotation json path (or a ``pycocotools.coco.COCO`` object).
        results: result records (list) or a path to a results json.
        image_ids: the images to score (``params.imgIds``; an image without results then counts
            as all misses); None: every image of the annotation file.

    An empty result list gives all-zero stats and a warning (pycocotools itself would crash).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(results, str):
        with open(results) as f:
            results = json.load(f)
    if len(results) == 0:
        warnings.warn('no keypoint results to evaluate; reporting all COCO stats as 0')
        return OrderedDict((name, 0.0) for name in STATS_NAMES)

    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = gt_json_path if isinstance(gt_json_path, COCO) else COCO(gt_json_path)
        # loadRes adds fields (area, bbox, id) to the records it is given: work on a copy.
        coco_dt = coco_gt.loadRes(copy.deepcopy(list(results)))
        coco_eval = COCOeval(coco_gt, coco_dt, 'keypoints')
        coco_eval.params.useSegm = None
        if image_ids is not None:
            coco_eval.params.imgIds = [int(i) for i in image_ids]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return OrderedDict((name, float(v)) for name, v in zip(STATS_NAMES, coco_eval.stats))


def evaluate_coco(gt_json_path, preds, boxes, image_ids, in_vis_thre=0.2, oks_thre=0.9, soft=False):
    """The whole pipeline: results records, then stats. Returns ``(name_value, results)``;
    the indicator for "best model" is ``name_value['AP']``."""
    results = coco_keypoint_results(preds, boxes, image_ids, in_vis_thre, oks_thre, soft)
    return coco_keypoint_stats(gt_json_path, results), results
