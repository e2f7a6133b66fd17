"""Top-down prediction on whole images: person boxes in, keypoints in image pixels out.

One pipeline for ``infer.py`` (Paddle dygraph) and ``deploy.py`` (ONNX Runtime / Paddle
Inference): every step is a library function, so an exported model gets exactly the numbers of
the training code (LANDSCAPE section 3, issues 5-8: ONNX "accuracy losses" that were really a
second, different pre-/post-processing):

1. the deploy config's input spec (:class:`posekit.codec.InputSpec`) turns the boxes into
   centres/scales (the model's aspect ratio, padding 1.25), crops and normalises them;
2. one batch through the runner (``runner(batch NCHW float32) -> heatmaps (B, K, h, w)``), and
   the codec's flip test (:class:`posekit.codec.TopDownHeatmapCodec`, REFERENCE_SPEC 7.3);
3. the codec decodes the heatmaps into keypoints in image pixels.

The runner is anything callable with that signature: ``posekit.runtime`` provides ONNX Runtime,
Paddle Inference and dygraph runners.
"""
import time
import warnings

import numpy as np

from posekit.errors import PosekitInputError

__all__ = ['TopDownPredictor', 'PoseResult', 'BoxError', 'BoxWarning', 'validate_boxes',
           'whole_image_box', 'TIMING_STAGES']

# Names of the per-stage timings of a prediction, in pipeline order (milliseconds).
TIMING_STAGES = ('preprocess', 'inference', 'decode')


class BoxError(PosekitInputError):
    """A person box that cannot be used (wrong shape, not finite, zero or negative size)."""


class BoxWarning(UserWarning):
    """A person box that was skipped (entirely outside the image)."""


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

    ``deploy_config`` is a :class:`posekit.inference.deploy_config.DeployConfig`: its input
    spec turns the image and boxes into a batch, its codec runs the flip test and decodes
    (:mod:`posekit.codec`). ``flip_test`` None uses the config's ``flip_test``.
    """

    def __init__(self, deploy_config, runner, flip_test=None):
        self.config = deploy_config
        self.input_spec = deploy_config.input_spec
        self.codec = deploy_config.codec
        self.runner = runner
        self.flip_test = bool(deploy_config.flip_test if flip_test is None else flip_test)

    # -- stages -------------------------------------------------------------------------------
    def heatmaps(self, batch):
        """Heatmaps (N, K, h, w) for a prepared batch, flip-tested if ``self.flip_test``."""
        k = self.config.num_joints

        def run(x):
            # A fixed-batch model is run in chunks by the runner itself (posekit.runtime contract).
            out = np.asarray(self.runner(x), dtype=np.float32)
            if out.ndim != 4 or out.shape[0] != len(x) or out.shape[1] != k:
                raise ValueError('the model returned heatmaps of shape %s for a batch of %d; '
                                 'expected (%d, %d, h, w) from the deploy config'
                                 % (out.shape, len(x), len(x), k))
            return out
        return self.codec.flip_test(run, batch, self.flip_test)

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
        batch, meta = self.input_spec.prepare(image_bgr, kept)
        t1 = time.perf_counter()
        hms = self.heatmaps(batch)
        t2 = time.perf_counter()
        keypoints = self.codec.keypoints(hms, meta)
        t3 = time.perf_counter()
        timings = {'preprocess': (t1 - t0) * 1e3, 'inference': (t2 - t1) * 1e3,
                   'decode': (t3 - t2) * 1e3}
        return PoseResult(keypoints, kept[:, :4], kept[:, 4], self.config.joint_names, timings,
                          skipped, kept_idx, (img_w, img_h))
