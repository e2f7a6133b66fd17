"""Train a pose model: ``python pose_estimation/train.py --cfg FILE [options] [KEY VALUE ...]``.

Run ``python pose_estimation/train.py --help`` for the options; the code is ``posekit.tools.train``.
"""
import sys

from posekit.tools.train import main

if __name__ == '__main__':
    sys.exit(main())
