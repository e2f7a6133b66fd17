"""Checkpoints: reading PyTorch and Paddle files, converting reference weights, strict loading.

Reading (:func:`read_torch_file`)
    A PyTorch file (``.pth``, ``.pth.tar``, ``.pt``) is unpickled with tensors turned into numpy
    arrays. With torch installed, ``torch.load(weights_only=True)`` does it; without torch, a
    small pure-python reader handles both on-disk formats of ``torch.save``: the zip archive
    (torch >= 1.6) and the legacy pickle stream (``_use_new_zipfile_serialization=False``, how the
    2018 PoseResNet releases and the SimpleNet checkpoint were written). Both readers only
    rebuild tensors and plain containers; a pickle that asks for anything else is refused, so
    no code from a checkpoint is ever executed.

Unwrapping (:func:`extract_state_dict`)
    The reference repositories store weights as a plain state dict, ``{'state_dict': ...}``
    ([MS] ``checkpoint.pth.tar``, [LPN]/[CAV] ``checkpoint.pth``), ``{'best_state_dict': ...}``
    or ``{'model': ...}``, with or without the DataParallel ``module.`` prefix (REFERENCE_SPEC
    2.7); all of these are accepted.

Converting (:func:`torch_to_paddle`, REFERENCE_SPEC Appendix A)
    ``running_mean``/``running_var`` -> ``_mean``/``_variance``; ``num_batches_tracked`` dropped;
    LayerNorm gains stored as (P, 1, 1) reshaped to Paddle's (P,); Linear weights transposed;
    floats as float32. Nothing else is renamed or dropped.

Loading (:func:`load_state_dict_strict`, :func:`load_checkpoint`, :func:`load_pretrained`)
    A checkpoint used for evaluation, resuming or conversion must fit the model exactly:
    missing, unexpected or mis-shaped keys raise :class:`CheckpointMismatchError` listing them,
    and every value is read back after loading. The reference tools loaded such files with
    ``strict=False``/``load_dict`` and silently evaluated random weights (REFERENCE_SPEC 10.15,
    10.16). Only the ImageNet initialisation (:func:`load_pretrained`) is partial by nature, and
    it reports what it did not load.
"""
import codecs
import logging
import os
import pickle
import struct
import tempfile
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    'CheckpointError', 'CheckpointFormatError', 'CheckpointMismatchError', 'CheckpointInfo',
    'PretrainedSummary', 'TORCH_INSTALL_HINT', 'torch_file_format', 'read_torch_file',
    'extract_state_dict', 'torch_to_paddle', 'read_checkpoint', 'load_state_dict_strict',
    'load_checkpoint', 'load_pretrained', 'save_paddle_state_dict', 'convert_checkpoint',
]

logger = logging.getLogger(__name__)

TORCH_INSTALL_HINT = ('install PyTorch to read it: pip install torch (the CPU build is enough, '
                      'e.g. pip install torch==2.13.0)')
TORCH_SUFFIXES = ('.pth', '.pth.tar', '.pt', '.tar', '.ckpt', '.bin')
PADDLE_SUFFIXES = ('.pdparams', '.pdckpt')  # .pdckpt: a training checkpoint (weights under 'state_dict')

# The first object of a legacy torch.save stream, then its protocol version.
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001
# Paddle's own bookkeeping entry in a pickled state dict (paddle.load normally removes it).
_PADDLE_NAME_TABLE = 'StructuredToParameterName@@'
_LIST_LIMIT = 10


class CheckpointError(ValueError):
    """A checkpoint that cannot be used."""


class CheckpointFormatError(CheckpointError):
    """A file that is not a readable checkpoint (or holds something other than weights)."""


class CheckpointMismatchError(CheckpointError):
    """A state dict whose keys or shapes do not fit the model."""


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


@dataclass
class PretrainedSummary:
    """What :func:`load_pretrained` loaded and what it left alone."""
    path: str
    loaded: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)      # in the file, not in the model
    misshaped: list = field(default_factory=list)       # (key, file shape, model shape)
    not_selected: list = field(default_factory=list)    # first component not in prefixes
    not_initialised: list = field(default_factory=list)  # model keys left as they were

    def describe(self):
        lines = ['pretrained weights %s: loaded %d tensors, %d model tensors not initialised '
                 'from the file, %d file tensors not in the model, %d mis-shaped, '
                 '%d outside the selected layers'
                 % (self.path, len(self.loaded), len(self.not_initialised), len(self.unexpected),
                    len(self.misshaped), len(self.not_selected))]
        if self.unexpected:
            lines.append('  not in the model: ' + _short_list(self.unexpected))
        if self.misshaped:
            lines.append('  mis-shaped (file vs model): ' + _short_list(
                ['%s %s vs %s' % (k, _shape(a), _shape(b)) for k, a, b in self.misshaped]))
        if self.not_initialised:
            lines.append('  not initialised: ' + _short_list(self.not_initialised))
        return '\n'.join(lines)


# --------------------------------------------------------------------------------------------
# helpers

def _shape(shape):
    return '(%s)' % ', '.join(str(int(s)) for s in shape) if len(shape) != 1 else '(%d,)' % shape[0]


def _short_list(items, limit=_LIST_LIMIT):
    items = list(items)
    text = ', '.join(items[:limit])
    if len(items) > limit:
        text += ', ... (%d more)' % (len(items) - limit)
    return text


def _require_file(path, what='checkpoint'):
    if not path or not os.path.isfile(path):
        raise FileNotFoundError('%s file not found: %s' % (what, path or "''"))


def _has_suffix(path, suffixes):
    low = path.lower()
    return any(low.endswith(s) for s in suffixes)


def _import_torch():
    """``torch`` or None. A separate function so that tests can pretend torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    return torch


# --------------------------------------------------------------------------------------------
# format detection

def torch_file_format(path):
    """``'zip'`` or ``'legacy'`` for a ``torch.save`` file, ``'torchscript'`` for a TorchScript
    archive, None for anything else. Cheap: looks at the zip directory or the first bytes."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return None
        if any(n.endswith('constants.pkl') or '/code/' in n for n in names):
            return 'torchscript'
        return 'zip' if any(n.endswith('data.pkl') for n in names) else None
    with open(path, 'rb') as f:
        head = f.read(64)
    # The legacy stream starts with the pickled magic number (a 10-byte LONG1).
    if b'\x8a\x0a' + _LEGACY_MAGIC.to_bytes(10, 'little') in head:
        return 'legacy'
    return None


# --------------------------------------------------------------------------------------------
# the pure-python reader

class _StorageType:
    """Stands for ``torch.FloatStorage`` etc. inside the pickle."""

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = dtype

    def __repr__(self):
        return 'torch.%s' % self.name


_BFLOAT16 = 'bfloat16'
_STORAGE_TYPES = {
    'FloatStorage': np.dtype('float32'),
    'DoubleStorage': np.dtype('float64'),
    'HalfStorage': np.dtype('float16'),
    'BFloat16Storage': _BFLOAT16,
    'LongStorage': np.dtype('int64'),
    'IntStorage': np.dtype('int32'),
    'ShortStorage': np.dtype('int16'),
    'CharStorage': np.dtype('int8'),
    'ByteStorage': np.dtype('uint8'),
    'BoolStorage': np.dtype('bool'),
}


def _raw_dtype(dtype):
    """numpy dtype in which a storage's bytes are read (bfloat16 as its uint16 bit pattern)."""
    return np.dtype('uint16') if dtype is _BFLOAT16 else dtype


class _Storage:
    """A storage's elements as a flat numpy array (bfloat16 kept as raw uint16)."""

    def __init__(self, data, dtype):
        self.data = data
        self.dtype = dtype


class _TensorMarker:
    """Stands for ``torch.Tensor`` / ``torch.nn.Parameter`` in ``_rebuild_from_type_v2``."""


_SCAN = object()  # the storage of every tensor during pass 1 of the legacy reader


def _to_array(storage, offset, size, stride):
    if storage is _SCAN:
        return None
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError('tensor without a storage')
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    offset = int(offset)
    data = storage.data
    if len(size) != len(stride):
        raise pickle.UnpicklingError('tensor with %d sizes but %d strides' % (len(size), len(stride)))
    if any(n == 0 for n in size):
        out = np.zeros(size, dtype=data.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if offset < 0 or any(s < 0 for s in stride) or any(n < 0 for n in size) or last >= data.size:
            raise pickle.UnpicklingError('tensor view (offset %d, size %s, stride %s) exceeds its '
                                         'storage of %d elements' % (offset, size, stride, data.size))
        view = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=tuple(s * data.itemsize for s in stride),
            writeable=False)
        out = np.array(view)  # owned, contiguous, writeable copy
    if storage.dtype is _BFLOAT16:
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _to_array(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _to_array(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if new_type is not _TensorMarker or func not in (_rebuild_tensor, _rebuild_tensor_v2,
                                                     _rebuild_parameter):
        raise pickle.UnpicklingError('unsupported tensor subclass in checkpoint')
    return func(*args)


def _numpy_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _safe_global(module, name):
    """The only globals a checkpoint may name: tensor rebuilders, storages, plain containers and
    numpy scalars/arrays (e.g. a ``perf`` value). None for anything else."""
    if module == 'collections' and name == 'OrderedDict':
        return OrderedDict
    if module == 'torch._utils':
        return {'_rebuild_tensor': _rebuild_tensor, '_rebuild_tensor_v2': _rebuild_tensor_v2,
                '_rebuild_parameter': _rebuild_parameter,
                '_rebuild_parameter_with_state': _rebuild_parameter}.get(name)
    if module == 'torch' and name in _STORAGE_TYPES:
        return _StorageType(name, _STORAGE_TYPES[name])
    if module == 'torch' and name == 'Size':
        return tuple
    if (module, name) in (('torch', 'Tensor'), ('torch._tensor', 'Tensor'),
                          ('torch.nn.parameter', 'Parameter')):
        return _TensorMarker
    if module == 'torch._tensor' and name == '_rebuild_from_type_v2':
        return _rebuild_from_type_v2
    if module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        if name == 'scalar':
            return _numpy_scalar()
        if name == '_reconstruct':
            return _numpy_reconstruct()
    if module == 'numpy' and name in ('dtype', 'ndarray'):
        return getattr(np, name)
    if module == '_codecs' and name == 'encode':
        return codecs.encode
    if module in ('builtins', '__builtin__') and name in ('set', 'frozenset', 'slice', 'complex'):
        return getattr(__import__('builtins'), name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds tensors as numpy arrays and refuses every other global."""

    def __init__(self, file, load_storage=None):
        super().__init__(file, encoding='utf-8')
        self._load_storage = load_storage

    def find_class(self, module, name):
        obj = _safe_global(module, name)
        if obj is None:
            raise pickle.UnpicklingError(
                "refusing to load '%s.%s': a checkpoint may only hold tensors and plain "
                "containers" % (module, name))
        return obj

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise pickle.UnpicklingError('unexpected persistent id in checkpoint header')
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError('unsupported persistent id %r' % (pid,))
        kind = pid[0].decode('ascii') if isinstance(pid[0], bytes) else pid[0]
        if kind != 'storage':
            raise pickle.UnpicklingError(
                "unsupported persistent id '%s' (the file holds a pickled model object, not a "
                "state dict)" % kind)
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError('unsupported storage type %r' % (storage_type,))
        return self._load_storage(storage_type, *pid[2:])


def _frombuffer(buf, dtype, little_endian=True):
    raw = _raw_dtype(dtype)
    if len(buf) % raw.itemsize:
        raise pickle.UnpicklingError('storage of %d bytes is not a whole number of %s elements'
                                     % (len(buf), raw))
    data = np.frombuffer(buf, dtype=raw.newbyteorder('<' if little_endian else '>'))
    if not little_endian and raw.itemsize > 1:
        data = data.astype(raw.newbyteorder('<'))
    return data


def _read_zip(path):
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in zf.namelist() if n.endswith('data.pkl')]
        if len(pkls) != 1:
            raise pickle.UnpicklingError('expected one data.pkl in the archive, found %d' % len(pkls))
        prefix = pkls[0][:-len('data.pkl')]
        little = True
        if prefix + 'byteorder' in zf.namelist():
            little = zf.read(prefix + 'byteorder').decode('ascii').strip() != 'big'
        cache = {}

        def load_storage(storage_type, key, location=None, numel=None, *rest):
            key = str(key)
            if key not in cache:
                try:
                    buf = zf.read(prefix + 'data/' + key)
                except KeyError:
                    raise pickle.UnpicklingError('storage %s missing from the archive' % key) from None
                data = _frombuffer(buf, storage_type.dtype, little)
                if numel is not None and data.size < int(numel):
                    raise pickle.UnpicklingError('storage %s is truncated' % key)
                cache[key] = _Storage(data, storage_type.dtype)
            return cache[key]

        with zf.open(pkls[0]) as f:
            return _RestrictedUnpickler(f, load_storage).load()


def _read_legacy(path):
    with open(path, 'rb') as f:
        header = _RestrictedUnpickler(f)
        if header.load() != _LEGACY_MAGIC:
            raise pickle.UnpicklingError('not a legacy torch.save file (bad magic number)')
        protocol = _RestrictedUnpickler(f).load()
        if protocol != _LEGACY_PROTOCOL:
            raise pickle.UnpicklingError('unsupported legacy protocol version %r' % (protocol,))
        sys_info = _RestrictedUnpickler(f).load()
        little = bool(sys_info.get('little_endian', True)) if isinstance(sys_info, dict) else True
        start = f.tell()

        # Pass 1: find the storages (their element types) without building tensors. The raw
        # storage bytes follow the main pickle, so their sizes are only known after it.
        found = {}

        def scan_storage(storage_type, key, location=None, numel=None, view_metadata=None):
            found[str(key)] = storage_type.dtype
            return _SCAN

        _RestrictedUnpickler(f, scan_storage).load()
        keys = _RestrictedUnpickler(f).load()
        if not isinstance(keys, (list, tuple)):
            raise pickle.UnpicklingError('bad storage key list in legacy checkpoint')
        storages = {}
        for key in keys:
            key = str(key)
            if key not in found:
                raise pickle.UnpicklingError('storage %s has no type in the checkpoint' % key)
            head = f.read(8)
            if len(head) != 8:
                raise pickle.UnpicklingError('legacy checkpoint truncated at storage %s' % key)
            numel = struct.unpack('<q' if little else '>q', head)[0]
            if numel < 0:
                raise pickle.UnpicklingError('bad size of storage %s' % key)
            nbytes = numel * _raw_dtype(found[key]).itemsize
            buf = f.read(nbytes)
            if len(buf) != nbytes:
                raise pickle.UnpicklingError('legacy checkpoint truncated at storage %s' % key)
            storages[key] = _Storage(_frombuffer(buf, found[key], little), found[key])

        # Pass 2: the real objects, tensors built from the storages read above.
        def load_storage(storage_type, key, location=None, numel=None, view_metadata=None):
            try:
                root = storages[str(key)]
            except KeyError:
                raise pickle.UnpicklingError('storage %s missing from the checkpoint' % key) from None
            if view_metadata is None:
                return root
            _, view_offset, view_size = view_metadata
            view_offset, view_size = int(view_offset), int(view_size)
            if view_offset < 0 or view_offset + view_size > root.data.size:
                raise pickle.UnpicklingError('storage view exceeds storage %s' % key)
            return _Storage(root.data[view_offset:view_offset + view_size], root.dtype)

        f.seek(start)
        return _RestrictedUnpickler(f, load_storage).load()


def _read_python(path, fmt):
    if fmt == 'zip':
        return _read_zip(path)
    if fmt == 'legacy':
        return _read_legacy(path)
    raise pickle.UnpicklingError('not a torch.save file')


# --------------------------------------------------------------------------------------------
# reading with torch

def _tensors_to_numpy(obj, torch):
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    if isinstance(obj, dict):
        out = obj.__class__() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _tensors_to_numpy(v, torch)
        return out
    if isinstance(obj, list):
        return [_tensors_to_numpy(v, torch) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_tensors_to_numpy(v, torch) for v in obj)
    return obj


def _read_with_torch(path, torch):
    obj = torch.load(path, map_location='cpu', weights_only=True)
    return _tensors_to_numpy(obj, torch)


def _read_torch(path, use_torch=None):
    """Returns (object, reader name, format)."""
    _require_file(path)
    fmt = torch_file_format(path)
    if fmt == 'torchscript':
        raise CheckpointFormatError('%s is a TorchScript archive, not a state dict; save '
                                    'model.state_dict() with torch.save instead' % path)
    torch = None if use_torch is False else _import_torch()
    if use_torch and torch is None:
        raise CheckpointFormatError('PyTorch is not installed; ' + TORCH_INSTALL_HINT)
    torch_error = None
    if torch is not None:
        try:
            return _read_with_torch(path, torch), 'torch %s' % torch.__version__.split('+')[0], fmt
        except Exception as e:  # weights_only refusal, corrupt file, unknown format, ...
            torch_error = e
            if use_torch:
                raise CheckpointFormatError('cannot read %s with torch: %s'
                                            % (path, str(e).strip().splitlines()[0])) from e
            logger.debug('torch.load(weights_only=True) failed for %s: %s', path, e)
    if fmt is None:
        msg = ('%s is not a PyTorch checkpoint (neither the zip format of torch >= 1.6 nor the '
               'legacy torch.save format)' % path)
        if torch_error is not None:
            msg += '; torch.load said: %s' % str(torch_error).strip().splitlines()[0]
        raise CheckpointFormatError(msg)
    try:
        return _read_python(path, fmt), 'python', fmt
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            IndexError, struct.error, zipfile.BadZipFile, UnicodeDecodeError) as e:
        msg = 'cannot read %s: %s' % (path, e)
        if torch is None and use_torch is None:  # torch is not installed
            msg += (' (the built-in reader handles tensors and plain containers only; torch is '
                    'not installed: %s)' % TORCH_INSTALL_HINT)
        elif torch_error is not None:
            msg += '; torch.load said: %s' % str(torch_error).strip().splitlines()[0]
        raise CheckpointFormatError(msg) from e


def read_torch_file(path, use_torch=None):
    """Unpickle a ``torch.save`` file with every tensor as a numpy array.

    ``use_torch``: None = torch if importable (``weights_only=True``), else the built-in reader;
    False = always the built-in pure-python reader; True = torch or an error. The built-in reader
    is also the fallback when torch's weights-only unpickler refuses a harmless object (e.g. a
    numpy ``perf`` scalar in an [MS] ``checkpoint.pth.tar``). bfloat16 tensors become float32.
    """
    return _read_torch(path, use_torch)[0]


# --------------------------------------------------------------------------------------------
# unwrapping and conversion

_CONTAINER_KEYS = ('state_dict', 'best_state_dict', 'model')


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
        if k == _PADDLE_NAME_TABLE:
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
    ``'best_state_dict'`` or ``'model'`` (looked for in that order: the [LPN]/[CAV]
    ``checkpoint.pth`` has both ``state_dict``, the latest weights, and ``best_state_dict``).
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
    converted with :func:`torch_to_paddle`; a ``.pdparams`` file is read with ``paddle.load``
    and unwrapped (a dict with ``'state_dict'``/``'model'`` is accepted as well).
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
        import paddle
        try:
            obj = paddle.load(path, return_numpy=True)
        except Exception as e:
            raise CheckpointFormatError('cannot read %s with paddle.load: %s' % (path, e)) from e
        info.format, info.reader = 'paddle', 'paddle'
        state, info.container, info.module_prefix = _extract(obj, path)
        info.num_source_tensors = len(state)
    return state, info


# --------------------------------------------------------------------------------------------
# loading

def _np_dtype(tensor):
    name = str(tensor.dtype).replace('paddle.', '')
    try:
        return np.dtype(name)
    except TypeError:
        return None


def _mismatch_message(source, missing, unexpected, misshaped, mistyped):
    counts = []
    for n, word in ((len(missing), 'missing'), (len(unexpected), 'unexpected'),
                    (len(misshaped), 'mis-shaped'), (len(mistyped), 'wrongly typed')):
        if n:
            counts.append('%d %s key%s' % (n, word, '' if n == 1 else 's'))
    src = 'checkpoint %s' % source if source else 'state dict'
    lines = ['%s does not fit the model: %s' % (src, ', '.join(counts))]

    def block(title, items):
        if items:
            lines.append('  %s:' % title)
            lines.extend('    ' + it for it in items[:_LIST_LIMIT])
            if len(items) > _LIST_LIMIT:
                lines.append('    ... and %d more' % (len(items) - _LIST_LIMIT))

    block('missing (in the model, not in the checkpoint)', missing)
    block('unexpected (in the checkpoint, not in the model)', unexpected)
    block('mis-shaped (checkpoint vs model)',
          ['%s: %s vs %s' % (k, _shape(a), _shape(b)) for k, a, b in misshaped])
    block('wrongly typed (checkpoint vs model)', ['%s: %s vs %s' % t for t in mistyped])
    if unexpected and all(k.startswith('fc.') for k in unexpected):
        lines.append('  (fc.* suggests an ImageNet classification checkpoint: use it as '
                     'MODEL.PRETRAINED, not as model weights)')
    return '\n'.join(lines)


def load_state_dict_strict(model, state_dict, source=''):
    """Load ``state_dict`` (Paddle names, arrays or tensors) into ``model`` only if it fits exactly.

    Raises :class:`CheckpointMismatchError` listing missing, unexpected and mis-shaped keys
    (the first few of each, with counts) and naming ``source``. After ``set_state_dict`` every
    value is read back and compared, because Paddle only warns about entries it skips.
    Returns the number of tensors loaded.
    """
    entries = model.state_dict()
    arrays = OrderedDict()
    for k, v in state_dict.items():
        arr = _as_array(v)
        arrays[k] = np.asarray(v) if arr is None else arr
    missing = [k for k in entries if k not in arrays]
    unexpected = [k for k in arrays if k not in entries]
    misshaped, mistyped = [], []
    for k, arr in arrays.items():
        if k not in entries:
            continue
        shape = tuple(entries[k].shape)
        if tuple(arr.shape) != shape:
            misshaped.append((k, tuple(arr.shape), shape))
            continue
        want = _np_dtype(entries[k])
        if want is not None and want.kind == 'f' and arr.dtype.kind not in 'f':
            mistyped.append((k, arr.dtype.name, want.name))
    if missing or unexpected or misshaped or mistyped:
        raise CheckpointMismatchError(
            _mismatch_message(source, missing, unexpected, misshaped, mistyped))

    values = OrderedDict()
    for k, arr in arrays.items():
        want = _np_dtype(entries[k])
        values[k] = np.ascontiguousarray(arr if want is None else arr.astype(want, copy=False))
    result = model.set_state_dict(values)
    not_set = []
    if isinstance(result, tuple) and len(result) == 2:
        not_set.extend(list(result[0]) + list(result[1]))
    after = model.state_dict()
    for k, arr in values.items():
        if k not in after or not _same(after[k].numpy(), arr):
            not_set.append(k)
    if not_set:
        raise CheckpointMismatchError(
            '%s: %d tensors were not set by set_state_dict: %s'
            % ('checkpoint %s' % source if source else 'state dict', len(set(not_set)),
               _short_list(sorted(set(not_set)))))
    return len(values)


def _same(a, b):
    if a.shape != b.shape:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == 'f'))


def load_checkpoint(model, path, use_torch=None):
    """Load model weights from ``path`` strictly; returns the :class:`CheckpointInfo`.

    ``.pdparams`` (ours, possibly a dict with ``'state_dict'``/``'model'``) or any PyTorch
    reference checkpoint (see :func:`read_checkpoint`). Missing file -> FileNotFoundError;
    keys/shapes that do not fit -> :class:`CheckpointMismatchError`.
    """
    state, info = read_checkpoint(path, model, use_torch=use_torch)
    load_state_dict_strict(model, state, source=path)
    return info


def load_pretrained(model, path, prefixes=('*',), use_torch=None):
    """ImageNet initialisation for training: load the tensors of ``path`` that fit ``model``.

    Partial by nature: keys whose first dotted component is in ``prefixes`` (``'*'`` = all)
    and whose name and shape match the model are loaded; the rest are left alone (the ``fc.*``
    of a classification model, HRNet layers outside ``PRETRAINED_LAYERS``). Mis-shaped keys are
    reported as a warning, not silently dropped. A missing file raises FileNotFoundError (as
    [MS] and HRNet do); a file of which nothing fits raises :class:`CheckpointMismatchError`.
    Returns a :class:`PretrainedSummary` (also logged).
    """
    _require_file(path, 'pretrained weights (MODEL.PRETRAINED)')
    state, _ = read_checkpoint(path, model, use_torch=use_torch)
    prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
    take_all = '*' in prefixes
    entries = model.state_dict()
    summary = PretrainedSummary(path=path)
    chosen = OrderedDict()
    for k, arr in state.items():
        if not take_all and k.split('.', 1)[0] not in prefixes:
            summary.not_selected.append(k)
        elif k not in entries:
            summary.unexpected.append(k)
        elif tuple(arr.shape) != tuple(entries[k].shape):
            summary.misshaped.append((k, tuple(arr.shape), tuple(entries[k].shape)))
        else:
            chosen[k] = arr
    if not chosen:
        raise CheckpointMismatchError(
            'pretrained weights %s: no tensor fits the model (%d in the file; not in the model: '
            '%s; mis-shaped: %d)' % (path, len(state), _short_list(summary.unexpected),
                                     len(summary.misshaped)))
    for k, arr in chosen.items():
        want = _np_dtype(entries[k])
        value = np.ascontiguousarray(arr if want is None else arr.astype(want, copy=False))
        entries[k].set_value(value)
        if not _same(entries[k].numpy(), value):
            raise CheckpointMismatchError('pretrained weights %s: %s was not set' % (path, k))
        summary.loaded.append(k)
    summary.not_initialised = [k for k in entries if k not in chosen]
    logger.info(summary.describe())
    if summary.misshaped:
        logger.warning('pretrained weights %s: %d mis-shaped tensors not loaded: %s', path,
                       len(summary.misshaped), _short_list(
                           ['%s %s vs %s' % (k, _shape(a), _shape(b))
                            for k, a, b in summary.misshaped]))
    return summary


# --------------------------------------------------------------------------------------------
# saving and converting

def save_paddle_state_dict(state_dict_or_model, path):
    """``paddle.save`` a state dict (or a model's) atomically: temp file + ``os.replace``."""
    import paddle
    obj = state_dict_or_model
    if isinstance(obj, paddle.nn.Layer):
        obj = obj.state_dict()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        paddle.save(obj, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def convert_checkpoint(model, src, dst, use_torch=None):
    """Convert a reference checkpoint ``src`` for ``model`` and write it to ``dst`` (.pdparams).

    Reads and converts ``src``, loads it strictly (so a checkpoint that does not fit the
    model's config fails with the mismatch listing), saves atomically, then reads ``dst`` back
    and loads it strictly again, checking every value. Returns the :class:`CheckpointInfo`.
    """
    state, info = read_checkpoint(src, model, use_torch=use_torch)
    load_state_dict_strict(model, state, source=src)
    save_paddle_state_dict(model, dst)
    import paddle
    reread = paddle.load(dst, return_numpy=True)
    reread_state = extract_state_dict(reread)
    load_state_dict_strict(model, reread_state, source=dst)
    bad = [k for k, v in state.items() if not _same(np.asarray(reread_state[k]),
                                                     v.astype(reread_state[k].dtype, copy=False))]
    if bad:
        raise CheckpointError('%s does not hold the converted values: %s' % (dst, _short_list(bad)))
    return info
