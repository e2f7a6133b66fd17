"""Bottom-up (SimplePose) export and deploy: export.py, deploy.py --img/--img-dir/--video and
infer.py on a tiny random SimplePose, and the application finding every person of a generated
multi-person picture with no boxes and no detector.

* A tiny variant (2 stacks, 32 channels) with seeded weights is exported once for the module by
  export.py. Its last 1x1 conv is damped and its keypoint channels zeroed, so the limb maps are
  of order 1-10 (the parity check means something) but there is no keypoint peak: the random
  model finds nobody (deterministically, and fast), and the runs check the files, the header
  and the exit code.
* "Finds every person" cannot come from random weights: a stand-in runner returns the
  reference-encoded ground-truth maps of a generated 4-person scene (BottomUpEncoder on the
  padded grid, coordinates scaled as the input spec resized the image, the mirror with left and
  right swapped for the second batch item - as the fixtures' postproc stand-in network), and the
  predictor and the application must give back every person close to the truth.

About 40 s on 2 cores (Paddle start-up in export.py and infer.py).
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from posekit.codec import BottomUpInputSpec, BottomUpPartsCodec, InputSpec
from posekit.codec.bottomup.encode import BottomUpEncoder
from posekit.codec.bottomup.layout import LEFT_PARTS, RIGHT_PARTS
from posekit.data.bottomup.annotations import coco_to_ours, remap_visibility
from posekit.data.descriptors import COCO_JOINTS, COCO_SKELETON
from posekit.data.synthetic import render_scene
from posekit.inference.app import PoseApplication, add_arguments, run as run_app
from posekit.inference.deploy_config import DeployConfig, DeployConfigError
from posekit.inference.predictor import (BottomUpPredictor, BoxError, TopDownPredictor,
                                         build_predictor, keypoint_boxes)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, 'experiments', 'coco', 'simplepose', 'simplepose_512x512.yaml')
# the tiny variant, parity noise at 128x128, deploy images resized to height 128
TINY = ['MODEL.EXTRA.NSTACK', '2', 'MODEL.EXTRA.INP_DIM', '32', 'MODEL.EXTRA.INCREASE', '16',
        'MODEL.IMAGE_SIZE', '128,128', 'MODEL.HEATMAP_SIZE', '32,32', 'TEST.BOXSIZE', '128']
SCENE_SEED, SCENE_SIZE = 0, (320, 240)   # 4 people, one with 2 joints outside the picture


def run(tool, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'pose_estimation', tool)]
                          + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def assert_one_line_error(proc):
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert 'Traceback' not in err and len(err.splitlines()) == 1, err
    return err


def tiny_cfg():
    from posekit.config import load_config
    return load_config(CFG, TINY)


def scene():
    """The generated picture and its people's COCO joints (P, 17, 3), visibility 0/1/2."""
    image, people = render_scene(np.random.default_rng(SCENE_SEED), image_size=SCENE_SIZE,
                                 max_people=4)
    joints = np.stack([np.concatenate([p['joints_coco'], p['vis_coco'][:, None]], axis=1)
                       for p in people])
    return image, joints


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """Damped seeded weights, the scene on disk and export.py's folder (with its stdout)."""
    import paddle
    from posekit.checkpoint import save_paddle_state_dict
    from posekit.models import build_model
    root = tmp_path_factory.mktemp('bottomup_deploy')
    paddle.seed(0)
    model = build_model(tiny_cfg())
    out = model.posenet.outs[-1][0].conv      # the last stack's stride-4 maps
    weight, bias = out.weight.numpy() * 1e-3, out.bias.numpy()
    weight[30:], bias[30:] = 0.0, 0.0          # keypoint channels: no peak anywhere
    out.weight.set_value(weight)
    out.bias.set_value(bias)
    weights = save_paddle_state_dict(model.state_dict(), str(root / 'simplepose_tiny.pdparams'))
    image, _ = scene()
    picture = str(root / 'people.png')
    cv2.imwrite(picture, image)
    export = root / 'export'
    proc = run('export.py', '--cfg', CFG, '--model-file', weights, '--output', export,
               '--threads', '1', *TINY)
    assert proc.returncode == 0, proc.stderr
    return {'root': root, 'weights': weights, 'picture': picture, 'export': export,
            'export_stdout': proc.stdout, 'model': model}


# -- the deploy config ----------------------------------------------------------------------------

def test_deploy_config_says_bottom_up_and_round_trips():
    dc = DeployConfig.from_cfg(tiny_cfg())
    assert dc.pipeline == 'bottomup' and dc.is_bottom_up
    assert isinstance(dc.input_spec, BottomUpInputSpec) and isinstance(dc.codec, BottomUpPartsCodec)
    assert dc.input_spec.boxsize == 128 and dc.input_spec.flip and dc.flip_test
    assert dc.input_size is None and dc.heatmap_size is None and dc.output_channels == 50
    assert dc.joint_names == COCO_JOINTS and dc.skeleton == COCO_SKELETON
    assert dc.output_name == 'maps'
    data = json.loads(json.dumps(dc.to_dict()))
    assert data['pipeline'] == 'bottomup' and data['input']['type'] == 'bottomup_whole_image'
    assert DeployConfig.from_dict(data) == dc
    with pytest.raises(DeployConfigError, match='pipeline'):
        DeployConfig.from_dict(dict(data, pipeline='topdown'))
    with pytest.raises(DeployConfigError, match='no input size'):
        dc.with_input_size(256, 256)
    # a top-down input spec with the bottom-up codec, a joint list the codec does not give
    with pytest.raises(DeployConfigError, match='does not go with'):
        DeployConfig('x', InputSpec([192, 256]), BottomUpPartsCodec(), COCO_JOINTS, COCO_SKELETON)
    with pytest.raises(DeployConfigError, match='17 joints'):
        DeployConfig('x', BottomUpInputSpec(), BottomUpPartsCodec(), COCO_JOINTS[:16], [])


def test_check_io_wants_a_free_size_model_with_the_codec_maps():
    from posekit.runtime import ModelLoadError, Runner, check_io
    dc = DeployConfig.from_cfg(tiny_cfg())

    class Fixed(Runner):
        input_shape, output_shape = [1, 3, 512, 512], [1, 50, 128, 128]
    with pytest.raises(ModelLoadError, match='any|own size'):
        check_io(Fixed(), dc)

    class Heatmaps(Runner):
        input_shape, output_shape = [None, 3, None, None], [None, 17, None, None]
    with pytest.raises(ModelLoadError, match='outputs 17 maps'):
        check_io(Heatmaps(), dc)

    class Free(Runner):
        input_shape, output_shape = [None, 3, None, None], [None, 50, None, None]
    check_io(Free(), dc)


# -- export ---------------------------------------------------------------------------------------

def test_export_has_free_sizes_and_matches_dygraph_at_two_sizes(work):
    import onnx

    from posekit.runtime import DygraphRunner, open_runner
    export = work['export']
    assert sorted(os.listdir(export)) == ['config.yaml', 'deploy_config.json', 'model.json',
                                          'model.onnx', 'model.pdiparams']
    stdout = work['export_stdout']
    assert '(bottom-up)' in stdout and '1x3x128x128' in stdout and '2x3x128x192' in stdout
    saved = DeployConfig.load(str(export / 'deploy_config.json'))
    assert saved == DeployConfig.from_cfg(tiny_cfg())
    graph = onnx.load(str(export / 'model.onnx')).graph
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa
    assert dims(graph.input[0]) == ['batch', 3, 'height', 'width']
    assert dims(graph.output[0]) == ['batch', 50, 'map_height', 'map_width']
    assert graph.input[0].name == 'image' and graph.output[0].name == 'maps'
    # paddle2onnx writes leaky ReLUs with a garbage slope: export restores the model's one
    alphas = {a.f for n in graph.node if n.op_type == 'LeakyRelu' for a in n.attribute}
    assert alphas == {np.float32(0.01)}

    dygraph = DygraphRunner(work['model'])
    runners = {'onnx': open_runner(str(export / 'model.onnx'), threads=1),
               'paddle': open_runner(str(export / 'model.json'), threads=1)}
    assert runners['paddle'].input_shape == [None, 3, None, None]
    rng = np.random.default_rng(5)
    for shape in [(2, 3, 192, 128), (1, 3, 64, 256)]:     # two sizes other than export's own
        batch = rng.random(shape, dtype=np.float32)
        ref = dygraph(batch)
        assert ref.shape == (shape[0], 50, shape[2] // 4, shape[3] // 4)
        scale = max(1.0, float(np.abs(ref).max()))
        assert scale > 1.0   # damped, not silenced: the comparison means something
        for name, runner in runners.items():
            out = runner(batch)
            assert out.shape == ref.shape
            assert np.abs(out - ref).max() <= 1e-4 * scale, (name, shape)


def test_export_refuses_int8_for_a_bottom_up_model(work, tmp_path):
    err = assert_one_line_error(run('export.py', '--cfg', CFG, '--model-file', work['weights'],
                                    '--output', tmp_path / 'int8', '--quantize', 'int8', *TINY))
    assert 'top-down' in err and 'bottom-up' in err and 'without --quantize' in err
    assert not (tmp_path / 'int8').exists()


# -- deploy.py and infer.py -----------------------------------------------------------------------

def _persons(json_path):
    with open(json_path) as f:
        return json.load(f)


@pytest.mark.parametrize('runtime', ['onnx', 'paddle'])
def test_deploy_image_and_folder(work, runtime, tmp_path):
    model = work['export'] / ('model.onnx' if runtime == 'onnx' else 'model.json')
    folder = tmp_path / 'pictures'
    folder.mkdir()
    image = cv2.imread(work['picture'])
    cv2.imwrite(str(folder / 'a.png'), image)
    cv2.imwrite(str(folder / 'b.jpg'), cv2.resize(image, (200, 300)))   # another size
    source = ['--img', work['picture']] if runtime == 'onnx' else ['--img-dir', folder]
    out = tmp_path / 'out'
    proc = run('deploy.py', '--model', model, *source, '--threads', '1', '--output', out)
    assert proc.returncode == 0, proc.stderr
    assert 'bottom-up, whole image at height 128' in proc.stdout
    assert '0 persons (bottom-up, whole image)' in proc.stdout
    for stage in ('pre-process', 'inference', 'decode'):
        assert stage in proc.stdout
    stems = ['people'] if runtime == 'onnx' else ['a', 'b']
    for stem in stems:
        data = _persons(out / ('%s_keypoints.json' % stem))
        assert data['pipeline'] == 'bottomup' and data['persons'] == []
        assert data['input']['type'] == 'bottomup_whole_image' and data['flip_test'] is True
        assert cv2.imread(str(out / ('%s_pose.jpg' % stem))) is not None


def test_deploy_video(work, tmp_path):
    frame = cv2.imread(work['picture'])
    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 10,
                             (frame.shape[1], frame.shape[0]))
    for i in range(3):
        writer.write(np.roll(frame, 4 * i, axis=1))
    writer.release()
    out = tmp_path / 'out'
    proc = run('deploy.py', '--model', work['export'] / 'model.onnx', '--video', video,
               '--no-flip-test', '--output', out)
    assert proc.returncode == 0, proc.stderr   # nobody found is a result, not an error
    assert '3 frames processed' in proc.stdout and 'flip test off' in proc.stdout
    frames = _persons(out / 'clip_keypoints.json')['frames']
    assert [f['persons'] for f in frames] == [[], [], []]
    cap = cv2.VideoCapture(str(out / 'clip_pose.mp4'))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_deploy_refuses_person_boxes(work, tmp_path):
    err = assert_one_line_error(run('deploy.py', '--model', work['export'] / 'model.onnx',
                                    '--img', work['picture'], '--box', 1, 2, 30, 40,
                                    '--output', tmp_path / 'out'))
    assert '--box chooses person boxes for a top-down model' in err
    assert 'simplepose is bottom-up' in err
    assert not (tmp_path / 'out').exists() or not os.listdir(tmp_path / 'out')


def test_infer_image(work, tmp_path):
    out = tmp_path / 'out'
    proc = run('infer.py', '--cfg', CFG, '--model-file', work['weights'], '--img',
               work['picture'], '--output', out, *TINY)
    assert proc.returncode == 0, proc.stderr
    assert 'paddle dygraph), bottom-up' in proc.stdout
    data = _persons(out / 'people_keypoints.json')
    assert data['pipeline'] == 'bottomup' and data['persons'] == []
    assert data['input']['boxsize'] == 128


# -- every person of a generated picture, through a stand-in network -------------------------------

class GroundTruthMaps:
    """A stand-in network: the reference-encoded maps of the scene's people on the padded grid
    of ``spec`` (SIMPLEPOSE_SPEC 4.3 encoding; coordinates ``(x + 0.5) * factor - 0.5``; the
    mirror ``x' = Wp - 1 - x`` with left and right parts swapped), whatever batch it is given."""

    def __init__(self, image, joints17, spec):
        _, meta = spec.prepare(image)
        wp, hp = meta['padded_size']
        joints = np.array(joints17, np.float64)
        joints[..., 2] = remap_visibility(joints[..., 2])
        ours = coco_to_ours(joints)
        ours[..., :2] = (ours[..., :2] + 0.5) * meta['factor'] - 0.5
        mirror = ours.copy()
        mirror[..., 0] = (wp - 1) - ours[..., 0]
        swap = list(LEFT_PARTS) + list(RIGHT_PARTS)
        mirror[:, swap] = mirror[:, list(RIGHT_PARTS) + list(LEFT_PARTS)]
        encoder = BottomUpEncoder((wp, hp))
        self.maps = np.stack([encoder.encode(ours), encoder.encode(mirror)])
        self.input_hw = (hp, wp)
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch.shape)
        assert batch.shape[2:] == self.input_hw
        return self.maps[:len(batch)]


def stand_in_config(spec):
    return DeployConfig('simplepose', spec, BottomUpPartsCodec(), COCO_JOINTS, COCO_SKELETON,
                        'coco', flip_test=True, output_name='maps')


def assert_every_person(result, joints17, tol=2.0):
    """Each true person has its own found person, with every joint inside the picture found
    within ``tol`` px and nothing where the truth has no joint."""
    assert len(result) == len(joints17), result.scores
    kps = result.keypoints
    matched = set()
    for person in joints17:
        inside = person[:, 2] > 0
        dist = np.linalg.norm(kps[:, :, :2] - person[None, :, :2], axis=2)   # (N, 17)
        n = int(np.argmin(np.where(inside, dist, 0).sum(axis=1)))
        matched.add(n)
        found = kps[n, :, 2] > 0
        assert np.array_equal(found, inside), (found, inside)
        assert dist[n, inside].max() < tol, dist[n, inside]
    assert len(matched) == len(joints17)
    np.testing.assert_allclose(result.boxes, keypoint_boxes(kps))
    assert (result.scores > 0.9).all()


@pytest.mark.parametrize('flip', [True, False])
def test_predictor_finds_every_person(flip):
    image, joints = scene()
    assert len(joints) == 4 and (joints[:, :, 2] == 0).sum() == 2
    spec = BottomUpInputSpec()                  # height 640, as the reference
    runner = GroundTruthMaps(image, joints, spec)
    predictor = build_predictor(stand_in_config(spec), runner, flip_test=flip)
    assert isinstance(predictor, BottomUpPredictor) and predictor.input_spec.flip is flip
    result = predictor.predict(image)
    assert runner.batches == [(2 if flip else 1, 3, 640, 896)]
    assert set(result.timings) == {'preprocess', 'inference', 'decode'}
    assert result.image_size == list(SCENE_SIZE) and result.keypoints.shape == (4, 17, 3)
    assert_every_person(result, joints)
    with pytest.raises(BoxError, match='finds every person itself'):
        predictor.predict(image, [[0, 0, 10, 10]])


def test_build_predictor_picks_by_pipeline():
    from posekit.codec import TopDownHeatmapCodec
    top = DeployConfig('t', InputSpec([192, 256]),
                       TopDownHeatmapCodec([192, 256], [48, 64], flip_pairs=[]),
                       COCO_JOINTS, COCO_SKELETON)
    assert type(build_predictor(top, None)) is TopDownPredictor
    assert type(build_predictor(stand_in_config(BottomUpInputSpec()), None)) is BottomUpPredictor


def _args(*argv):
    import argparse
    return add_arguments(argparse.ArgumentParser(), 'unused').parse_args([str(a) for a in argv])


def test_application_draws_every_person_without_boxes(tmp_path):
    """``posekit.inference.app.run`` (what infer.py and deploy.py call) on an image, a folder and
    a video, with the stand-in model: every person found, drawn and written, no detector."""
    image, joints = scene()
    spec = BottomUpInputSpec()
    picture = str(tmp_path / 'people.png')
    cv2.imwrite(picture, image)

    def load():
        return (GroundTruthMaps(image, joints, spec), stand_in_config(spec),
                {'model_file': 'stand-in', 'runtime': 'stand-in'})
    out = tmp_path / 'out'
    assert run_app(_args('--img', picture, '--output', out, '--warmup', 0), load) == 0
    with open(out / 'people_keypoints.json') as f:
        data = json.load(f)
    assert data['box_source'] == 'bottom-up, whole image' and len(data['persons']) == 4
    from posekit.inference.predictor import PoseResult
    kps = np.array([[[k['x'], k['y'], k['score']] for k in p['keypoints']]
                    for p in data['persons']], np.float32)
    boxes = np.array([p['box'] for p in data['persons']], np.float32)
    scores = np.array([p['score'] for p in data['persons']], np.float32)
    assert_every_person(PoseResult(kps, boxes, scores, COCO_JOINTS), joints)
    drawn = cv2.imread(str(out / 'people_pose.jpg'))
    assert drawn.shape == image.shape
    assert np.abs(drawn.astype(int) - cv2.imread(picture).astype(int)).max() > 100

    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 5, SCENE_SIZE)
    for _ in range(2):
        writer.write(image)
    writer.release()
    assert run_app(_args('--video', video, '--output', out, '--warmup', 0), load) == 0
    with open(out / 'clip_keypoints.json') as f:
        assert [len(fr['persons']) for fr in json.load(f)['frames']] == [4, 4]

    # box options would suggest boxes that are not used: one line, nothing written
    from posekit.inference.app import InferenceError
    dets = tmp_path / 'dets.json'
    dets.write_text('[]')
    with pytest.raises(InferenceError, match='--det-json, --detector hog choose person boxes'):
        run_app(_args('--img', picture, '--det-json', dets, '--detector', 'hog',
                      '--output', tmp_path / 'o2'), load)
    assert not (tmp_path / 'o2').exists()


def test_application_header_and_meta_name_the_pipeline(tmp_path):
    image, joints = scene()
    spec = BottomUpInputSpec(boxsize=256)
    predictor = BottomUpPredictor(stand_in_config(spec), GroundTruthMaps(image, joints, spec))
    app = PoseApplication(predictor, None, str(tmp_path), {'model_file': 'm', 'runtime': 'r'})
    assert app.header() == ('model  : m (simplepose, r), bottom-up, whole image at height 256 '
                            '(padded to a multiple of 64), flip test on')
    meta = app.meta('image', 'x.png')
    assert meta['pipeline'] == 'bottomup' and 'input_size' not in meta
    assert predictor.warmup_batch().shape == (2, 3, 256, 384)
