"""Export a pose model for deployment: Paddle inference model, ONNX, deploy config, parity check.

    result = export_model(model, cfg, 'output/export/coco/simplenet/256x192_d256x3_adam_lr1e-3')
    print(result.describe())

What is written into the output folder (REFERENCE_SPEC 7.5 / 10.13 fixed: input size read as
[W, H], opset 11 by default, named input, optional dynamic batch):

* ``model.json`` + ``model.pdiparams`` - the Paddle 3 (PIR) inference model, made with the
  documented API ``paddle.jit.to_static`` (one ``InputSpec`` named ``image``, shape
  ``[1 or None, 3, H, W]``) and ``paddle.jit.save``; run it with Paddle Inference;
* ``model.onnx`` - converted from that model by ``paddle2onnx.export`` at the requested opset,
  then tidied (weights stored as initializers, identities and dead constants removed, the output
  renamed ``heatmaps``); input ``image`` float32 NCHW, output ``heatmaps`` (B, K, H/4, W/4);
* ``deploy_config.json`` - :class:`posekit.inference.deploy_config.DeployConfig` (input size, normalisation,
  joints, flip pairs, decoding), which ``deploy.py`` reads;
* ``config.yaml`` - the resolved training config the model was built from.

The graph ends at the heatmaps: flip test and decoding (argmax + quarter offset, DARK,
soft-argmax) stay in numpy (``posekit.codec.heatmap``), so every runtime decodes identically and no
runtime needs ArgMax (LANDSCAPE 5.3).

After writing, the same inputs (Gaussian noise, and a synthetic picture cropped and normalised by
the library pre-processing) go through the dygraph model, ONNX Runtime and Paddle Inference;
any heatmap difference above ``tol`` (1e-4; relative to the heatmap maximum when that exceeds 1)
raises :class:`ParityError` with the numbers.
"""
import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np

from posekit.inference.deploy_config import DEPLOY_CONFIG_NAME, DeployConfig
from posekit.export.quantize import INT8_NAME

__all__ = ['ExportError', 'ParityError', 'FORMATS', 'DEFAULT_OPSET', 'MAX_OPSET', 'PARITY_TOL',
           'ONNX_NAME', 'PADDLE_PREFIX', 'CONFIG_NAME', 'default_output_dir', 'save_paddle_model',
           'paddle_to_onnx', 'tidy_onnx', 'synthetic_image', 'parity_inputs', 'compare_runners',
           'export_model', 'ExportResult']

FORMATS = ('onnx', 'paddle', 'both')
DEFAULT_OPSET = 11
# paddle2onnx 2.1.0 converts up to opset 21; asked for 22+ it aborts the process (C++ abort).
MAX_OPSET = 21
PARITY_TOL = 1e-4
ONNX_NAME = 'model.onnx'
PADDLE_PREFIX = 'model'
CONFIG_NAME = 'config.yaml'


class ExportError(ValueError):
    """The model could not be exported, or the export cannot be run."""


class ParityError(ExportError):
    """The exported model's heatmaps differ from the dygraph model's."""


def default_output_dir(cfg, cfg_file, root='output'):
    """``<root>/export/<dataset>/<model tag>/<cfg name>[_<W>x<H>]``.

    Mirrors the training layout ``output/<dataset>/<model>/<cfg name>``; the ``_<W>x<H>`` suffix
    is added only when the input size differs from the one of the yaml file itself (an override
    on the command line), so two sizes of one experiment do not overwrite each other.
    """
    from posekit.config import cfg_name_of, load_config
    from posekit.models import model_tag
    name = cfg_name_of(cfg_file) if cfg_file else model_tag(cfg)
    if cfg_file:
        try:
            file_size = list(load_config(cfg_file).MODEL.IMAGE_SIZE)
        except ValueError:
            file_size = None
        if file_size != list(cfg.MODEL.IMAGE_SIZE):
            name += '_%dx%d' % tuple(cfg.MODEL.IMAGE_SIZE)
    dataset = cfg.DATASET.DATASET or 'model'
    return os.path.join(root, 'export', dataset, model_tag(cfg), name)


def _named_input(model):
    """A thin Layer around ``model`` whose forward argument is named ``image``.

    Converting the wrapper instead of the model leaves the caller's model untouched
    (``paddle.jit.to_static`` replaces the ``forward`` of the layer it is given).
    """
    import paddle

    class ExportNet(paddle.nn.Layer):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            return self.net(image)

    return ExportNet(model)


def _nearest_repeat(factor):
    """Nearest upsampling by an integer factor as unsqueeze + expand + reshape (exact)."""
    import paddle

    def forward(x):
        c, h, w = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
        y = paddle.expand(paddle.unsqueeze(x, [3, 5]), [-1, -1, -1, factor, -1, factor])
        return paddle.reshape(y, [-1, c, h * factor, w * factor])
    return forward


def _interpolate_to_size(layer, factor):
    """Any other integer-factor Upsample: interpolate to the size known while tracing."""
    import paddle.nn.functional as F

    def forward(x):
        size = [int(x.shape[2]) * factor, int(x.shape[3]) * factor]
        return F.interpolate(x, size=size, mode=layer.mode, align_corners=layer.align_corners,
                             align_mode=layer.align_mode, data_format='NCHW')
    return forward


def _layer_norm_last_axis(layer):
    """LayerNorm over [C, 1, 1] as LayerNorm over C of the (N, C) view (the same numbers)."""
    import paddle
    import paddle.nn.functional as F
    shape = [int(v) for v in layer._normalized_shape]
    original = type(layer).forward

    def forward(x):
        if len(x.shape) != len(shape) + 1:
            return original(layer, x)
        y = F.layer_norm(paddle.reshape(x, [-1, shape[0]]), [shape[0]], weight=layer.weight,
                         bias=layer.bias, epsilon=layer._epsilon)
        return paddle.reshape(y, [-1] + shape)
    return forward


@contextlib.contextmanager
def _export_friendly(model):
    """Trace two layer kinds the way every runtime handles them; the numbers do not change.

    * ``nn.Upsample`` (HRNet fuse layers, nearest, factor ``2 ** (j - i)``): Paddle 3.3.1 records
      the factor as an int or float64 array; paddle2onnx 2.1.0 only accepts float32 there ("the
      0th elementwise MUST be ir::FloatAttribute", pir_parser.cc), and Paddle Inference with
      oneDNN cannot run ``nearest_interp`` at all ("ConvertPirAttribute2RuntimeAttribute not
      support ArrayAttribute<DoubleAttribute>"). Nearest upsampling by an integer factor is a
      repeat, traced as unsqueeze + expand + reshape (ONNX Unsqueeze/Expand/Reshape, no Resize);
      measured on HRNet-W18-small-v2 256x192, 1 thread: ORT 58 ms vs 70 ms with Resize, Paddle
      Inference + oneDNN 72 ms vs 190 ms on plain kernels. Other integer-factor modes are traced
      as interpolation to a fixed size.
    * ``nn.LayerNorm`` over ``[C, 1, 1]`` (LPN's GC block): Paddle's oneDNN LayerNorm only
      normalises the last axis ("MKL-DNN Layer Norm supports only last logical axis"), so it is
      traced as LayerNorm over C of the (N, C) view.

    The patched layers get their class ``forward`` back afterwards.
    """
    import paddle
    patched = []
    for layer in model.sublayers(include_self=True):
        forward = None
        if isinstance(layer, paddle.nn.Upsample) and layer.size is None \
                and layer.data_format in (None, 'NCHW'):
            factor = layer.scale_factor
            if isinstance(factor, (list, tuple)):
                factor = factor[0] if len(set(factor)) == 1 else None
            if factor is not None and float(factor) == int(factor) and int(factor) >= 1:
                forward = (_nearest_repeat(int(factor)) if layer.mode == 'nearest'
                           else _interpolate_to_size(layer, int(factor)))
        elif isinstance(layer, paddle.nn.LayerNorm):
            shape = list(layer._normalized_shape)
            if len(shape) > 1 and all(int(v) == 1 for v in shape[1:]):
                forward = _layer_norm_last_axis(layer)
        if forward is not None:
            layer.forward = forward
            patched.append(layer)
    try:
        yield
    finally:
        for layer in patched:
            layer.__dict__.pop('forward', None)


def save_paddle_model(model, prefix, input_size, dynamic_batch=False, input_name='image'):
    """``paddle.jit.to_static`` + ``paddle.jit.save``: writes ``<prefix>.json`` (PIR program)
    and ``<prefix>.pdiparams``. ``input_size`` is [W, H]. Returns (model file, params file)."""
    import paddle
    from paddle.static import InputSpec
    w, h = int(input_size[0]), int(input_size[1])
    spec = [InputSpec(shape=[None if dynamic_batch else 1, 3, h, w], dtype='float32',
                      name=input_name)]
    model.eval()
    net = _named_input(model)
    net.eval()
    try:
        with _export_friendly(model):
            static_net = paddle.jit.to_static(net, input_spec=spec, full_graph=True)
            paddle.jit.save(static_net, prefix)
    except Exception as e:
        from posekit.runtime import _error_summary
        raise ExportError('paddle.jit.save failed for a %dx%d input: %s'
                          % (w, h, _error_summary(e))) from e
    model_file = next((prefix + ext for ext in ('.json', '.pdmodel')
                       if os.path.isfile(prefix + ext)), None)
    params_file = prefix + '.pdiparams'
    if model_file is None or not os.path.isfile(params_file):
        raise ExportError('paddle.jit.save wrote no %s.json/.pdiparams' % prefix)
    return model_file, params_file


def _replace_name(graph, old, new):
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for vi in list(graph.value_info) + list(graph.output):
        if vi.name == old:
            vi.name = new


def tidy_onnx(model, input_name='image', output_name='heatmaps', dynamic_batch=False):
    """Clean up a paddle2onnx graph in place and return it.

    paddle2onnx 2.1.0 stores every weight as a ``Constant`` node, wraps BN outputs in
    ``Identity`` nodes and leaves unused constants. Its own clean-up is not used: the default
    runs Polygraphy with ``POLYGRAPHY_AUTOINSTALL_DEPS=1``, i.e. a pip install of
    onnx_graphsurgeon when it is missing, and the onnxoptimizer option asks for a misspelt
    pass (``'eliminate_nop_cast '``) and is skipped. So: constants -> initializers (what the
    int8 quantiser needs to find conv weights), identities bypassed, dead nodes and initializers
    dropped, the output renamed, the batch dimension named ``batch`` when dynamic.
    """
    from onnx import numpy_helper
    graph = model.graph
    graph_outputs = {o.name for o in graph.output}

    # Constant nodes holding a tensor -> initializers
    kept = []
    for node in graph.node:
        attrs = node.attribute
        if node.op_type == 'Constant' and len(attrs) == 1 and attrs[0].name == 'value':
            tensor = numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(tensor, node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)

    # bypass Identity nodes; one that produces a graph output hands its name to its producer
    alias = {}
    kept = []
    produced = {o for node in graph.node if node.op_type != 'Identity' for o in node.output}
    for node in graph.node:
        if node.op_type != 'Identity':
            kept.append(node)
        elif node.output[0] not in graph_outputs:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
        elif alias.get(node.input[0], node.input[0]) in produced - graph_outputs:
            alias[alias.get(node.input[0], node.input[0])] = node.output[0]
        else:
            kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            while node.input[i] in alias and alias[node.input[i]] != node.input[i]:
                node.input[i] = alias[node.input[i]]
        for i, name in enumerate(node.output):
            if name in alias and alias[name] in graph_outputs:
                node.output[i] = alias[name]
    del graph.node[:]
    graph.node.extend(kept)

    # dead-code elimination, from the outputs backwards
    needed = set(graph_outputs)
    live = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    vis = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(vis)

    if len(graph.input) == 1 and graph.input[0].name != input_name:
        _replace_name(graph, graph.input[0].name, input_name)
        graph.input[0].name = input_name
    if len(graph.output) == 1 and graph.output[0].name != output_name:
        _replace_name(graph, graph.output[0].name, output_name)

    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dynamic_batch:
            dims[0].ClearField('dim_value')
            dims[0].dim_param = 'batch'
    return model


def _onnx_opset(model):
    return max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default=0)


_ANSI = re.compile(r'\x1b\[[0-9;]*m')


class _CapturedOutput:
    """Collects everything written to stdout/stderr - Python and C++ (file descriptors 1, 2) -
    inside ``with``; the text is in ``.text`` afterwards."""

    def __init__(self):
        self.text = ''

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self._py = io.StringIO()
        self._redirects = [contextlib.redirect_stdout(self._py),
                           contextlib.redirect_stderr(self._py)]
        for r in self._redirects:
            r.__enter__()
        self._file = tempfile.TemporaryFile()
        try:
            self._saved = [os.dup(1), os.dup(2)]
            os.dup2(self._file.fileno(), 1)
            os.dup2(self._file.fileno(), 2)
        except OSError:  # no usable descriptors (embedded interpreters): Python level only
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            for fd in self._saved:
                os.close(fd)
        for r in reversed(self._redirects):
            r.__exit__(None, None, None)
        self._file.seek(0)
        native = self._file.read().decode('utf-8', 'replace')
        self.text = _ANSI.sub('', native + self._py.getvalue())
        self._file.close()
        return False

    def error_line(self):
        """The most informative line: paddle2onnx's [ERROR] message, else the last line."""
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        for ln in lines:
            if '[ERROR]' in ln:
                return ln.split('[ERROR]', 1)[1].strip().rstrip('.')
        return lines[-1] if lines else ''


def paddle_to_onnx(model_file, params_file, onnx_file, opset=DEFAULT_OPSET, input_name='image',
                   output_name='heatmaps', dynamic_batch=False):
    """``paddle2onnx.export`` of a saved Paddle model at exactly ``opset``, then :func:`tidy_onnx`.

    paddle2onnx reports conversion failures by printing a traceback and calling ``sys.exit``;
    its output is captured here and a failure becomes one :class:`ExportError`.
    """
    import onnx
    import paddle2onnx
    from paddle2onnx.utils import logging as p2o_logging
    raw = onnx_file + '.raw'
    if os.path.exists(raw):
        os.remove(raw)
    level = p2o_logging.log_level
    p2o_logging.log_level = 0  # errors only (INFO lines otherwise)
    try:
        with _CapturedOutput() as out:
            try:
                paddle2onnx.export(model_file, params_file, raw, opset_version=int(opset),
                                   auto_upgrade_opset=False, enable_onnx_checker=True,
                                   enable_optimize=True, optimize_tool='none')
                failure = None
            except (Exception, SystemExit) as e:
                failure = e
    finally:
        p2o_logging.log_level = level
    if failure is not None or not os.path.isfile(raw):
        # paddle2onnx logs the error, prints a traceback and then fails or calls sys.exit
        raise ExportError('paddle2onnx could not convert %s at opset %d: %s'
                          % (model_file, int(opset), out.error_line() or failure or 'no output'))
    try:
        model = onnx.load(raw)
        got = _onnx_opset(model)
        if got != int(opset):
            raise ExportError('paddle2onnx produced opset %d instead of %d' % (got, int(opset)))
        tidy_onnx(model, input_name=input_name, output_name=output_name,
                  dynamic_batch=dynamic_batch)
        onnx.checker.check_model(model)
        onnx.save(model, onnx_file)
    finally:
        if os.path.exists(raw):
            os.remove(raw)
    return onnx_file


def synthetic_image(width=288, height=384, seed=0):
    """A BGR picture with image-like statistics: a smooth background and a stick figure."""
    import cv2
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    for c in range(3):
        a, b, d = rng.uniform(-1, 1, 3)
        img[..., c] = 120 + 60 * np.sin(a * xx / 40.0 + b * yy / 50.0 + d * 3)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    cx = width // 2
    pts = {'head': (cx, height // 8), 'neck': (cx, height // 4), 'hip': (cx, height // 2 + 20),
           'lh': (cx - width // 5, height * 3 // 8), 'rh': (cx + width // 5, height * 3 // 8),
           'lf': (cx - width // 6, height * 7 // 8), 'rf': (cx + width // 6, height * 7 // 8)}
    color = tuple(int(v) for v in rng.randint(0, 255, 3))
    cv2.circle(img, pts['head'], max(4, width // 12), color, -1)
    for a, b in (('neck', 'hip'), ('neck', 'lh'), ('neck', 'rh'), ('hip', 'lf'), ('hip', 'rf')):
        cv2.line(img, pts[a], pts[b], color, max(2, width // 30))
    return img


def parity_inputs(deploy_config, batch=1, seed=0):
    """{'random': N(0, 1) batch, 'image': the synthetic picture pre-processed like a crop}."""
    from posekit.export.quantize import whole_image_input
    w, h = deploy_config.input_size
    rng = np.random.RandomState(seed)
    noise = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
    pics = [whole_image_input(synthetic_image(seed=seed + i), deploy_config) for i in range(batch)]
    return {'random': noise, 'image': np.stack(pics).astype(np.float32)}


def compare_runners(reference, runners, inputs):
    """Max |heatmap difference| of every runner against ``reference`` on every input.

    ``reference`` maps input name -> reference heatmaps; ``runners`` maps label -> runner.
    Returns rows ``(label, input name, shape, max abs diff, max abs reference)``.
    """
    rows = []
    for label, runner in runners.items():
        for key, batch in inputs.items():
            out = runner(batch)
            ref = reference[key]
            if out.shape != ref.shape:
                raise ParityError('%s returns heatmaps of shape %s for input %s, the dygraph '
                                  'model %s' % (label, out.shape, key, ref.shape))
            rows.append((label, key, tuple(batch.shape), float(np.abs(out - ref).max()),
                         float(np.abs(ref).max())))
    return rows


def _allowed(tol, scale):
    """Allowed max abs difference: ``tol`` for heatmaps up to 1 (any trained model), ``tol``
    relative to the heatmap maximum beyond (float32 rounding grows with the values, e.g. an
    untrained HRNet whose maps reach 100+)."""
    return tol * max(1.0, float(scale))


@dataclass
class ExportResult:
    output_dir: str
    files: list = field(default_factory=list)
    parity: list = field(default_factory=list)
    tol: float = PARITY_TOL
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = False
    deploy_config: object = None
    notes: list = field(default_factory=list)

    @property
    def onnx_file(self):
        return next((f for f in self.files if f.endswith('.onnx')), None)

    @property
    def paddle_file(self):
        return next((f for f in self.files if f.endswith(('.json', '.pdmodel'))
                     and os.path.basename(f) != DEPLOY_CONFIG_NAME), None)

    @property
    def max_diff(self):
        return max((r[3] for r in self.parity), default=0.0)

    def failures(self):
        return [r for r in self.parity if not r[3] <= _allowed(self.tol, r[4])]

    def describe(self):
        dc = self.deploy_config
        batch = 'N' if self.dynamic_batch else '1'
        lines = ['model  : %s, input image %sx3x%dx%d -> heatmaps %sx%dx%dx%d, opset %d'
                 % (dc.model, batch, dc.input_size[1], dc.input_size[0], batch, dc.num_joints,
                    dc.heatmap_size[1], dc.heatmap_size[0], self.opset)]
        lines.append('written: %s' % self.output_dir)
        for f in self.files:
            lines.append('         %s' % os.path.basename(f))
        if self.parity:
            lines.append('parity : max |heatmap difference| vs the dygraph model (tolerance %.0e%s)'
                         % (self.tol, ' x heatmap max' if any(r[4] > 1 for r in self.parity)
                            else ''))
            for label, key, shape, diff, scale in self.parity:
                lines.append('         %-16s %-6s %-14s %.2e  (heatmap max %.3g)'
                             % (label, key, 'x'.join(map(str, shape)), diff, scale))
        lines.extend('note   : %s' % n for n in self.notes)
        return '\n'.join(lines)


def export_model(model, cfg, output_dir, fmt='both', opset=DEFAULT_OPSET, dynamic_batch=False,
                 tol=PARITY_TOL, check=True, threads=None):
    """Export ``model`` (weights loaded) built from ``cfg`` into ``output_dir``; see the module doc.

    ``fmt`` is 'onnx', 'paddle' or 'both' (the Paddle model is always made, as the source of
    the ONNX conversion, but kept only for 'paddle'/'both'). With ``check``, ONNX Runtime and
    Paddle Inference are compared with the dygraph model (:class:`ParityError` above ``tol``).
    """
    from posekit.config import save_config
    from posekit.runtime import DygraphRunner, OnnxRunner, PaddleInferenceRunner, check_io
    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise ExportError('unknown export format %r; use one of: %s' % (fmt, ', '.join(FORMATS)))
    opset = int(opset)
    if opset < 11:
        # the opset of LANDSCAPE 5.3's recommendation and of every check here
        raise ExportError('opset %d is too old: posekit exports at opset 11 or newer' % opset)
    if opset > MAX_OPSET and fmt != 'paddle':
        raise ExportError('opset %d is newer than paddle2onnx supports (11..%d)'
                          % (opset, MAX_OPSET))
    dc = DeployConfig.from_cfg(cfg)
    model.eval()
    os.makedirs(output_dir, exist_ok=True)
    result = ExportResult(output_dir=output_dir, tol=tol, opset=opset, dynamic_batch=dynamic_batch,
                          deploy_config=dc)
    # Model files of an earlier export into this folder would no longer match deploy_config.json
    # (a stale model.json beside a new model.onnx, an int8 copy of the old weights): remove them.
    stale = [ONNX_NAME, INT8_NAME, PADDLE_PREFIX + '.json', PADDLE_PREFIX + '.pdmodel',
             PADDLE_PREFIX + '.pdiparams']
    removed = [name for name in stale if os.path.isfile(os.path.join(output_dir, name))]
    for name in removed:
        os.remove(os.path.join(output_dir, name))
    if removed:
        result.notes.append('removed the files of an earlier export: %s' % ', '.join(removed))

    inputs = parity_inputs(dc, batch=3 if dynamic_batch else 1) if check else {}
    reference = {}
    if check:
        # dygraph first: the reference is the model as trained, before any conversion
        dygraph = DygraphRunner(model, input_size=dc.input_size)
        reference = {k: dygraph(v) for k, v in inputs.items()}

    keep_paddle = fmt in ('paddle', 'both')
    tmp = None if keep_paddle else tempfile.mkdtemp(prefix='posekit_export_')
    try:
        prefix = os.path.join(output_dir if keep_paddle else tmp, PADDLE_PREFIX)
        model_file, params_file = save_paddle_model(model, prefix, dc.input_size,
                                                    dynamic_batch=dynamic_batch,
                                                    input_name=dc.input_name)
        runners = {}
        if keep_paddle:
            result.files += [model_file, params_file]
        if fmt in ('onnx', 'both'):
            onnx_file = paddle_to_onnx(model_file, params_file, os.path.join(output_dir, ONNX_NAME),
                                       opset=opset, input_name=dc.input_name,
                                       output_name=dc.output_name, dynamic_batch=dynamic_batch)
            result.files.append(onnx_file)
            runners['onnxruntime'] = OnnxRunner(onnx_file, threads=threads)
        runners['paddle inference'] = PaddleInferenceRunner(model_file, threads=threads)
        for runner in runners.values():
            check_io(runner, dc)
        if runners['paddle inference'].onednn_note:
            result.notes.append('Paddle Inference runs this model with plain CPU kernels: %s'
                                % runners['paddle inference'].onednn_note)
        if check:
            result.parity = compare_runners(reference, runners, inputs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    result.files.append(dc.save(os.path.join(output_dir, DEPLOY_CONFIG_NAME)))
    result.files.append(save_config(cfg, os.path.join(output_dir, CONFIG_NAME)))
    failed = result.failures()
    if check and failed:
        worst = max(failed, key=lambda r: r[3] / _allowed(tol, r[4]))
        raise ParityError('exported heatmaps differ from the dygraph model: max abs difference '
                          '%.3g > %.2g (%s on the %s input, heatmap max %.3g); the files are left '
                          'in %s for inspection' % (worst[3], _allowed(tol, worst[4]), worst[0],
                                                     worst[1], worst[4], output_dir))
    return result
