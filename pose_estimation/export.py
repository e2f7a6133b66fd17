"""Export a trained pose model to ONNX and/or a Paddle inference model, checked for parity.

Run ``python pose_estimation/export.py --help`` for the options; the code is ``posekit.tools.export``.
"""
import sys

from posekit.tools.export import main

if __name__ == '__main__':
    sys.exit(main())
