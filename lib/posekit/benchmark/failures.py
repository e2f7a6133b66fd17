"""A configuration that fails is a table cell, not a crash: the one line that says why."""
import re

__all__ = ['REASON_CHARS', 'short_reason', 'last_error_line']

REASON_CHARS = 60
# an absolute path inside an error message: only its file name is kept in a table cell
_PATH = re.compile(r'(?:/[^\s/:\'"]+)+/([^\s/:\'"]+)')


def short_reason(error, limit=REASON_CHARS):
    """The most telling line of an error (C++ tracebacks included), cut to ``limit`` chars."""
    text = error if isinstance(error, str) else (str(error).strip() or type(error).__name__)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    pick = next((ln for ln in lines if 'Error:' in ln and not ln.startswith('In user code')),
                lines[0] if lines else 'unknown error')
    pick = _PATH.sub(r'\1', pick).replace('|', '/')  # short, and keeps markdown cells intact
    return pick if len(pick) <= limit else pick[:limit - 3] + '...'


def last_error_line(stderr):
    """The last line of a subprocess's stderr that looks like an error (for crashes)."""
    lines = [ln.strip() for ln in (stderr or '').splitlines() if ln.strip()]
    for ln in reversed(lines):
        if 'Error' in ln or 'error' in ln or 'Abort' in ln or 'fault' in ln:
            return ln
    return lines[-1] if lines else ''
