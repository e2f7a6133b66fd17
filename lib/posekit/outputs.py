"""Where a run writes (REFERENCE_SPEC 8.4) and its text log.

* ``OUTPUT_DIR/<dataset>/<model>/<cfg name>/``: checkpoints, ``model_best.pdparams``,
  ``final_state.pdparams``, the resolved ``config.yaml``, evaluation artefacts and the text logs
  ``<cfg name>_<YYYY-mm-dd-HH-MM>_<phase>.log``;
* ``LOG_DIR/<dataset>/<model>/<cfg name>_<time>/``: VisualDL scalars.

``<dataset>`` is ``DATASET.DATASET`` (plus ``_<HYBRID_JOINTS_TYPE>`` when set, ':' -> '_'),
``<model>`` is ``pose_resnet_<depth>`` or ``MODEL.NAME`` (:func:`posekit.models.model_tag`).
"""
import logging
import os
import sys
import time

from posekit.config import cfg_name_of

__all__ = ['run_dirs', 'log_file', 'setup_logging', 'ProgressLine']

LOG_FORMAT = '%(asctime)-15s %(message)s'


def _dataset_dir(cfg):
    name = str(cfg.DATASET.DATASET)
    if cfg.DATASET.HYBRID_JOINTS_TYPE:
        name += '_' + str(cfg.DATASET.HYBRID_JOINTS_TYPE)
    return name.replace(':', '_')


def run_dirs(cfg, cfg_file, create=True):
    """``(final_output_dir, visualdl_dir, time_str)`` of a run (created on rank 0 if asked)."""
    from posekit.models import model_tag
    cfg_name = cfg_name_of(cfg_file) if cfg_file else 'default'
    rel = os.path.join(_dataset_dir(cfg), model_tag(cfg), cfg_name)
    time_str = time.strftime('%Y-%m-%d-%H-%M')
    final_output_dir = os.path.join(cfg.OUTPUT_DIR, rel)
    vdl_dir = os.path.join(cfg.LOG_DIR, rel + '_' + time_str)
    if create:
        os.makedirs(final_output_dir, exist_ok=True)
    return final_output_dir, vdl_dir, time_str


def log_file(folder, cfg_file, time_str, phase):
    """``<folder>/<cfg name>_<time>_<phase>.log`` (REFERENCE_SPEC 8.4)."""
    cfg_name = cfg_name_of(cfg_file) if cfg_file else 'default'
    return os.path.join(folder, '%s_%s_%s.log' % (cfg_name, time_str, phase))


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
        fh = logging.FileHandler(log_file, encoding='utf-8')
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
