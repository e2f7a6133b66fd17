"""What the entry points share on the terminal: one wrapper that turns errors and stop signals
into one line and an exit code, and one-line warnings.

Every tool's ``main`` is ``run_tool(PROG, body, argv)``: ``body(argv)`` parses and does the
work and returns an exit code (or None for 0). :class:`posekit.errors.PosekitError` and OS
errors (a missing or unwritable file, a full disk) become ``<prog>: error: <one line>`` on
stderr with exit code 1 (or the error's ``exit_code``). Ctrl-C (SIGINT) and SIGTERM become
``<prog>: interrupted`` / ``<prog>: terminated (SIGTERM)`` with the conventional exit codes
130 and 143 (128 + the signal number). Anything else is a bug and keeps its traceback.

How a stop signal is handled: the handler raises ``KeyboardInterrupt`` (with the signal number
as ``signum``) in the main thread, so the code unwinds as it does for Ctrl-C: ``with`` blocks
close, the output-folder lock is released, a file being written is left as it was (every write
is atomic, :func:`posekit.io.atomic_path`), and the data loader's workers are stopped. Paddle
installs its own C++ SIGTERM handler when it is imported (it ends the process at once, with a
"FatalError: Termination signal" dump); ours is installed again right after each import of a
part of Paddle, so it is ours that runs, whichever tool imports Paddle and when. A Python handler
runs only when the main thread comes back to Python; if it is stuck in a C++ call (waiting for a
batch from a loader worker that hangs on a network file system), a watching thread prints the
line and ends the process after :data:`GRACE` seconds, so a stop signal always stops the tool.
"""
import errno
import gc
import importlib.abc
import importlib.util
import logging
import os
import signal
import sys
import threading
import traceback
import warnings

from posekit.errors import PosekitError, note_stop_signal

__all__ = ['one_line', 'one_line_warnings', 'run_tool', 'print_error']

# stop signals we turn into an exception; the exit code is 128 + the number (shell convention)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ('SIGINT', 'SIGTERM')
                     if hasattr(signal, name))

# seconds a stop signal may wait for the main thread before the process ends without unwinding
GRACE = 5.0

# errors only a write gives (a full disk or quota, a file-size limit, a read-only file system):
# the run's earlier files are intact (atomic writes), so the tool's hint (where to resume from)
# applies as for Ctrl-C
WRITE_ERRNOS = {getattr(errno, name) for name in ('ENOSPC', 'EFBIG', 'EDQUOT', 'EROFS')
                if hasattr(errno, name)}


def one_line(error):
    """An error as one line; a multi-line report (a checkpoint mismatch listing) keeps its
    summary and its first entry."""
    if isinstance(error, OSError) and error.strerror:
        # "[Errno 28] No space left on device" reads better without the number
        return '%s: %s' % (error.strerror, error.filename) if error.filename else error.strerror
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


# --------------------------------------------------------------------------------------------
# stop signals

def _stopped_line(prog, signum, hint):
    what = 'interrupted' if signum == signal.SIGINT else 'terminated (%s)' % signal.Signals(
        signum).name
    return '%s: %s%s' % (prog, what, '; ' + hint if hint else '')


def _from_paddle(path):
    return 'paddle' in os.path.normpath(path or '').split(os.sep)


def _quiet_paddle_after_stop():
    """After a stop signal, what Paddle's data loader thread says about the workers it loses
    (a warning, a traceback of the thread) is a consequence of the stop, not news: drop it."""
    if getattr(threading.excepthook, 'posekit_quiet', False):
        return
    previous_hook = threading.excepthook

    def excepthook(args):
        frames = traceback.extract_tb(args.exc_traceback) if args.exc_traceback else []
        if not any(_from_paddle(f.filename) for f in frames):
            previous_hook(args)
    excepthook.posekit_quiet = True
    threading.excepthook = excepthook

    class _DropPaddle(logging.Filter):
        def filter(self, record):
            return not _from_paddle(record.pathname)
    logging.getLogger().addFilter(_DropPaddle())  # Paddle's loader logs on the root logger


def _stop_exception(signum):
    """A KeyboardInterrupt, also for SIGTERM: code that cleans up after Ctrl-C does the same.
    Made here, not in the handler, so that no frame of the traceback holds it (a reference
    cycle would keep the data loader, and its worker processes, alive until the exit)."""
    stop = KeyboardInterrupt()
    stop.signum = signum
    return stop


class _SignalGuard:
    """Our SIGINT/SIGTERM handlers for the time of one :func:`run_tool` call (main thread only;
    the previous handlers come back afterwards)."""

    def __init__(self, prog, hint):
        self.prog = prog
        self.hint = hint
        self.received = None  # the first stop signal, if one came
        self.reported = False  # its line is printed
        self.finished = threading.Event()  # run_tool is returning
        self.pid = os.getpid()
        self.previous = {}
        self.previous_wakeup = None
        self.wakeup = None
        self.hook = None

    def handle(self, signum, frame):
        if os.getpid() != self.pid:
            # a forked child (a data loader worker) before it set its own handlers: it has no
            # tool to unwind; leave quietly, the parent reports
            os._exit(128 + signum)
        if self.received is not None:
            # a second signal while the first one unwinds: stop now (files are safe: atomic)
            self.stop_now(signum)
        self.received = signum
        note_stop_signal(signum)
        if hasattr(signal, 'SIGCHLD'):
            # from now on children (loader workers, which got the signal too when it was sent
            # to the process group) are expected to end: Paddle's SIGCHLD handler would raise
            # an error about each of them in the middle of the clean-up
            self.previous.setdefault(signal.SIGCHLD, signal.getsignal(signal.SIGCHLD))
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _quiet_paddle_after_stop()
        raise _stop_exception(signum)

    def report(self, signum):
        if not self.reported:
            self.reported = True
            print(_stopped_line(self.prog, signum, self.hint), file=sys.stderr, flush=True)

    def stop_now(self, signum):
        self.report(signum)
        os._exit(128 + signum)

    def install(self):
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.handle)

    def watch(self, fd):
        """Thread: the C-level handler writes each signal's number to ``fd`` at once, even when
        the main thread cannot run Python; give the main thread GRACE seconds to return."""
        try:
            while True:
                data = os.read(fd, 64)
                if not data:
                    return  # run_tool closed the pipe
                stops = [n for n in data if n in STOP_SIGNALS]
                if stops and not self.finished.wait(GRACE):
                    self.stop_now(self.received or stops[0])
        except OSError:
            return
        finally:
            os.close(fd)

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # Python allows signal handlers in the main thread only
        for sig in STOP_SIGNALS:
            self.previous[sig] = signal.getsignal(sig)
        self.install()
        if 'paddle' not in sys.modules:
            self.hook = _AfterImport('paddle', self.install)
            sys.meta_path.insert(0, self.hook)
        read_fd, write_fd = os.pipe()
        try:
            os.set_blocking(write_fd, False)
            self.previous_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except (ValueError, OSError):
            os.close(read_fd)
            os.close(write_fd)
        else:
            self.wakeup = write_fd
            threading.Thread(target=self.watch, args=(read_fd,), name='posekit-stop-watch',
                             daemon=True).start()
        return self

    def __exit__(self, *exc):
        if self.hook is not None and self.hook in sys.meta_path:
            sys.meta_path.remove(self.hook)
        for sig, handler in self.previous.items():
            if sig == getattr(signal, 'SIGCHLD', None):
                continue  # after a stop: workers still ending at the exit are no failures
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if self.wakeup is not None:
            signal.set_wakeup_fd(self.previous_wakeup)
            # the watching thread reads the end of the pipe and returns, or, if a stop signal
            # came, waits for run_tool to set `finished` (the clean-up after the stop included)
            os.close(self.wakeup)
        return False


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``callback`` right after each module of the package ``name`` has been imported.

    Paddle replaces the SIGTERM handler at the C level while its package initialises (and may
    do so again when a part of it is first imported); this puts ours back at once, without
    importing Paddle where a tool does not need it (deploy.py with ONNX Runtime)."""

    def __init__(self, name, callback):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name and not fullname.startswith(self.name + '.'):
            return None
        for finder in sys.meta_path:  # the search the import system would do, without us
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader, callback = spec.loader, self.callback
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        run = loader.exec_module

        def exec_module(module):
            try:
                run(module)
            finally:
                callback()
        try:
            loader.exec_module = exec_module  # this module's loader instance only
        except AttributeError:  # a loader that takes no attributes: leave it as it is
            pass
        return spec


def run_tool(prog, body, argv=None, interrupted_hint=''):
    """Run ``body(argv)`` as the tool ``prog``; return its exit code (see the module doc).

    ``interrupted_hint`` is added to the line of a stop signal and of a failed write (full disk,
    read-only folder): train.py says where to resume from.
    """
    one_line_warnings(prog)
    guard = _SignalGuard(prog, interrupted_hint)
    note_stop_signal(None)
    try:
        return _run(prog, body, argv, interrupted_hint, guard)
    finally:
        guard.finished.set()
        note_stop_signal(None)  # handled: library code called after this tool is not stopped


def _run(prog, body, argv, interrupted_hint, guard):
    stopped = None
    try:
        with guard:
            code = body(argv)
    except KeyboardInterrupt as e:
        stopped = getattr(e, 'signum', None) or guard.received or signal.SIGINT
    except (PosekitError, OSError) as e:
        if guard.received is not None:
            # the signal also stopped something that reported it in its own way (a loader
            # worker that died with the process group): the signal is the cause
            stopped = guard.received
        else:
            text = one_line(e)
            if interrupted_hint and isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
                text += '; ' + interrupted_hint
            print('%s: error: %s' % (prog, text), file=sys.stderr)
            return int(getattr(e, 'exit_code', 1) or 1) if isinstance(e, PosekitError) else 1
    except BaseException:
        if guard.received is None:
            raise
        # Paddle's data loader turns a stop into its own errors (SystemError "Blocking queue is
        # killed" and the like): the signal is the cause, not a bug
        stopped = guard.received
    if stopped is None and guard.received is not None:
        # a library caught the KeyboardInterrupt of the signal and carried on: still a stop
        stopped = guard.received
    if stopped is None:
        return 0 if code is None else int(code)
    guard.report(stopped)
    # What the stopped work left behind (a data loader and its worker processes, held by
    # reference cycles of the unwound frames) is released now, in order, rather than at the
    # interpreter's exit, where Paddle reports its workers' ends as errors.
    gc.collect()
    return 128 + stopped
