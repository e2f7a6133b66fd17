"""Parameters, MACs and output shape of the model of an experiment.

Run ``python pose_estimation/model_info.py --help`` for the options; the code is ``posekit.tools.model_info``.
"""
import sys

from posekit.tools.model_info import main

if __name__ == '__main__':
    sys.exit(main())
