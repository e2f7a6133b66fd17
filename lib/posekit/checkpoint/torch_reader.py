"""Reading ``torch.save`` files with every tensor as a numpy array (no Paddle needed).

With torch installed, ``torch.load(weights_only=True)`` reads the file; without torch (or when
its weights-only unpickler refuses a harmless object), a small pure-python reader handles both
on-disk formats of ``torch.save``: the zip archive (torch >= 1.6) and the legacy pickle stream
(``_use_new_zipfile_serialization=False``, how the 2018 PoseResNet releases and the SimpleNet
checkpoint were written). Both readers only rebuild tensors and plain containers; a pickle that
asks for anything else is refused, so no code from a checkpoint is ever executed (the built-in
reader shares that rule with the Paddle reader: :mod:`posekit.checkpoint.unpickling`).
"""
import logging
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np

from posekit.checkpoint.errors import CheckpointFormatError, _require_file
from posekit.checkpoint.unpickling import RestrictedUnpickler, StandIn, first_line

logger = logging.getLogger(__name__)

TORCH_INSTALL_HINT = ('install PyTorch to read it: pip install torch (the CPU build is enough, '
                      'e.g. pip install torch==2.13.0)')
TORCH_SUFFIXES = ('.pth', '.pth.tar', '.pt', '.tar', '.ckpt', '.bin')

# The first object of a legacy torch.save stream, then its protocol version.
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001


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


_REBUILDERS = {name: StandIn(func, 'torch._utils.' + name) for name, func in (
    ('_rebuild_tensor', _rebuild_tensor), ('_rebuild_tensor_v2', _rebuild_tensor_v2),
    ('_rebuild_parameter', _rebuild_parameter),
    ('_rebuild_parameter_with_state', _rebuild_parameter))}


def _rebuild_from_type_v2(func, new_type, args, state):
    if new_type is not _TensorMarker or func not in _REBUILDERS.values():
        raise pickle.UnpicklingError('unsupported tensor subclass in checkpoint')
    return func(*args)


_REBUILD_FROM_TYPE = StandIn(_rebuild_from_type_v2, 'torch._tensor._rebuild_from_type_v2')


def _torch_global(module, name):
    """The globals of ``torch.save`` a checkpoint may name besides the plain ones of
    :func:`posekit.checkpoint.unpickling.plain_global`: tensor rebuilders and storage types.
    None for anything else."""
    if module == 'torch._utils':
        return _REBUILDERS.get(name)
    if module == 'torch' and name in _STORAGE_TYPES:
        return _StorageType(name, _STORAGE_TYPES[name])
    if module == 'torch' and name == 'Size':
        return tuple
    if (module, name) in (('torch', 'Tensor'), ('torch._tensor', 'Tensor'),
                          ('torch.nn.parameter', 'Parameter')):
        return _TensorMarker
    if module == 'torch._tensor' and name == '_rebuild_from_type_v2':
        return _REBUILD_FROM_TYPE
    return None


class _RestrictedUnpickler(RestrictedUnpickler):
    """An unpickler that rebuilds tensors as numpy arrays and refuses every other global."""

    def __init__(self, file, load_storage=None):
        super().__init__(file, encoding='utf-8')
        self._load_storage = load_storage

    def format_global(self, module, name):
        return _torch_global(module, name)

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
                                            % (path, first_line(e))) from e
            logger.debug('torch.load(weights_only=True) failed for %s: %s', path, e)
    if fmt is None:
        msg = ('%s is not a PyTorch checkpoint (neither the zip format of torch >= 1.6 nor the '
               'legacy torch.save format)' % path)
        if torch_error is not None:
            msg += '; torch.load said: %s' % first_line(torch_error)
        raise CheckpointFormatError(msg)
    try:
        return _read_python(path, fmt), 'python', fmt
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            IndexError, struct.error, zipfile.BadZipFile, UnicodeDecodeError) as e:
        msg = 'cannot read %s: %s' % (path, first_line(e))
        if torch is None and use_torch is None:  # torch is not installed
            msg += (' (the built-in reader handles tensors and plain containers only; torch is '
                    'not installed: %s)' % TORCH_INSTALL_HINT)
        elif torch_error is not None and not getattr(e, 'refused_global', None):
            # (after a refused global, torch's own refusal only suggests weights_only=False)
            msg += '; torch.load said: %s' % first_line(torch_error)
        raise CheckpointFormatError(msg) from e


def read_torch_file(path, use_torch=None):
    """Unpickle a ``torch.save`` file with every tensor as a numpy array.

    ``use_torch``: None = torch if importable (``weights_only=True``), else the built-in reader;
    False = always the built-in pure-python reader; True = torch or an error. The built-in reader
    is also the fallback when torch's weights-only unpickler refuses a harmless object (e.g. a
    numpy ``perf`` scalar in an [MS] ``checkpoint.pth.tar``). bfloat16 tensors become float32.
    """
    return _read_torch(path, use_torch)[0]
