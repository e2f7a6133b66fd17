"""The model side of a prediction run: a runner, the deploy config that describes it, and a few
words on what was loaded (for the printed header and the output json).

* :func:`open_exported` - an exported model (ONNX Runtime or Paddle Inference) with the
  ``deploy_config.json`` beside it; imports Paddle only for a Paddle Inference model;
* :func:`open_trained` - a Paddle model built from its training config with its weights
  (``.pdparams`` or a reference ``.pth``), run in dygraph.

Both return ``(runner, deploy_config, description)``; the predictor of the config's pipeline
(:func:`posekit.inference.predictor.build_predictor`) takes the first two.
"""
import os

from posekit.errors import PosekitInputError
from posekit.inference.deploy_config import DeployConfig, deploy_config_path

__all__ = ['RUNTIME_NAMES', 'open_exported', 'open_trained']

# How each runner kind is named in the header and in the output json's "runtime".
RUNTIME_NAMES = {'onnx': 'onnxruntime', 'paddle': 'paddle inference', 'dygraph': 'paddle dygraph'}


def open_exported(model_path, kind=None, config_path='', threads=None):
    """``(runner, deploy_config, description)`` for an exported model.

    ``kind`` 'onnx' or 'paddle' (default: from the file name, see
    :func:`posekit.runtime.runner_kind`); ``config_path`` the deploy config (default:
    ``deploy_config.json`` beside the model). The model is checked against the config: a
    top-down export has the fixed input size of its config, a bottom-up one (SimplePose) takes
    any height and width (:func:`posekit.runtime.check_io`).
    """
    from posekit.runtime import check_io, open_runner, runner_kind
    config_path = config_path or deploy_config_path(model_path)
    deploy_config = DeployConfig.load(config_path)
    kind = str(kind).lower() if kind else runner_kind(model_path)
    runner = open_runner(model_path, kind=kind, threads=threads)
    check_io(runner, deploy_config)
    description = {'model_file': os.path.abspath(runner.model_path),
                   'runtime': RUNTIME_NAMES[kind],
                   'deploy_config': os.path.abspath(config_path)}
    return runner, deploy_config, description


def open_trained(cfg, model_file='', threads=None):
    """``(runner, deploy_config, description)`` for the model of a training config ``cfg``
    with the weights ``model_file`` (default ``TEST.MODEL_FILE``), run in Paddle dygraph.
    ``threads``: CPU threads of Paddle's math library (default: Paddle's own choice)."""
    model_file = model_file or cfg.TEST.MODEL_FILE
    if not model_file:
        raise PosekitInputError('no weights: pass --model-file (or set TEST.MODEL_FILE)')
    from posekit.checkpoint import load_checkpoint
    from posekit.models import build_model
    from posekit.runtime import DygraphRunner
    if threads:
        from paddle.base import core
        core.set_num_threads(int(threads))
    deploy_config = DeployConfig.from_cfg(cfg)
    model = build_model(cfg)
    load_checkpoint(model, model_file)
    runner = DygraphRunner(model, input_size=deploy_config.input_size, name=deploy_config.model)
    description = {'model_file': os.path.abspath(model_file), 'runtime': RUNTIME_NAMES['dygraph']}
    return runner, deploy_config, description
