"""Keypoints of the persons in images or a video with a trained model (Paddle dygraph).

    python pose_estimation/infer.py --cfg experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml \\
        --model-file output/simplenet_coco_256x192.pdparams --img-file images/people.jpg \\
        --box 280 44 219 347 --box 40 110 175 175

    python pose_estimation/infer.py --cfg experiments/coco/simplepose/simplepose_512x512.yaml \\
        --model-file output/simplepose.pdparams --img images/people.jpg

The second, a bottom-up model, finds every person of the image itself (no --box, no detector).
The front end of :mod:`posekit.inference.app` for a model built from its training config and
weights (``--cfg``, ``--model-file``, ``KEY VALUE`` overrides); ``deploy.py`` is the same
application for exported models and gives the same keypoints. Inputs, person boxes, outputs
(``<output>/<stem>_pose.jpg`` and ``<stem>_keypoints.json``, ``<stem>_pose.mp4`` for a video)
and errors are the application's; ``--show`` also opens each drawn picture in a window.
"""
import argparse
import os
import sys

from posekit.cli import run_tool
from posekit.inference import app

PROG = 'infer'


def parse_args(argv=None):
    from posekit.config import add_config_arguments
    parser = argparse.ArgumentParser(
        prog=PROG, description='Pose estimation on images or a video with a Paddle model: '
                               'top-down (person boxes) or bottom-up (every person found).')
    app.add_arguments(parser, default_output=os.path.join('output', 'infer'))
    parser.add_argument('--model-file', default='',
                        help='weights (.pdparams, or a reference .pth); default TEST.MODEL_FILE')
    parser.add_argument('--show', action='store_true',
                        help='also show each drawn picture in a window (when a display exists)')
    add_config_arguments(parser)
    return parser.parse_args(argv)


def _body(argv):
    args = parse_args(argv)
    from posekit.outputs import check_output_folder
    check_output_folder(args.output, '--output')  # before the model is loaded

    def load():
        from posekit.config import config_from_args
        from posekit.inference.loading import open_trained
        return open_trained(config_from_args(args), args.model_file, threads=args.threads)
    return app.run(args, load, show=args.show)


def main(argv=None):
    return run_tool(PROG, _body, argv)


if __name__ == '__main__':
    sys.exit(main())
