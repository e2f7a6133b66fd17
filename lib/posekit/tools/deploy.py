"""Run an exported pose model (ONNX Runtime or Paddle Inference) on images or a video.

    python pose_estimation/deploy.py --model output/export/model.onnx --img images/people.jpg \\
        --box 280 44 219 347
    python pose_estimation/deploy.py --model output/export/model.onnx --video walk.mp4 --detector hog
    python pose_estimation/deploy.py --type Paddle --model output/export/model.json --img-dir images/

The front end of :mod:`posekit.inference.app` for an exported model: the deploy config beside it
(``deploy_config.json``, or ``--config``) gives the input spec, codec and joints, so the
keypoints are those of ``infer.py``. A top-down model runs at the input size it was exported
with (to run another size, export again with ``MODEL.IMAGE_SIZE W,H`` appended to export.py's
command); a bottom-up model (simplepose: ``"pipeline": "bottomup"`` in its deploy config) takes
each whole image at its own size and finds every person, with no --box and no detector.
Running an ONNX model needs no Paddle.
"""
import argparse
import os
import sys

from posekit.cli import run_tool
from posekit.inference import app

PROG = 'deploy'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG, description='Pose estimation with an exported model (ONNX Runtime or Paddle '
                               'Inference) on images or a video: top-down (person boxes) or '
                               'bottom-up (every person found).')
    app.add_arguments(parser, default_output=os.path.join('output', 'deploy'))
    parser.add_argument('--model', required=True,
                        help='exported model: .onnx, or Paddle model.json/.pdmodel (or its folder)')
    parser.add_argument('--type', type=str.lower, choices=('onnx', 'paddle'), default=None,
                        help='runtime: ONNX (onnxruntime) or Paddle (Paddle Inference); default '
                             'from the model file name')
    parser.add_argument('--config', default='',
                        help='deploy config (default: deploy_config.json beside the model)')
    return parser.parse_args(argv)


def _body(argv):
    args = parse_args(argv)
    from posekit.outputs import check_output_folder
    check_output_folder(args.output, '--output')  # before the model is loaded

    def load():
        from posekit.inference.loading import open_exported
        return open_exported(args.model, kind=args.type, config_path=args.config,
                             threads=args.threads)
    return app.run(args, load)


def main(argv=None):
    return run_tool(PROG, _body, argv)


if __name__ == '__main__':
    sys.exit(main())
