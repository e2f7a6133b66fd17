"""TopDownPredictor, detection-file boxes, drawing and the weight-free person detector.

The predictor is checked with a stand-in for a perfect network: it recognises each crop the
predictor sends (the library's crop of one of the true boxes, or its mirror image for the flip
test) and answers with Gaussian heatmaps at that person's true joints, made by the training
target code. Decoding must then give the true keypoints back in image pixels.
"""
import json
import warnings

import numpy as np
import pytest

from posekit.codec import heatmap

from posekit.codec import transforms
from posekit.codec import InputSpec, TopDownHeatmapCodec
from posekit.inference.deploy_config import DeployConfig
from posekit.inference.detector import (DetectorError, DetectorUnavailable, WholeImageDetector,
                              build_detector, hog_available, hog_windows_to_boxes, nms)
from posekit.data.descriptors import COCO_FLIP_PAIRS, COCO_JOINTS, COCO_SKELETON
from posekit.inference.boxes import DetectionFileError, boxes_for_image, load_detections
from posekit.inference.predictor import (BoxError, BoxWarning, TopDownPredictor, validate_boxes,
                                         whole_image_box)
from posekit.inference.visualize import draw_pose, draw_result, drawing_sizes, joint_side, limb_side

INPUT = [192, 256]     # [W, H]
HEATMAP = [48, 64]
K = len(COCO_JOINTS)


def make_config(**codec_options):
    return DeployConfig(model='fake', input_spec=InputSpec(INPUT),
                        codec=TopDownHeatmapCodec(INPUT, HEATMAP, flip_pairs=COCO_FLIP_PAIRS,
                                                  **codec_options),
                        joint_names=COCO_JOINTS, skeleton=COCO_SKELETON, dataset='coco')


def person_keypoints(box, cfg, rng):
    """True joints of a person in ``box``, placed on heatmap pixels of its crop so that the
    Gaussian targets are centred exactly on them (no rounding error to tolerate)."""
    c, s = transforms.box_to_center_scale(*box[:4], cfg.aspect_ratio)
    hm = np.stack([rng.integers(4, HEATMAP[0] - 4, K), rng.integers(4, HEATMAP[1] - 4, K)],
                  axis=1).astype(np.float32)
    return transforms.transform_preds(hm, c, s, HEATMAP)


class PerfectRunner:
    """A perfect heatmap network for known persons (boxes + true image-space keypoints)."""

    def __init__(self, cfg, image, persons, sigma=2):
        self.cfg = cfg
        self.sigma = sigma
        self.input_name = 'image'
        self.input_shape = [None, 3, INPUT[1], INPUT[0]]
        self.output_shape = [None, K, HEATMAP[1], HEATMAP[0]]
        self.expected = []
        for box, kps in persons:
            c, s = transforms.box_to_center_scale(*box[:4], cfg.aspect_ratio)
            crop = transforms.crop(image, c, s, 0, INPUT)
            x = cfg.input_spec.normalize(crop)
            joints = transforms.affine_points(kps, transforms.get_affine_transform(c, s, 0, INPUT))
            self.expected.append((x, joints))
        self.calls = []

    def mirrored(self, joints):
        out = joints.copy()
        out[:, 0] = INPUT[0] - 1 - out[:, 0]
        for a, b in COCO_FLIP_PAIRS:
            out[[a, b]] = out[[b, a]]
        return out

    def __call__(self, batch):
        assert batch.dtype == np.float32 and batch.shape[1:] == (3, INPUT[1], INPUT[0])
        self.calls.append(len(batch))
        maps = []
        for item in batch:
            for x, joints in self.expected:
                if np.allclose(item, x, atol=1e-5):
                    break
                if np.allclose(item, x[:, :, ::-1], atol=1e-5):
                    joints = self.mirrored(joints)
                    break
            else:
                raise AssertionError('the predictor sent a crop that is no library crop of a box')
            target, _ = heatmap.generate_target(joints, np.ones((K, 1)), INPUT, HEATMAP, self.sigma)
            maps.append(target)
        return np.stack(maps)


@pytest.fixture
def scene():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (320, 400, 3), dtype=np.uint8)
    cfg = make_config()
    # the second person's box runs past the right and bottom edges: kept, not clipped
    boxes = np.array([[40, 30, 120, 200, 0.9], [300, 180, 130, 170, 0.6]], np.float32)
    kps = [person_keypoints(b, cfg, rng) for b in boxes]
    return image, cfg, boxes, kps


@pytest.mark.parametrize('flip', [False, True])
def test_two_persons_recovered_in_image_pixels(scene, flip):
    image, cfg, boxes, kps = scene
    runner = PerfectRunner(cfg, image, list(zip(boxes, kps)))
    result = TopDownPredictor(cfg, runner, flip_test=flip).predict(image, boxes)
    assert result.keypoints.shape == (2, K, 3)
    for n in range(2):
        err = np.abs(result.keypoints[n, :, :2] - kps[n]).max()
        assert err < 0.5, 'person %d off by %.3f px' % (n, err)
    np.testing.assert_allclose(result.keypoints[:, :, 2], 1.0, atol=1e-6)
    np.testing.assert_allclose(result.boxes, boxes[:, :4])
    np.testing.assert_allclose(result.scores, [0.9, 0.6])
    assert runner.calls == ([2, 2] if flip else [2])  # one batch (plus its mirror)
    assert set(result.timings) == {'preprocess', 'inference', 'decode'}
    assert all(v >= 0 for v in result.timings.values())
    rec = result.to_records()
    assert [p['keypoints'][0]['name'] for p in rec] == ['nose', 'nose']
    assert rec[1]['keypoints'][16]['x'] == pytest.approx(float(kps[1][16, 0]), abs=0.5)


def test_flip_without_heatmap_shift_is_off_by_the_shift(scene):
    # The 1-px shift of the flipped maps is what makes the flip test exact here; without it
    # the fused peak moves by 3/4 heatmap pixel, about 1.5 image pixels for these boxes.
    image, cfg, boxes, kps = scene
    cfg.codec.shift_heatmap = False
    runner = PerfectRunner(cfg, image, list(zip(boxes, kps)))
    result = TopDownPredictor(cfg, runner, flip_test=True).predict(image, boxes)
    assert np.abs(result.keypoints[0, :, 0] - kps[0][:, 0]).max() > 1.0


def test_flip_test_default_comes_from_the_config(scene):
    image, cfg, boxes, kps = scene
    cfg.flip_test = True
    runner = PerfectRunner(cfg, image, list(zip(boxes, kps)))
    TopDownPredictor(cfg, runner).predict(image, boxes[:1])
    assert runner.calls == [1, 1]


def test_whole_image_when_no_boxes(scene):
    image, cfg, _, _ = scene
    box = whole_image_box(image)
    np.testing.assert_allclose(box, [[0, 0, 400, 320, 1]])
    kps = person_keypoints(box[0], cfg, np.random.default_rng(1))
    runner = PerfectRunner(cfg, image, [(box[0], kps)])
    result = TopDownPredictor(cfg, runner).predict(image)
    assert np.abs(result.keypoints[0, :, :2] - kps).max() < 0.5


def test_soft_argmax_and_bias_are_applied(scene):
    image, cfg, boxes, kps = scene
    cfg.codec.soft_argmax, cfg.codec.bias = True, 1.0
    runner = PerfectRunner(cfg, image, list(zip(boxes, kps)))
    result = TopDownPredictor(cfg, runner).predict(image, boxes)
    # symmetric Gaussians: soft-argmax lands on the peak; the bias moves x and y by -1
    np.testing.assert_allclose(result.keypoints[:, :, :2], np.stack(kps) - 1.0, atol=0.05)


@pytest.mark.parametrize('flip', [False, True])
def test_dark_decoding_recovers_the_keypoints(scene, flip):
    image, cfg, boxes, kps = scene
    cfg.codec.dark = True
    runner = PerfectRunner(cfg, image, list(zip(boxes, kps)))
    result = TopDownPredictor(cfg, runner, flip_test=flip).predict(image, boxes)
    assert np.abs(result.keypoints[..., :2] - np.stack(kps)).max() < 0.5


def test_dark_is_requested_when_configured(scene, monkeypatch):
    image, cfg, boxes, kps = scene
    seen = []

    def spy(hms, center, scale, **kwargs):
        seen.append(kwargs)
        return np.zeros((len(hms), K, 2), np.float32), np.zeros((len(hms), K, 1), np.float32)

    monkeypatch.setattr(heatmap, 'get_final_preds', spy)
    runner = PerfectRunner(cfg, image, list(zip(boxes, kps)))
    TopDownPredictor(cfg, runner).predict(image, boxes)
    cfg.codec.dark = True
    TopDownPredictor(cfg, runner).predict(image, boxes)
    assert seen[0]['dark'] is False and seen[0]['post_process'] is True
    assert seen[1]['dark'] is True and seen[1]['dark_kernel'] == 11


def test_box_outside_is_skipped_with_a_warning(scene):
    image, cfg, boxes, kps = scene
    outside = np.array([[500, 10, 50, 80, 0.8]], np.float32)
    runner = PerfectRunner(cfg, image, list(zip(boxes, kps)))
    with pytest.warns(BoxWarning, match=r'box 1 \[500, 10, 50, 80\].*outside'):
        result = TopDownPredictor(cfg, runner).predict(image, np.concatenate([boxes[:1], outside]))
    assert len(result) == 1 and result.box_indices == [0]
    assert [i for i, _, _ in result.skipped] == [1]
    assert result.to_dict()['skipped_boxes'][0]['box'] == [500, 10, 50, 80]


def test_all_boxes_outside_gives_an_empty_result_without_running_the_model(scene):
    image, cfg, _, _ = scene
    runner = PerfectRunner(cfg, image, [])
    with pytest.warns(BoxWarning):
        result = TopDownPredictor(cfg, runner).predict(image, [[-100, 0, 50, 50]])
    assert len(result) == 0 and result.keypoints.shape == (0, K, 3) and runner.calls == []


@pytest.mark.parametrize('bad', [[10, 10, 0, 50], [10, 10, 40, -5], [10, np.nan, 40, 50]])
def test_degenerate_box_is_an_error_naming_it(scene, bad):
    image, cfg, boxes, kps = scene
    runner = PerfectRunner(cfg, image, list(zip(boxes, kps)))
    with pytest.raises(BoxError, match='box 1'):
        TopDownPredictor(cfg, runner).predict(image, [[20, 20, 50, 80], bad])
    assert runner.calls == []


def test_validate_boxes_shapes():
    kept, idx, skipped = validate_boxes([[0, 0, 10, 20]], (100, 100))
    np.testing.assert_allclose(kept, [[0, 0, 10, 20, 1]])
    with pytest.raises(BoxError, match='shape'):
        validate_boxes([[1, 2, 3]], (100, 100))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # partly outside: no warning
        assert len(validate_boxes([[-5, -5, 20, 20]], (100, 100))[0]) == 1


def test_detection_json_by_id_name_and_threshold(tmp_path):
    dets = [{'image_id': 785, 'category_id': 1, 'bbox': [277, 45, 225, 333], 'score': 0.99},
            {'image_id': 785, 'category_id': 1, 'bbox': [281, 44, 212, 344], 'score': 0.30},
            {'image_id': 785, 'category_id': 2, 'bbox': [0, 0, 10, 10], 'score': 0.95},
            {'image_id': 40083, 'category_id': 1, 'bbox': [38, 110, 174, 174], 'score': 0.9}]
    path = tmp_path / 'dets.json'
    path.write_text(json.dumps(dets))
    loaded = load_detections(str(path))
    by_name = boxes_for_image(loaded, file_name='/x/000000000785.jpg', score_threshold=0.5)
    np.testing.assert_allclose(by_name, [[277, 45, 225, 333, 0.99]], rtol=1e-6)
    assert len(boxes_for_image(loaded, image_id=785)) == 2      # persons only, sorted by score
    assert boxes_for_image(loaded, image_id=785)[0, 4] == pytest.approx(0.99)
    assert boxes_for_image(loaded, file_name='unrelated.jpg').shape == (0, 5)

    gt = {'images': [{'id': 5, 'file_name': 'walk.png'}],
          'annotations': [{'image_id': 5, 'category_id': 1, 'bbox': [1, 2, 30, 40]}]}
    path2 = tmp_path / 'gt.json'
    path2.write_text(json.dumps(gt))
    np.testing.assert_allclose(boxes_for_image(load_detections(str(path2)), file_name='walk.png'),
                               [[1, 2, 30, 40, 1]])


def test_detection_json_errors(tmp_path):
    with pytest.raises(DetectionFileError, match='not found'):
        load_detections(str(tmp_path / 'none.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"boxes": [')
    with pytest.raises(DetectionFileError, match='cannot parse'):
        load_detections(str(bad))
    bad.write_text(json.dumps([{'image_id': 1, 'bbox': [1, 2, 3]}]))
    with pytest.raises(DetectionFileError, match='detection 0'):
        load_detections(str(bad))


# -- drawing ------------------------------------------------------------------------------------

def test_sides_from_joint_names():
    assert [joint_side(n) for n in ('left_knee', 'r_ankle', 'nose', 'l_hip')] == \
        ['left', 'right', 'centre', 'left']
    assert limb_side(COCO_JOINTS, 5, 7) == 'left' and limb_side(COCO_JOINTS, 5, 6) == 'centre'


@pytest.mark.parametrize('hw', [(120, 90), (1080, 1920)])
def test_drawing_changes_pixels_at_any_size(hw):
    h, w = hw
    image = np.full((h, w, 3), 30, np.uint8)
    rng = np.random.default_rng(0)
    kps = np.concatenate([rng.uniform(0, 1, (2, K, 2)) * [w, h], np.ones((2, K, 1))], axis=2)
    cfg = make_config()
    out = draw_pose(image, kps, cfg.skeleton, cfg.joint_names, boxes=[[5, 5, w / 3, h / 3]],
                    scores=[0.87], draw_names=True)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out != image).any(axis=2).mean() > 0.002
    assert (image == 30).all()  # drawn on a copy
    assert drawing_sizes((1080, 1920))[0] > drawing_sizes((120, 90))[0]


def test_drawing_respects_the_score_threshold():
    image = np.zeros((100, 100, 3), np.uint8)
    kps = np.zeros((1, K, 3))
    kps[0, :, :2] = 50
    kps[0, :, 2] = 0.1
    cfg = make_config()
    assert (draw_pose(image, kps, cfg.skeleton, cfg.joint_names, kpt_thr=0.3) == 0).all()
    assert (draw_pose(image, kps, cfg.skeleton, cfg.joint_names, kpt_thr=0.05) != 0).any()


def test_draw_result(scene):
    image, cfg, boxes, kps = scene
    result = TopDownPredictor(cfg, PerfectRunner(cfg, image, list(zip(boxes, kps)))).predict(image, boxes)
    assert (draw_result(image, result, cfg) != image).any()


# -- detector -----------------------------------------------------------------------------------

def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = [[0, 0, 10, 20], [1, 1, 10, 20], [50, 50, 10, 20]]
    assert nms(boxes, [0.5, 0.9, 0.7], 0.45) == [1, 2]
    assert nms(np.zeros((0, 4)), [], 0.5) == []


def test_hog_windows_are_shrunk_to_the_person_rescaled_and_clipped():
    # windows found on an image downscaled by 0.5; the second overlaps the first
    rects = [[10, 20, 64, 128], [12, 22, 64, 128], [170, -60, 64, 128], [0, 0, 64, 128]]
    weights = [1.5, 0.8, 1.0, 0.1]
    out = hog_windows_to_boxes(rects, weights, (400, 300), resize=0.5, score_threshold=0.3)
    assert len(out) == 2
    x, y, w, h, s = out[0]
    assert s == pytest.approx(1.5)
    assert (x + w / 2, y + h / 2) == pytest.approx((84, 168))   # centre kept, in full-size pixels
    assert (w, h) == pytest.approx((128 * 0.625, 256 * 0.75))
    assert out[1, 1] == 0 and out[1, 0] + out[1, 2] == pytest.approx(400)  # clipped to the image


def test_detector_choices():
    image = np.zeros((60, 80, 3), np.uint8)
    np.testing.assert_allclose(build_detector('none')(image), [[0, 0, 80, 60, 1]])
    assert isinstance(build_detector('NONE'), WholeImageDetector)
    with pytest.raises(DetectorError, match='unknown detector'):
        build_detector('yolo')
    if hog_available():
        assert build_detector('hog')(np.zeros((300, 200, 3), np.uint8)).shape == (0, 5)
    else:
        with pytest.raises(DetectorUnavailable, match='HOG'):
            build_detector('hog')


def test_hog_detector_maps_windows_back_to_the_original_image(monkeypatch):
    # OpenCV 5 has no HOG; a stand-in checks the detector's own work (resizing, mapping back)
    import cv2

    from posekit.inference import detector as det
    seen = {}

    class FakeHOG:
        def setSVMDetector(self, coeffs):
            seen['coeffs'] = coeffs

        def detectMultiScale(self, img, winStride, padding, scale):
            seen['shape'] = img.shape
            return np.array([[100, 50, 64, 128]]), np.array([1.2])

    monkeypatch.setattr(cv2, 'HOGDescriptor', FakeHOG, raising=False)
    monkeypatch.setattr(cv2, 'HOGDescriptor_getDefaultPeopleDetector', lambda: 'svm', raising=False)
    hog = det.build_detector('hog', max_side=800)
    boxes = hog(np.zeros((1000, 1600, 3), np.uint8))    # downscaled by 0.5 for detection
    assert seen == {'coeffs': 'svm', 'shape': (500, 800, 3)}
    x, y, w, h, s = boxes[0]
    assert (x + w / 2, y + h / 2) == pytest.approx((264, 228))
    assert h == pytest.approx(256 * 0.75) and s == pytest.approx(1.2)
