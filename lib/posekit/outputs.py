"""Where a run writes (REFERENCE_SPEC 8.4) and its text log.

* ``OUTPUT_DIR/<dataset>/<model>/<cfg name>/``: checkpoints, ``model_best.pdparams``,
  ``final_state.pdparams``, the resolved ``config.yaml``, evaluation artefacts and the text logs
  ``<cfg name>_<YYYY-mm-dd-HH-MM>_<phase>.log``;
* ``LOG_DIR/<dataset>/<model>/<cfg name>_<time>/``: VisualDL scalars.

``<dataset>`` is ``DATASET.DATASET`` (plus ``_<HYBRID_JOINTS_TYPE>`` when set, ':' -> '_'),
``<model>`` is ``pose_resnet_<depth>`` or ``MODEL.NAME`` (:func:`posekit.models.model_tag`).

An output folder that cannot be one (a file, or a path under a file) is a one-line
:class:`OutputFolderError` naming the option it came from, before any work.

One run per folder: train.py and valid.py hold the folder they write in with
:func:`hold_output_folder`. A second run on it stops at once with :class:`OutputFolderInUse`
naming the process that holds it (pid, host, command). The lock is ``<folder>/.posekit.lock``
with an advisory lock of the operating system on it (``flock``): the system drops it when its
process ends, however it ends (and its loader workers, which share it, with it), so a run killed
with kill -9 blocks nobody; the next run takes the folder over with a warning naming the process
that left it. The holder removes the
file when it ends (also after an error or a stop signal). Only rank 0 of a multi-process run
holds it, and every rank stops when rank 0 cannot have it.
"""
import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
import warnings

from posekit import distributed as dist
from posekit.config import cfg_name_of
from posekit.errors import PosekitInputError, PosekitRuntimeError

__all__ = ['run_dirs', 'log_file', 'setup_logging', 'ProgressLine', 'check_output_folder',
           'hold_output_folder', 'OutputLock', 'OutputFolderError', 'OutputFolderInUse',
           'StaleLockWarning', 'LOCK_NAME']

LOG_FORMAT = '%(asctime)-15s %(message)s'


def _dataset_dir(cfg):
    name = str(cfg.DATASET.DATASET)
    if cfg.DATASET.HYBRID_JOINTS_TYPE:
        name += '_' + str(cfg.DATASET.HYBRID_JOINTS_TYPE)
    return name.replace(':', '_')


class OutputFolderError(PosekitInputError):
    """An output folder option names a file, or a path under a file, or a folder that cannot
    be written."""


class OutputFolderInUse(PosekitRuntimeError):
    """Another run holds the output folder."""


class StaleLockWarning(UserWarning):
    """An output folder's lock was left by a process that has ended; it is taken over."""


def check_output_folder(path, key, value=None):
    """Stop with :class:`OutputFolderError` naming ``key`` (the option or config key the folder
    comes from, whose given value is ``value``) when ``path`` cannot be made a folder to write
    in: it is a file, it lies under a file, or the nearest existing folder is not writable."""
    path = os.path.abspath(os.fspath(path))
    shown = '%s %s' % (key, value if value is not None else path)
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.lexists(probe) and not os.path.isdir(probe):
        if probe == path:
            raise OutputFolderError('%s is a file, not a folder' % shown)
        raise OutputFolderError('%s: %s is a file, not a folder' % (shown, probe))
    if os.path.isdir(probe) and not os.access(probe, os.W_OK | os.X_OK):
        raise OutputFolderError('%s: cannot write in %s (permission denied or a read-only file '
                                'system)' % (shown, probe))
    return path


def run_dirs(cfg, cfg_file, create=True, logs=False):
    """``(final_output_dir, visualdl_dir, time_str)`` of a run (created on rank 0 if asked).

    With ``create`` the run folder is checked first (:func:`check_output_folder`, naming
    OUTPUT_DIR), and with ``logs`` also the VisualDL folder (naming LOG_DIR)."""
    from posekit.models import model_tag
    cfg_name = cfg_name_of(cfg_file) if cfg_file else 'default'
    rel = os.path.join(_dataset_dir(cfg), model_tag(cfg), cfg_name)
    time_str = time.strftime('%Y-%m-%d-%H-%M')
    final_output_dir = os.path.join(cfg.OUTPUT_DIR, rel)
    vdl_dir = os.path.join(cfg.LOG_DIR, rel + '_' + time_str)
    if create:
        check_output_folder(final_output_dir, 'OUTPUT_DIR', cfg.OUTPUT_DIR)
        if logs:
            check_output_folder(vdl_dir, 'LOG_DIR', cfg.LOG_DIR)
        os.makedirs(final_output_dir, exist_ok=True)
    return final_output_dir, vdl_dir, time_str


# --------------------------------------------------------------------------------------------
# one run per output folder

LOCK_NAME = '.posekit.lock'
_COMMAND_CHARS = 120  # a command line longer than this is shortened in messages


def _command_line():
    text = ' '.join([os.path.basename(sys.executable)] + sys.argv)
    return text if len(text) <= _COMMAND_CHARS else text[:_COMMAND_CHARS - 3] + '...'


def _describe(holder):
    """``process 123 on host (since ...): command`` from a lock file's content."""
    if not holder:
        return 'another process (it has not written its name yet)'
    text = 'process %s' % holder.get('pid', '?')
    if holder.get('host') and holder.get('host') != socket.gethostname():
        text += ' on %s' % holder['host']
    if holder.get('started'):
        text += ' (since %s)' % holder['started']
    if holder.get('command'):
        text += ': %s' % holder['command']
    return text


def _read_holder(fd):
    try:
        data = os.pread(fd, 65536, 0)
        holder = json.loads(data.decode('utf-8')) if data.strip() else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _unlock(fd):
    import fcntl
    fcntl.flock(fd, fcntl.LOCK_UN)


class OutputLock:
    """The lock of one output folder (see the module doc); a context manager.

    ``hint`` ends the message of a folder in use (what to do instead)."""

    def __init__(self, folder, hint='wait for it to end or write elsewhere'):
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.hint = hint
        self.fd = None

    def acquire(self):
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): runs are not kept apart there
            return self
        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    # a file system without locks (some network and FUSE mounts): run unlocked
                    os.close(fd)
                    with contextlib.suppress(OSError):
                        if os.path.getsize(self.path) == 0:
                            os.remove(self.path)
                    warnings.warn('output folder %s: cannot lock it (%s); another run could '
                                  'write there at the same time' % (self.folder, e.strerror))
                    return self
                holder = self._wait_for_name(fd)
                os.close(fd)
                raise OutputFolderInUse('output folder %s is in use by %s; %s' % (
                    self.folder, _describe(holder), self.hint)) from None
            if self._is_current(fd):
                break
            os.close(fd)  # the holder removed the file while we opened it: try again
        previous = _read_holder(fd)
        if previous and previous.get('pid') != os.getpid():
            warnings.warn('output folder %s: taking it over from %s, which ended without '
                          'releasing it' % (self.folder, _describe(previous)), StaleLockWarning)
        data = json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                           'started': time.strftime('%Y-%m-%d %H:%M:%S'),
                           'command': _command_line()}).encode('utf-8')
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self.fd = fd
        return self

    def _is_current(self, fd):
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return False

    @staticmethod
    def _wait_for_name(fd, tries=20):
        # a holder writes its name just after it takes the lock: give it a moment
        for _ in range(tries):
            holder = _read_holder(fd)
            if holder:
                return holder
            time.sleep(0.05)
        return None

    def release(self):
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if self._is_current(fd):
                os.remove(self.path)  # while still locked: nobody takes a file on its way out
        except OSError:
            pass
        finally:
            try:
                _unlock(fd)  # also for loader workers that share the descriptor
            finally:
                os.close(fd)

    def __enter__(self):
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def hold_output_folder(folder, hint='wait for it to end or write elsewhere'):
    """Hold ``folder`` for this run (rank 0 only): returns a context manager that releases it.

    Raises :class:`OutputFolderInUse` on every rank when rank 0 finds the folder in use."""
    lock, refused = None, None
    if dist.is_main():
        try:
            lock = OutputLock(folder, hint).acquire()
        except OutputFolderInUse as e:
            refused = str(e)
    if dist.world_size() > 1:
        refused = dist.broadcast_object(refused)  # every process stops, not rank 0 alone
    if refused:
        raise OutputFolderInUse(refused)
    return lock if lock is not None else contextlib.nullcontext()


def log_file(folder, cfg_file, time_str, phase):
    """``<folder>/<cfg name>_<time>_<phase>.log`` (REFERENCE_SPEC 8.4)."""
    cfg_name = cfg_name_of(cfg_file) if cfg_file else 'default'
    return os.path.join(folder, '%s_%s_%s.log' % (cfg_name, time_str, phase))


class _LogFileHandler(logging.FileHandler):
    """The text log file; when it cannot be written (a full disk), one warning and the log goes
    on on the terminal only, instead of a traceback for every line."""

    broken = False

    def emit(self, record):
        if not self.broken:
            super().emit(record)

    def handleError(self, record):
        self.broken = True
        error = sys.exc_info()[1]
        reason = (error.strerror or str(error)) if isinstance(error, OSError) else str(error)
        warnings.warn('cannot write the log file %s (%s): the log goes on on the terminal only'
                      % (self.baseFilename, reason))


class _ConsoleHandler(logging.StreamHandler):
    """Console log lines that first clear a progress line drawn on the same terminal."""

    def emit(self, record):
        if ProgressLine.active:
            self.stream.write('\r\033[K')
        super().emit(record)


def setup_logging(log_file=None, rank=0, level=logging.INFO):
    """Logger ``posekit``: console (+ ``log_file``) on rank 0; warnings only on other ranks."""
    logger = logging.getLogger('posekit')
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(level if rank == 0 else logging.WARNING)
    logger.propagate = False
    fmt = logging.Formatter(LOG_FORMAT)
    console = _ConsoleHandler(sys.stdout)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file and rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        fh = _LogFileHandler(log_file, encoding='utf-8')
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


class ProgressLine:
    """A one-line progress bar on an interactive terminal (nothing when output is redirected;
    the periodic log lines, which carry ``[i/N]`` and the ETA, are the progress there)."""
    active = False

    def __init__(self, label, total, stream=None, enabled=True):
        self.label = label
        self.total = max(int(total), 1)
        self.stream = stream or sys.stdout
        self.enabled = enabled and hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.start = time.time()

    def __call__(self, done, total=None):
        if not self.enabled:
            return
        total = total or self.total
        frac = min(max(done / float(total), 0.0), 1.0)
        width = 30
        bar = '#' * int(frac * width) + '.' * (width - int(frac * width))
        elapsed = time.time() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        self.stream.write('\r%s [%s] %d/%d  %s<%s' % (self.label, bar, done, total,
                                                      _hms(elapsed), _hms(eta)))
        self.stream.flush()
        ProgressLine.active = True
        if done >= total:
            self.close()

    def close(self):
        if self.enabled and ProgressLine.active:
            self.stream.write('\r\033[K')
            self.stream.flush()
        ProgressLine.active = False


def _hms(seconds):
    seconds = int(max(seconds, 0))
    return '%d:%02d:%02d' % (seconds // 3600, seconds % 3600 // 60, seconds % 60)
