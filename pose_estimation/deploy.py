"""Run an exported pose model (ONNX Runtime or Paddle Inference) on images or a video.

Run ``python pose_estimation/deploy.py --help`` for the options; the code is ``posekit.tools.deploy``.
"""
import sys

from posekit.tools.deploy import main

if __name__ == '__main__':
    sys.exit(main())
