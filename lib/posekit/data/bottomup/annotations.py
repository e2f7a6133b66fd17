"""COCO annotations of one image -> the bottom-up training material (SIMPLEPOSE_SPEC 4.1).

What the reference computes once into an HDF5 file (``data/coco_masks_hdf5.py``), computed here
from the COCO json on the fly:

* :func:`make_masks`: ``mask_all`` (every person, crowd included) and ``mask_miss`` (0 where
  nobody's keypoints are labelled: persons without keypoints and the crowd region), uint8 0/255
  at image resolution;
* :func:`person_records` + :func:`select_main_persons` + :func:`image_instances`: the "main
  persons" an image is centred on during training, one instance per main person, listing the
  main person first and then every other person with keypoints;
* :func:`remap_visibility` / :func:`coco_to_ours`: COCO-17 keypoints -> ours-18 with a neck.

Visibility, "ours" convention: 0 labelled but occluded, 1 labelled and visible, 2 unlabelled.
A joint gets targets iff its visibility is < 2, so occluded joints are drawn too.

Two reference defects are reproduced by default because the published model and the fixtures
were made with them; each has a switch that fixes it (SIMPLEPOSE_SPEC 9.3):

* main persons too close to an earlier one are skipped with a radius of 0.3 x the longer bbox
  side of the image's *last* annotation (a stale loop variable), not of the earlier person
  (``radius_from='last'``; ``'own'`` fixes it);
* the crowd region is reduced by the persons met *before* the crowd annotation in file order, so
  labelled people listed after it lose their supervision inside it (``crowd_minus='seen'``;
  ``'all'`` subtracts every non-crowd person).

One defect is always fixed: the reference stops on an image with more than one crowd annotation;
here the crowd regions are united (each reduced as above). Another choice of ours: a person
without a usable segmentation (COCO always has one; other sets may not) contributes its bbox.
"""
import math

import numpy as np
from pycocotools import mask as mask_utils

from posekit.codec.bottomup.layout import COCO_TO_OURS, NECK, NUM_PARTS

__all__ = ['COCO_NUM_KEYPOINTS', 'MIN_MAIN_KEYPOINTS', 'MIN_MAIN_AREA', 'MAIN_DISTANCE_FACTOR',
           'remap_visibility', 'coco_to_ours', 'segmentation_rle', 'make_masks', 'needs_mask_miss',
           'num_keypoints',
           'person_records', 'select_main_persons', 'image_instances']

COCO_NUM_KEYPOINTS = 17
MIN_MAIN_KEYPOINTS = 5         # a main person has at least 5 labelled keypoints
MIN_MAIN_AREA = 32 * 32        # and a segment area of at least 32^2 px
MAIN_DISTANCE_FACTOR = 0.3     # and is not within 0.3 x radius of an earlier main person
_COCO_SHOULDERS = (6, 5)       # COCO-17 Rsho, Lsho


def remap_visibility(v):
    """COCO visibility -> ours: 2 (visible) -> 1, 1 (occluded) -> 0, anything else -> 2."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v == 2, 1.0, np.where(v == 1, 0.0, 2.0))


def coco_to_ours(joints17):
    """(N, 17, 3) COCO-order joints with ours visibility -> (N, 18, 3) in ours-18 order.

    The neck is the mean of the two shoulders when both have visibility < 2, with the smaller
    of their visibilities; otherwise it is unlabelled (0, 0, 2) (SIMPLEPOSE_SPEC 2).
    """
    joints17 = np.asarray(joints17, dtype=np.float64).reshape(-1, COCO_NUM_KEYPOINTS, 3)
    out = np.zeros((len(joints17), NUM_PARTS, 3), dtype=np.float64)
    out[:, list(COCO_TO_OURS), :] = joints17
    rsho, lsho = joints17[:, _COCO_SHOULDERS[0]], joints17[:, _COCO_SHOULDERS[1]]
    both = (lsho[:, 2] < 2) & (rsho[:, 2] < 2)
    out[:, NECK, :] = (0.0, 0.0, 2.0)
    out[both, NECK, 0:2] = (rsho[both, 0:2] + lsho[both, 0:2]) / 2
    out[both, NECK, 2] = np.minimum(rsho[both, 2], lsho[both, 2])
    return out


def _bbox_polygon(bbox):
    x, y, w, h = (float(v) for v in bbox)
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def segmentation_rle(ann, height, width):
    """The annotation's segmentation as one pycocotools RLE (what ``COCO.annToRLE`` returns:
    polygons are merged, uncompressed RLE is compressed). A missing or empty segmentation
    gives the bbox rectangle (our choice; the reference would fail on it)."""
    seg = ann.get('segmentation')
    if isinstance(seg, dict):
        if isinstance(seg.get('counts'), list):
            return mask_utils.frPyObjects(seg, height, width)
        return seg
    polygons = [p for p in (seg or []) if len(p) >= 6]
    if not polygons:
        polygons = _bbox_polygon(ann['bbox'])
    return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))


def _decode_union(rles, height, width):
    """OR of several RLEs as an (H, W) C-ordered uint8 0/1 array."""
    if not rles:
        return np.zeros((height, width), dtype=np.uint8)
    rle = rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)
    return np.ascontiguousarray(mask_utils.decode(rle))


def num_keypoints(ann):
    """``num_keypoints`` of an annotation, or its count of labelled keypoints when absent."""
    if 'num_keypoints' in ann:
        return ann['num_keypoints']
    return int(np.count_nonzero(np.asarray(ann.get('keypoints', []))[2::3]))


def needs_mask_miss(anns):
    """False when nothing of the image is excluded from supervision (no crowd, no person
    without keypoints): ``mask_miss`` is then all 255 and need not be computed or warped."""
    return any(a.get('iscrowd', 0) or num_keypoints(a) <= 0 for a in anns)


def make_masks(anns, height, width, crowd_minus='seen', with_mask_miss=True):
    """``(mask_miss, mask_all)`` uint8 (H, W) in {0, 255} (SIMPLEPOSE_SPEC 4.1 ``make_mask``).

    ``mask_all`` = OR of all person masks and the crowd; ``mask_miss`` = NOT(OR of the persons
    with ``num_keypoints <= 0`` and the crowd reduced by the persons met before it), i.e. 255
    where supervised. ``crowd_minus='all'`` reduces the crowd by every non-crowd person instead
    (the order-independent fix). ``with_mask_miss`` False returns None for ``mask_miss``.
    """
    if crowd_minus not in ('seen', 'all'):
        raise ValueError("crowd_minus must be 'seen' or 'all', got %r" % (crowd_minus,))
    persons, no_keypoints, crowds = [], [], []
    for ann in anns:
        rle = segmentation_rle(ann, height, width)
        if ann.get('iscrowd', 0):
            # what the crowd is reduced by: the persons seen so far (reference) or all of them
            crowds.append((rle, len(persons)))
            continue
        persons.append(rle)
        if num_keypoints(ann) <= 0:
            no_keypoints.append(rle)
    mask_all = _decode_union(persons, height, width)
    crowd = None
    if crowds:
        crowd = np.zeros((height, width), dtype=np.uint8)
        for rle, seen in crowds:
            before = mask_all if crowd_minus == 'all' else _decode_union(persons[:seen], height,
                                                                          width)
            region = np.ascontiguousarray(mask_utils.decode(rle))
            crowd |= region & (1 - before)
        mask_all |= crowd
    mask_all *= 255
    if not with_mask_miss:
        return None, mask_all
    missing = _decode_union(no_keypoints, height, width)
    if crowd is not None:
        missing |= crowd
    mask_miss = (1 - missing) * np.uint8(255)
    return mask_miss.astype(np.uint8, copy=False), mask_all


def person_records(anns, scale_divisor):
    """Per annotation (file order, crowd included, as the reference lists them): ``objpos``
    (bbox centre), ``bbox``, ``area``, ``num_keypoints``, ``joints`` (17, 3) COCO order with ours
    visibility, ``scale_provided`` = bbox height / ``scale_divisor`` (the training input height;
    the reference's ``image_size``)."""
    records = []
    for ann in anns:
        x, y, w, h = (float(v) for v in ann['bbox'])
        kpts = np.asarray(ann.get('keypoints') or [0] * (3 * COCO_NUM_KEYPOINTS),
                          dtype=np.float64).reshape(COCO_NUM_KEYPOINTS, 3)
        joints = kpts.copy()
        joints[:, 2] = remap_visibility(kpts[:, 2])
        records.append({
            'objpos': [x + w / 2, y + h / 2], 'bbox': [x, y, w, h],
            'area': float(ann.get('area', w * h)), 'num_keypoints': num_keypoints(ann),
            'joints': joints, 'scale_provided': h / scale_divisor,
        })
    return records


def select_main_persons(records, radius_from='last'):
    """Indices of the main persons (SIMPLEPOSE_SPEC 4.1): at least 5 keypoints, area >= 32^2,
    and farther than 0.3 x radius from every earlier main person's centre.

    ``radius_from='last'`` reproduces the reference, whose radius is the longer bbox side of the
    image's last annotation for every main person (a stale loop variable, SIMPLEPOSE_SPEC 9.3);
    ``'own'`` uses each earlier main person's own longer bbox side (the fix).
    """
    if radius_from not in ('last', 'own'):
        raise ValueError("radius_from must be 'last' or 'own', got %r" % (radius_from,))
    if not records:
        return []
    last_radius = max(records[-1]['bbox'][2], records[-1]['bbox'][3])
    chosen, previous = [], []
    for i, rec in enumerate(records):
        if rec['num_keypoints'] < MIN_MAIN_KEYPOINTS or rec['area'] < MIN_MAIN_AREA:
            continue
        cx, cy = rec['objpos']
        if any(math.sqrt((cx - px) ** 2 + (cy - py) ** 2) < r * MAIN_DISTANCE_FACTOR
               for px, py, r in previous):
            continue
        chosen.append(i)
        radius = last_radius if radius_from == 'last' else max(rec['bbox'][2], rec['bbox'][3])
        previous.append((cx, cy, radius))
    return chosen


def image_instances(anns, scale_divisor, radius_from='last'):
    """One instance per main person of an image (the reference ``process_image``): a dict with
    ``people_index`` (the main person's annotation index), and over [main person, then every
    other person with keypoints, in file order]: ``objpos`` (N, 2), ``scale_provided`` (N,),
    ``joints`` (N, 17, 3) (COCO order, ours visibility) and ``joints18`` (N, 18, 3)."""
    records = person_records(anns, scale_divisor)
    instances = []
    for m in select_main_persons(records, radius_from):
        order = [m] + [i for i, r in enumerate(records) if i != m and r['num_keypoints'] != 0]
        joints = np.stack([records[i]['joints'] for i in order])
        instances.append({
            'people_index': m,
            'objpos': np.array([records[i]['objpos'] for i in order], dtype=np.float64),
            'scale_provided': np.array([records[i]['scale_provided'] for i in order],
                                       dtype=np.float64),
            'joints': joints,
            'joints18': coco_to_ours(joints),
        })
    return instances
