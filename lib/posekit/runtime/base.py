"""Run an exported (or in-memory) pose model on CPU: one contract for every backend.

    runner = build_runner('onnx', 'output/export/coco/simplenet/256x192_d256x3_adam_lr1e-3')
    check_io(runner, DeployConfig.load(deploy_config_path(runner.model_path)))
    heatmaps = runner(batch)        # float32 (B, 3, H, W) in -> float32 (B, K, H/4, W/4) out

* :class:`OnnxRunner` - ONNX Runtime, CPU execution provider, with the session options of
  LANDSCAPE 5.1 (``ORT_ENABLE_ALL``, sequential execution, intra-op threads = physical cores
  unless ``threads`` is given);
* :class:`PaddleInferenceRunner` - Paddle Inference on the ``paddle.jit.save`` model
  (``model.json`` + ``model.pdiparams``), with oneDNN and the grouped-deconv+BN workaround of
  LANDSCAPE 5.4;
* :class:`DygraphRunner` - a ``paddle.nn.Layer`` in eval mode without gradients.

Every runner has ``input_name``, ``input_shape`` and ``output_shape`` (lists, ``None`` for a
dynamic dimension), ``dynamic_batch``, ``name`` (for messages) and ``__call__``. A model exported
with a fixed batch of 1 accepts any batch size: the batch is run in chunks, so callers need not
care. Decoding stays outside the graph (``posekit.codec.heatmap``).
"""
import os

import numpy as np

__all__ = ['ModelLoadError', 'OnnxRunner', 'PaddleInferenceRunner', 'DygraphRunner', 'check_io',
           'build_runner', 'ort_session_options', 'paddle_model_files', 'onnx_model_file',
           'physical_cores', 'RUNNER_KINDS']

RUNNER_KINDS = ('onnx', 'paddle')
ONNX_NAME = 'model.onnx'
PADDLE_PREFIX = 'model'


class ModelLoadError(ValueError):
    """A model file that is missing, unreadable, or does not fit its deploy config."""


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


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].strip()


def _error_summary(error):
    """The most specific line of a (possibly multi-line, C++) error message."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for ln in lines:
        if 'Error:' in ln and not ln.startswith('In user code'):
            return ln[:200]
    return (lines[0] if lines else type(error).__name__)[:200]


def _dims(shape):
    """Graph dimensions -> ints, ``None`` for dynamic ones (names, -1, 0, missing)."""
    out = []
    for d in shape:
        out.append(int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None)
    return out


def _format_shape(shape):
    return 'x'.join('?' if d is None else str(d) for d in shape)


class _Runner:
    """Shared ``__call__``: input checks and chunking for fixed-batch models."""
    name = 'model'
    model_path = None
    input_name = 'image'
    input_shape = [None, 3, None, None]
    output_shape = [None, None, None, None]

    @property
    def dynamic_batch(self):
        return self.input_shape[0] is None

    def _run(self, batch):
        raise NotImplementedError

    def _check_input(self, batch):
        batch = np.asarray(batch)
        if batch.ndim == 3:
            raise ValueError('%s: expected a batch (B, 3, H, W), got one image %s; add a batch axis'
                             % (self.name, tuple(batch.shape)))
        if batch.ndim != 4:
            raise ValueError('%s: expected a float32 batch (B, 3, H, W), got shape %s'
                             % (self.name, tuple(batch.shape)))
        for axis, want in zip((1, 2, 3), self.input_shape[1:]):
            if want is not None and batch.shape[axis] != want:
                raise ValueError('%s expects %s input (B x C x H x W), got %s'
                                 % (self.name, _format_shape(self.input_shape),
                                    _format_shape(batch.shape)))
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
            type(self).__name__, self.name, _format_shape(self.input_shape),
            _format_shape(self.output_shape))


def _require_file(path, what):
    if not path:
        raise ModelLoadError('no %s given' % what)
    if not os.path.exists(path):
        raise ModelLoadError('%s not found: %s' % (what, path))


def onnx_model_file(model_path):
    """``model_path`` itself, or the ONNX model inside a folder (``model.onnx`` or the only one)."""
    _require_file(model_path, 'ONNX model')
    if os.path.isdir(model_path):
        default = os.path.join(model_path, ONNX_NAME)
        if os.path.isfile(default):
            return default
        found = sorted(f for f in os.listdir(model_path) if f.endswith('.onnx'))
        if len(found) == 1:
            return os.path.join(model_path, found[0])
        raise ModelLoadError('%s holds %s; pass the .onnx file itself'
                             % (model_path, 'no .onnx file' if not found else
                                '%d .onnx files (%s)' % (len(found), ', '.join(found))))
    return model_path


def ort_session_options(threads=None):
    """ONNX Runtime options of LANDSCAPE 5.1: all graph optimisations, sequential execution,
    ``intra_op_num_threads`` = ``threads`` (0 = ORT's default, one thread per physical core)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads) if threads else 0
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: no per-initializer clean-up warnings
    return so


class OnnxRunner(_Runner):
    """ONNX Runtime on CPU; ``model_path`` is a ``.onnx`` file or a folder holding one."""

    def __init__(self, model_path, threads=None):
        import onnxruntime as ort
        path = onnx_model_file(model_path)
        self.model_path = path
        self.name = os.path.basename(path)
        try:
            self.session = ort.InferenceSession(path, sess_options=ort_session_options(threads),
                                                providers=['CPUExecutionProvider'])
        except Exception as e:  # InvalidProtobuf, Fail, NotImplemented... all pybind types
            raise ModelLoadError('cannot load ONNX model %s: %s' % (path, _first_line(e))) from e
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError('%s has %d inputs and %d outputs; a pose model has one image '
                                 'input and a heatmap output' % (path, len(inputs), len(outputs)))
        if len(inputs[0].shape) != 4 or len(outputs[0].shape) != 4:
            raise ModelLoadError('%s maps a %d-D input to a %d-D output; expected NCHW image -> '
                                 'NCHW heatmaps'
                                 % (path, len(inputs[0].shape), len(outputs[0].shape)))
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self.input_shape = _dims(inputs[0].shape)
        self.output_shape = _dims(outputs[0].shape)
        if self.dynamic_batch:
            self.output_shape[0] = None
        self._probe_output_shape()

    def _run(self, batch):
        return self.session.run([self.output_name], {self.input_name: batch})[0]


def paddle_model_files(model_path):
    """(model file, params file) of a ``paddle.jit.save`` model.

    ``model_path`` may be the prefix (``out/model``), the ``.json`` (Paddle 3, PIR) or legacy
    ``.pdmodel`` file, the ``.pdiparams`` file, or the folder holding ``model.json``.
    """
    if not model_path:
        raise ModelLoadError('no Paddle model given')
    prefix = model_path
    if os.path.isdir(model_path):
        prefix = os.path.join(model_path, PADDLE_PREFIX)
        if not any(os.path.isfile(prefix + ext) for ext in ('.json', '.pdmodel')):
            found = sorted(f for f in os.listdir(model_path) if f.endswith(('.json', '.pdmodel'))
                           and os.path.isfile(os.path.join(model_path, os.path.splitext(f)[0]
                                                           + '.pdiparams')))
            if len(found) != 1:
                raise ModelLoadError('%s holds no Paddle inference model (model.json + '
                                     'model.pdiparams, written by export.py --format paddle)'
                                     % model_path)
            prefix = os.path.join(model_path, os.path.splitext(found[0])[0])
    else:
        root, ext = os.path.splitext(model_path)
        if ext in ('.json', '.pdmodel', '.pdiparams'):
            prefix = root
    model_file = next((prefix + ext for ext in ('.json', '.pdmodel')
                       if os.path.isfile(prefix + ext)), None)
    params_file = prefix + '.pdiparams'
    if model_file is None:
        raise ModelLoadError('Paddle model not found: %s (expected %s.json and %s.pdiparams)'
                             % (model_path, prefix, prefix))
    if not os.path.isfile(params_file):
        raise ModelLoadError('Paddle model %s has no weights file %s' % (model_file, params_file))
    return model_file, params_file


def _pir_input_shape(model_file, input_name):
    """Declared shape of the feed ``input_name`` in a PIR ``.json`` program (None if not found).

    Paddle Inference has no API for the declared input shape, and an input handle reports
    ``[0]`` for a dynamic batch until data is fed. The PIR json keeps it as the ``shape``
    attribute of the ``data`` op; anything unexpected in that (internal) format gives None.
    """
    import json
    if not model_file.endswith('.json'):
        return None
    try:
        with open(model_file, 'r', encoding='utf-8') as f:
            program = json.load(f)
    except (OSError, ValueError):
        return None

    def attrs(op):
        out = {}
        for a in op.get('A', []) if isinstance(op.get('A'), list) else []:
            if isinstance(a, dict) and 'N' in a and isinstance(a.get('AT'), dict):
                out[a['N']] = a['AT'].get('D')
        return out

    stack = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if str(node.get('#', '')).endswith('.data'):
                a = attrs(node)
                if a.get('name') == input_name and isinstance(a.get('shape'), list):
                    return a['shape']
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


class PaddleInferenceRunner(_Runner):
    """Paddle Inference on CPU for a ``paddle.jit.save`` model (see :func:`paddle_model_files`).

    With ``mkldnn`` (default) oneDNN is on - 5-6x faster than plain CPU kernels (LANDSCAPE 5.4) -
    and the PIR pass ``conv2d_transpose_bn_fuse_pass`` is removed: in Paddle 3.3.1 it breaks a
    grouped ``Conv2DTranspose`` followed by BatchNorm (LPN's head) with "Broadcast dimension
    mismatch"; without it the output matches the plain CPU kernels.

    Some ops have no working oneDNN kernel in Paddle 3.3.1 and fail only when the predictor
    runs: LayerNorm over more than the last axis (LPN's GC block normalises [C, 1, 1]) and
    ``nearest_interp`` (HRNet's upsampling). ``posekit.export.exporter`` traces both in a form oneDNN
    runs, but a model saved otherwise may still contain them. The predictor is therefore run
    once on a zero batch when it is created; if that fails with oneDNN, it is rebuilt with plain
    CPU kernels (correct, several times slower) and ``onednn_note`` says why; ``onednn`` tells
    what is in use. ``threads`` defaults to the number of physical cores, like ONNX Runtime.
    """

    def __init__(self, model_path, threads=None, mkldnn=True):
        model_file, params_file = paddle_model_files(model_path)
        self.model_path = model_file
        self.name = os.path.basename(model_file)
        self._files = (model_file, params_file)
        self._threads = int(threads) if threads else physical_cores()
        self.onednn_note = None
        self._create(bool(mkldnn))
        if len(self.input_shape) != 4:
            raise ModelLoadError('%s takes a %d-D input; expected NCHW images'
                                 % (model_file, len(self.input_shape)))
        self.output_shape = [None] * 4
        try:
            self._probe_output_shape()
        except Exception as e:
            if not self.onednn:
                raise ModelLoadError('Paddle model %s fails on a zero batch: %s'
                                     % (model_file, _first_line(e))) from e
            self.onednn_note = 'oneDNN off (%s)' % _error_summary(e)
            self._create(False)
            self._probe_output_shape()

    def _create(self, onednn):
        from paddle import inference
        model_file, params_file = self._files
        config = inference.Config(model_file, params_file)
        config.disable_gpu()
        config.disable_glog_info()
        config.set_cpu_math_library_num_threads(self._threads)
        if onednn:
            if hasattr(config, 'enable_onednn'):
                config.enable_onednn()
            else:  # the pre-3.0 name
                config.enable_mkldnn()
            config.delete_pass('conv2d_transpose_bn_fuse_pass')
        else:
            if hasattr(config, 'disable_onednn'):
                config.disable_onednn()
            else:
                config.disable_mkldnn()
        try:
            self.predictor = inference.create_predictor(config)
        except Exception as e:
            raise ModelLoadError('cannot load Paddle model %s: %s'
                                 % (model_file, _first_line(e))) from e
        self.onednn = onednn
        names = self.predictor.get_input_names()
        outputs = self.predictor.get_output_names()
        if len(names) != 1 or not outputs:
            raise ModelLoadError('%s has %d inputs and %d outputs; a pose model has one image '
                                 'input and a heatmap output'
                                 % (model_file, len(names), len(outputs)))
        self.input_name = names[0]
        self.output_name = outputs[0]
        self._input = self.predictor.get_input_handle(self.input_name)
        self._output = self.predictor.get_output_handle(self.output_name)
        self.input_shape = _dims(self._input.shape())
        if len(self.input_shape) != 4:
            # a dynamic input reports shape [0] before the first run: read the program instead
            self.input_shape = _dims(_pir_input_shape(model_file, self.input_name) or [])

    def _run(self, batch):
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        self.predictor.run()
        return self._output.copy_to_cpu()


class DygraphRunner(_Runner):
    """A ``paddle.nn.Layer`` (put in eval mode) run under ``paddle.no_grad``.

    ``input_size`` ([W, H], optional) fixes ``input_shape`` and lets ``output_shape`` be known
    before the first call; the batch size is always dynamic.
    """

    def __init__(self, model, input_size=None, name=None):
        self.model = model
        self.model.eval()
        self.name = name or type(model).__name__
        self.input_name = 'image'
        if input_size is not None:
            w, h = int(input_size[0]), int(input_size[1])
            self.input_shape = [None, 3, h, w]
        else:
            self.input_shape = [None, 3, None, None]
        self.output_shape = [None] * 4
        self._probe_output_shape()

    def _run(self, batch):
        import paddle
        with paddle.no_grad():
            return self.model(paddle.to_tensor(batch)).numpy()

    def __call__(self, batch):
        out = super().__call__(batch)
        if self.output_shape[1] is None:
            self.output_shape = [None] + list(out.shape[1:])
        return out


def check_io(runner, deploy_config):
    """Raise :class:`ModelLoadError` if the model's input size, joints or heatmap size disagree
    with ``deploy_config`` (a :class:`posekit.inference.deploy_config.DeployConfig`). Dynamic dims pass."""
    from posekit.inference.deploy_config import DEPLOY_CONFIG_NAME
    dc = deploy_config
    w, h = dc.input_size
    hw, hh = dc.heatmap_size
    ins, outs = runner.input_shape, runner.output_shape
    problems = []
    if any(a is not None and a != b for a, b in zip(ins[1:], (3, h, w))):
        problems.append('%s expects %s input but %s says %dx%d [W,H]'
                        % (runner.name, _format_shape(ins), DEPLOY_CONFIG_NAME, w, h))
    if outs[1] is not None and outs[1] != dc.num_joints:
        problems.append('%s outputs %d joints but %s lists %d (%s)'
                        % (runner.name, outs[1], DEPLOY_CONFIG_NAME, dc.num_joints,
                           dc.dataset or 'joint_names'))
    if any(a is not None and a != b for a, b in zip(outs[2:], (hh, hw))):
        problems.append('%s outputs %s heatmaps but %s says %dx%d [W,H]'
                        % (runner.name, _format_shape(outs), DEPLOY_CONFIG_NAME, hw, hh))
    if problems:
        raise ModelLoadError('; '.join(problems))


def build_runner(kind, model_path, threads=None):
    """``'onnx'`` -> :class:`OnnxRunner`, ``'paddle'`` -> :class:`PaddleInferenceRunner`."""
    key = str(kind).strip().lower()
    if key == 'onnx':
        return OnnxRunner(model_path, threads=threads)
    if key == 'paddle':
        return PaddleInferenceRunner(model_path, threads=threads)
    raise ValueError("unknown runtime %r; use one of: %s" % (kind, ', '.join(RUNNER_KINDS)))
