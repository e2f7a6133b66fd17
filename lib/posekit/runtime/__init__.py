"""Run a pose model on CPU: one runner contract for every backend.

    runner = open_runner('output/export/coco/simplenet/256x192_d256x3_adam_lr1e-3/model.onnx')
    check_io(runner, DeployConfig.load(deploy_config_path(runner.model_path)))
    heatmaps = runner(batch)        # float32 (B, 3, H, W) in -> float32 (B, K, H/4, W/4) out

* :mod:`.base` - the contract (:class:`Runner`: checks, chunking of fixed-batch models),
  :func:`check_io`, :class:`ModelLoadError`;
* :mod:`.onnx` - :class:`OnnxRunner`, ONNX Runtime (no Paddle needed);
* :mod:`.paddle_inference` - :class:`PaddleInferenceRunner`, Paddle Inference with oneDNN;
* :mod:`.dygraph` - :class:`DygraphRunner`, a ``paddle.nn.Layer`` (imports Paddle; loaded on
  first use of the name, so ``import posekit.runtime`` stays free of Paddle);
* :mod:`.factory` - :func:`open_runner` (the runner for a file), :func:`build_runner`.

Validation, inference, export checks and benchmarks all take a runner.
"""
from posekit.runtime.base import (ModelLoadError, Runner, RunnerInputError, check_io,
                                  check_shapes, physical_cores)
from posekit.runtime.factory import (RUNNER_KINDS, build_runner, exported_kind, open_runner,
                                     runner_kind)
from posekit.runtime.onnx import OnnxRunner, onnx_model_file, ort_session_options
from posekit.runtime.paddle_inference import PaddleInferenceRunner, paddle_model_files

__all__ = ['Runner', 'ModelLoadError', 'RunnerInputError', 'OnnxRunner', 'PaddleInferenceRunner',
           'DygraphRunner', 'check_io', 'check_shapes', 'open_runner', 'build_runner',
           'exported_kind', 'runner_kind', 'ort_session_options', 'paddle_model_files',
           'onnx_model_file', 'physical_cores', 'RUNNER_KINDS']


def __getattr__(name):
    # DygraphRunner imports paddle: load it only when asked for (the ONNX deploy path never is)
    if name == 'DygraphRunner':
        from posekit.runtime.dygraph import DygraphRunner
        return DygraphRunner
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
