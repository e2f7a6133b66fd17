"""The pose application: person boxes, a predictor and the outputs, over one image, every image
of a folder, or the frames of a video. ``infer.py`` and ``deploy.py`` are its front ends; they
differ only in the model they load (a trained Paddle model, or an exported one).

    from posekit.inference.app import run
    run(args, load)        # args from add_arguments(); load() -> (runner, deploy_config, description)

What a run does, in order:

1. the box source (:class:`posekit.inference.boxes.BoxSource`: ``--box``, ``--det-json``,
   ``--detector``, else the whole image) and the input (the image read, the folder listed, the
   video opened) are checked first, so a wrong path fails before a model is loaded;
2. the front end's ``load()`` gives the runner and its deploy config, the predictor of its
   pipeline (:func:`posekit.inference.predictor.build_predictor`) is built on them and warmed up;
3. each image or frame: its boxes, the prediction, the drawn picture and the keypoints json
   (:mod:`posekit.inference.outputs`), one printed line;
4. a latency table: median and mean of each stage (pre-process, inference, decode) over the
   images or frames, after the warm-up runs.

One image that cannot be processed is an error; in a folder it is a warning and the image is
skipped, and only a folder where nothing could be processed is an error. A video frame without a
person is kept, unannotated, with an empty record. Errors are :class:`posekit.errors.PosekitError`
(one line, exit code 1 through :func:`posekit.cli.run_tool`).

A bottom-up model (SimplePose, :class:`posekit.inference.predictor.BottomUpPredictor`) needs no
boxes: each image is processed whole and every person found is drawn (skeletons, no boxes;
the json still gives each person's box around its keypoints and its score). ``--box``,
``--det-json`` and ``--detector hog`` with such a model are an error (one line: they would
suggest boxes that are not used). Finding nobody in an image, a folder or a video is a result
("0 persons"), not an error.
"""
import argparse
import os
import warnings

import numpy as np

from posekit.errors import PosekitError, PosekitInputError
from posekit.inference.boxes import BoxSource, parse_image_id
from posekit.inference.outputs import VideoOutput, save_prediction
from posekit.inference.predictor import TIMING_STAGES, build_predictor
from posekit.inference.video import VideoReader
from posekit.io import list_images, read_image

__all__ = ['InferenceError', 'NoPersonError', 'add_arguments', 'predict_reporting',
           'latency_table', 'PoseApplication', 'run']

STAGE_LABELS = {'preprocess': 'pre-process', 'inference': 'inference', 'decode': 'decode'}


class InferenceError(PosekitInputError):
    """Options that do not go together, or an input the application cannot process."""


class NoPersonError(InferenceError):
    """No person box to process in an image or frame (none detected, or all outside it)."""


def add_arguments(parser, default_output):
    """The options every front end shares: input, person boxes, flip test, threads, outputs.

    The front end adds its model options and ``default_output`` is its output folder. The box
    options are for top-down models (a bottom-up model refuses them, :func:`run`).
    """
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--img', '--img-file', dest='img', metavar='IMAGE', help='one image')
    src.add_argument('--img-dir', metavar='FOLDER', help='every image of a folder')
    src.add_argument('--video', help='a video file; writes an annotated video and one json')
    parser.add_argument('--box', action='append', nargs=4, type=float, metavar=('X', 'Y', 'W', 'H'),
                        help='person box in pixels (top-left x, y, width, height); repeat for '
                             'several persons; applied to every image or frame')
    parser.add_argument('--det-json', default='',
                        help='COCO-style person detections (results list or annotation file; '
                             'images only, matched by --image-id or the file name)')
    parser.add_argument('--det-thre', type=float, default=0.5,
                        help='minimum detection score for --det-json (default 0.5)')
    parser.add_argument('--image-id', default=None,
                        help='image id in --det-json (with --img; default: from the file name)')
    parser.add_argument('--detector', type=str.lower, choices=('hog', 'none'), default='none',
                        help='person detector when no boxes are given: hog (OpenCV HOG people '
                             'detector) or none (the whole image is one person, default)')
    parser.add_argument('--flip-test', action=argparse.BooleanOptionalAction, default=None,
                        help='average with the mirrored input (default: the model config\'s)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads of the runtime (default: its own choice, physical cores '
                             'for the exported runtimes)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed runs before measuring (default 1)')
    parser.add_argument('--kpt-thre', type=float, default=0.3,
                        help='draw joints with at least this confidence (default 0.3)')
    parser.add_argument('--draw-names', action='store_true', help='write joint names on the picture')
    parser.add_argument('--output', default=default_output,
                        help='output folder (default %s)' % default_output)
    return parser


def predict_reporting(predictor, image, boxes, source=None):
    """``predictor.predict`` for a run: the box warnings it raises are re-issued after the
    prediction (prefixed with ``source``), and a result without any usable box is a
    :class:`NoPersonError`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = predictor.predict(image, boxes)
    prefix = '%s: ' % source if source else ''
    if len(result) == 0:
        raise NoPersonError('%sno person box inside the image: %s'
                            % (prefix, result.skipped_summary()))
    for w in caught:
        warnings.showwarning('%s%s' % (prefix, w.message), w.category, w.filename, w.lineno)
    return result


def latency_table(timings, what, warmup):
    """Median and mean milliseconds of each stage and their total over ``timings`` (one dict
    per image or frame, as :attr:`PoseResult.timings`); ``what`` names them ('images')."""
    totals = np.zeros(len(timings))
    rows = []
    for key in TIMING_STAGES:
        vals = np.array([t[key] for t in timings], dtype=np.float64)
        totals += vals
        rows.append((STAGE_LABELS.get(key, key), vals))
    rows.append(('total', totals))
    lines = ['latency (ms over %d %s, after %d warm-up run%s):'
             % (len(timings), what, warmup, '' if warmup == 1 else 's'),
             '  %-12s %9s %9s' % ('stage', 'median', 'mean')]
    for label, vals in rows:
        lines.append('  %-12s %9.2f %9.2f' % (label, np.median(vals), np.mean(vals)))
    return '\n'.join(lines)


def _persons(n):
    return '%d person%s' % (n, '' if n == 1 else 's')


class PoseApplication:
    """A predictor, a box source and the output options, applied to images and videos.

    ``description`` (model file, runtime, ...) goes into every json; the timings of every
    processed image or frame are kept in ``timings``. A bottom-up predictor takes no ``boxes``
    (None): the whole image is its input.
    """

    def __init__(self, predictor, boxes, output_dir, description=None, kpt_thr=0.3,
                 draw_names=False, show=False):
        self.predictor = predictor
        self.config = predictor.config
        self.boxes = boxes
        self.output_dir = output_dir
        self.description = dict(description or {})
        self.kpt_thr = kpt_thr
        self.draw_names = draw_names
        self.show = show
        self.timings = []
        self.bottom_up = getattr(predictor, 'pipeline', 'topdown') == 'bottomup'

    def header(self):
        """One line on the model: file, name, runtime, input size, flip test."""
        return 'model  : %s (%s, %s), %s, flip test %s' % (
            self.description.get('model_file', '?'), self.config.model,
            self.description.get('runtime', '?'), self.predictor.describe_input(),
            'on' if self.predictor.flip_test else 'off')

    def warm_up(self, runs):
        """Untimed runs on a zero batch: the first runs of a runtime allocate and tune."""
        batch = self.predictor.warmup_batch()
        for _ in range(max(0, int(runs))):
            self.predictor.runner(batch)

    def meta(self, source_key, source_path):
        """The run's description for a json: the source ('image' or 'video'), the model, what
        loaded it, the input size and the flip test."""
        meta = {source_key: os.path.abspath(source_path), 'model': self.config.model}
        meta.update(self.description)
        if self.bottom_up:
            meta.update(pipeline='bottomup', input=self.predictor.input_spec.to_dict(),
                        flip_test=self.predictor.flip_test)
        else:
            meta.update(input_size=list(self.config.input_size),
                        flip_test=self.predictor.flip_test)
        return meta

    def predict(self, image, name, image_id=None):
        """``(result, box source)`` of one image or frame; :class:`NoPersonError` when there is
        no person box to process (a bottom-up model's result may hold no person)."""
        if self.bottom_up:
            result = self.predictor.predict(image)
            self.timings.append(result.timings)
            return result, BOTTOM_UP_SOURCE
        boxes, box_source = self.boxes(image, name, image_id=image_id)
        if len(boxes) == 0:
            raise NoPersonError('no person detected in %s (%s); give --box, lower --det-thre or '
                                'use --detector none for the whole image' % (name, box_source))
        result = predict_reporting(self.predictor, image, boxes, source=name)
        self.timings.append(result.timings)
        return result, box_source

    def run_image(self, path, image=None, image_id=None):
        """Predict, draw and save one image (read from ``path`` unless ``image`` is given);
        prints one line and returns ``(result, picture path, json path)``."""
        if image is None:
            image = read_image(path)
        result, box_source = self.predict(image, path, image_id)
        jpg, js = save_prediction(self.output_dir, path, image, result, self.config,
                                  dict(self.meta('image', path), box_source=box_source),
                                  kpt_thr=self.kpt_thr, draw_names=self.draw_names)
        print('%s: %s (%s) -> %s' % (path, _persons(len(result)), box_source, jpg))
        if self.show:
            self._show(jpg, path)
        return result, jpg, js

    def run_folder(self, paths):
        """:meth:`run_image` on each path; an image that cannot be processed is a warning and is
        skipped. Returns the number processed (an :class:`InferenceError` when none was)."""
        done = 0
        for path in paths:
            try:
                self.run_image(path)
            except (PosekitError, ValueError) as e:
                warnings.warn('%s; skipped' % e)
                continue
            done += 1
        if done == 0:
            raise InferenceError('none of the %d images could be processed' % len(paths))
        return done

    def run_video(self, video):
        """Every frame of a :class:`posekit.inference.video.VideoReader`: the annotated video
        and its json. Returns the number of frames with a person (an error when there is none)."""
        output = VideoOutput(self.output_dir, video.path, video.fps, video.frame_size,
                             self.config, self.meta('video', video.path),
                             kpt_thr=self.kpt_thr, draw_names=self.draw_names)
        empty = 0
        try:
            for index, frame in enumerate(video):
                try:
                    result, _ = self.predict(frame, '%s frame %d' % (video.path, index))
                except NoPersonError:
                    # a frame without a person is normal in a video: keep it, unannotated
                    result, empty = None, empty + 1
                else:
                    if len(result) == 0:   # a bottom-up model found nobody
                        result, empty = None, empty + 1
                output.add(frame, result)
        finally:
            video.close()
            output.release()
        js = output.close()
        frames = len(output.frames)
        print('%s: %d frames processed at %.2f fps%s -> %s'
              % (video.path, frames, video.fps,
                 ', %d without a person' % empty if empty else '', output.path))
        print('keypoints: %s' % js)
        if frames == empty and not self.bottom_up:
            raise NoPersonError('no person found in any of the %d frames of %s'
                                % (frames, video.path))
        return frames - empty

    def _show(self, picture, source):
        import cv2

        from posekit.inference.visualize import show_image
        if not show_image(cv2.imread(picture), 'pose: %s' % source):
            warnings.warn('--show: no display (or OpenCV without GUI); see %s' % picture)
            self.show = False


# How a bottom-up run names where its people come from (the "box source" of the outputs).
BOTTOM_UP_SOURCE = 'bottom-up, whole image'


def _check_bottomup_options(args, deploy_config):
    """A one-line :class:`InferenceError` for box options given with a bottom-up model."""
    given = [name for name, value in (('--box', args.box), ('--det-json', args.det_json),
                                      ('--detector %s' % args.detector,
                                       args.detector not in (None, 'none')))
             if value]
    if given:
        raise InferenceError('%s choose%s person boxes for a top-down model; %s is bottom-up and '
                             'finds every person in the whole image: leave %s out'
                             % (', '.join(given), 's' if len(given) == 1 else '',
                                deploy_config.model, 'it' if len(given) == 1 else 'them'))


def run(args, load, show=False):
    """The whole run for parsed :func:`add_arguments` options; ``load()`` returns
    ``(runner, deploy_config, description)`` (see :mod:`posekit.inference.loading`) and is
    called once the inputs are known to be usable. ``show``: display each drawn picture."""
    if args.image_id is not None and not args.img:
        raise InferenceError('--image-id picks the detections of one image: use it with --img')
    if args.det_json and args.video:
        raise InferenceError('--det-json holds boxes per image; for a video use --box or --detector')
    boxes = BoxSource.from_options(args.box, args.det_json, args.det_thre, args.detector)
    # the input before the model: a wrong path fails at once, not after the model has loaded
    image = read_image(args.img) if args.img else None
    paths = list_images(args.img_dir) if args.img_dir else None
    video = VideoReader(args.video) if args.video else None
    try:
        runner, deploy_config, description = load()
    except BaseException:
        if video is not None:
            video.close()
        raise
    predictor = build_predictor(deploy_config, runner, flip_test=args.flip_test)
    if predictor.pipeline == 'bottomup':
        try:
            _check_bottomup_options(args, deploy_config)
        except InferenceError:
            if video is not None:
                video.close()
            raise
        boxes = None
    application = PoseApplication(predictor, boxes, args.output, description,
                                  kpt_thr=args.kpt_thre, draw_names=args.draw_names, show=show)
    print(application.header())
    application.warm_up(args.warmup)
    if video is not None:
        if show:
            warnings.warn('--show shows pictures; the annotated video is written instead')
        application.run_video(video)
        what = 'frames'
    elif paths is not None:
        application.run_folder(paths)
        what = 'images' if len(application.timings) != 1 else 'image'
    else:
        application.run_image(args.img, image, parse_image_id(args.image_id))
        what = 'image'
    print(latency_table(application.timings, what, max(0, args.warmup)))
    return 0
