"""Generate a synthetic pose dataset (cartoon people) in the MPII and/or COCO layout.

Run ``python pose_estimation/make_synthetic.py --help`` for the options; the code is ``posekit.tools.make_synthetic``.
"""
import sys

from posekit.tools.make_synthetic import main

if __name__ == '__main__':
    sys.exit(main())
