"""Paddle Inference on CPU behind the runner contract (:mod:`posekit.runtime.base`).

Runs the ``paddle.jit.save`` model that ``export.py`` writes (``model.json`` + ``model.pdiparams``
in Paddle 3, or a legacy ``.pdmodel``). ``paddle`` is imported only when a runner is created, so
:func:`paddle_model_files` (used to tell what a path holds) needs no Paddle.
"""
import os

from posekit.runtime.base import ModelLoadError, Runner, dims, error_summary, first_line, \
    physical_cores

__all__ = ['PaddleInferenceRunner', 'paddle_model_files', 'PADDLE_PREFIX']

PADDLE_PREFIX = 'model'


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


def pir_op_attributes(model_file, op_name):
    """Attributes (name -> value) of every op ``op_name`` (e.g. ``'data'``, ``'leaky_relu'``) of
    a saved PIR ``.json`` program, in the order found; None when the file cannot be read as one.

    Paddle has no API for what a saved program declares (its input shapes, an op's attributes);
    the PIR json keeps them as the ops' ``A`` lists. Anything unexpected in that (internal)
    format is skipped.
    """
    import json
    if not model_file.endswith('.json'):
        return None
    try:
        with open(model_file, 'r', encoding='utf-8') as f:
            program = json.load(f)
    except (OSError, ValueError):
        return None
    found = []
    stack = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if str(node.get('#', '')).endswith('.' + op_name):
                attrs = {}
                for a in node.get('A', []) if isinstance(node.get('A'), list) else []:
                    if isinstance(a, dict) and 'N' in a and isinstance(a.get('AT'), dict):
                        attrs[a['N']] = a['AT'].get('D')
                found.append(attrs)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _pir_input_shape(model_file, input_name):
    """Declared shape of the feed ``input_name`` in a PIR ``.json`` program (None if not found):
    an input handle reports ``[0]`` for a dynamic batch until data is fed, so the ``shape``
    attribute of the program's ``data`` op is read instead."""
    for attrs in pir_op_attributes(model_file, 'data') or []:
        if attrs.get('name') == input_name and isinstance(attrs.get('shape'), list):
            return attrs['shape']
    return None


def _program_has_op(model_file, op_name):
    """Whether the saved program ``model_file`` (PIR ``.json`` or legacy ``.pdmodel``) holds an
    op called ``op_name`` (its name appears in the file; a false positive only costs a fusion)."""
    try:
        with open(model_file, 'rb') as f:
            return op_name.encode() in f.read()
    except OSError:
        return False


class PaddleInferenceRunner(Runner):
    """Paddle Inference on CPU for a ``paddle.jit.save`` model (see :func:`paddle_model_files`).

    With ``mkldnn`` (default) oneDNN is on - 5-6x faster than plain CPU kernels (LANDSCAPE 5.4) -
    and the PIR pass ``conv2d_transpose_bn_fuse_pass`` is removed: in Paddle 3.3.1 it breaks a
    grouped ``Conv2DTranspose`` followed by BatchNorm (LPN's head) with "Broadcast dimension
    mismatch"; without it the output matches the plain CPU kernels. For a program with
    ``leaky_relu`` (SimplePose) ``conv_activation_onednn_fuse_pass`` is removed too: Paddle 3.3.1
    crashes the process (segfault) when it fuses a conv with a leaky ReLU.

    Some ops have no working oneDNN kernel in Paddle 3.3.1 and fail only when the predictor
    runs: LayerNorm over more than the last axis (LPN's GC block normalises [C, 1, 1]) and
    ``nearest_interp`` (HRNet's upsampling). ``posekit.export.paddle_model`` traces both in a form oneDNN
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
        self.threads = int(threads) if threads else physical_cores()
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
                                     % (model_file, first_line(e))) from e
            self.onednn_note = 'oneDNN off (%s)' % error_summary(e)
            self._create(False)
            self._probe_output_shape()

    def _create(self, onednn):
        from paddle import inference
        model_file, params_file = self._files
        config = inference.Config(model_file, params_file)
        config.disable_gpu()
        config.disable_glog_info()
        config.set_cpu_math_library_num_threads(self.threads)
        if onednn:
            if hasattr(config, 'enable_onednn'):
                config.enable_onednn()
            else:  # the pre-3.0 name
                config.enable_mkldnn()
            config.delete_pass('conv2d_transpose_bn_fuse_pass')
            if _program_has_op(model_file, 'leaky_relu'):
                # Paddle 3.3.1 fuses conv + leaky_relu into a oneDNN FusedConv2dOp that reads the
                # slope (a float64 attribute of the traced op) as float32: a segfault in
                # pir::FloatAttribute::data() while the predictor is created, which no fallback
                # can catch. Without this fusion the other oneDNN passes work (SimplePose).
                config.delete_pass('conv_activation_onednn_fuse_pass')
        else:
            if hasattr(config, 'disable_onednn'):
                config.disable_onednn()
            else:
                config.disable_mkldnn()
        try:
            self.predictor = inference.create_predictor(config)
        except Exception as e:
            raise ModelLoadError('cannot load Paddle model %s: %s'
                                 % (model_file, first_line(e))) from e
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
        self.input_shape = dims(self._input.shape())
        if len(self.input_shape) != 4:
            # a dynamic input reports shape [0] before the first run: read the program instead
            self.input_shape = dims(_pir_input_shape(model_file, self.input_name) or [])

    def _run(self, batch):
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        self.predictor.run()
        return self._output.copy_to_cpu()
