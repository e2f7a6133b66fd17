"""End to end: infer.py (Paddle dygraph), export.py, deploy.py (ONNX Runtime, Paddle Inference).

A SimpleNet COCO model with seeded random weights, a generated picture of two stick figures and
their two boxes. The exported model run by deploy.py must give infer.py's keypoints; every bad
input must end with a one-line message and a non-zero exit code, never a traceback.

The module runs each entry point as a user would (subprocess); about 30 s on 2 cores, most of it
Paddle start-up in infer.py and export.py, which run once for the whole module.
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, 'experiments', 'coco', 'mobile', '256x192_d256x3_adam_lr1e-3.yaml')
BOXES = [[40.0, 30.0, 120.0, 240.0], [230.0, 60.0, 110.0, 220.0]]   # x, y, w, h
IMAGE_SIZE = (400, 320)   # W, H


def run(tool, *args, cwd=None):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'pose_estimation', tool)] + list(args),
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=300)
    return proc


def box_args(boxes):
    out = []
    for b in boxes:
        out += ['--box'] + ['%g' % v for v in b]
    return out


def stick_figures_image():
    """Two light stick figures (head, trunk, arms, legs) on a darker textured background."""
    w, h = IMAGE_SIZE
    rng = np.random.default_rng(3)
    img = (rng.normal(70, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
    for x, y, bw, bh in BOXES:
        cx = int(x + bw / 2)
        head = (cx, int(y + bh * 0.1))
        neck, hip = (cx, int(y + bh * 0.2)), (cx, int(y + bh * 0.55))
        cv2.circle(img, head, int(bh * 0.08), (200, 210, 230), -1)
        cv2.line(img, neck, hip, (180, 190, 220), 6)
        for dx in (-1, 1):
            cv2.line(img, neck, (int(cx + dx * bw * 0.4), int(y + bh * 0.45)), (170, 180, 210), 4)
            cv2.line(img, hip, (int(cx + dx * bw * 0.3), int(y + bh * 0.97)), (160, 170, 200), 5)
    return img


def random_weights(model, seed=11):
    """Seeded He-normal weights: unlike the default initialisation (whose heatmaps are ~1e-8
    after the BatchNorms), they give heatmaps of order 1, so argmax and confidences mean something."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, value in model.state_dict().items():
        arr = value.numpy()
        if arr.ndim == 4:
            # conv (out, in, k, k); deconv (in, out, k, k) with stride 2 (a quarter of the taps)
            a, b, kh, kw = arr.shape
            fan_in = b * kh * kw if 'deconv' not in name else a * kh * kw / 4
            scale = 0.1 if name.startswith('final_layer') else 1.0
            arr = rng.normal(0, scale * np.sqrt(2.0 / fan_in), arr.shape).astype(arr.dtype)
        state[name] = arr
    model.set_state_dict(state)
    return model


def keypoints_of(json_path):
    with open(json_path) as f:
        data = json.load(f)
    return np.array([[[k['x'], k['y'], k['score']] for k in p['keypoints']]
                     for p in data['persons']]), data


def assert_one_line_error(proc):
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert 'Traceback' not in err, err
    assert len(err.splitlines()) == 1, err
    assert 'error' in err
    return err


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """Weights, the picture, infer.py's outputs and (when export.py exists) the exported model."""
    from posekit.checkpoint import save_paddle_state_dict
    from posekit.config import load_config
    from posekit.models import build_model

    root = tmp_path_factory.mktemp('infer_deploy')
    model = build_model(load_config(CFG))
    weights = save_paddle_state_dict(random_weights(model), str(root / 'simplenet_random.pdparams'))
    image = str(root / 'two_figures.png')
    cv2.imwrite(image, stick_figures_image())

    infer_out = root / 'infer'
    proc = run('infer.py', '--cfg', CFG, '--model-file', weights, '--img-file', image,
               *box_args(BOXES), '--flip-test', '--output', str(infer_out))
    assert proc.returncode == 0, proc.stderr
    work = {'root': root, 'weights': weights, 'image': image, 'infer_out': infer_out,
            'infer_stdout': proc.stdout, 'export': None}

    if os.path.isfile(os.path.join(ROOT, 'pose_estimation', 'export.py')):
        export_dir = root / 'export'
        proc = run('export.py', '--cfg', CFG, '--model-file', weights, '--output', str(export_dir),
                   '--format', 'both')
        assert proc.returncode == 0, proc.stderr
        work['export'] = export_dir
    return work


@pytest.fixture
def exported(work):
    if work['export'] is None:
        pytest.skip('pose_estimation/export.py not available')
    return work['export']


def test_infer_writes_the_picture_and_the_keypoints(work):
    out = work['infer_out']
    drawn = cv2.imread(str(out / 'two_figures_pose.jpg'))
    assert drawn is not None and drawn.shape[:2] == (IMAGE_SIZE[1], IMAGE_SIZE[0])
    kps, data = keypoints_of(out / 'two_figures_keypoints.json')
    assert kps.shape == (2, 17, 3)
    assert data['flip_test'] is True and data['joint_names'][0] == 'nose'
    assert [p['box'] for p in data['persons']] == BOXES
    assert [p['keypoints'][9]['name'] for p in data['persons']] == ['left_wrist'] * 2
    # the crop covers the box padded by 1.25 at the model's 3:4 aspect: keypoints land there
    for (x, y, w, h), person in zip(BOXES, kps):
        half_w, half_h = max(w, h * 0.75) * 0.625, max(h, w / 0.75) * 0.625
        assert np.all(np.abs(person[:, 0] - (x + w / 2)) <= half_w + 1)
        assert np.all(np.abs(person[:, 1] - (y + h / 2)) <= half_h + 1)
    assert '2 persons' in work['infer_stdout']


@pytest.mark.parametrize('runtime', ['ONNX', 'Paddle'])
def test_deploy_matches_infer(work, exported, runtime):
    model = exported / ('model.onnx' if runtime == 'ONNX' else 'model.json')
    out = work['root'] / ('deploy_' + runtime)
    proc = run('deploy.py', '--type', runtime, '--model', str(model), '--img', work['image'],
               *box_args(BOXES), '--flip-test', '--threads', '1', '--output', str(out))
    assert proc.returncode == 0, proc.stderr
    for stage in ('pre-process', 'inference', 'decode'):
        assert stage in proc.stdout
    ref, _ = keypoints_of(work['infer_out'] / 'two_figures_keypoints.json')
    got, data = keypoints_of(out / 'two_figures_keypoints.json')
    assert got.shape == ref.shape
    assert np.abs(got[..., :2] - ref[..., :2]).max() < 0.5
    np.testing.assert_allclose(got[..., 2], ref[..., 2], rtol=1e-4, atol=1e-5)
    assert os.path.isfile(out / 'two_figures_pose.jpg')


def test_deploy_video(work, exported):
    frame = cv2.imread(work['image'])
    video = str(work['root'] / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 10, IMAGE_SIZE)
    for i in range(3):
        writer.write(np.roll(frame, 4 * i, axis=1))
    writer.release()
    out = work['root'] / 'deploy_video'
    proc = run('deploy.py', '--model', str(exported / 'model.onnx'), '--video', video,
               *box_args(BOXES[:1]), '--output', str(out))
    assert proc.returncode == 0, proc.stderr
    assert '3 frames processed' in proc.stdout
    cap = cv2.VideoCapture(str(out / 'clip_pose.mp4'))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    with open(out / 'clip_keypoints.json') as f:
        frames = json.load(f)['frames']
    assert [len(f['persons']) for f in frames] == [1, 1, 1]


def test_deploy_bad_inputs(work, exported, tmp_path):
    onnx = str(exported / 'model.onnx')
    image = work['image']
    junk = tmp_path / 'junk.jpg'
    junk.write_text('not an image')
    junk_video = tmp_path / 'junk.mp4'
    junk_video.write_text('not a video')
    # a model beside a deploy config that describes another input size
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'model.onnx').write_bytes((exported / 'model.onnx').read_bytes())
    cfg = json.loads((exported / 'deploy_config.json').read_text())
    cfg['input']['input_size'] = cfg['codec']['input_size'] = [288, 384]
    cfg['codec']['heatmap_size'] = [72, 96]
    (other / 'deploy_config.json').write_text(json.dumps(cfg))
    dets = tmp_path / 'dets.json'
    dets.write_text(json.dumps([{'image_id': 1, 'category_id': 1, 'bbox': [1, 2, 3, 4],
                                 'score': 0.9}]))
    out = ['--output', str(tmp_path / 'out')]
    cases = {
        'image not found': ['--model', onnx, '--img', str(tmp_path / 'missing.jpg')],
        'cannot read image': ['--model', onnx, '--img', str(junk)],
        'cannot open video': ['--model', onnx, '--video', str(junk_video)],
        'deploy_config.json says 288x384': ['--model', str(other / 'model.onnx'), '--img', image],
        'entirely outside': ['--model', onnx, '--img', image, '--box', '500', '10', '40', '80'],
        'zero or negative size': ['--model', onnx, '--img', image, '--box', '10', '10', '0', '80'],
        'no person detected': ['--model', onnx, '--img', image, '--det-json', str(dets)],
    }
    for expected, args in cases.items():
        err = assert_one_line_error(run('deploy.py', *(args + out)))
        assert expected in err, err
    assert not (tmp_path / 'out').exists() or not os.listdir(tmp_path / 'out')


def test_infer_bad_inputs(work, tmp_path):
    common = ['--cfg', CFG, '--model-file', work['weights'], '--output', str(tmp_path)]
    err = assert_one_line_error(run('infer.py', *common, '--img-file', str(tmp_path / 'no.jpg')))
    assert 'image not found' in err
    err = assert_one_line_error(run('infer.py', *common, '--img-file', work['image'],
                                    '--box', '-300', '10', '100', '100'))
    assert 'entirely outside' in err


# -- one application behind both front ends (posekit.inference.app) ---------------------------

def write_clip(path, frame, n=3, fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (frame.shape[1], frame.shape[0]))
    for i in range(n):
        writer.write(np.roll(frame, 4 * i, axis=1))
    writer.release()
    return str(path)


def test_deploy_runs_without_paddle(work, exported, tmp_path):
    """The ONNX deploy path imports no Paddle: with ``import paddle`` failing it still works."""
    blocker = tmp_path / 'no_paddle'
    (blocker / 'paddle').mkdir(parents=True)
    (blocker / 'paddle' / '__init__.py').write_text(
        "raise ImportError('paddle is not installed here (test_deploy_runs_without_paddle)')\n")
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(blocker)] + [p for p in [env.get('PYTHONPATH')] if p])
    probe = subprocess.run([sys.executable, '-c', 'import paddle'], env=env, capture_output=True,
                           text=True, timeout=60)
    assert probe.returncode != 0 and 'not installed here' in probe.stderr   # the block works
    out = tmp_path / 'out'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'pose_estimation', 'deploy.py'),
                           '--model', str(exported / 'model.onnx'), '--img', work['image'],
                           *box_args(BOXES), '--flip-test', '--threads', '1', '--output', str(out)],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(out / 'two_figures_pose.jpg')
    ref, _ = keypoints_of(work['infer_out'] / 'two_figures_keypoints.json')
    got, data = keypoints_of(out / 'two_figures_keypoints.json')
    assert data['runtime'] == 'onnxruntime'
    assert np.abs(got[..., :2] - ref[..., :2]).max() < 0.5


def test_both_spellings_of_the_image_option(work, exported, tmp_path):
    """--img and --img-file are one option on both tools."""
    proc = run('infer.py', '--cfg', CFG, '--model-file', work['weights'], '--img', work['image'],
               *box_args(BOXES), '--flip-test', '--output', str(tmp_path / 'infer'))
    assert proc.returncode == 0, proc.stderr
    proc = run('deploy.py', '--model', str(exported / 'model.onnx'), '--img-file', work['image'],
               *box_args(BOXES), '--flip-test', '--output', str(tmp_path / 'deploy'))
    assert proc.returncode == 0, proc.stderr
    ref, _ = keypoints_of(work['infer_out'] / 'two_figures_keypoints.json')
    for tool in ('infer', 'deploy'):
        got, _ = keypoints_of(tmp_path / tool / 'two_figures_keypoints.json')
        assert np.abs(got[..., :2] - ref[..., :2]).max() < 0.5, tool


def test_deploy_folder_skips_a_bad_image(work, exported, tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    picture = cv2.imread(work['image'])
    for name in ('a.png', 'b.jpg'):
        cv2.imwrite(str(folder / name), picture)
    (folder / 'broken.jpg').write_text('not an image')
    (folder / 'notes.txt').write_text('not listed: not an image extension')
    out = tmp_path / 'out'
    proc = run('deploy.py', '--model', str(exported / 'model.onnx'), '--img-dir', str(folder),
               *box_args(BOXES), '--output', str(out))
    assert proc.returncode == 0, proc.stderr
    warnings_ = proc.stderr.strip().splitlines()
    assert len(warnings_) == 1 and 'warning' in warnings_[0], proc.stderr
    assert 'broken.jpg' in warnings_[0] and 'skipped' in warnings_[0]
    assert sorted(os.listdir(out)) == ['a_keypoints.json', 'a_pose.jpg', 'b_keypoints.json',
                                       'b_pose.jpg']
    assert 'latency (ms over 2 images' in proc.stdout
    kps, _ = keypoints_of(out / 'a_keypoints.json')
    assert kps.shape == (2, 17, 3)


def test_infer_video(work, tmp_path):
    """infer.py runs the application's video loop too: annotated mp4 and one json per video."""
    video = write_clip(tmp_path / 'walk.mp4', cv2.imread(work['image']))
    out = tmp_path / 'out'
    proc = run('infer.py', '--cfg', CFG, '--model-file', work['weights'], '--video', video,
               *box_args(BOXES), '--output', str(out))
    assert proc.returncode == 0, proc.stderr
    assert '3 frames processed' in proc.stdout and 'latency (ms over 3 frames' in proc.stdout
    cap = cv2.VideoCapture(str(out / 'walk_pose.mp4'))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    with open(out / 'walk_keypoints.json') as f:
        data = json.load(f)
    assert data['runtime'] == 'paddle dygraph' and data['video'] == os.path.abspath(video)
    assert [f['frame'] for f in data['frames']] == [0, 1, 2]
    assert [len(f['persons']) for f in data['frames']] == [2, 2, 2]


@pytest.mark.parametrize('tool', ['infer.py', 'deploy.py'])
def test_missing_inputs_are_one_line_errors(work, exported, tool, tmp_path):
    model = (['--cfg', CFG, '--model-file', work['weights']] if tool == 'infer.py'
             else ['--model', str(exported / 'model.onnx')])
    empty = tmp_path / 'empty'
    empty.mkdir()
    cases = {
        'image not found': ['--img', str(tmp_path / 'missing.jpg')],
        'video not found': ['--video', str(tmp_path / 'missing.mp4')],
        'image folder not found': ['--img-dir', str(tmp_path / 'missing')],
        'no images': ['--img-dir', str(empty)],
        'use it with --img': ['--img-dir', str(empty), '--image-id', '3'],
    }
    for expected, args in cases.items():
        proc = run(tool, *model, *args, '--output', str(tmp_path / 'out'))
        err = assert_one_line_error(proc)
        assert proc.returncode == 1, err
        assert expected in err, err
    assert not (tmp_path / 'out').exists()
