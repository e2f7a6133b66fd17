"""The MPII and COCO writers: render the scenes of a parameter set and write images, annotation
files and the ``synthetic.json`` manifest (written last) in the datasets' on-disk formats.

Every image has its own random stream, seeded by ``(seed, split, index)``, so the MPII and COCO
sets of one seed show the same scenes; the same seed gives byte-identical files with the same
OpenCV build.
"""
import io
import os

import cv2
import numpy as np

from posekit.data.descriptors import COCO_JOINTS, COCO_SKELETON, MPII_MAT_JOINTS
from posekit.data.synthetic.scene import (COORD_DECIMALS, DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PEOPLE,
                                          render_scene)
from posekit.errors import PosekitInputError
from posekit.io import atomic_path, write_bytes, write_json

# Bump when the drawing or the annotation layout changes: old folders are then regenerated.
GENERATOR_VERSION = 1
MANIFEST_NAME = 'synthetic.json'
FORMATS = ('mpii', 'coco')
DEFAULT_COCO_SETS = ('train2017', 'val2017')
JPEG_QUALITY = 90
# MPII: a person is annotated only if at least this many of the 16 joints are inside the image.
MPII_MIN_JOINTS_IN_IMAGE = 8
# MPII json scale = longest side of the figure / 200 times this; the loader then enlarges it by 1.25.
MPII_SCALE_MARGIN = 1.0

_SPLIT_CODES = {'train': 0, 'valid': 1}


class SyntheticError(PosekitInputError):
    """Bad generator parameters, or a target folder that holds something else."""


def _check_params(num_train, num_valid, seed, image_size, max_people):
    for name, v in (('num_train', num_train), ('num_valid', num_valid)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise SyntheticError('%s must be a positive integer, got %r' % (name, v))
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise SyntheticError('seed must be a non-negative integer, got %r' % (seed,))
    try:
        w, h = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise SyntheticError('image_size must be two integers [W, H], got %r' % (image_size,))
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise SyntheticError('image_size [W, H] must be between 64 and 4096 px, got %r'
                             % (list(image_size),))
    if not isinstance(max_people, (int, np.integer)) or not 1 <= max_people <= 10:
        raise SyntheticError('max_people must be an integer from 1 to 10, got %r' % (max_people,))
    return {'num_train': int(num_train), 'num_valid': int(num_valid), 'seed': int(seed),
            'image_size': [w, h], 'max_people': int(max_people)}


def _scenes(params, split, count, progress):
    """(index, image, people) for each image of a split, each from its own random stream."""
    code = _SPLIT_CODES[split]
    for i in range(count):
        rng = np.random.default_rng([params['seed'], code, i])
        img, people = render_scene(rng, params['image_size'], params['max_people'])
        yield i, img, people
        if progress is not None:
            progress(split, i + 1, count)


def _write_jpeg(path, img):
    with atomic_path(path) as tmp:
        if not cv2.imwrite(tmp, img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError('cannot write image %s' % path)


def _write_json(path, data):
    write_json(path, data, separators=(',', ':'))


def _savemat_deterministic(path, mdict):
    """scipy's savemat writes the creation time into the 116-byte text header; a fixed header
    makes the file depend on the data only."""
    from scipy.io import savemat
    buf = io.BytesIO()
    savemat(buf, mdict)
    data = bytearray(buf.getvalue())
    data[0:116] = b'MATLAB 5.0 MAT-file, written by posekit.data.synthetic'.ljust(116, b' ')
    write_bytes(path, bytes(data))


def _write_manifest(root, fmt, params, counts):
    manifest = {'generator': 'posekit.data.synthetic', 'version': GENERATOR_VERSION, 'format': fmt,
                'params': params, 'counts': counts}
    _write_json(os.path.join(root, MANIFEST_NAME), manifest)
    return manifest


def _mpii_entry(name, person):
    """One msft-format MPII record (1-based pixels). The centre is moved up by 15 * scale so the
    loader's c_y += 15 * s puts it back on the figure's centre; scale is the figure's longest side
    / 200, which the loader enlarges by 1.25: the crop holds the whole figure with a margin."""
    x1, y1, x2, y2 = person['extent']
    s = round(max(x2 - x1, y2 - y1) * MPII_SCALE_MARGIN / 200.0, 4)
    c = [round((x1 + x2) / 2 + 1, COORD_DECIMALS), round((y1 + y2) / 2 + 1 - 15 * s, COORD_DECIMALS)]
    inside = (person['vis_mpii'] > 0).astype(int)
    joints = np.round(person['joints_mpii'] + 1, COORD_DECIMALS)
    return {'image': name, 'center': c, 'scale': s,
            'joints': [[float(x), float(y)] for x, y in joints],
            'joints_vis': [int(v) for v in inside]}


def generate_mpii(root, num_train, num_valid, seed=0, image_size=DEFAULT_IMAGE_SIZE,
                  max_people=DEFAULT_MAX_PEOPLE, progress=None):
    """Write a synthetic MPII set into ``root`` (created if needed); return its manifest.

    Layout: ``images/<9-digit index>.jpg`` (train first, then valid), ``annot/train.json``,
    ``annot/valid.json`` and ``annot/gt_valid.mat`` (columns in valid.json order), then
    ``synthetic.json``. One json entry per person with at least ``MPII_MIN_JOINTS_IN_IMAGE`` joints
    inside the image; joints outside the image have ``joints_vis`` 0 (``jnt_missing`` 1), covered
    joints stay annotated as in MPII. ``progress(split, done, total)`` is called after each image.
    """
    params = _check_params(num_train, num_valid, seed, image_size, max_people)
    img_dir = os.path.join(root, 'images')
    ann_dir = os.path.join(root, 'annot')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    counts = {}
    valid_people = []
    offset = 0
    for split, count in (('train', params['num_train']), ('valid', params['num_valid'])):
        entries = []
        for i, img, people in _scenes(params, split, count, progress):
            name = '%09d.jpg' % (offset + i + 1)
            _write_jpeg(os.path.join(img_dir, name), img)
            for person in people:
                if np.count_nonzero(person['vis_mpii']) >= MPII_MIN_JOINTS_IN_IMAGE:
                    entries.append(_mpii_entry(name, person))
                    if split == 'valid':
                        valid_people.append(person)
        offset += count
        _write_json(os.path.join(ann_dir, split + '.json'), entries)
        counts[split] = {'images': count, 'persons': len(entries)}

    n = len(valid_people)
    pos_gt = np.zeros((16, 2, n))
    missing = np.zeros((16, n))
    heads = np.zeros((2, 2, n))
    for k, p in enumerate(valid_people):
        pos_gt[:, :, k] = np.round(p['joints_mpii'] + 1, COORD_DECIMALS)
        missing[:, k] = (p['vis_mpii'] == 0).astype(np.float64)
        hb = np.asarray(p['head_box']) + 1
        heads[0, :, k], heads[1, :, k] = hb[0:2], hb[2:4]
    names = np.empty((1, 16), dtype=object)
    for j, nm in enumerate(MPII_MAT_JOINTS):
        names[0, j] = nm
    _savemat_deterministic(os.path.join(ann_dir, 'gt_valid.mat'),
                           {'dataset_joints': names, 'jnt_missing': missing,
                            'pos_gt_src': pos_gt, 'headboxes_src': heads})
    return _write_manifest(root, 'mpii', params, counts)


def _coco_categories():
    return [{'id': 1, 'name': 'person', 'supercategory': 'person', 'keypoints': list(COCO_JOINTS),
             'skeleton': [[a + 1, b + 1] for a, b in COCO_SKELETON]}]


def _r(v):
    return round(float(v), COORD_DECIMALS)


def generate_coco(root, num_train, num_valid, seed=0, image_size=DEFAULT_IMAGE_SIZE,
                  max_people=DEFAULT_MAX_PEOPLE, train_set=DEFAULT_COCO_SETS[0],
                  val_set=DEFAULT_COCO_SETS[1], progress=None):
    """Write a synthetic COCO person-keypoints set into ``root``; return its manifest.

    Layout: ``images/<set>/<12-digit id>.jpg``, ``annotations/person_keypoints_<set>.json`` and
    ``annotations/person_detection_<set>.json`` for both sets, then ``synthetic.json``. Image ids
    run 1..num_train for the training set and continue for the validation set. Keypoints: v=2
    visible, v=1 covered by another person or an occluder, v=0 (x = y = 0) outside the image.
    Detections: every ground-truth box jittered by a few percent with a score in [0.8, 1), plus a
    false positive with a score below 0.4 in about a third of the images.
    """
    params = _check_params(num_train, num_valid, seed, image_size, max_people)
    for name, v in (('train_set', train_set), ('val_set', val_set)):
        if not isinstance(v, str) or not v or os.sep in v or 'test' in v:
            raise SyntheticError('%s must be a plain folder name without "test", got %r' % (name, v))
    if train_set == val_set:
        raise SyntheticError('train_set and val_set must differ, both are %r' % train_set)
    params.update(train_set=train_set, val_set=val_set)
    ann_dir = os.path.join(root, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    w, h = params['image_size']
    counts = {}
    first_id = 1
    ann_id = 1
    for split, set_name, count in (('train', train_set, params['num_train']),
                                   ('valid', val_set, params['num_valid'])):
        img_dir = os.path.join(root, 'images', set_name)
        os.makedirs(img_dir, exist_ok=True)
        images, annotations, detections = [], [], []
        for i, img, people in _scenes(params, split, count, progress):
            image_id = first_id + i
            file_name = '%012d.jpg' % image_id
            _write_jpeg(os.path.join(img_dir, file_name), img)
            images.append({'id': image_id, 'file_name': file_name, 'width': w, 'height': h})
            det_rng = np.random.default_rng([params['seed'], _SPLIT_CODES[split], i, 7])
            for person in people:
                vis = person['vis_coco']
                if not np.any(vis > 0):
                    continue
                kpts = []
                for (x, y), v in zip(person['joints_coco'], vis):
                    kpts += [_r(x), _r(y), int(v)] if v > 0 else [0, 0, 0]
                bx, by, bw, bh = person['bbox']
                annotations.append({
                    'id': ann_id, 'image_id': image_id, 'category_id': 1,
                    'bbox': [_r(bx), _r(by), _r(bw), _r(bh)],
                    'area': float(max(person['area'], 1)), 'iscrowd': 0,
                    'num_keypoints': int(np.count_nonzero(vis > 0)), 'keypoints': kpts,
                    'segmentation': [[_r(bx), _r(by), _r(bx + bw), _r(by), _r(bx + bw), _r(by + bh),
                                      _r(bx), _r(by + bh)]],
                })
                ann_id += 1
                jit = det_rng.normal(0, 0.03, 4) * np.array([bw, bh, bw, bh])
                detections.append({'image_id': image_id, 'category_id': 1,
                                   'bbox': [_r(bx + jit[0]), _r(by + jit[1]),
                                            _r(max(bw + jit[2], 2.0)), _r(max(bh + jit[3], 2.0))],
                                   'score': round(float(det_rng.uniform(0.8, 1.0)), 4)})
            if det_rng.random() < 0.35:
                fw, fh = det_rng.uniform(0.1, 0.4) * w, det_rng.uniform(0.2, 0.6) * h
                detections.append({'image_id': image_id, 'category_id': 1,
                                   'bbox': [_r(det_rng.uniform(0, w - fw)),
                                            _r(det_rng.uniform(0, h - fh)), _r(fw), _r(fh)],
                                   'score': round(float(det_rng.uniform(0.05, 0.4)), 4)})
        _write_json(os.path.join(ann_dir, 'person_keypoints_%s.json' % set_name),
                    {'info': {'description': 'posekit synthetic people', 'version': GENERATOR_VERSION},
                     'images': images, 'annotations': annotations,
                     'categories': _coco_categories()})
        _write_json(os.path.join(ann_dir, 'person_detection_%s.json' % set_name), detections)
        counts[split] = {'images': count, 'persons': len(annotations), 'detections': len(detections)}
        first_id += count
    return _write_manifest(root, 'coco', params, counts)
