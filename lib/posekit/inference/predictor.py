"""Top-down prediction on whole images: person boxes in, keypoints in image pixels out.

One pipeline for ``infer.py`` (Paddle dygraph) and ``deploy.py`` (ONNX Runtime / Paddle
Inference): every step is a library function, so an exported model gets exactly the numbers of
the training code (LANDSCAPE section 3, issues 5-8: ONNX "accuracy losses" that were really a
second, different pre-/post-processing):

1. each box (x, y, w, h) -> centre/scale with :func:`posekit.codec.transforms.box_to_center_scale`
   (the model's aspect ratio, padding 1.25);
2. :func:`posekit.codec.transforms.crop` to the input size, :func:`posekit.codec.transforms.normalize` with
   the deploy config's channel order and statistics;
3. one batch through the runner (``runner(batch NCHW float32) -> heatmaps (B, K, h, w)``); with
   the flip test, a second run on the mirrored *normalised* batch fused by
   :func:`posekit.codec.heatmap.fuse_flip` (REFERENCE_SPEC 7.3);
4. :func:`posekit.codec.heatmap.get_final_preds` with the config's decoding options.

The runner is anything callable with that signature: ``posekit.runtime`` provides ONNX Runtime,
Paddle Inference and dygraph runners.
"""
import json
import os
import re
import time
import warnings

import numpy as np

from posekit.codec import heatmap as _heatmap
from posekit.codec import transforms

__all__ = ['TopDownPredictor', 'PoseResult', 'BoxError', 'BoxWarning', 'DetectionFileError',
           'validate_boxes', 'whole_image_box', 'load_detections', 'boxes_for_image',
           'person_boxes', 'predict_reporting', 'parse_image_id', 'output_paths',
           'save_prediction', 'write_json', 'TIMING_STAGES']

# Names of the per-stage timings of a prediction, in pipeline order (milliseconds).
TIMING_STAGES = ('preprocess', 'inference', 'decode')


class BoxError(ValueError):
    """A person box that cannot be used (wrong shape, not finite, zero or negative size)."""


class BoxWarning(UserWarning):
    """A person box that was skipped (entirely outside the image)."""


class DetectionFileError(ValueError):
    """A detection json that is missing, unreadable or not in a known format."""


def _fmt_box(box):
    return '[%s]' % ', '.join('%g' % float(v) for v in box[:4])


def whole_image_box(image):
    """The whole image as one person box, ``[[0, 0, W, H, 1.0]]`` (x, y, w, h, score)."""
    h, w = np.asarray(image).shape[:2]
    return np.array([[0.0, 0.0, float(w), float(h), 1.0]], dtype=np.float32)


def validate_boxes(boxes, image_size):
    """Check person boxes against an image of ``image_size`` (W, H).

    ``boxes`` is (N, 4) x, y, w, h (top-left corner and size, COCO convention) or (N, 5) with a
    score column (1.0 is assumed without one). Returns ``(kept (M, 5) float32, kept indices,
    skipped [(index, box, reason)])``.

    * a box with a zero or negative width/height, or a non-finite value, raises
      :class:`BoxError` naming the box: it is an input mistake, not something to guess around;
    * a box entirely outside the image is skipped with a :class:`BoxWarning`;
    * a box partly outside is kept as it is: the affine crop fills the outside with zeros, as
      in training, and clipping would move the centre the model sees.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5), np.float32), [], []
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise BoxError('person boxes must be an (N, 4) array of x, y, w, h (or (N, 5) with a '
                       'score), got shape %s' % (np.asarray(boxes).shape,))
    if arr.shape[1] == 4:
        arr = np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
    img_w, img_h = float(image_size[0]), float(image_size[1])
    kept, kept_idx, skipped = [], [], []
    for i, box in enumerate(arr):
        x, y, w, h = box[:4]
        if not np.all(np.isfinite(box)):
            raise BoxError('person box %d %s has a non-finite value' % (i, _fmt_box(box)))
        if w <= 0 or h <= 0:
            raise BoxError('person box %d %s has zero or negative size (x, y, w, h; w and h '
                           'must be > 0)' % (i, _fmt_box(box)))
        if x >= img_w or y >= img_h or x + w <= 0 or y + h <= 0:
            reason = 'entirely outside the %dx%d image' % (img_w, img_h)
            warnings.warn('person box %d %s (x, y, w, h) is %s; skipped' % (i, _fmt_box(box), reason),
                          BoxWarning, stacklevel=3)
            skipped.append((i, box.astype(np.float32), reason))
            continue
        kept.append(box)
        kept_idx.append(i)
    kept = np.array(kept, dtype=np.float32).reshape(-1, 5)
    return kept, kept_idx, skipped


class PoseResult:
    """Predictions for one image.

    ``keypoints`` (N, K, 3): x, y in image pixels and the heatmap confidence; ``boxes`` (N, 4)
    x, y, w, h; ``scores`` (N,) the box scores (1.0 for given boxes); ``timings`` the
    milliseconds of each stage of :data:`TIMING_STAGES`; ``skipped`` the boxes that were not
    used, as (index in the input, box, reason).
    """

    def __init__(self, keypoints, boxes, scores, joint_names, timings=None, skipped=(),
                 box_indices=None, image_size=None):
        self.keypoints = np.asarray(keypoints, dtype=np.float32)
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.joint_names = list(joint_names)
        self.timings = dict(timings or {s: 0.0 for s in TIMING_STAGES})
        self.skipped = list(skipped)
        self.box_indices = list(range(len(self.boxes)) if box_indices is None else box_indices)
        self.image_size = None if image_size is None else [int(v) for v in image_size]

    def __len__(self):
        return len(self.keypoints)

    def skipped_summary(self):
        """One line naming the skipped boxes and why (empty when none was skipped)."""
        return '; '.join('person box %d %s (x, y, w, h) is %s' % (i, _fmt_box(b), r)
                         for i, b, r in self.skipped)

    @property
    def pose_scores(self):
        """Mean keypoint confidence of each person (N,)."""
        if len(self.keypoints) == 0:
            return np.zeros((0,), np.float32)
        return self.keypoints[:, :, 2].mean(axis=1)

    def to_records(self):
        """One json-ready dict per person: box, score, pose score and named keypoints."""
        records = []
        pose_scores = self.pose_scores
        for n in range(len(self.keypoints)):
            kps = [{'name': name, 'x': float(kp[0]), 'y': float(kp[1]), 'score': float(kp[2])}
                   for name, kp in zip(self.joint_names, self.keypoints[n])]
            records.append({'box': [float(v) for v in self.boxes[n]],
                            'box_index': int(self.box_indices[n]),
                            'score': float(self.scores[n]),
                            'pose_score': float(pose_scores[n]),
                            'keypoints': kps})
        return records

    def to_dict(self):
        return {'image_size': self.image_size, 'joint_names': self.joint_names,
                'persons': self.to_records(),
                'skipped_boxes': [{'box_index': int(i), 'box': [float(v) for v in b[:4]],
                                   'reason': r} for i, b, r in self.skipped],
                'timings_ms': {k: round(float(v), 3) for k, v in self.timings.items()}}


class TopDownPredictor:
    """Keypoints of the persons in given boxes, through a heatmap model ``runner``.

    ``deploy_config`` is a :class:`posekit.inference.deploy_config.DeployConfig` (input size, channel
    order, normalisation, joints, decoding options); ``flip_test`` None uses its
    ``flip_test``.
    """

    def __init__(self, deploy_config, runner, flip_test=None):
        self.config = deploy_config
        self.runner = runner
        self.flip_test = bool(deploy_config.flip_test if flip_test is None else flip_test)

    # -- stages -------------------------------------------------------------------------------
    def centers_scales(self, boxes):
        """(N, 2) centres and (N, 2) scales (units of 200 px) of (N, 4+) x, y, w, h boxes."""
        ar = self.config.aspect_ratio
        cs = [transforms.box_to_center_scale(b[0], b[1], b[2], b[3], ar) for b in boxes]
        centers = np.array([c for c, _ in cs], dtype=np.float32).reshape(-1, 2)
        scales = np.array([s for _, s in cs], dtype=np.float32).reshape(-1, 2)
        return centers, scales

    def preprocess(self, image_bgr, centers, scales):
        """Cropped, normalised network input (N, 3, H, W) float32."""
        c = self.config
        crops = np.stack([transforms.crop(image_bgr, centers[i], scales[i], 0, c.input_size)
                          for i in range(len(centers))])
        return transforms.normalize(crops, c.color_rgb, c.pixel_scale, c.mean, c.std)

    def _run(self, batch):
        # A fixed-batch model is run in chunks by the runner itself (posekit.runtime contract).
        return np.asarray(self.runner(batch), dtype=np.float32)

    def heatmaps(self, batch):
        """Heatmaps (N, K, h, w) for a prepared batch, flip-tested if ``self.flip_test``."""
        k = self.config.num_joints

        def run(x):
            out = self._run(x)
            if out.ndim != 4 or out.shape[0] != len(x) or out.shape[1] != k:
                raise ValueError('the model returned heatmaps of shape %s for a batch of %d; '
                                 'expected (%d, %d, h, w) from the deploy config'
                                 % (out.shape, len(x), len(x), k))
            return out
        pairs = self.config.flip_pairs if self.flip_test else None
        return _heatmap.flip_test(run, batch, pairs, shift=self.config.shift_heatmap)

    def decode(self, heatmaps, centers, scales):
        """Keypoints (N, K, 3) in image pixels: x, y, confidence."""
        c = self.config
        kwargs = {'post_process': c.post_process,
                  'soft_argmax_beta': _heatmap.SOFT_ARGMAX_BETA if c.soft_argmax else None,
                  'bias': c.bias}
        if c.dark:  # DARK replaces the quarter step; its blur kernel follows the training sigma
            kwargs.update(dark=True, dark_kernel=c.dark_kernel)
        preds, maxvals = _heatmap.get_final_preds(heatmaps, centers, scales, **kwargs)
        return np.concatenate([preds, maxvals], axis=2).astype(np.float32)

    # -- whole pipeline -----------------------------------------------------------------------
    def predict(self, image_bgr, boxes=None):
        """Keypoints of every person box of one BGR image; the whole image when ``boxes`` is None.

        ``boxes`` (N, 4) x, y, w, h or (N, 5) with a detection score. See
        :func:`validate_boxes` for boxes outside the image or of zero size.
        """
        image_bgr = np.asarray(image_bgr)
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError('expected an H x W x 3 BGR image, got shape %s' % (image_bgr.shape,))
        img_h, img_w = image_bgr.shape[:2]
        if boxes is None:
            boxes = whole_image_box(image_bgr)
        kept, kept_idx, skipped = validate_boxes(boxes, (img_w, img_h))
        k = self.config.num_joints
        timings = {s: 0.0 for s in TIMING_STAGES}
        if len(kept) == 0:
            return PoseResult(np.zeros((0, k, 3), np.float32), np.zeros((0, 4)), np.zeros((0,)),
                              self.config.joint_names, timings, skipped, [], (img_w, img_h))

        t0 = time.perf_counter()
        centers, scales = self.centers_scales(kept)
        batch = self.preprocess(image_bgr, centers, scales)
        t1 = time.perf_counter()
        hms = self.heatmaps(batch)
        t2 = time.perf_counter()
        keypoints = self.decode(hms, centers, scales)
        t3 = time.perf_counter()
        timings = {'preprocess': (t1 - t0) * 1e3, 'inference': (t2 - t1) * 1e3,
                   'decode': (t3 - t2) * 1e3}
        return PoseResult(keypoints, kept[:, :4], kept[:, 4], self.config.joint_names, timings,
                          skipped, kept_idx, (img_w, img_h))


# -- detections from a COCO-style json ----------------------------------------------------------

def load_detections(path):
    """Read person detections: a COCO results list ``[{image_id, bbox, score, ...}]`` or a COCO
    annotation file (``{images, annotations}``; its GT boxes get score 1.0).

    Returns ``(detections, file_name_to_id)``: a list of dicts with ``image_id``, ``bbox``,
    ``score`` and optionally ``category_id``/``file_name``, and the image file names the file
    declares (empty for a results list).
    """
    if not os.path.isfile(path):
        raise DetectionFileError('detection file not found: %s' % path)
    try:
        with open(path, 'r', encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DetectionFileError('cannot parse detection json %s: %s' % (path, e)) from e
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


# -- where the boxes come from, and what is written ---------------------------------------------

def parse_image_id(value):
    """A ``--image-id`` value: an int when it is all digits (COCO ids), else the string."""
    if value is None:
        return None
    return int(value) if str(value).isdigit() else value


def predict_reporting(predictor, image, boxes, source=None):
    """``predictor.predict`` for an entry point: the box warnings it raises are re-issued after
    the prediction (prefixed with ``source``), and a result without any usable box is a
    :class:`BoxError`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = predictor.predict(image, boxes)
    prefix = '%s: ' % source if source else ''
    if len(result) == 0:
        raise BoxError('%sno person box inside the image: %s' % (prefix, result.skipped_summary()))
    for w in caught:
        warnings.showwarning('%s%s' % (prefix, w.message), w.category, w.filename, w.lineno)
    return result


def person_boxes(image, image_path=None, boxes=None, detections=None, image_id=None,
                 score_threshold=0.0, detector=None):
    """The person boxes (N, 5) x, y, w, h, score of one image and a word on their source.

    In order of precedence: explicit ``boxes`` (score 1), ``detections`` from
    :func:`load_detections` (this image's, by ``image_id`` or ``image_path``'s file name, above
    ``score_threshold``), a ``detector`` callable (:mod:`posekit.inference.detector`), else the whole
    image. An empty array means the detections or the detector found no person.
    """
    if boxes is not None and len(boxes):
        arr = np.asarray(boxes, dtype=np.float32)
        if arr.ndim == 2 and arr.shape[1] == 4:
            arr = np.concatenate([arr, np.ones((len(arr), 1), np.float32)], axis=1)
        return arr, 'given boxes'
    if detections is not None:
        return (boxes_for_image(detections, image_id=image_id, file_name=image_path,
                                score_threshold=score_threshold),
                'detections with score >= %g' % score_threshold)
    if detector is not None:
        return detector(image), '%s detector' % getattr(detector, 'name', 'person')
    return whole_image_box(image), 'whole image'


def output_paths(output_dir, source_path):
    """``<output_dir>/<stem>_pose.jpg`` and ``<output_dir>/<stem>_keypoints.json``."""
    stem = os.path.splitext(os.path.basename(source_path))[0]
    return (os.path.join(output_dir, stem + '_pose.jpg'),
            os.path.join(output_dir, stem + '_keypoints.json'))


def write_json(path, data):
    """Write ``data`` as indented json, atomically (temporary file renamed over ``path``)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=1)
        f.write('\n')
    os.replace(tmp, path)
    return path


def save_prediction(output_dir, image_path, image_bgr, result, deploy_config, meta=None,
                    kpt_thr=0.3, draw_names=False):
    """Write the drawn picture and the keypoints json of one image; returns (jpg, json) paths.

    The json holds ``meta`` (image, model, options...) and :meth:`PoseResult.to_dict`: per
    person the box (x, y, w, h), its score, the mean keypoint confidence and the keypoints as
    ``{name, x, y, score}`` in image pixels.
    """
    import cv2

    from posekit.inference.visualize import draw_result
    jpg, js = output_paths(output_dir, image_path)
    os.makedirs(output_dir, exist_ok=True)
    drawn = draw_result(image_bgr, result, deploy_config, kpt_thr=kpt_thr, draw_names=draw_names)
    if not cv2.imwrite(jpg, drawn):
        raise OSError('cannot write %s' % jpg)
    data = dict(meta or {})
    data.update(result.to_dict())
    write_json(js, data)
    return jpg, js
