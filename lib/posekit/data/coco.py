"""COCO person keypoints (REFERENCE_SPEC 1.2): ground-truth boxes and detection boxes.

Boxes no crop can be made of are not used, and the count is reported (:class:`BoxWarning`)
rather than left to show up as a low AP: a ground-truth person with keypoints whose box is
empty once clipped to the image (the reference drops these silently too), and a detection box
with a non-finite value, zero or negative size, lying entirely outside its image, or on an image
the annotation file does not list (pycocotools would stop on it at the end of the run).
"""
import math
import os
import warnings

import numpy as np

from posekit.data.descriptors import COCO
from posekit.codec.transforms import box_to_center_scale
from posekit.data.base import DatasetError, JointsDataset, load_json, load_json_list

__all__ = ['coco_image_path', 'load_coco_gt_records', 'load_coco_det_records',
           'load_coco_image_sizes', 'COCODataset', 'COCO_NUM_JOINTS', 'BoxWarning']

COCO_NUM_JOINTS = COCO.num_joints


def coco_image_path(image_dir, image_id, image_set=''):
    """``image_dir/<12-digit id>.jpg``; prefixed ``COCO_<set>_`` when the set name has "2014"."""
    name = '%012d.jpg' % int(image_id)
    if '2014' in (image_set or ''):
        name = 'COCO_%s_' % image_set + name
    return os.path.join(image_dir, name)


class BoxWarning(UserWarning):
    """Boxes of a COCO annotation or detection file were skipped (the message counts them)."""


def _has_keypoints(ann):
    try:
        return any(float(v) > 0 for v in ann.get('keypoints', [])[2::3])
    except (TypeError, ValueError, AttributeError):
        return True  # malformed: count it rather than hide it


def load_coco_image_sizes(ann_file):
    """``{image id: (width, height)}`` of a COCO annotation (or image info) file."""
    data = load_json(ann_file, 'COCO annotation file')
    try:
        return {im['id']: (float(im['width']), float(im['height'])) for im in data['images']}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DatasetError('COCO annotation file %s is malformed: images need id, width and '
                           'height: %s: %s' % (ann_file, type(e).__name__, e)) from e


def _box_cs(box, aspect_ratio):
    x, y, w, h = box[:4]
    return box_to_center_scale(x, y, w, h, aspect_ratio)


def load_coco_gt_records(ann_file, image_dir, aspect_ratio, image_set='',
                         num_joints=COCO_NUM_JOINTS):
    """One record per usable ground-truth person, images in annotation-file order.

    Non-crowd only; box sanitised and clipped to the image (kept if area > 0 and non-empty);
    category "person"; at least one non-zero keypoint value; visibility min(v, 1).
    """
    data = load_json(ann_file, 'COCO annotation file')
    try:
        images = data['images']
        annotations = data['annotations']
        cats = data.get('categories') or [{'id': 1, 'name': 'person'}]
        person_ids = {c['id'] for c in cats if c.get('name') == 'person'}
        img_info = {}
        for im in images:  # dict keeps first-insertion order, like pycocotools getImgIds()
            img_info[im['id']] = im
        anns_of = {}
        for ann in annotations:
            anns_of.setdefault(ann['image_id'], []).append(ann)
    except (KeyError, TypeError, AttributeError) as e:
        raise DatasetError('COCO annotation file %s is malformed: %s: %s'
                           % (ann_file, type(e).__name__, e)) from e

    records = []
    empty_boxes = 0
    for image_id, im in img_info.items():
        for ann in anns_of.get(image_id, []):
            try:
                if ann.get('iscrowd', 0):
                    continue
                width, height = im['width'], im['height']
                x, y, w, h = ann['bbox']
                x1 = max(0, x)
                y1 = max(0, y)
                x2 = min(width - 1, x1 + max(0, w - 1))
                y2 = min(height - 1, y1 + max(0, h - 1))
                if not (ann['area'] > 0 and x2 >= x1 and y2 >= y1):
                    empty_boxes += int(_has_keypoints(ann))
                    continue
                if ann['category_id'] not in person_ids:
                    continue
                kpts = np.asarray(ann['keypoints'], dtype=np.float64)
                if kpts.shape != (num_joints * 3,):
                    raise ValueError('expected %d keypoint values, got %d'
                                     % (num_joints * 3, kpts.size))
                if kpts.max() == 0:
                    continue
            except (KeyError, TypeError, ValueError) as e:
                raise DatasetError('COCO annotation file %s: malformed annotation %r: %s: %s'
                                   % (ann_file, ann.get('id') if isinstance(ann, dict) else ann,
                                      type(e).__name__, e)) from e
            kpts = kpts.reshape(num_joints, 3)
            joints_3d = np.zeros((num_joints, 3), dtype=np.float64)
            joints_3d_vis = np.zeros((num_joints, 3), dtype=np.float64)
            joints_3d[:, 0:2] = kpts[:, 0:2]
            v = np.minimum(kpts[:, 2], 1)
            joints_3d_vis[:, 0] = v
            joints_3d_vis[:, 1] = v
            center, scale = _box_cs([x1, y1, x2 - x1, y2 - y1], aspect_ratio)
            records.append({
                'image': coco_image_path(image_dir, image_id, image_set),
                'center': center, 'scale': scale,
                'joints_3d': joints_3d, 'joints_3d_vis': joints_3d_vis,
                'filename': '', 'imgnum': 0,
            })
    if empty_boxes:
        warnings.warn('COCO annotation file %s: %d person(s) with keypoints skipped: zero area '
                      'or a box outside the image (%d used)'
                      % (ann_file, empty_boxes, len(records)), BoxWarning, stacklevel=2)
    return records


def _bad_det_box(box, image_id, image_sizes):
    """Why a detection box cannot be used, or None."""
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        return 'with a non-finite value'
    if w <= 0 or h <= 0:
        return 'of zero or negative size'
    if image_sizes is None:
        return None
    # results are matched to the ground truth by the id in the image's file name: an int
    size = image_sizes.get(int(image_id))
    if size is None:
        return 'on images not in the annotation file'
    width, height = size
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return 'entirely outside the image'
    return None


def load_coco_det_records(det_file, image_dir, aspect_ratio, image_thre=0.0, image_set='',
                          num_joints=COCO_NUM_JOINTS, image_sizes=None):
    """One record per detection box with category 1 and score >= ``image_thre`` (file order).

    Boxes are not clipped; joints are zero with visibility one; the detection score is kept.
    Boxes with a non-finite value or a size <= 0 are skipped, and with ``image_sizes``
    (:func:`load_coco_image_sizes`) also those entirely outside their image or on an image not
    listed there; one :class:`BoxWarning` gives the counts.
    """
    dets = load_json_list(det_file, 'detection results file', 'boxes')
    records = []
    skipped = {}
    for i, det in enumerate(dets):
        try:
            if det['category_id'] != 1:
                continue
            score = float(det['score'])
            if score < image_thre:
                continue
            box = [float(b) for b in det['bbox']]
            if len(box) != 4:
                raise ValueError('bbox needs 4 numbers, got %d' % len(box))
            image_id = det['image_id']
            center, scale = _box_cs(box, aspect_ratio)
            path = coco_image_path(image_dir, image_id, image_set)
            reason = _bad_det_box(box, image_id, image_sizes)
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError('detection results file %s: malformed entry %d: %s: %s'
                               % (det_file, i, type(e).__name__, e)) from e
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        records.append({
            'image': path, 'center': center, 'scale': scale, 'score': score,
            'joints_3d': np.zeros((num_joints, 3), dtype=np.float64),
            'joints_3d_vis': np.ones((num_joints, 3), dtype=np.float64),
            'filename': '', 'imgnum': 0,
        })
    if skipped:
        counts = '%d box(es) skipped (%s)' % (sum(skipped.values()), ', '.join(
            '%d %s' % (n, why) for why, n in skipped.items()))
        if not records:
            raise DatasetError('detection results file %s: no usable box: %s'
                               % (det_file, counts))
        warnings.warn('detection results file %s: %s; %d used' % (det_file, counts, len(records)),
                      BoxWarning, stacklevel=2)
    return records


class COCODataset(JointsDataset):
    """COCO samples from ground-truth boxes (training, or ``TEST.USE_GT_BBOX``) or from the
    detection file ``TEST.COCO_BBOX_FILE`` filtered by ``TEST.IMAGE_THRE``.

    Default layout: ``ROOT/annotations/person_keypoints_<set>.json`` (``image_info_`` for test
    sets), images in ``ROOT/images/<set>/`` (``test2017`` for test sets). ``ann_file``,
    ``image_dir``, ``bbox_file`` and ``use_gt_bbox`` override the config.
    """
    info = COCO
    flip_pairs = COCO.flip_pairs
    upper_body_ids = COCO.upper_body_ids

    def __init__(self, cfg, image_set=None, is_train=False, ann_file=None, image_dir=None,
                 bbox_file=None, use_gt_bbox=None, rng=None):
        if image_set is None:
            image_set = cfg.DATASET.TRAIN_SET if is_train else cfg.DATASET.TEST_SET
        self.image_set = image_set
        root = cfg.DATASET.ROOT
        prefix = 'image_info' if 'test' in image_set else 'person_keypoints'
        self.ann_file = ann_file or os.path.join(root, 'annotations',
                                                 '%s_%s.json' % (prefix, image_set))
        folder = 'test2017' if 'test' in image_set else image_set
        self.image_dir = image_dir or os.path.join(root, 'images', folder)
        image_size = cfg.MODEL.IMAGE_SIZE
        aspect_ratio = image_size[0] * 1.0 / image_size[1]
        num_joints = int(cfg.MODEL.NUM_JOINTS)
        if use_gt_bbox is None:
            use_gt_bbox = bool(cfg.TEST.USE_GT_BBOX)
        if is_train or use_gt_bbox:
            source = self.ann_file
            records = load_coco_gt_records(self.ann_file, self.image_dir, aspect_ratio,
                                           image_set, num_joints)
        else:
            source = bbox_file or cfg.TEST.COCO_BBOX_FILE
            if not source:
                raise DatasetError('COCO detection boxes requested (TEST.USE_GT_BBOX false) but '
                                   'TEST.COCO_BBOX_FILE is empty')
            # the image sizes of the annotation file (when there is one) tell which boxes lie
            # outside their image; without them only the boxes' own values are checked
            sizes = (load_coco_image_sizes(self.ann_file) if os.path.isfile(self.ann_file)
                     else None)
            records = load_coco_det_records(source, self.image_dir, aspect_ratio,
                                            float(cfg.TEST.IMAGE_THRE), image_set, num_joints,
                                            image_sizes=sizes)
        self.source = source
        super().__init__(cfg, records, is_train=is_train, rng=rng, source=source)
