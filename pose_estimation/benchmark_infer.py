"""CPU inference latency per person: Paddle dygraph, Paddle Inference, ONNX Runtime fp32 / int8.

Run ``python pose_estimation/benchmark_infer.py --help`` for the options; the code is ``posekit.tools.benchmark_infer``.
"""
import sys

from posekit.tools.benchmark_infer import main

if __name__ == '__main__':
    sys.exit(main())
