"""The one rule for every pickle posekit reads: rebuild plain data, refuse everything else.

``torch.save`` and ``paddle.save`` both write Python pickles, and unpickling calls whatever
function the file names (``os.system`` as easily as ``numpy.dtype``). :class:`RestrictedUnpickler`
resolves a global only when it is on a short list: plain containers, numpy arrays, dtypes and
scalars, and the helper that protocol 2 uses for bytes, plus the few names a format's own writer
needs (a subclass adds them). Any other global ends the read the moment the file names it,
before anything could call it: the file is refused and none of it runs.

Even the allowed names are narrowed where the real function could do more than rebuild data:
``numpy.ndarray`` is a marker that only :func:`numpy._core.multiarray._reconstruct` accepts (so a
pickle cannot call the array constructor on a buffer of its choice), ``_codecs.encode`` only
turns a latin-1 string into bytes and ``bytes`` only makes the empty bytes.
"""
import codecs
import pickle
from collections import OrderedDict

import numpy as np

REFUSED_HINT = 'a checkpoint may only hold tensors and plain containers'


def refused_global(module, name):
    """The error for a global that is not on the list (nothing of the file has run). A plain
    UnpicklingError, for the readers to wrap; ``refused_global`` tells it from a damaged file."""
    error = pickle.UnpicklingError("refusing to load '%s.%s': %s" % (module, name, REFUSED_HINT))
    error.refused_global = '%s.%s' % (module, name)
    return error


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


class StandIn:
    """A function a pickle may call, in place of the global it names. Frozen: a pickle can
    also BUILD (set attributes on) any object it names, which on a plain function would change
    ``__defaults__`` for the rest of the process."""

    __slots__ = ('_func', '_name')

    def __init__(self, func, name):
        object.__setattr__(self, '_func', func)
        object.__setattr__(self, '_name', name)

    def __call__(self, *args):
        if self._func is None:
            raise pickle.UnpicklingError('%s cannot be called in a checkpoint' % self._name)
        return self._func(*args)

    def __setattr__(self, key, value):
        raise pickle.UnpicklingError('cannot change %s in a checkpoint' % self._name)

    def __setstate__(self, state):
        raise pickle.UnpicklingError('cannot change %s in a checkpoint' % self._name)

    def __repr__(self):
        return self._name


# ``numpy.ndarray`` only as the first argument of _reconstruct: calling the array constructor
# with a buffer, offset and strides of the pickle's choice is not something weights need.
_NDARRAY = StandIn(None, 'numpy.ndarray')


def _reconstruct(subtype, shape, dtype_code):
    """``ndarray.__reduce__``'s constructor: an empty array that the pickle's BUILD then fills
    through ``ndarray.__setstate__`` (numpy checks the shape against the bytes there)."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError('unsupported array type %r in checkpoint' % (subtype,))
    return _numpy_reconstruct()(np.ndarray, shape, dtype_code)


def _latin1_bytes(text, encoding='utf-8', errors='strict'):
    """``_codecs.encode`` as pickle protocol 2 uses it: ``bytes`` written as a latin-1 string."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1') or errors != 'strict':
        raise pickle.UnpicklingError('unsupported use of _codecs.encode in checkpoint')
    return codecs.encode(text, 'latin1')


def _empty_bytes(*args):
    """``bytes()``, how protocol 2 writes ``b''`` (``bytes(n)`` would allocate n bytes)."""
    if args:
        raise pickle.UnpicklingError('unsupported use of bytes() in checkpoint')
    return b''


_RECONSTRUCT = StandIn(_reconstruct, 'numpy._core.multiarray._reconstruct')
_CODECS_ENCODE = StandIn(_latin1_bytes, '_codecs.encode')
_BUILTINS = {'set': set, 'frozenset': frozenset, 'slice': slice, 'complex': complex,
             'bytes': StandIn(_empty_bytes, 'builtins.bytes')}


def plain_global(module, name):
    """The stand-in for a global every checkpoint format may name, or None."""
    if module == '__builtin__':  # protocol 2 files written by Python 2 (or with fix_imports)
        module = 'builtins'
    if module == 'collections' and name == 'OrderedDict':
        return OrderedDict
    if module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        if name == 'scalar':
            return _numpy_scalar()
        if name == '_reconstruct':
            return _RECONSTRUCT
    if module == 'numpy' and name == 'dtype':
        return np.dtype
    if module == 'numpy' and name == 'ndarray':
        return _NDARRAY
    if module == '_codecs' and name == 'encode':
        return _CODECS_ENCODE
    if module == 'builtins':
        return _BUILTINS.get(name)
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves :func:`plain_global` names and those of :meth:`format_global`; raises
    :func:`refused_global` for any other name. Persistent ids are refused unless a subclass
    handles them."""

    def format_global(self, module, name):
        """The names a format's writer adds (a subclass's); None = not allowed."""
        return None

    def find_class(self, module, name):
        obj = self.format_global(module, name)
        if obj is None:
            obj = plain_global(module, name)
        if obj is None:
            raise refused_global(module, name)
        return obj

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('unexpected persistent id in checkpoint')


def first_line(error):
    """An exception's first non-empty message line, or its type name (``EOFError()`` has no
    message: a 0-byte file)."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__
