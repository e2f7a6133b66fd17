"""What the benchmark scripts measure, as a library (the scripts keep orchestration and tables).

* :mod:`.models` - seeded random-weight models conditioned to run like trained ones
  (BatchNorm statistics from synthetic pictures, heatmaps peaking near 1);
* :mod:`.export_cache` - one folder per benchmarked model: weights, exported models and the
  int8 copy made once and reused while the config/weights fingerprints match;
* :mod:`.timing` - per-person latency of a predictor and the summary of repeated timings;
* :mod:`.throughput` - data loading, training steps and validation in samples/s;
* :mod:`.machine`, :mod:`.failures` - library versions and CPU name; one-line failure reasons.

Nothing here imports Paddle at import time.
"""
from posekit.benchmark.failures import last_error_line, short_reason
from posekit.benchmark.machine import cpu_name, versions
from posekit.benchmark.timing import summary, time_predictor

__all__ = ['summary', 'time_predictor', 'short_reason', 'last_error_line', 'versions', 'cpu_name']
