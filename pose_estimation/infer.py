"""Keypoints of the persons in one image with a trained model (Paddle dygraph).

Run ``python pose_estimation/infer.py --help`` for the options; the code is ``posekit.tools.infer``.
"""
import sys

from posekit.tools.infer import main

if __name__ == '__main__':
    sys.exit(main())
