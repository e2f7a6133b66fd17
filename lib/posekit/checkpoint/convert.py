"""From a checkpoint file to a state dict with Paddle names.

Unwrapping (:func:`extract_state_dict`)
    The reference repositories store weights as a plain state dict, ``{'state_dict': ...}``
    ([MS] ``checkpoint.pth.tar``, [LPN]/[CAV] ``checkpoint.pth``), ``{'best_state_dict': ...}``,
    ``{'model': ...}`` or ``{'weights': ...}`` (SimplePose ``PoseNet_52_epoch.pth``, beside its
    optimizer state, SIMPLEPOSE_SPEC 1), with or without the DataParallel ``module.`` prefix
    (REFERENCE_SPEC 2.7); all of these are accepted.

Converting (:func:`torch_to_paddle`, REFERENCE_SPEC Appendix A)
    ``running_mean``/``running_var`` -> ``_mean``/``_variance``; ``num_batches_tracked`` dropped;
    LayerNorm gains stored as (P, 1, 1) reshaped to Paddle's (P,); Linear weights transposed;
    floats as float32. Nothing else is renamed or dropped.

:func:`read_checkpoint` does both for any supported file (PyTorch or Paddle).
"""
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from posekit.checkpoint.errors import CheckpointFormatError, _require_file, _short_list
from posekit.checkpoint.paddle_reader import NAME_TABLE, read_paddle_file
from posekit.checkpoint.torch_reader import TORCH_SUFFIXES, _read_torch, torch_file_format

PADDLE_SUFFIXES = ('.pdparams', '.pdckpt')  # .pdckpt: a training checkpoint (weights under 'state_dict')


@dataclass
class CheckpointInfo:
    """What :func:`read_checkpoint` found in a file."""
    path: str
    format: str = ''          # 'torch-zip', 'torch-legacy' or 'paddle'
    reader: str = ''          # 'torch 2.x', 'python' or 'paddle'
    container: str = ''       # 'plain' or the entry holding the weights ('state_dict', ...)
    module_prefix: bool = False
    num_source_tensors: int = 0
    dropped: list = field(default_factory=list)    # num_batches_tracked keys
    renamed: int = 0          # BN statistics renamed to _mean/_variance
    transposed: list = field(default_factory=list)  # Linear weights
    reshaped: list = field(default_factory=list)    # LayerNorm (P,1,1) -> (P,)

    def describe(self):
        fmt = {'torch-zip': 'PyTorch zip format', 'torch-legacy': 'PyTorch legacy format',
               'paddle': 'Paddle state dict'}.get(self.format, self.format)
        where = 'plain state dict' if self.container == 'plain' else "entry '%s'" % self.container
        reader = 'the built-in reader, torch not used' if self.reader == 'python' else self.reader
        return '%s (read with %s), %s, %s' % (
            fmt, reader, where,
            "'module.' prefix stripped" if self.module_prefix else "no 'module.' prefix")


def _has_suffix(path, suffixes):
    low = path.lower()
    return any(low.endswith(s) for s in suffixes)


# --------------------------------------------------------------------------------------------
# unwrapping and conversion

# 'weights': SimplePose's released checkpoints ({'weights', 'optimizer_weight', 'train_loss',
# 'epoch'}); the other entries are ignored.
_CONTAINER_KEYS = ('state_dict', 'best_state_dict', 'model', 'weights')


def _as_array(value):
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, 'numpy') and hasattr(value, 'shape'):  # a paddle Tensor
        return value.numpy()
    return None


def _tensor_dict(obj):
    """``obj`` as an OrderedDict of numpy arrays, or None if it is not a state dict."""
    if not isinstance(obj, dict) or not obj:
        return None
    out = OrderedDict()
    for k, v in obj.items():
        if k == NAME_TABLE:  # paddle.save's bookkeeping (read_paddle_file drops it already)
            continue
        arr = _as_array(v)
        if not isinstance(k, str) or arr is None:
            return None
        out[k] = arr
    return out or None


def _extract(obj, source=''):
    where = ' in %s' % source if source else ''
    state, container = _tensor_dict(obj), 'plain'
    if state is None and isinstance(obj, dict):
        for key in _CONTAINER_KEYS:
            state = _tensor_dict(obj.get(key))
            if state is not None:
                container = key
                break
    if state is None:
        if isinstance(obj, dict):
            raise CheckpointFormatError(
                'no state dict found%s: expected a dict of tensors or one under %s; top-level '
                'keys: %s' % (where, '/'.join("'%s'" % k for k in _CONTAINER_KEYS),
                              _short_list([repr(k) for k in obj])))
        raise CheckpointFormatError('no state dict found%s: the file holds a %s, not a dict of '
                                    'tensors' % (where, type(obj).__name__))
    stripped = OrderedDict()
    had_prefix = False
    for k, v in state.items():
        if k.startswith('module.'):
            k, had_prefix = k[len('module.'):], True
        if k in stripped:
            raise CheckpointFormatError("key '%s'%s appears both with and without the 'module.' "
                                        "prefix" % (k, where))
        stripped[k] = v
    return stripped, container, had_prefix


def extract_state_dict(obj):
    """The state dict inside a loaded checkpoint, as an OrderedDict of numpy arrays.

    Accepts a plain (Ordered)dict of tensors or a dict holding one under ``'state_dict'``,
    ``'best_state_dict'``, ``'model'`` or ``'weights'`` (looked for in that order: the
    [LPN]/[CAV] ``checkpoint.pth`` has both ``state_dict``, the latest weights, and
    ``best_state_dict``; SimplePose keeps its weights under ``'weights'``).
    A leading DataParallel ``module.`` is stripped.
    """
    return _extract(obj)[0]


def _model_entries(model):
    """state-dict key -> (owning layer, tensor) for every parameter and buffer of ``model``."""
    entries = {}
    for prefix, layer in model.named_sublayers(include_self=True):
        head = prefix + '.' if prefix else ''
        for name, tensor in list(layer._parameters.items()) + list(layer._buffers.items()):
            if tensor is not None:
                entries[head + name] = (layer, tensor)
    return entries


def _torch_to_paddle(state_dict, model=None, info=None):
    import paddle.nn as nn
    entries = _model_entries(model) if model is not None else {}
    out = OrderedDict()
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition('.')
        head = prefix + '.' if prefix else ''
        if leaf == 'num_batches_tracked':  # Paddle's BatchNorm keeps no counter
            if info is not None:
                info.dropped.append(key)
            continue
        if leaf in ('running_mean', 'running_var'):
            key = head + ('_mean' if leaf == 'running_mean' else '_variance')
            if info is not None:
                info.renamed += 1
        arr = np.asarray(value)
        if arr.dtype.kind == 'f' and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        target = entries.get(key)
        if target is not None:
            layer, tensor = target
            shape = tuple(tensor.shape)
            if isinstance(layer, nn.Linear) and arr.ndim == 2 and len(shape) == 2:
                # torch Linear weight is (out, in); Paddle's is (in, out)
                arr = np.ascontiguousarray(arr.T)
                if info is not None:
                    info.transposed.append(key)
            elif (isinstance(layer, nn.LayerNorm) and arr.shape != shape
                  and arr.size == int(np.prod(shape))):
                # torch LayerNorm([P, 1, 1]) stores (P, 1, 1); Paddle flattens it to (P,)
                arr = arr.reshape(shape)
                if info is not None:
                    info.reshaped.append(key)
        if key in out:
            raise CheckpointFormatError("two checkpoint entries map to the Paddle key '%s'" % key)
        out[key] = arr
    return out


def torch_to_paddle(state_dict, model=None):
    """Rename and reshape a PyTorch state dict for the Paddle ``model`` (REFERENCE_SPEC App. A).

    BN ``running_mean``/``running_var`` -> ``_mean``/``_variance``; ``num_batches_tracked``
    dropped; a LayerNorm (P,1,1) gain/bias reshaped to the model's (P,); a 2-D weight of a
    ``paddle.nn.Linear`` transposed; floating arrays as float32. Every other entry is kept
    as it is, so keys that do not fit are reported by the strict loader, never dropped here.
    ``model`` is only used to find LayerNorm and Linear parameters.
    """
    return _torch_to_paddle(state_dict, model)


def read_checkpoint(path, model=None, use_torch=None):
    """Read any supported checkpoint file: ``(state dict with Paddle names, CheckpointInfo)``.

    A ``torch.save`` file (recognised by its content, whatever its name) is read, unwrapped and
    converted with :func:`torch_to_paddle`; a ``.pdparams``/``.pdckpt`` file is read with
    :func:`read_paddle_file` (never ``paddle.load``: nothing in the file is executed) and
    unwrapped (a dict with ``'state_dict'``/``'model'`` is accepted as well).
    """
    _require_file(path)
    info = CheckpointInfo(path=path)
    fmt = torch_file_format(path)
    if fmt is not None or not _has_suffix(path, PADDLE_SUFFIXES):
        if fmt is None and not _has_suffix(path, TORCH_SUFFIXES):
            raise CheckpointFormatError(
                'unknown checkpoint type: %s (expected a Paddle .pdparams file or a PyTorch '
                '%s file)' % (path, '/'.join(TORCH_SUFFIXES[:3])))
        try:
            obj, info.reader, fmt = _read_torch(path, use_torch)
        except CheckpointFormatError as e:
            if fmt is None:
                raise CheckpointFormatError('%s (a file written by paddle.save must be named '
                                            '.pdparams)' % e) from e
            raise
        info.format = 'torch-' + (fmt or 'unknown')
        state, info.container, info.module_prefix = _extract(obj, path)
        info.num_source_tensors = len(state)
        state = _torch_to_paddle(state, model, info)
    else:
        obj = read_paddle_file(path)
        info.format, info.reader = 'paddle', 'paddle'
        state, info.container, info.module_prefix = _extract(obj, path)
        info.num_source_tensors = len(state)
    return state, info
