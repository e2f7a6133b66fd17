"""Keypoints of the persons in one image with a trained model (Paddle dygraph).

    python pose_estimation/infer.py --cfg experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml \\
        --model-file output/simplenet_coco_256x192.pdparams --img-file images/people.jpg \\
        --box 280 44 219 347 --box 40 110 175 175

Person boxes come from ``--box x y w h`` (repeatable), or from a COCO-style detection json
(``--det-json``, this image's boxes by ``--image-id`` or by its file name, score >= ``--det-thre``);
without either the whole image is one person. Writes ``<output>/<stem>_pose.jpg`` (skeleton
drawn) and ``<output>/<stem>_keypoints.json`` (per person: box, score, keypoints {name, x, y,
score} in image pixels). Pre-processing and decoding are the library's (``posekit.inference.predictor``),
the same as ``deploy.py`` uses for exported models.

Bad input gives a one-line message: boxes entirely outside the image are skipped with a warning
(an error if none is left), a zero-size box, a missing or unreadable image or weights file, or a
detection json without a person for this image is an error (exit code 1).
"""
import argparse
import os
import sys
import warnings


PROG = 'infer'


def parse_args(argv=None):
    from posekit.config import add_config_arguments
    parser = argparse.ArgumentParser(
        prog=PROG, description='Top-down pose estimation on one image with a Paddle model.')
    parser.add_argument('--model-file', default='',
                        help='weights (.pdparams, or a reference .pth); default TEST.MODEL_FILE')
    parser.add_argument('--img-file', required=True, help='image to process')
    parser.add_argument('--box', action='append', nargs=4, type=float, metavar=('X', 'Y', 'W', 'H'),
                        help='person box in pixels (top-left x, y, width, height); repeat for '
                             'several persons')
    parser.add_argument('--det-json', default='',
                        help='COCO-style person detections (results list or annotation file)')
    parser.add_argument('--det-thre', type=float, default=0.5,
                        help='minimum detection score for --det-json (default 0.5)')
    parser.add_argument('--image-id', default=None,
                        help='image id in --det-json (default: from the file name)')
    parser.add_argument('--flip-test', action=argparse.BooleanOptionalAction, default=None,
                        help='average with the mirrored input (default: TEST.FLIP_TEST)')
    parser.add_argument('--kpt-thre', type=float, default=0.3,
                        help='draw joints with at least this confidence (default 0.3)')
    parser.add_argument('--draw-names', action='store_true', help='write joint names on the picture')
    parser.add_argument('--output', default=os.path.join('output', 'infer'),
                        help='output folder (default output/infer)')
    parser.add_argument('--show', action='store_true',
                        help='also show the result in a window (when a display exists)')
    add_config_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from posekit.cli import one_line, one_line_warnings
    one_line_warnings(PROG)
    from posekit.data import read_image
    from posekit.inference.predictor import (load_detections, parse_image_id, person_boxes,
                                   predict_reporting, save_prediction)

    if args.box and args.det_json:
        print('%s: error: give person boxes with --box or --det-json, not both' % PROG,
              file=sys.stderr)
        return 1
    try:
        # cheap checks first: the image and the boxes, before Paddle builds the model
        image = read_image(args.img_file)
        detections = load_detections(args.det_json) if args.det_json else None
        boxes, box_source = person_boxes(image, args.img_file, boxes=args.box,
                                         detections=detections, image_id=parse_image_id(args.image_id),
                                         score_threshold=args.det_thre)
        if len(boxes) == 0:
            which = ('image id %s' % args.image_id if args.image_id is not None
                     else os.path.basename(args.img_file))
            raise ValueError('no person in %s for %s (%s); lower --det-thre or give --box'
                             % (args.det_json, which, box_source))

        from posekit.checkpoint import load_checkpoint
        from posekit.config import config_from_args
        from posekit.inference.deploy_config import DeployConfig
        from posekit.models import build_model
        from posekit.inference.predictor import TopDownPredictor
        from posekit.runtime import DygraphRunner
        cfg = config_from_args(args)
        model_file = args.model_file or cfg.TEST.MODEL_FILE
        if not model_file:
            raise ValueError('no weights: pass --model-file (or set TEST.MODEL_FILE)')
        deploy_config = DeployConfig.from_cfg(cfg)
        model = build_model(cfg)
        load_checkpoint(model, model_file)
        runner = DygraphRunner(model, input_size=deploy_config.input_size, name=deploy_config.model)
        predictor = TopDownPredictor(deploy_config, runner, flip_test=args.flip_test)
        result = predict_reporting(predictor, image, boxes)
        meta = {'image': os.path.abspath(args.img_file), 'model': deploy_config.model,
                'model_file': os.path.abspath(model_file), 'runtime': 'paddle dygraph',
                'flip_test': predictor.flip_test, 'box_source': box_source}
        jpg, js = save_prediction(args.output, args.img_file, image, result, deploy_config, meta,
                                  kpt_thr=args.kpt_thre, draw_names=args.draw_names)
    except (ValueError, OSError) as e:
        # DatasetError (image), DetectionFileError, BoxError, ConfigError, CheckpointError are
        # ValueErrors; a missing weights file is an OSError: the message says it all.
        print('%s: error: %s' % (PROG, one_line(e)), file=sys.stderr)
        return 1

    h, w = image.shape[:2]
    t = result.timings
    print('image  : %s (%dx%d), %d person%s from %s'
          % (args.img_file, w, h, len(result), '' if len(result) == 1 else 's', box_source))
    print('model  : %s (%s), flip test %s' % (deploy_config.model, model_file,
                                              'on' if predictor.flip_test else 'off'))
    for n, rec in enumerate(result.to_records()):
        print('person %d: box [%s], mean keypoint score %.3f'
              % (n, ', '.join('%.1f' % v for v in rec['box']), rec['pose_score']))
    print('time   : pre-process %.1f ms, inference %.1f ms, decode %.1f ms'
          % (t['preprocess'], t['inference'], t['decode']))
    print('written: %s' % jpg)
    print('         %s' % js)
    if args.show:
        from posekit.inference.visualize import show_image
        import cv2
        if not show_image(cv2.imread(jpg), 'infer: %s' % os.path.basename(args.img_file)):
            warnings.warn('--show: no display (or OpenCV without GUI); see %s' % jpg)
    return 0


if __name__ == '__main__':
    sys.exit(main())
