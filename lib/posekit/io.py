"""Files in and out: atomic writes, the one image reader, image listing and json reading.

Every file posekit writes (configs, checkpoints, deploy configs, results, predictions, synthetic
datasets) goes through :func:`atomic_path`: the data is written to a temporary file in the same
folder, flushed to disk and renamed over the target, so a crash or Ctrl-C leaves either the old
file or the new one, never half of one (and no temporary file behind).

Framework-free: numpy, OpenCV (imported when an image is read), json and yaml; scipy is
imported only to write a ``.mat`` file. Errors about input files are one-line
:class:`InputFileError` (a :class:`~posekit.errors.PosekitInputError`, so a ``ValueError``).
"""
import contextlib
import json
import os
import tempfile

import numpy as np
import yaml

from posekit.errors import PosekitInputError

__all__ = ['InputFileError', 'ImageReadError', 'IMAGE_EXTENSIONS', 'atomic_path', 'write_bytes',
           'write_json', 'write_yaml', 'write_npz', 'write_mat', 'read_image', 'list_images',
           'read_json']

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
    fd, tmp = tempfile.mkstemp(prefix='.%s.tmp-' % stem, suffix=ext, dir=folder)
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
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_folder(folder)


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

    A missing file or one OpenCV cannot decode raises :class:`ImageReadError` naming it.
    """
    import cv2
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageReadError('image not found: %s' % path)
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.size == 0:
        raise ImageReadError('cannot read image (corrupt or unsupported format): %s' % path)
    return image


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
