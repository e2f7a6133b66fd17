"""Convert a PyTorch reference checkpoint into a Paddle ``.pdparams`` file for one experiment.

Run ``python pose_estimation/convert.py --help`` for the options; the code is ``posekit.tools.convert``.
"""
import sys

from posekit.tools.convert import main

if __name__ == '__main__':
    sys.exit(main())
