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

A bottom-up model (SimplePose) needs no boxes: :class:`BottomUpPredictor` has the same outward
contract (``predict(image) -> PoseResult``, the same timing stages) and finds every person of
the whole image. :func:`build_predictor` is the one place that picks the class, from the deploy
config's pipeline (its codec).
"""
import time
import warnings

import numpy as np

from posekit.errors import PosekitInputError

__all__ = ['TopDownPredictor', 'BottomUpPredictor', 'build_predictor', 'PREDICTORS', 'PoseResult',
           'BoxError', 'BoxWarning', 'validate_boxes', 'whole_image_box', 'keypoint_boxes',
           'TIMING_STAGES']

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
    x, y, w, h; ``scores`` (N,) the box scores (1.0 for given boxes; a bottom-up model's person
    scores, with boxes around each person's keypoints); ``timings`` the
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

    pipeline = 'topdown'

    def __init__(self, deploy_config, runner, flip_test=None):
        self.config = deploy_config
        self.input_spec = deploy_config.input_spec
        self.codec = deploy_config.codec
        self.runner = runner
        self.flip_test = bool(deploy_config.flip_test if flip_test is None else flip_test)

    def describe_input(self):
        """What the network is fed, for a printed header."""
        w, h = self.config.input_size
        return 'input %dx%d [W,H]' % (w, h)

    def warmup_batch(self):
        """A zero batch of one crop (what the first untimed runs use)."""
        w, h = self.config.input_size
        return np.zeros((1, 3, h, w), np.float32)

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


def keypoint_boxes(keypoints):
    """(N, 4) x, y, w, h around each person's found keypoints ((N, K, 3); a joint that is all
    zeros is missing, the grouping's convention); an empty box at (0, 0) without any."""
    kps = np.asarray(keypoints, dtype=np.float32).reshape(-1, *np.shape(keypoints)[-2:])
    boxes = np.zeros((len(kps), 4), np.float32)
    for n, person in enumerate(kps):
        found = person[np.any(person != 0, axis=1), :2]
        if len(found):
            lo, hi = found.min(axis=0), found.max(axis=0)
            boxes[n] = (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
    return boxes


class BottomUpPredictor:
    """Every person of a whole image, through a bottom-up model ``runner`` (SimplePose): no
    person boxes and no detector.

    ``deploy_config`` has a bottom-up input spec and codec (:mod:`posekit.codec.bottomup`): the
    image is resized and padded (with its mirror when ``flip_test``: the spec's ``flip``, which
    ``flip_test`` overrides), the runner maps the batch to the limb and keypoint maps (any
    backend, ``runner(batch (B, 3, H, W)) -> (B, C, H/4, W/4)``), the codec fuses the mirror's
    maps and groups the peaks into people. :meth:`predict` returns a :class:`PoseResult` like
    :class:`TopDownPredictor`'s: COCO-17 keypoints (x, y, the refined peak score; (0, 0, 0) for
    a missing joint), boxes around each person's found keypoints, the grouping's person scores
    (``1 - 1 / total``, SIMPLEPOSE_SPEC 6.4) and the same timing stages ('decode' is the
    grouping). A run that finds nobody is a result with no person, not an error.
    """
    pipeline = 'bottomup'

    def __init__(self, deploy_config, runner, flip_test=None):
        self.config = deploy_config
        self.codec = deploy_config.codec
        self.runner = runner
        self.flip_test = bool(deploy_config.flip_test if flip_test is None else flip_test)
        spec = deploy_config.input_spec
        if spec.flip != self.flip_test:
            spec = type(spec).from_dict(dict(spec.to_dict(), flip=self.flip_test))
        self.input_spec = spec

    def describe_input(self):
        spec = self.input_spec
        return ('bottom-up, whole image at height %d%s (padded to a multiple of %d)'
                % (spec.boxsize, '' if spec.scale == 1 else ' x %g' % spec.scale, spec.multiple))

    def warmup_batch(self):
        """The batch of a blank 4:3 picture (its size is the typical one; every image gets its
        own, so a runtime may still tune for the first images of other sizes)."""
        h = self.input_spec.boxsize
        blank = np.full((h, h * 4 // 3, 3), self.input_spec.pad_value, np.uint8)
        return self.input_spec.prepare(blank)[0]

    def maps(self, batch):
        """The fused maps (1, C, h, w) of a prepared batch (:meth:`BottomUpPartsCodec.flip_test`,
        which checks the runner's output)."""
        return self.codec.flip_test(self.runner, batch, self.flip_test)

    def predict(self, image_bgr, boxes=None):
        """Every person found in one BGR image. ``boxes`` must be None: a bottom-up model finds
        the people itself (:class:`BoxError` otherwise, rather than silently ignoring them)."""
        if boxes is not None:
            raise BoxError('a bottom-up model finds every person itself: give no person boxes')
        image_bgr = np.asarray(image_bgr)
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError('expected an H x W x 3 BGR image, got shape %s' % (image_bgr.shape,))
        img_h, img_w = image_bgr.shape[:2]
        t0 = time.perf_counter()
        batch, meta = self.input_spec.prepare(image_bgr)
        t1 = time.perf_counter()
        maps = self.maps(batch)
        t2 = time.perf_counter()
        people = self.codec.decode(maps, meta)
        t3 = time.perf_counter()
        keypoints = np.asarray(people.keypoints, dtype=np.float32).reshape(
            -1, self.config.num_joints, 3)
        timings = {'preprocess': (t1 - t0) * 1e3, 'inference': (t2 - t1) * 1e3,
                   'decode': (t3 - t2) * 1e3}
        return PoseResult(keypoints, keypoint_boxes(keypoints), people.scores,
                          self.config.joint_names, timings, (), None, (img_w, img_h))


# The predictor of each pipeline (DeployConfig.pipeline, from its codec).
PREDICTORS = {TopDownPredictor.pipeline: TopDownPredictor,
              BottomUpPredictor.pipeline: BottomUpPredictor}


def build_predictor(deploy_config, runner, flip_test=None):
    """The predictor for ``deploy_config``'s pipeline: :class:`TopDownPredictor` (person boxes
    in) or :class:`BottomUpPredictor` (the whole image, every person found)."""
    return PREDICTORS[deploy_config.pipeline](deploy_config, runner, flip_test=flip_test)
