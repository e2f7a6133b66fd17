"""What a benchmark ran on: library versions and the CPU name (no Paddle import)."""
import platform
from importlib import metadata

__all__ = ['VERSIONED_DISTRIBUTIONS', 'versions', 'cpu_name']

VERSIONED_DISTRIBUTIONS = ('paddlepaddle', 'paddle2onnx', 'onnxruntime', 'onnx', 'numpy')


def versions():
    """``{distribution: version or None}``, read from the installed metadata: a process that
    only orchestrates benchmarks need not import Paddle to report them."""
    out = {}
    for dist in VERSIONED_DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def cpu_name():
    try:
        with open('/proc/cpuinfo', 'r') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
