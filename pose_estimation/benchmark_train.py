"""Training-side throughput on this machine: data loading, training steps, validation.

Run ``python pose_estimation/benchmark_train.py --help`` for the options; the code is ``posekit.tools.benchmark_train``.
"""
import sys

from posekit.tools.benchmark_train import main

if __name__ == '__main__':
    sys.exit(main())
