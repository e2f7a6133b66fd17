"""Validate a pose model: ``python pose_estimation/valid.py --cfg FILE --model-file F [options]``.

Run ``python pose_estimation/valid.py --help`` for the options; the code is ``posekit.tools.valid``.
"""
import sys

from posekit.tools.valid import main

if __name__ == '__main__':
    sys.exit(main())
