"""What the entry points share on the terminal: one wrapper that turns errors into one line and
an exit code, and one-line warnings.

Every tool's ``main`` is ``run_tool(PROG, body, argv)``: ``body(argv)`` parses and does the
work and returns an exit code (or None for 0). :class:`posekit.errors.PosekitError` and OS
errors (a missing or unwritable file) become ``<prog>: error: <one line>`` on stderr with exit
code 1 (or the error's ``exit_code``); Ctrl-C becomes ``<prog>: interrupted`` with exit code
130. Anything else is a bug and keeps its traceback.
"""
import sys
import warnings

from posekit.errors import PosekitError

__all__ = ['one_line', 'one_line_warnings', 'run_tool', 'print_error']


def one_line(error):
    """An error as one line; a multi-line report (a checkpoint mismatch listing) keeps its
    summary and its first entry."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return '%s: %s' % (error.strerror, error.filename)
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0]
    heading = ''
    for ln in lines[1:]:
        if ln.endswith(':'):
            heading = ln.split()[0] + ' '  # "missing (in the model, ...):" -> "missing "
        else:
            text += ' (first %s: %s)' % (heading.strip() or 'entry', ln)
            break
    return text


def one_line_warnings(prog):
    """Print warnings as ``<prog>: warning: <message>``, without file and line."""
    def show(message, category, filename, lineno, file=None, line=None):
        print('%s: warning: %s' % (prog, message), file=sys.stderr)
    warnings.showwarning = show


def print_error(prog, error):
    print('%s: error: %s' % (prog, one_line(error)), file=sys.stderr)


def run_tool(prog, body, argv=None, interrupted_hint=''):
    """Run ``body(argv)`` as the tool ``prog``; return its exit code (see the module doc).

    ``interrupted_hint`` is added to the Ctrl-C line (train.py: where to resume from).
    """
    one_line_warnings(prog)
    try:
        code = body(argv)
    except KeyboardInterrupt:
        print('%s: interrupted%s' % (prog, '; ' + interrupted_hint if interrupted_hint else ''),
              file=sys.stderr)
        return 130
    except PosekitError as e:
        print_error(prog, e)
        return int(getattr(e, 'exit_code', 1) or 1)
    except OSError as e:
        print_error(prog, e)
        return 1
    return 0 if code is None else int(code)
