"""Person boxes without downloaded weights: OpenCV's HOG people detector, or the whole image.

A top-down pose model needs person boxes (LANDSCAPE section 3, issue 18). The references use a
downloaded Faster R-CNN; here the choices need nothing beyond OpenCV:

* ``'hog'``: Dalal-Triggs HOG + linear SVM (``cv2.HOGDescriptor`` with
  ``getDefaultPeopleDetector``), multi-scale, followed by non-maximum suppression. It finds
  upright, reasonably large, mostly unoccluded people; use a real detector's boxes
  (``--det-json``) for anything harder. OpenCV 5 moved HOG out of the main ``objdetect``
  module (to opencv_contrib); with such a build :func:`build_detector` raises
  :class:`DetectorUnavailable` instead of failing later.
* ``'none'``: the whole image is one person.

A detector is a callable ``detector(image_bgr) -> (N, 5) float32`` boxes x, y, w, h, score,
best first; no person gives an empty (0, 5) array and the caller decides what to do.
"""
import cv2
import numpy as np

from posekit.errors import PosekitInputError

from posekit.errors import PosekitInputError

__all__ = ['DETECTORS', 'DetectorError', 'DetectorUnavailable', 'HOGPersonDetector',
           'WholeImageDetector', 'build_detector', 'hog_available', 'nms', 'hog_windows_to_boxes']

DETECTORS = ('hog', 'none')

# The default people detector was trained on 64x128 INRIA windows with the person about 96 px
# tall in the middle (16 px margin above and below) and ~40 px wide: its windows are loose. The
# predictor adds its own 1.25 padding, so each window is shrunk to the person first.
HOG_WINDOW = (64, 128)
HOG_PERSON_FRACTION = (0.625, 0.75)  # (w, h) of the person inside a detection window


class DetectorError(PosekitInputError):
    """An unknown detector or bad detector settings."""


class DetectorUnavailable(DetectorError):
    """The detector needs something this installation lacks (HOG in OpenCV 5)."""


def hog_available():
    return hasattr(cv2, 'HOGDescriptor') and hasattr(cv2, 'HOGDescriptor_getDefaultPeopleDetector')


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression on (N, 4) x, y, w, h boxes; indices kept, best first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) == 0:
        return []
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    areas = boxes[:, 2] * boxes[:, 3]
    order = np.argsort(-scores, kind='stable')
    keep = []
    while len(order):
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return keep


def hog_windows_to_boxes(rects, weights, image_size, person_fraction=HOG_PERSON_FRACTION,
                         score_threshold=0.0, iou_threshold=0.45, resize=1.0):
    """HOG detection windows -> person boxes (N, 5) x, y, w, h, score in image pixels.

    ``rects`` (N, 4) windows from ``detectMultiScale`` on an image resized by ``resize``;
    ``weights`` their SVM margins (the score). Windows scoring below ``score_threshold`` are
    dropped, overlapping ones suppressed (``iou_threshold``), each is shrunk around its centre
    to ``person_fraction`` of its size and clipped to the image (W, H).
    """
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / float(resize)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(rects) == 0:
        return np.zeros((0, 5), np.float32)
    if len(weights) != len(rects):
        weights = np.ones(len(rects))
    ok = weights >= score_threshold
    rects, weights = rects[ok], weights[ok]
    keep = nms(rects, weights, iou_threshold)
    out = []
    img_w, img_h = float(image_size[0]), float(image_size[1])
    for i in keep:
        x, y, w, h = rects[i]
        cx, cy = x + w / 2.0, y + h / 2.0
        w, h = w * person_fraction[0], h * person_fraction[1]
        x0, y0 = max(0.0, cx - w / 2.0), max(0.0, cy - h / 2.0)
        x1, y1 = min(img_w, cx + w / 2.0), min(img_h, cy + h / 2.0)
        if x1 > x0 and y1 > y0:
            out.append([x0, y0, x1 - x0, y1 - y0, weights[i]])
    return np.array(out, dtype=np.float32).reshape(-1, 5)


class WholeImageDetector:
    """``'none'``: the whole image is one person box (score 1)."""
    name = 'none'

    def __call__(self, image_bgr):
        h, w = np.asarray(image_bgr).shape[:2]
        return np.array([[0.0, 0.0, float(w), float(h), 1.0]], dtype=np.float32)


class HOGPersonDetector:
    """OpenCV's HOG people detector with NMS; no downloaded weights.

    ``max_side``: larger images are downscaled to this longest side first (HOG cost grows with
    the area; persons much smaller than 128 px tall are missed at any size), smaller ones are
    upscaled to ``min_side`` so that a person filling the picture still fits a 128 px window
    at some pyramid level.
    """
    name = 'hog'

    def __init__(self, score_threshold=0.3, iou_threshold=0.45, win_stride=(8, 8),
                 padding=(8, 8), pyramid_scale=1.05, max_side=800, min_side=256):
        if not hog_available():
            raise DetectorUnavailable(
                "the HOG people detector is not in this OpenCV (%s; OpenCV 5 moved HOG to "
                "opencv_contrib): install OpenCV 4.x, give person boxes (--box or --det-json) "
                "or use --detector none" % cv2.__version__)
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.win_stride = tuple(win_stride)
        self.padding = tuple(padding)
        self.pyramid_scale = float(pyramid_scale)
        self.max_side = int(max_side)
        self.min_side = int(min_side)

    def __call__(self, image_bgr):
        img = np.asarray(image_bgr)
        h, w = img.shape[:2]
        longest = max(h, w)
        resize = 1.0
        if longest > self.max_side:
            resize = self.max_side / float(longest)
        elif longest < self.min_side:
            resize = self.min_side / float(longest)
        small = img if resize == 1.0 else cv2.resize(
            img, (max(1, int(round(w * resize))), max(1, int(round(h * resize)))),
            interpolation=cv2.INTER_AREA if resize < 1 else cv2.INTER_LINEAR)
        if min(small.shape[:2]) < HOG_WINDOW[0] or small.shape[0] < HOG_WINDOW[1]:
            return np.zeros((0, 5), np.float32)
        rects, weights = self.hog.detectMultiScale(small, winStride=self.win_stride,
                                                   padding=self.padding, scale=self.pyramid_scale)
        return hog_windows_to_boxes(rects, weights, (w, h), score_threshold=self.score_threshold,
                                    iou_threshold=self.iou_threshold, resize=resize)


def build_detector(name, **kwargs):
    """``'hog'`` -> :class:`HOGPersonDetector`, ``'none'`` -> :class:`WholeImageDetector`."""
    key = str(name).lower()
    if key == 'hog':
        return HOGPersonDetector(**kwargs)
    if key == 'none':
        return WholeImageDetector()
    raise DetectorError('unknown detector %r (known: %s)' % (name, ', '.join(DETECTORS)))
