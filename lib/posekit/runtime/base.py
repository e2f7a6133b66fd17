"""The runner contract: a float32 NCHW batch goes in, float32 heatmaps come out.

    heatmaps = runner(batch)        # (B, 3, H, W) -> (B, K, H/4, W/4), numpy float32

Every backend (:mod:`.onnx`, :mod:`.paddle_inference`, :mod:`.dygraph`) subclasses
:class:`Runner` and implements ``_run`` for one batch of the size its graph takes. The base
class checks the batch, and runs a model exported with a fixed batch size in chunks of that
size (the last one zero-padded), so callers never care how the model was exported.

A runner describes itself with ``name`` (for messages), ``model_path`` (the file it runs, None
in memory), ``input_name``, ``input_shape`` and ``output_shape`` (lists, ``None`` for a dynamic
dimension), ``dynamic_batch`` and ``threads`` (CPU threads it was opened with; None when the
backend decides). :func:`check_io` compares those shapes with what a config expects.
Decoding stays outside the graph (``posekit.codec.heatmap``), so every backend decodes alike.
"""
import os

import numpy as np

from posekit.errors import PosekitInputError

__all__ = ['Runner', 'ModelLoadError', 'RunnerInputError', 'check_io', 'check_shapes',
           'check_free_size', 'physical_cores', 'error_summary', 'format_shape']

# The file name check_io's messages give to the deploy config (posekit.inference.deploy_config
# writes it; the runtime sits below inference and only names it).
DEPLOY_CONFIG_LABEL = 'deploy_config.json'


class ModelLoadError(PosekitInputError):
    """A model file that is missing, unreadable, or does not fit its deploy config."""


class RunnerInputError(PosekitInputError):
    """A batch the model cannot take (wrong rank or image size)."""


def physical_cores():
    """Physical CPU cores (ORT's default thread count); logical CPUs if that cannot be read."""
    try:
        cores = set()
        phys = core = None
        with open('/proc/cpuinfo', 'r') as f:
            for line in f:
                if line.startswith('physical id'):
                    phys = line.split(':', 1)[1].strip()
                elif line.startswith('core id'):
                    core = line.split(':', 1)[1].strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        if core is not None:
            cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, os.cpu_count() or 1)


def first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].strip()


def error_summary(error):
    """The most specific line of a (possibly multi-line, C++) error message."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for ln in lines:
        if 'Error:' in ln and not ln.startswith('In user code'):
            return ln[:200]
    return (lines[0] if lines else type(error).__name__)[:200]


def dims(shape):
    """Graph dimensions -> ints, ``None`` for dynamic ones (names, -1, 0, missing)."""
    return [int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None for d in shape]


def format_shape(shape):
    return 'x'.join('?' if d is None else str(d) for d in shape)


class Runner:
    """Base of every backend: ``__call__`` checks the batch and chunks it for fixed-batch graphs.

    Subclasses set the attributes in ``__init__`` and implement ``_run(batch)`` for a
    contiguous float32 batch whose size the graph takes.
    """
    name = 'model'
    model_path = None
    input_name = 'image'
    input_shape = [None, 3, None, None]
    output_shape = [None, None, None, None]
    threads = None

    @property
    def dynamic_batch(self):
        return self.input_shape[0] is None

    def _run(self, batch):
        raise NotImplementedError

    def _check_input(self, batch):
        batch = np.asarray(batch)
        if batch.ndim == 3:
            raise RunnerInputError('%s: expected a batch (B, 3, H, W), got one image %s; add a '
                                   'batch axis' % (self.name, tuple(batch.shape)))
        if batch.ndim != 4:
            raise RunnerInputError('%s: expected a float32 batch (B, 3, H, W), got shape %s'
                                   % (self.name, tuple(batch.shape)))
        for axis, want in zip((1, 2, 3), self.input_shape[1:]):
            if want is not None and batch.shape[axis] != want:
                raise RunnerInputError('%s expects %s input (B x C x H x W), got %s'
                                       % (self.name, format_shape(self.input_shape),
                                          format_shape(batch.shape)))
        return np.ascontiguousarray(batch, dtype=np.float32)

    def __call__(self, batch):
        batch = self._check_input(batch)
        n = batch.shape[0]
        fixed = self.input_shape[0]
        if n == 0:
            return np.zeros([0] + [d or 0 for d in self.output_shape[1:]], np.float32)
        if fixed is None or n == fixed:
            return np.asarray(self._run(batch), dtype=np.float32)
        # Fixed-batch graph: run in chunks of its batch size, zero-padding the last chunk.
        outs = []
        for start in range(0, n, fixed):
            chunk = batch[start:start + fixed]
            real = chunk.shape[0]
            if real < fixed:
                pad = np.zeros((fixed - real,) + chunk.shape[1:], np.float32)
                chunk = np.concatenate([chunk, pad], axis=0)
            outs.append(np.asarray(self._run(chunk), dtype=np.float32)[:real])
        return np.concatenate(outs, axis=0)

    def _probe_output_shape(self):
        """Fill unknown output dims by running one zero batch (also the warm-up run)."""
        if all(d is not None for d in self.output_shape[1:]):
            return
        if any(d is None for d in self.input_shape[1:]):
            return
        batch = self.input_shape[0] or 1
        out = self._run(np.zeros([batch] + list(self.input_shape[1:]), np.float32))
        shape = list(np.shape(out))
        self.output_shape = [None if self.dynamic_batch else shape[0]] + shape[1:]

    def __repr__(self):
        return '%s(%s, input %s -> output %s)' % (
            type(self).__name__, self.name, format_shape(self.input_shape),
            format_shape(self.output_shape))


def require_file(path, what):
    if not path:
        raise ModelLoadError('no %s given' % what)
    if not os.path.exists(path):
        raise ModelLoadError('%s not found: %s' % (what, path))


def check_shapes(runner, input_size, heatmap_size, num_joints, source, joints_source=None):
    """Raise :class:`ModelLoadError` (one line) if the runner's fixed input size ([W, H]),
    joint count or heatmap size ([W, H]) differ from what ``source`` (named in the message, e.g.
    ``deploy_config.json`` or the training config) says. Dynamic dims pass."""
    w, h = (int(v) for v in input_size)
    hw, hh = (int(v) for v in heatmap_size)
    ins, outs = runner.input_shape, runner.output_shape
    problems = []
    if any(a is not None and a != b for a, b in zip(ins[1:], (3, h, w))):
        problems.append('%s expects %s input but %s says %dx%d [W,H]'
                        % (runner.name, format_shape(ins), source, w, h))
    if outs[1] is not None and outs[1] != int(num_joints):
        problems.append('%s outputs %d joints but %s lists %d%s'
                        % (runner.name, outs[1], source, int(num_joints),
                           ' (%s)' % joints_source if joints_source else ''))
    if any(a is not None and a != b for a, b in zip(outs[2:], (hh, hw))):
        problems.append('%s outputs %s heatmaps but %s says %dx%d [W,H]'
                        % (runner.name, format_shape(outs), source, hw, hh))
    if problems:
        raise ModelLoadError('; '.join(problems))


def check_free_size(runner, channels, source):
    """Raise :class:`ModelLoadError` (one line) unless the runner takes 3-channel images of any
    height and width and returns ``channels`` maps (dynamic dims pass): what a bottom-up model,
    which sees every image at its own padded size, needs."""
    ins, outs = runner.input_shape, runner.output_shape
    problems = []
    if ins[1] is not None and ins[1] != 3:
        problems.append('%s takes %d-channel input, not a 3-channel image' % (runner.name, ins[1]))
    if ins[2] is not None or ins[3] is not None:
        problems.append('%s takes only %s input but %s describes a bottom-up model, which takes '
                        'every image at its own size: export it again with export.py'
                        % (runner.name, format_shape(ins), source))
    if outs[1] is not None and outs[1] != int(channels):
        problems.append('%s outputs %d maps but %s says %d'
                        % (runner.name, outs[1], source, int(channels)))
    if problems:
        raise ModelLoadError('; '.join(problems))


def check_io(runner, deploy_config, source=DEPLOY_CONFIG_LABEL):
    """:func:`check_shapes` against a deploy config (anything with ``input_size``,
    ``heatmap_size``, ``num_joints`` and optionally ``dataset``); :func:`check_free_size` when
    its ``input_size`` is None (a bottom-up model, ``output_channels`` maps)."""
    dc = deploy_config
    if dc.input_size is None:
        check_free_size(runner, dc.output_channels, source)
        return
    check_shapes(runner, dc.input_size, dc.heatmap_size, dc.num_joints, source,
                 joints_source=getattr(dc, 'dataset', '') or 'joint_names')
