"""Where the person boxes of an image come from: given boxes, a detection json, or a detector.

A top-down model sees one person per box, so every image first gets its boxes (N, 5) x, y, w, h,
score. :class:`BoxSource` holds the user's choice and answers per image, in this order of
precedence: explicit boxes (score 1), this image's detections from a COCO-style json (by image
id or file name, above a score threshold), a detector (:mod:`posekit.inference.detector`), else
the whole image. An empty answer means the detections or the detector found no person there.
"""
import os
import re

import numpy as np

from posekit.errors import PosekitInputError
from posekit.io import InputFileError, read_json
from posekit.inference.predictor import whole_image_box

__all__ = ['DetectionFileError', 'BoxSource', 'load_detections', 'boxes_for_image',
           'parse_image_id']


class DetectionFileError(InputFileError):
    """A detection json that is missing, unreadable or not in a known format."""


def load_detections(path):
    """Read person detections: a COCO results list ``[{image_id, bbox, score, ...}]`` or a COCO
    annotation file (``{images, annotations}``; its GT boxes get score 1.0).

    Returns ``(detections, file_name_to_id)``: a list of dicts with ``image_id``, ``bbox``,
    ``score`` and optionally ``category_id``/``file_name``, and the image file names the file
    declares (empty for a results list).
    """
    try:
        data = read_json(path, what='detection json')
    except InputFileError as e:
        raise DetectionFileError(str(e)) from e
    names = {}
    if isinstance(data, dict) and 'annotations' in data:
        for im in data.get('images', []):
            if isinstance(im, dict) and 'file_name' in im and 'id' in im:
                names[os.path.basename(str(im['file_name']))] = im['id']
        dets = [dict(a, score=a.get('score', 1.0)) for a in data['annotations'] if isinstance(a, dict)]
    elif isinstance(data, list):
        dets = data
    else:
        raise DetectionFileError('%s is neither a COCO detection results list nor a COCO annotation '
                                 'file (with "annotations")' % path)
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or 'bbox' not in d or ('image_id' not in d and 'file_name' not in d
                                                           and 'image_name' not in d):
            raise DetectionFileError('%s: detection %d lacks "bbox" or "image_id"' % (path, i))
        if len(d['bbox']) != 4:
            raise DetectionFileError('%s: detection %d has a bbox of %d values, expected x, y, w, h'
                                     % (path, i, len(d['bbox'])))
    return dets, names


def _coco_id_from_name(file_name):
    """COCO file names are the zero-padded image id (``000000000785.jpg`` -> 785)."""
    stem = os.path.splitext(os.path.basename(file_name))[0]
    m = re.search(r'(\d+)$', stem)
    return int(m.group(1)) if m else None


def boxes_for_image(detections, image_id=None, file_name=None, score_threshold=0.0,
                    category_id=1):
    """Person boxes (N, 5) x, y, w, h, score of one image from :func:`load_detections` output.

    The image is found by ``image_id``, else by ``file_name``: the name the annotation file
    declares, a ``file_name``/``image_name`` field of the detections, or the number the COCO
    file name carries. Detections with a ``category_id`` other than ``category_id`` (1 = person)
    and those scoring below ``score_threshold`` are dropped. Sorted by score, best first.
    """
    if isinstance(detections, tuple):
        dets, names = detections
    else:
        dets, names = detections, {}
    base = os.path.basename(file_name) if file_name else None
    ids = set()
    if image_id is not None:
        ids.add(image_id)
        ids.add(str(image_id))
    elif base is not None:
        if base in names:
            ids.add(names[base])
        else:
            coco_id = _coco_id_from_name(base)
            if coco_id is not None:
                ids.update((coco_id, str(coco_id), os.path.splitext(base)[0]))
    else:
        raise ValueError('boxes_for_image needs an image_id or a file_name')
    out = []
    for d in dets:
        own_name = d.get('file_name', d.get('image_name'))
        match = (own_name is not None and base is not None and image_id is None
                 and os.path.basename(str(own_name)) == base) or d.get('image_id') in ids
        if not match:
            continue
        if category_id is not None and d.get('category_id', category_id) != category_id:
            continue
        score = float(d.get('score', 1.0))
        if score < score_threshold:
            continue
        out.append([float(v) for v in d['bbox']] + [score])
    out.sort(key=lambda r: -r[4])
    return np.array(out, dtype=np.float32).reshape(-1, 5)


def parse_image_id(value):
    """A ``--image-id`` value: an int when it is all digits (COCO ids), else the string."""
    if value is None:
        return None
    return int(value) if str(value).isdigit() else value


class BoxSource:
    """The person boxes of each image, from one of: ``boxes`` (N, 4) x, y, w, h given for every
    image, ``detections`` (:func:`load_detections` output) filtered by ``score_threshold``, a
    ``detector`` callable, or the whole image when none is given.

    The predictor checks the boxes against each image
    (:func:`posekit.inference.predictor.validate_boxes`).
    """

    def __init__(self, boxes=None, detections=None, score_threshold=0.0, detector=None):
        given = [b for b in (boxes is not None and len(boxes) > 0, detections is not None,
                             detector is not None) if b]
        if len(given) > 1:
            raise PosekitInputError('give person boxes one way: --box, --det-json or --detector')
        self.boxes = None
        if boxes is not None and len(boxes):
            arr = np.asarray(boxes, dtype=np.float32)
            if arr.ndim == 2 and arr.shape[1] == 4:
                arr = np.concatenate([arr, np.ones((len(arr), 1), np.float32)], axis=1)
            self.boxes = arr
        self.detections = detections
        self.score_threshold = float(score_threshold)
        self.detector = detector

    @classmethod
    def from_options(cls, boxes=None, det_json='', det_thre=0.5, detector='none'):
        """From the command-line options: ``--box`` list, ``--det-json`` path, ``--det-thre``
        and ``--detector`` name (used only when neither boxes nor detections are given)."""
        if boxes and det_json:
            raise PosekitInputError('give person boxes with --box or --det-json, not both')
        detections = load_detections(det_json) if det_json else None
        person_detector = None
        if not boxes and detections is None and str(detector).lower() != 'none':
            from posekit.inference.detector import build_detector
            person_detector = build_detector(detector)
        return cls(boxes=boxes, detections=detections, score_threshold=det_thre,
                   detector=person_detector)

    @property
    def per_image(self):
        """True when the boxes come from a file of per-image detections (not usable on video)."""
        return self.detections is not None

    def __call__(self, image, image_path=None, image_id=None):
        """``(boxes (N, 5) x, y, w, h, score, a few words on where they came from)``."""
        if self.boxes is not None:
            return self.boxes.copy(), 'given boxes'
        if self.detections is not None:
            return (boxes_for_image(self.detections, image_id=image_id, file_name=image_path,
                                    score_threshold=self.score_threshold),
                    'detections with score >= %g' % self.score_threshold)
        if self.detector is not None:
            return self.detector(image), '%s detector' % getattr(self.detector, 'name', 'person')
        return whole_image_box(image), 'whole image'
