"""Open the right runner for an exported model file: ``open_runner('out/model.onnx')``.

``'onnx'`` for a ``.onnx`` file (``model.onnx``, ``model_int8.onnx``) or a folder holding one;
``'paddle'`` for a Paddle inference model (``model.json`` / legacy ``.pdmodel`` with its
``.pdiparams``, any of those files, or their folder). A kind given explicitly wins over what the
path looks like. Nothing here imports Paddle; only opening a Paddle runner does.
"""
import os

from posekit.runtime.base import ModelLoadError
from posekit.runtime.onnx import OnnxRunner
from posekit.runtime.paddle_inference import PADDLE_PREFIX, PaddleInferenceRunner

__all__ = ['RUNNER_KINDS', 'open_runner', 'build_runner', 'exported_kind', 'runner_kind']

RUNNER_KINDS = ('onnx', 'paddle')
PADDLE_EXTENSIONS = ('.json', '.pdmodel', '.pdiparams')
# weights without a graph: loaded into a model built from its config, not run by a runtime
CHECKPOINT_EXTENSIONS = ('.pdparams', '.pdckpt', '.pth', '.tar', '.pt')


def exported_kind(path):
    """'onnx' or 'paddle' when ``path`` looks like an exported model (by its extension, or
    what its folder holds), else None. Does not check that the files can be loaded."""
    path = str(path or '')
    if os.path.isdir(path):
        names = os.listdir(path)
        if any(n.endswith('.onnx') for n in names):
            return 'onnx'
        if any(n.endswith(('.json', '.pdmodel')) and os.path.splitext(n)[0] + '.pdiparams'
               in names for n in names):
            return 'paddle'
        return None
    ext = os.path.splitext(path)[1].lower()
    if ext == '.onnx':
        return 'onnx'
    if ext in PADDLE_EXTENSIONS:
        return 'paddle'
    if not ext and any(os.path.isfile(path + e) for e in ('.json', '.pdmodel')):
        return 'paddle'  # the prefix paddle.jit.save was given
    return None


def runner_kind(path):
    """:func:`exported_kind`, or a one-line :class:`ModelLoadError` saying what was expected."""
    kind = exported_kind(path)
    if kind is not None:
        return kind
    if not path:
        raise ModelLoadError('no model given')
    if not os.path.exists(path):
        raise ModelLoadError('model not found: %s' % path)
    expected = ('expected a .onnx file, a Paddle inference model (%s.json or .pdmodel with '
                '.pdiparams) or a folder holding one' % PADDLE_PREFIX)
    if os.path.isdir(path):
        raise ModelLoadError('%s holds no exported model: %s' % (path, expected))
    if str(path).lower().endswith(CHECKPOINT_EXTENSIONS):
        raise ModelLoadError('%s holds weights only (a checkpoint), not a model a runtime can '
                             'run: export it with export.py, or load it into the model of its '
                             'config' % path)
    raise ModelLoadError('cannot tell which runtime runs %s: %s' % (path, expected))


def build_runner(kind, model_path, threads=None):
    """``'onnx'`` -> :class:`OnnxRunner`, ``'paddle'`` -> :class:`PaddleInferenceRunner`."""
    key = str(kind).strip().lower()
    if key == 'onnx':
        return OnnxRunner(model_path, threads=threads)
    if key == 'paddle':
        return PaddleInferenceRunner(model_path, threads=threads)
    raise ModelLoadError("unknown runtime %r; use one of: %s" % (kind, ', '.join(RUNNER_KINDS)))


def open_runner(path, kind=None, threads=None):
    """The runner for an exported model at ``path``; ``kind`` ('onnx' or 'paddle') overrides
    what the path looks like. ``threads``: CPU threads (default: physical cores)."""
    return build_runner(kind or runner_kind(path), path, threads=threads)
