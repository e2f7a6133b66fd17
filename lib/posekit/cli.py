"""What the entry points share on the terminal: one-line errors and warnings."""
import sys
import warnings

__all__ = ['one_line', 'one_line_warnings']


def one_line(error):
    """An error as one line; a multi-line report (a checkpoint mismatch listing) keeps its
    summary and its first entry."""
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
