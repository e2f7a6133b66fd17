"""Reading a video frame by frame with OpenCV, with one-line errors for what cannot be opened."""
import contextlib
import os
import sys

import cv2
import numpy as np

from posekit.errors import PosekitInputError

__all__ = ['VideoError', 'VideoReader', 'DEFAULT_FPS']

# The frame rate of a video whose container does not say (some raw streams): a common camera rate.
DEFAULT_FPS = 25.0


class VideoError(PosekitInputError):
    """A video that is missing, cannot be opened or has no frame."""


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level stderr for a moment: FFmpeg prints "moov atom not found" and the like
    itself before OpenCV reports failure, and our one-line error says it better."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


class VideoReader:
    """The frames (BGR uint8) of a video file; opened, and its first frame read, on creation.

    ``fps`` (:data:`DEFAULT_FPS` when the file does not give one) and ``frame_size`` [W, H].
    Iterating yields every frame once, the first included; :meth:`close` releases the file.
    """

    def __init__(self, path):
        if not os.path.isfile(path):
            raise VideoError('video not found: %s' % path)
        self.path = path
        with _quiet_stderr():
            self.capture = cv2.VideoCapture(path)
            ok, frame = self.capture.read() if self.capture.isOpened() else (False, None)
        if not ok:
            self.capture.release()
            raise VideoError('cannot open video %s (unsupported format or no frames)' % path)
        self._first = frame
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
        self.frame_size = [int(frame.shape[1]), int(frame.shape[0])]

    def __iter__(self):
        frame, self._first = self._first, None
        while frame is not None:
            yield frame
            ok, frame = self.capture.read()
            if not ok:
                frame = None

    def close(self):
        self.capture.release()
