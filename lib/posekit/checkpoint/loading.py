"""Strict loading, ImageNet initialisation, saving and converting.

A checkpoint used for evaluation, resuming or conversion must fit the model exactly: missing,
unexpected or mis-shaped keys raise :class:`CheckpointMismatchError` listing them, and every
value is read back after loading. The reference tools loaded such files with
``strict=False``/``load_dict`` and silently evaluated random weights (REFERENCE_SPEC 10.15,
10.16). Only the ImageNet initialisation (:func:`load_pretrained`) is partial by nature, and it
reports what it did not load.
"""
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from posekit.checkpoint.convert import _as_array, extract_state_dict, read_checkpoint
from posekit.checkpoint.errors import (_LIST_LIMIT, CheckpointError, CheckpointMismatchError,
                                       _require_file, _shape, _short_list)
from posekit.checkpoint.paddle_reader import read_paddle_file
from posekit.io import atomic_path

logger = logging.getLogger(__name__)


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
    """``paddle.save`` a state dict (or a model's) atomically (:func:`posekit.io.atomic_path`)."""
    import paddle
    obj = state_dict_or_model
    if isinstance(obj, paddle.nn.Layer):
        obj = obj.state_dict()
    with atomic_path(path) as tmp:
        paddle.save(obj, tmp)
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
    reread = read_paddle_file(dst)
    reread_state = extract_state_dict(reread)
    load_state_dict_strict(model, reread_state, source=dst)
    bad = [k for k, v in state.items() if not _same(np.asarray(reread_state[k]),
                                                     v.astype(reread_state[k].dtype, copy=False))]
    if bad:
        raise CheckpointError('%s does not hold the converted values: %s' % (dst, _short_list(bad)))
    return info
