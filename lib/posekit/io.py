"""Files in and out: atomic writes, the one image reader, image listing and json reading.

Every file posekit writes (configs, checkpoints, deploy configs, results, predictions, synthetic
datasets) goes through :func:`atomic_path`: the data is written to a temporary file in the same
folder, flushed to disk and renamed over the target, so a crash or Ctrl-C leaves either the old
file or the new one, never half of one (and no temporary file behind). A set of files that only
makes sense together (an export: model, weights, deploy config) is built in a sibling folder and
put in place in one step by :func:`atomic_folder`.

Framework-free: numpy, OpenCV (imported when an image is read), json and yaml; scipy is
imported only to write a ``.mat`` file. Errors about input files are one-line
:class:`InputFileError` (a :class:`~posekit.errors.PosekitInputError`, so a ``ValueError``).
"""
import contextlib
import errno
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import warnings
import zlib

import numpy as np
import yaml

from posekit.errors import PosekitInputError, stop_signal

__all__ = ['InputFileError', 'ImageReadError', 'TruncatedImageWarning', 'IMAGE_EXTENSIONS',
           'atomic_path', 'atomic_folder', 'write_bytes', 'write_json', 'write_yaml', 'write_npz',
           'write_mat', 'read_image', 'list_images', 'read_json']

# the still-image formats OpenCV decodes in every build we install
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


class InputFileError(PosekitInputError):
    """A file or folder given to posekit is missing or cannot be read or parsed."""


class ImageReadError(InputFileError):
    """An image file is missing or cannot be decoded."""


def _one_line(error):
    return ' '.join(str(error).split()) or type(error).__name__


# --------------------------------------------------------------------------------------------
# writing

def _default_file_mode():
    # mkstemp creates 0600; a written file should get the permissions open() would give it.
    # os.umask can only be read by setting it, so set it back at once.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX; folders cannot be opened on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in ``path``'s folder to write to; on success it replaces ``path``.

    For writers that want a path (``paddle.save``, ``cv2.imwrite``, ``savemat``): the temporary
    name ends with ``path``'s extension so they pick the same format. When the block raises
    (including Ctrl-C), the temporary file is removed and ``path`` is left as it was. Missing
    folders are created.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(path))
    prefix = '.%s.tmp-' % stem
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=ext, dir=folder)
    except OSError as e:  # a read-only or full folder
        named = _naming(e, path, prefix)
        if named is e:
            raise
        raise named from e
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        named = _naming(e, path, prefix) if isinstance(e, OSError) else e
        if named is e:
            raise
        raise named from e
    _fsync_folder(folder)


def _naming(error, path, prefix):
    """A write error of the temporary file as one about ``path``: writers report a full disk
    without a file name ("[Errno 28] No space left on device"), ``mkstemp`` with the temporary
    name; the user knows the target."""
    name = error.filename
    if error.errno and (name is None or os.path.basename(os.fspath(name)).startswith(prefix)):
        return OSError(error.errno, error.strerror or os.strerror(error.errno), path)
    return error


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
    return path


def write_json(path, data, indent=None, separators=None):
    """Write ``data`` as json (utf-8, ending with a newline) atomically; returns ``path``.

    ``indent`` and ``separators`` are those of :func:`json.dump` (``separators=(',', ':')``
    for the most compact form)."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(data, f, indent=indent, separators=separators)
            f.write('\n')
    return path


def write_yaml(path, data):
    """Write plain containers as block-style yaml, keys in their order, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            yaml.safe_dump(data, f, sort_keys=False, default_flow_style=None)
    return path


def write_npz(path, **arrays):
    """Write arrays as an uncompressed ``.npz`` (``np.load(path)[name]``) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.savez(f, **arrays)
    return path


def write_mat(path, mdict):
    """Write a MATLAB 5 ``.mat`` file of the variables in ``mdict`` (scipy's savemat) atomically."""
    from scipy.io import savemat
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            savemat(f, mdict)
    return path


# --------------------------------------------------------------------------------------------
# a folder replaced in one step

# The siblings of a folder being replaced: '.<name>.new-<host>-<pid>-<random>' (the new content
# being built) and '.<name>.old-<host>-<pid>-<random>' (the previous content moved aside, only
# where two folders cannot be exchanged). Host and pid tell a killed run's leftovers from those
# of a run still going (on this machine or another one sharing the file system).
_SIBLING = re.compile(r'^\.(?P<name>.+)\.(?P<kind>new|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-')
_RENAME_EXCHANGE = 2  # <linux/fs.h>
_AT_FDCWD = -100


def _default_folder_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def _host_tag():
    return '%08x' % (zlib.crc32(socket.gethostname().encode('utf-8', 'replace')) & 0xffffffff)


def _new_sibling(folder, kind):
    parent, name = os.path.split(folder)
    return tempfile.mkdtemp(prefix='.%s.%s-%s-%d-' % (name, kind, _host_tag(), os.getpid()),
                            dir=parent)


def _pid_alive(pid):
    if os.name != 'posix':
        return True  # no harmless liveness probe (os.kill would terminate it): leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. another user's process
    return True


def _leftovers(folder):
    """``(kind, path)`` of the siblings of ``folder`` whose process (on this host) is gone,
    newest first."""
    parent, name = os.path.split(folder)
    host = _host_tag()
    found = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return found
    for entry in entries:
        m = _SIBLING.match(entry.name)
        if (m and m.group('name') == name and m.group('host') == host
                and entry.is_dir(follow_symlinks=False) and not _pid_alive(int(m.group('pid')))):
            found.append((entry.stat(follow_symlinks=False).st_mtime, m.group('kind'), entry.path))
    return [(kind, path) for _, kind, path in sorted(found, reverse=True)]


def _recover(folder):
    """Tidy up after a killed :func:`atomic_folder` on ``folder``."""
    for kind, path in _leftovers(folder):
        if kind == 'old' and not os.path.lexists(folder):
            # killed between the two renames of the fallback swap: the previous content returns
            os.rename(path, folder)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _exchange(a, b):
    """Swap two folders in one system call (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the system or the file system does not offer it."""
    if not sys.platform.startswith('linux'):
        return False
    import ctypes
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without it (glibc < 2.28)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), b)


def _carry(src, dst, skip=()):
    """Put the entries of ``src`` not named in ``skip`` (and not in ``dst`` already) into ``dst``:
    files as hard links (the same bytes, nothing copied; a copy where links are refused),
    folders recreated with their content, symlinks as symlinks; sockets and pipes are left."""
    for entry in os.scandir(src):
        target = os.path.join(dst, entry.name)
        if entry.name in skip or os.path.lexists(target):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir():
            os.mkdir(target)
            _carry(entry.path, target)
            shutil.copystat(entry.path, target)
        elif entry.is_file():
            try:
                os.link(entry.path, target)
            except OSError:
                shutil.copy2(entry.path, target)


def _sync_files(folder):
    """Flush the files directly in ``folder`` and the folder itself to disk."""
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)
    _fsync_folder(folder)


def _stray_temp_names(folder, owned):
    """Names in ``folder`` of interrupted :func:`atomic_path` writes of the ``owned`` files."""
    stray = set()
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            for own in owned:
                stem, ext = os.path.splitext(own)
                if name.startswith('.%s.tmp-' % stem) and name.endswith(ext):
                    stray.add(name)
    return stray


def _cwd_below(folder):
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    if cwd == folder or cwd.startswith(folder.rstrip(os.sep) + os.sep):
        return os.path.relpath(cwd, folder)
    return None


def _install(build, folder, owned):
    """Put the finished ``build`` folder in the place of ``folder`` (see :func:`atomic_folder`)."""
    cwd = _cwd_below(folder)
    if os.path.isdir(folder):
        _carry(folder, build, set(owned) | _stray_temp_names(folder, owned))
        os.chmod(build, stat.S_IMODE(os.stat(folder).st_mode))
        _sync_files(build)
        if _exchange(build, folder):
            shutil.rmtree(build, ignore_errors=True)  # now the previous content
        else:
            aside = _new_sibling(folder, 'old')
            os.rename(folder, aside)  # over the empty folder just made
            try:
                os.rename(build, folder)
            except BaseException:
                os.rename(aside, folder)
                raise
            shutil.rmtree(aside, ignore_errors=True)
    else:
        os.chmod(build, _default_folder_mode())
        _sync_files(build)
        os.rename(build, folder)
    _fsync_folder(os.path.dirname(folder))
    if cwd is not None:
        # this process stood in the replaced folder: move it to the same place in the new one
        target = os.path.normpath(os.path.join(folder, cwd))
        with contextlib.suppress(OSError):
            os.chdir(target if os.path.isdir(target) else folder)


@contextlib.contextmanager
def atomic_folder(path, owned=()):
    """Yield a new empty folder beside ``path`` to build ``path``'s new content in; when the
    block ends without an error it replaces ``path`` in one step, so an interruption at any
    moment leaves ``path`` with all of its previous content or all of the new one.

        with atomic_folder('out/export', owned=('model.onnx', 'deploy_config.json')) as tmp:
            ...  # write into tmp and check the files there

    ``owned``: the names in ``path`` the new content replaces; one the new content lacks is gone
    afterwards. Everything else in ``path`` (a user's notes, a benchmark's weights) is carried
    into the new folder before the swap as hard links, so nothing is copied and those files are
    in ``path`` at every moment. Stray temporary files of interrupted :func:`atomic_path`
    writes of owned files are not carried.

    The one step: on Linux, ``renameat2(RENAME_EXCHANGE)`` swaps the two folders in one system
    call; the sibling then holds the previous content and is deleted. Where that call does not
    exist, ``path`` is renamed aside to ``.<name>.old-*`` and the new folder renamed into place;
    a kill between those two renames leaves ``path`` missing and its previous content complete
    in the ``.old-*`` sibling, which the next call on ``path`` renames back.

    When the block raises (a failed check, Ctrl-C), the new folder is deleted and ``path`` is
    untouched. A sibling left by a run that was killed (its process is gone) is deleted by the
    next call on ``path``; one of a run still going is left alone. A symlinked ``path`` is
    resolved: its target is replaced. The parent folder must be writable.
    """
    path = os.path.realpath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputFileError('not a folder: %s' % path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _recover(path)
    build = _new_sibling(path, 'new')
    try:
        yield build
        if stop_signal() is not None:
            # stopped while building, and the KeyboardInterrupt was swallowed on the way:
            # never install a folder whose building was interrupted
            raise KeyboardInterrupt()
        _install(build, path, tuple(owned))
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


# --------------------------------------------------------------------------------------------
# reading

def read_image(path):
    """Read an image file as BGR uint8, H x W x 3, **ignoring its EXIF orientation**.

    One policy for every reader (datasets, inference, deploy, int8 calibration, benchmarks):
    the stored pixels, as they are in the file. Keypoint annotations (COCO, MPII) and the
    reference training code (``cv2.IMREAD_IGNORE_ORIENTATION``) use the stored pixel frame, so
    honouring the tag would rotate a tagged photo away from its annotations and change dataset
    crops; calibration and the benchmarks follow the same policy so that a model is calibrated
    and measured on exactly what it is fed. A phone photo that should be turned upright must
    be rotated before it is given to posekit. Grey and 16-bit images become 8-bit BGR.

    A missing file or one OpenCV cannot decode raises :class:`ImageReadError` naming it. A
    truncated JPEG, which libjpeg decodes partly (the missing rows come out gray), is returned
    as decoded with a :class:`TruncatedImageWarning` naming it.
    """
    import cv2
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageReadError('image not found: %s' % path)
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.size == 0:
        raise ImageReadError('cannot read image (corrupt or unsupported format): %s' % path)
    # imread decodes a truncated JPEG partly and says so only on the C stderr; (imdecode would
    # refuse it, so the file is decoded by imread as always and its bytes are checked apart)
    if path.lower().endswith(_JPEG_EXTENSIONS) and _jpeg_truncated(path):
        warnings.warn('image %s is truncated (a JPEG without its end marker): the missing part '
                      'is decoded as gray' % path, TruncatedImageWarning, stacklevel=2)
    return image


_JPEG_EXTENSIONS = ('.jpg', '.jpeg', '.jpe')


class TruncatedImageWarning(UserWarning):
    """An image file ends early; what OpenCV decoded of it is used."""


def _jpeg_truncated(path):
    """True when a JPEG file has no end-of-image marker (FF D9) after its last start of scan
    (FF DA). Entropy-coded data never holds either byte pair (a data FF is stuffed as FF 00),
    so a complete file has its EOI after the last scan; an EXIF thumbnail's own markers come
    before the main image's scans."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        return False  # it was just decoded; a file that cannot be read again is not judged
    if not data.startswith(b'\xff\xd8'):
        return False  # not a JPEG stream (a PNG named .jpg): OpenCV judged it by content
    return data.rfind(b'\xff\xd9') < data.rfind(b'\xff\xda')


def list_images(folder, what='image folder'):
    """The image files directly in ``folder`` (by extension, case-insensitive), sorted by name.

    A missing folder or one without images raises :class:`InputFileError`; ``what`` names the
    folder in the message (``'calibration folder'``).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputFileError('%s not found: %s' % (what, folder))
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(folder, f)))
    if not files:
        raise InputFileError('no images (%s) in the %s %s'
                             % (' '.join(IMAGE_EXTENSIONS), what, folder))
    return files


def read_json(path, what='json file'):
    """Parse a json file; a missing or unparsable file raises :class:`InputFileError` naming
    ``what`` and the path."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileError('%s not found: %s' % (what, path))
    try:
        with open(path, 'r', encoding='utf-8') as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputFileError('cannot parse %s %s: %s' % (what, path, _one_line(e))) from e
