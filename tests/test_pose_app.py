"""The pose application (posekit.inference.app) with a stand-in runner: shared options, box
sources, folders with bad images, videos with frames without a person, the latency table.

The end-to-end runs of infer.py and deploy.py are in test_infer_deploy.py.
"""
import argparse
import json
import warnings

import cv2
import numpy as np
import pytest

from posekit.codec import InputSpec, TopDownHeatmapCodec
from posekit.data.descriptors import COCO_FLIP_PAIRS, COCO_JOINTS, COCO_SKELETON
from posekit.errors import PosekitError
from posekit.inference.app import (InferenceError, NoPersonError, PoseApplication, add_arguments,
                                   latency_table)
from posekit.inference.boxes import BoxSource
from posekit.inference.deploy_config import DeployConfig
from posekit.inference.predictor import TopDownPredictor
from posekit.inference.video import VideoError, VideoReader

INPUT, HEATMAP = [48, 64], [12, 16]   # [W, H]


class PeakRunner:
    """Heatmaps with one peak per joint at a fixed place; counts the batches it ran."""

    def __init__(self):
        self.batches = 0

    def __call__(self, batch):
        self.batches += 1
        out = np.zeros((len(batch), len(COCO_JOINTS), HEATMAP[1], HEATMAP[0]), np.float32)
        out[:, :, 8, 6] = 0.9
        return out


def make_application(tmp_path, boxes=None):
    config = DeployConfig(model='fake', input_spec=InputSpec(INPUT),
                          codec=TopDownHeatmapCodec(INPUT, HEATMAP, flip_pairs=COCO_FLIP_PAIRS),
                          joint_names=COCO_JOINTS, skeleton=COCO_SKELETON, dataset='coco')
    predictor = TopDownPredictor(config, PeakRunner(), flip_test=False)
    return PoseApplication(predictor, boxes or BoxSource(), str(tmp_path / 'out'),
                           {'model_file': 'fake.onnx', 'runtime': 'stand-in'})


def picture(seed=0, size=(120, 90)):
    return np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser, default_output='output/somewhere')
    return parser.parse_args(list(argv))


def test_shared_options_take_every_documented_spelling():
    assert parse('--img', 'a.jpg').img == 'a.jpg'
    assert parse('--img-file', 'a.jpg').img == 'a.jpg'
    args = parse('--img-dir', 'pics', '--box', '1', '2', '3', '4', '--box', '5', '6', '7', '8',
                 '--detector', 'HOG', '--no-flip-test', '--threads', '2')
    assert args.img_dir == 'pics' and args.box == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert args.detector == 'hog' and args.flip_test is False and args.threads == 2
    assert args.output == 'output/somewhere' and args.flip_test is not None
    assert parse('--video', 'v.mp4').flip_test is None
    with pytest.raises(SystemExit):
        parse('--img', 'a.jpg', '--video', 'v.mp4')      # one input at a time


def test_box_source_precedence_and_conflicts(tmp_path):
    image = picture()
    boxes, source = BoxSource()(image)
    np.testing.assert_array_equal(boxes, [[0, 0, 120, 90, 1]])
    assert source == 'whole image'
    boxes, source = BoxSource.from_options(boxes=[[1, 2, 30, 40]])(image)
    np.testing.assert_array_equal(boxes, [[1, 2, 30, 40, 1]])
    assert source == 'given boxes'
    dets = tmp_path / 'dets.json'
    dets.write_text(json.dumps([{'image_id': 7, 'bbox': [1, 2, 3, 4], 'score': 0.8},
                                {'image_id': 7, 'bbox': [5, 6, 7, 8], 'score': 0.2}]))
    src = BoxSource.from_options(det_json=str(dets), det_thre=0.5)
    assert src.per_image
    np.testing.assert_allclose(src(image, 'x/000007.jpg')[0], [[1, 2, 3, 4, 0.8]])
    assert len(src(image, 'x/other.jpg', image_id=8)[0]) == 0
    with pytest.raises(PosekitError, match='not both'):
        BoxSource.from_options(boxes=[[1, 2, 3, 4]], det_json=str(dets))
    with pytest.raises(PosekitError, match='unknown detector'):
        BoxSource.from_options(detector='yolo')


def test_folder_skips_what_cannot_be_processed(tmp_path, capsys):
    folder = tmp_path / 'pics'
    folder.mkdir()
    for i, name in enumerate(('a.png', 'c.png')):
        cv2.imwrite(str(folder / name), picture(i))
    (folder / 'b.jpg').write_text('not an image')
    application = make_application(tmp_path)
    paths = sorted(str(p) for p in folder.iterdir())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert application.run_folder(paths) == 2
    assert len(caught) == 1 and 'b.jpg' in str(caught[0].message)
    assert 'skipped' in str(caught[0].message)
    out = tmp_path / 'out'
    assert sorted(p.name for p in out.iterdir()) == ['a_keypoints.json', 'a_pose.jpg',
                                                     'c_keypoints.json', 'c_pose.jpg']
    data = json.loads((out / 'a_keypoints.json').read_text())
    assert data['box_source'] == 'whole image' and data['runtime'] == 'stand-in'
    assert data['image'] == paths[0] and len(data['persons']) == 1
    assert len(application.timings) == 2
    assert capsys.readouterr().out.count('1 person (whole image)') == 2


def test_folder_where_nothing_can_be_processed_is_an_error(tmp_path):
    (tmp_path / 'bad.jpg').write_text('not an image')
    application = make_application(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(InferenceError, match='none of the 1 images'):
            application.run_folder([str(tmp_path / 'bad.jpg')])


def test_one_image_without_a_person_is_an_error(tmp_path):
    application = make_application(tmp_path, BoxSource(detector=lambda image: np.zeros((0, 5))))
    with pytest.raises(NoPersonError, match='no person detected'):
        application.run_image('x.png', picture())
    application = make_application(tmp_path, BoxSource(boxes=[[500, 10, 20, 20]]))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(NoPersonError, match='entirely outside'):
            application.run_image('x.png', picture())
    assert not (tmp_path / 'out').exists()


class EveryOtherFrame:
    """A detector that finds the person in frames 0, 2, 4... only."""
    name = 'test'

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        if self.calls % 2 == 0:
            return np.zeros((0, 5), np.float32)
        return np.array([[10, 10, 60, 70, 0.9]], np.float32)


def test_video_keeps_frames_without_a_person(tmp_path, capsys):
    path = tmp_path / 'walk.mp4'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 12, (120, 90))
    for i in range(5):
        writer.write(picture(i))
    writer.release()
    application = make_application(tmp_path, BoxSource(detector=EveryOtherFrame()))
    assert application.run_video(VideoReader(str(path))) == 3
    out = tmp_path / 'out'
    cap = cv2.VideoCapture(str(out / 'walk_pose.mp4'))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    cap.release()
    data = json.loads((out / 'walk_keypoints.json').read_text())
    assert [len(f['persons']) for f in data['frames']] == [1, 0, 1, 0, 1]
    assert [f['frame'] for f in data['frames']] == list(range(5))
    assert data['frame_size'] == [120, 90] and data['joint_names'] == COCO_JOINTS
    assert 'joint_names' not in data['frames'][0]
    assert len(application.timings) == 3
    assert '5 frames processed at 12.00 fps, 2 without a person' in capsys.readouterr().out


def test_video_without_any_person_is_an_error_after_writing(tmp_path):
    path = tmp_path / 'empty.mp4'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10, (120, 90))
    writer.write(picture())
    writer.release()
    application = make_application(tmp_path, BoxSource(detector=lambda image: np.zeros((0, 5))))
    with pytest.raises(NoPersonError, match='any of the 1 frames'):
        application.run_video(VideoReader(str(path)))
    assert (tmp_path / 'out' / 'empty_keypoints.json').is_file()


def test_video_errors(tmp_path):
    with pytest.raises(VideoError, match='video not found'):
        VideoReader(str(tmp_path / 'missing.mp4'))
    (tmp_path / 'junk.mp4').write_text('not a video')
    with pytest.raises(VideoError, match='cannot open video'):
        VideoReader(str(tmp_path / 'junk.mp4'))


def test_warm_up_runs_untimed(tmp_path):
    application = make_application(tmp_path)
    application.warm_up(3)
    assert application.predictor.runner.batches == 3 and application.timings == []


def test_latency_table():
    timings = [{'preprocess': p, 'inference': 10.0, 'decode': 1.0} for p in (1.0, 2.0, 6.0)]
    table = latency_table(timings, 'images', 2).splitlines()
    assert table[0] == 'latency (ms over 3 images, after 2 warm-up runs):'
    assert table[2].split() == ['pre-process', '2.00', '3.00']
    assert table[-1].split() == ['total', '13.00', '14.00']
    assert latency_table(timings[:1], 'image', 1).startswith('latency (ms over 1 image, after 1 '
                                                             'warm-up run):')
