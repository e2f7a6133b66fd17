"""Run an exported pose model (ONNX Runtime or Paddle Inference) on images or a video.

    python pose_estimation/deploy.py --model output/export/model.onnx --img images/people.jpg \\
        --box 280 44 219 347
    python pose_estimation/deploy.py --model output/export/model.onnx --video walk.mp4 --detector hog
    python pose_estimation/deploy.py --type Paddle --model output/export/model.json --img-dir images/

The deploy config written by ``export.py`` beside the model (``deploy_config.json``, or
``--config``) gives the input size, channel order, normalisation, joints and decoding; the
pre-processing and decoding are the library's (``posekit.inference.predictor``), exactly those of
``infer.py``, so an exported model gives the keypoints of the Paddle model. The flip test runs
outside the graph (two runs per batch). Person boxes: ``--box`` (repeatable, applied to every
image or frame), ``--det-json`` (COCO-style detections, images only), ``--detector hog``
(OpenCV's HOG people detector, no weights to download; needs an OpenCV with HOG, i.e. 4.x), or
the whole image (``--detector none``, the default).

Outputs as ``infer.py``: ``<output>/<stem>_pose.jpg`` and ``<stem>_keypoints.json`` per image; a
video gives ``<stem>_pose.mp4`` (same fps, mp4v) and one json with a record per frame. A
per-stage latency breakdown (pre-process, inference, decode: median and mean over the images
or frames, after a warm-up run) is printed at the end.

Bad input gives one line on stderr and, when nothing could be processed, exit code 1: a missing
or unreadable image, a video that cannot be opened, a model that does not match its deploy
config, ``--width/--height`` that a fixed-size model cannot take, a box outside the image, an
image in which the detections or the detector find no person (with ``--img-dir``/``--video`` such
images and frames are reported and skipped, and the run fails only if none was processed).
"""
import argparse
import contextlib
import os
import sys
import warnings

import numpy as np


PROG = 'deploy'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG, description='Top-down pose estimation with an exported model (ONNX Runtime or '
                               'Paddle Inference) on images or a video.')
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--img', help='one image')
    src.add_argument('--img-dir', help='every image of a folder')
    src.add_argument('--video', help='a video file; writes an annotated video')
    parser.add_argument('--model', required=True,
                        help='exported model: .onnx, or Paddle model.json/.pdmodel (or its folder)')
    parser.add_argument('--type', type=str.lower, choices=('onnx', 'paddle'), default=None,
                        help='runtime: ONNX (onnxruntime) or Paddle (Paddle Inference); default '
                             'from the model file name, ONNX for .onnx')
    parser.add_argument('--config', default='',
                        help='deploy config (default: deploy_config.json beside the model)')
    parser.add_argument('--box', action='append', nargs=4, type=float, metavar=('X', 'Y', 'W', 'H'),
                        help='person box in pixels (top-left x, y, width, height); repeat for '
                             'several persons')
    parser.add_argument('--det-json', default='',
                        help='COCO-style person detections (images only; matched by --image-id or '
                             'the file name)')
    parser.add_argument('--det-thre', type=float, default=0.5,
                        help='minimum detection score for --det-json (default 0.5)')
    parser.add_argument('--image-id', default=None, help='image id in --det-json (with --img)')
    parser.add_argument('--detector', type=str.lower, choices=('hog', 'none'), default='none',
                        help='person detector when no boxes are given: hog (OpenCV HOG people '
                             'detector) or none (whole image, default)')
    parser.add_argument('--flip-test', action=argparse.BooleanOptionalAction, default=None,
                        help='average with the mirrored input (default: flip_test of the deploy '
                             'config)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads of the runtime (default: physical cores)')
    parser.add_argument('--width', type=int, default=None,
                        help='input width (with --height): override the deploy config for a '
                             'model exported with a dynamic input size')
    parser.add_argument('--height', type=int, default=None, help='input height (with --width)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed runs before measuring (default 1)')
    parser.add_argument('--kpt-thre', type=float, default=0.3,
                        help='draw joints with at least this confidence (default 0.3)')
    parser.add_argument('--draw-names', action='store_true', help='write joint names on the picture')
    parser.add_argument('--output', default=os.path.join('output', 'deploy'),
                        help='output folder (default output/deploy)')
    return parser.parse_args(argv)


class DeployError(Exception):
    """Ends the run with a one-line message and exit code 1."""


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level stderr (FFmpeg's "moov atom not found" and the like) for a moment."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _runtime_kind(args):
    if args.type:
        return args.type
    ext = os.path.splitext(args.model)[1].lower()
    if ext in ('.json', '.pdmodel', '.pdiparams'):
        return 'paddle'
    return 'onnx'


def _resized_config(deploy_config, width, height, runner):
    """The deploy config for another input size, checked against the model's fixed dimensions."""
    from posekit.inference.deploy_config import DeployConfig
    fixed_h, fixed_w = runner.input_shape[2], runner.input_shape[3]
    if (fixed_w is not None and fixed_w != width) or (fixed_h is not None and fixed_h != height):
        raise DeployError('--width %d --height %d: %s was exported with a fixed %dx%d [W,H] input; '
                          're-export it for %dx%d or drop --width/--height'
                          % (width, height, runner.name, fixed_w or 0, fixed_h or 0, width, height))
    old_w, old_h = deploy_config.input_size
    stride_x = old_w / float(deploy_config.heatmap_size[0])
    stride_y = old_h / float(deploy_config.heatmap_size[1])
    if width % stride_x or height % stride_y:
        raise DeployError('--width %d --height %d must be multiples of the heatmap stride %g'
                          % (width, height, stride_x))
    data = deploy_config.to_dict()
    data['input_size'] = [width, height]
    data['heatmap_size'] = [int(width / stride_x), int(height / stride_y)]
    return DeployConfig.from_dict(data, source='deploy config with --width/--height')


def _latency_report(timings, what, warmup):
    stages = [('pre-process', 'preprocess'), ('inference', 'inference'), ('decode', 'decode')]
    rows = []
    totals = np.zeros(len(timings))
    for label, key in stages:
        vals = np.array([t[key] for t in timings], dtype=np.float64)
        totals += vals
        rows.append((label, vals))
    rows.append(('total', totals))
    lines = ['latency (ms over %d %s, after %d warm-up run%s):'
             % (len(timings), what, warmup, '' if warmup == 1 else 's'),
             '  %-12s %9s %9s' % ('stage', 'median', 'mean')]
    for label, vals in rows:
        lines.append('  %-12s %9.2f %9.2f' % (label, np.median(vals), np.mean(vals)))
    return '\n'.join(lines)


class App:
    """One deploy run: runtime, predictor and the box source, applied to images or frames."""

    def __init__(self, args):
        from posekit.inference.deploy_config import DeployConfig, deploy_config_path
        from posekit.inference.predictor import TopDownPredictor, load_detections
        from posekit.runtime import build_runner, check_io
        self.args = args
        if (args.width is None) != (args.height is None):
            raise DeployError('--width and --height go together')
        if args.box and args.det_json:
            raise DeployError('give person boxes with --box or --det-json, not both')
        if args.det_json and args.video:
            raise DeployError('--det-json holds boxes per image; for a video use --box or --detector')
        self.detections = load_detections(args.det_json) if args.det_json else None
        self.detector = None
        if not args.box and self.detections is None and args.detector != 'none':
            from posekit.inference.detector import build_detector
            self.detector = build_detector(args.detector)

        config_file = args.config or deploy_config_path(args.model)
        self.kind = _runtime_kind(args)
        self.runner = build_runner(self.kind, args.model, threads=args.threads)
        deploy_config = DeployConfig.load(config_file)
        if args.width is not None:
            deploy_config = _resized_config(deploy_config, args.width, args.height, self.runner)
        check_io(self.runner, deploy_config)
        self.config_file = config_file
        self.deploy_config = deploy_config
        self.predictor = TopDownPredictor(deploy_config, self.runner, flip_test=args.flip_test)
        self.timings = []
        self.warmup()

    def warmup(self):
        w, h = self.deploy_config.input_size
        batch = np.zeros((1, 3, h, w), np.float32)
        for _ in range(max(0, self.args.warmup)):
            self.runner(batch)

    def meta(self, source):
        return {'image' if not self.args.video else 'video': os.path.abspath(source),
                'model': self.deploy_config.model, 'model_file': os.path.abspath(self.runner.model_path),
                'runtime': 'onnxruntime' if self.kind == 'onnx' else 'paddle inference',
                'deploy_config': os.path.abspath(self.config_file),
                'input_size': self.deploy_config.input_size,
                'flip_test': self.predictor.flip_test}

    def predict(self, image, source_name, image_id=None):
        """(result, box source); raises DeployError when there is no person to process."""
        from posekit.inference.predictor import person_boxes
        boxes, box_source = person_boxes(image, source_name, boxes=self.args.box,
                                         detections=self.detections, image_id=image_id,
                                         score_threshold=self.args.det_thre, detector=self.detector)
        if len(boxes) == 0:
            raise DeployError('no person detected in %s (%s); give --box, lower --det-thre or use '
                              '--detector none for the whole image' % (source_name, box_source))
        from posekit.inference.predictor import BoxError, predict_reporting
        try:
            result = predict_reporting(self.predictor, image, boxes, source=source_name)
        except BoxError as e:
            raise DeployError(str(e)) from e
        self.timings.append(result.timings)
        return result, box_source

    def run_images(self, paths):
        from posekit.data import read_image
        from posekit.inference.predictor import save_prediction
        single = len(paths) == 1 and self.args.img
        from posekit.inference.predictor import parse_image_id
        image_id = parse_image_id(self.args.image_id)
        done = 0
        for path in paths:
            try:
                image = read_image(path)
                result, box_source = self.predict(image, path, image_id if single else None)
                jpg, js = save_prediction(self.args.output, path, image, result, self.deploy_config,
                                          dict(self.meta(path), box_source=box_source),
                                          kpt_thr=self.args.kpt_thre,
                                          draw_names=self.args.draw_names)
            except (DeployError, ValueError) as e:
                if single:
                    raise DeployError(str(e)) from e
                warnings.warn('%s; skipped' % e)
                continue
            done += 1
            print('%s: %d person%s (%s) -> %s'
                  % (path, len(result), '' if len(result) == 1 else 's', box_source, jpg))
        if done == 0:
            raise DeployError('none of the %d images could be processed' % len(paths))
        return done

    def run_video(self, path):
        import cv2
        from posekit.inference.predictor import output_paths, write_json
        from posekit.inference.visualize import draw_result
        if not os.path.isfile(path):
            raise DeployError('video not found: %s' % path)
        with _quiet_stderr():
            cap = cv2.VideoCapture(path)
            ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise DeployError('cannot open video %s (unsupported format or no frames)' % path)
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not fps or not np.isfinite(fps) or fps <= 0:
            fps = 25.0
        _, js = output_paths(self.args.output, path)
        out_video = os.path.splitext(js)[0][:-len('_keypoints')] + '_pose.mp4'
        os.makedirs(self.args.output, exist_ok=True)
        h, w = frame.shape[:2]
        writer = cv2.VideoWriter(out_video, cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
        if not writer.isOpened():
            cap.release()
            raise DeployError('cannot write video %s (mp4v codec unavailable?)' % out_video)
        frames, empty = [], 0
        index = 0
        try:
            while ok:
                try:
                    result, box_source = self.predict(frame, '%s frame %d' % (path, index))
                    drawn = draw_result(frame, result, self.deploy_config, kpt_thr=self.args.kpt_thre,
                                        draw_names=self.args.draw_names)
                    record = dict(result.to_dict(), frame=index)
                except DeployError:
                    # a frame without a person is normal in a video: keep it, unannotated
                    empty += 1
                    drawn, record = frame, {'frame': index, 'persons': []}
                record.pop('joint_names', None)
                frames.append(record)
                writer.write(drawn)
                index += 1
                ok, frame = cap.read()
        finally:
            cap.release()
            writer.release()
        data = dict(self.meta(path), fps=fps, frame_size=[w, h],
                    joint_names=self.deploy_config.joint_names, frames=frames)
        write_json(js, data)
        processed = index - empty
        print('%s: %d frames processed at %.2f fps%s -> %s'
              % (path, index, fps, ', %d without a person' % empty if empty else '', out_video))
        print('keypoints: %s' % js)
        if processed == 0:
            raise DeployError('no person found in any of the %d frames of %s' % (index, path))
        return processed


def _image_list(args):
    if args.img:
        return [args.img]
    if not os.path.isdir(args.img_dir):
        raise DeployError('image folder not found: %s' % args.img_dir)
    paths = sorted(os.path.join(args.img_dir, f) for f in os.listdir(args.img_dir)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise DeployError('no images (%s) in %s' % (', '.join(IMAGE_EXTENSIONS), args.img_dir))
    return paths


def main(argv=None):
    args = parse_args(argv)
    from posekit.cli import one_line_warnings
    one_line_warnings(PROG)
    try:
        if args.img and not os.path.isfile(args.img):
            raise DeployError('image not found: %s' % args.img)
        paths = None if args.video else _image_list(args)
        app = App(args)
        print('model  : %s (%s, %s), input %dx%d [W,H], flip test %s'
              % (app.runner.model_path, app.deploy_config.model,
                 'onnxruntime' if app.kind == 'onnx' else 'Paddle Inference',
                 app.deploy_config.input_size[0], app.deploy_config.input_size[1],
                 'on' if app.predictor.flip_test else 'off'))
        if args.video:
            app.run_video(args.video)
            what = 'frames'
        else:
            app.run_images(paths)
            what = 'images' if len(app.timings) != 1 else 'image'
    except (DeployError, ValueError, OSError) as e:
        # ModelLoadError, DeployConfigError, DetectionFileError, DatasetError, BoxError and
        # DetectorError are ValueErrors: their message names the file or box at fault.
        print('%s: error: %s' % (PROG, e), file=sys.stderr)
        return 1
    print(_latency_report(app.timings, what, max(0, args.warmup)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
