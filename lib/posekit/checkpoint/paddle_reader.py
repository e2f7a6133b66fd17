"""Reading ``paddle.save`` files without ``paddle.load``: the same objects, nothing executed.

``paddle.load`` is ``pickle.load``, so a ``.pdparams`` or ``.pdckpt`` from a stranger could run
any code. :func:`read_paddle_file` unpickles with the rule of :mod:`posekit.checkpoint.unpickling`
(plain data only, every other global refused before it can be called) and then does to the
result what ``paddle.load(path, return_numpy=True)`` does, so both give the same objects and the
same numbers.

What ``paddle.save`` writes (Paddle 3.3, ``paddle/framework/io.py``; pickle protocol 2-4,
default 4):

* a state dict (every value a Tensor: ``Layer.state_dict()``, optimiser accumulators without a
  scheduler) as a dict of numpy arrays plus ``'StructuredToParameterName@@'`` (structured name
  -> runtime name), which paddle.load drops. With protocol 2 or 3 an array of more than 1 GiB is
  cut into ``<key>@@.<i>`` slices listed under ``'UnpackBigParamInfor@@'``, which paddle.load
  joins again (protocol 4 pickles big arrays whole);
* anything else (a training checkpoint: nested dicts and lists, numbers, strings, numpy
  scalars, an optimiser state with its ``LR_Scheduler`` dict) as the object itself, each Tensor
  reduced to ``builtins.tuple((name, array))`` and a bare DenseTensor to ``builtins.eval('data',
  {'data': array})``; paddle.load turns every ``(name, array)`` pair back into the array.

So besides the plain globals only ``builtins.tuple`` is allowed, and ``builtins.eval`` as a
stand-in that accepts exactly that DenseTensor form and evaluates nothing. The result must be
plain data: no array of Python objects, no container inside itself.
"""
import pickle
from collections import OrderedDict

import numpy as np

from posekit.checkpoint.errors import CheckpointFormatError, _require_file
from posekit.checkpoint.unpickling import RestrictedUnpickler, StandIn, first_line

__all__ = ['read_paddle_file', 'NAME_TABLE']

# paddle.save's bookkeeping entries of a state dict (paddle.load removes both)
NAME_TABLE = 'StructuredToParameterName@@'
_BIG_ARRAYS = 'UnpackBigParamInfor@@'

_MAX_DEPTH = 100  # a checkpoint nests a few levels; this only stops a crafted file


def _dense_tensor(expression, namespace):
    """``eval('data', {'data': array})``, the reduction of a DenseTensor, without eval."""
    if (expression != 'data' or type(namespace) is not dict or list(namespace) != ['data']
            or not isinstance(namespace['data'], np.ndarray)):
        raise pickle.UnpicklingError('builtins.eval used for something other than a tensor')
    return namespace['data']


_PADDLE_GLOBALS = {'tuple': tuple, 'eval': StandIn(_dense_tensor, 'builtins.eval')}


class _PaddleUnpickler(RestrictedUnpickler):
    def format_global(self, module, name):
        if module in ('builtins', '__builtin__'):
            return _PADDLE_GLOBALS.get(name)
        return None


# --------------------------------------------------------------------------------------------
# plain data only

_LEAVES = (type(None), bool, int, float, complex, str, bytes)
_CONTAINERS = (dict, OrderedDict, list, tuple, set, frozenset)


def _check_plain(obj, path=()):
    """Raise ValueError unless ``obj`` is plain data (see the module doc)."""
    kind = type(obj)
    if kind in _LEAVES:
        return
    if kind is np.ndarray or isinstance(obj, (np.generic, np.dtype)):
        dtype = obj if isinstance(obj, np.dtype) else obj.dtype
        if dtype.hasobject:
            raise ValueError('it holds numpy data of Python objects (dtype %s)' % dtype)
        return
    if kind not in _CONTAINERS:
        raise ValueError('it holds a %s object, not plain data' % kind.__name__)
    if id(obj) in path:
        raise ValueError('it holds a %s that contains itself' % kind.__name__)
    if len(path) >= _MAX_DEPTH:
        raise ValueError('it nests containers more than %d levels deep' % _MAX_DEPTH)
    path = path + (id(obj),)
    items = obj.items() if isinstance(obj, dict) else ((None, v) for v in obj)
    for key, value in items:
        if key is not None:
            _check_plain(key, path)
        _check_plain(value, path)


# --------------------------------------------------------------------------------------------
# what paddle.load(return_numpy=True) does after unpickling

def _join_big_arrays(obj):
    """Paddle's ``_pack_loaded_dict``: join the slices of arrays saved with protocol 2/3."""
    info = obj.pop(_BIG_ARRAYS)
    if not isinstance(info, dict):
        raise ValueError('bad %s entry' % _BIG_ARRAYS)
    removes = []
    for key, value in info.items():
        if not isinstance(value, dict) or 'slices' not in value or 'OriginShape' not in value:
            raise ValueError('bad %s entry for %r' % (_BIG_ARRAYS, key))
        slices, shape = value['slices'], value['OriginShape']
        parts = [obj.get(part) for part in slices]
        if not parts or any(not isinstance(p, np.ndarray) or p.ndim != 1 for p in parts):
            raise ValueError('missing or bad slices of the big array %r' % (key,))
        if not isinstance(shape, (tuple, list)) or not all(type(n) is int for n in shape):
            raise ValueError('bad shape of the big array %r' % (key,))
        obj[key] = np.concatenate(parts).reshape(shape)
        removes.extend(slices)
    for part in removes:
        obj.pop(part, None)


def _is_tensor_pair(obj):
    """A Tensor as ``paddle.save`` reduces it outside a state dict: ``(name, array)``."""
    return (type(obj) is tuple and len(obj) == 2 and isinstance(obj[0], str)
            and isinstance(obj[1], np.ndarray))


def _has_tensor_pair(obj):
    if _is_tensor_pair(obj):
        return True
    if type(obj) in (dict, OrderedDict):
        return any(_has_tensor_pair(v) for v in obj.values())
    if type(obj) in (list, tuple):
        return any(_has_tensor_pair(v) for v in obj)
    return False


def _pairs_to_arrays(obj):
    """Paddle's ``_parse_every_object``: every ``(name, array)`` pair becomes its array; dicts
    and lists are changed in place, as paddle.load does."""
    if _is_tensor_pair(obj):
        return obj[1]
    if type(obj) in (dict, OrderedDict):
        for key in list(obj):
            obj[key] = _pairs_to_arrays(obj[key])
    elif type(obj) is list:
        obj[:] = [_pairs_to_arrays(v) for v in obj]
    elif type(obj) is tuple:
        return tuple(_pairs_to_arrays(v) for v in obj)
    elif type(obj) is set:
        return {_pairs_to_arrays(v) for v in obj}
    return obj


def _as_paddle_load(obj):
    if isinstance(obj, dict):
        if _BIG_ARRAYS in obj:
            _join_big_arrays(obj)
        if NAME_TABLE in obj:  # a state dict: its arrays are returned as they are
            del obj[NAME_TABLE]
            return obj
    # paddle.load converts the pairs only when there is one (a Tensor) somewhere
    return _pairs_to_arrays(obj) if _has_tensor_pair(obj) else obj


# --------------------------------------------------------------------------------------------

def _unpickle(path):
    with open(path, 'rb') as f:
        if f.read(1) != b'\x80':  # paddle.save always writes pickle protocol 2 or later
            raise CheckpointFormatError(
                'cannot read %s: not a file written by paddle.save (a Paddle checkpoint is a '
                'pickle; export.py models and .pdiparams files are not checkpoints)' % path)
        f.seek(0)
        return _PaddleUnpickler(f, encoding='latin1').load()


def read_paddle_file(path):
    """The object in a ``paddle.save`` file, as ``paddle.load(path, return_numpy=True)`` gives it
    (every Tensor a numpy array), read without executing anything from the file.

    A file that names any other global (a pickled function call, a class instance, a Layer)
    or that is not plain data raises :class:`CheckpointFormatError` naming the file and what was
    refused; a 0-byte, truncated or foreign file raises it too.
    """
    _require_file(path)
    try:
        obj = _unpickle(path)
    except CheckpointFormatError:
        raise
    except EOFError as e:
        raise CheckpointFormatError('cannot read %s: the file is truncated (%s)'
                                    % (path, first_line(e))) from e
    except pickle.UnpicklingError as e:
        text = first_line(e)
        if 'truncated' in text:
            text = 'the file is truncated (%s)' % text
        raise CheckpointFormatError('cannot read %s: %s' % (path, text)) from e
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError,
            MemoryError) as e:
        raise CheckpointFormatError('cannot read %s: not a valid paddle.save file (%s: %s)'
                                    % (path, type(e).__name__, first_line(e))) from e
    try:
        _check_plain(obj)
        return _as_paddle_load(obj)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointFormatError('cannot read %s: %s' % (path, first_line(e))) from e
