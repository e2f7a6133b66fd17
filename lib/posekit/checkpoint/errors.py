"""The errors of :mod:`posekit.checkpoint` and the helpers that word their messages."""
import os

from posekit.errors import PosekitInputError

_LIST_LIMIT = 10


class CheckpointError(PosekitInputError):
    """A checkpoint that cannot be used."""


class CheckpointFormatError(CheckpointError):
    """A file that is not a readable checkpoint (or holds something other than weights)."""


class CheckpointMismatchError(CheckpointError):
    """A state dict whose keys or shapes do not fit the model."""


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
    # an interrupted copy or download; every reader would only say "ran out of input"
    if os.path.getsize(path) == 0:
        raise CheckpointFormatError('%s file is empty (0 bytes): %s' % (what, path))
