"""The ONNX model of an export: ``paddle2onnx.export`` of the saved Paddle model, then tidied.

:func:`paddle_to_onnx` converts at exactly the requested opset (11 by default: the widest runtime
support, LANDSCAPE 5.3) and :func:`tidy_onnx` stores weights as initializers, removes identities
and dead constants and names the input ``image`` and the output ``heatmaps`` (``maps`` for a
bottom-up model). :func:`restore_leaky_relu_slopes` puts back the slope paddle2onnx loses.
"""
import contextlib
import io
import os
import re
import sys
import tempfile

from posekit.export.errors import ExportError
from posekit.runtime.paddle_inference import pir_op_attributes

__all__ = ['DEFAULT_OPSET', 'MAX_OPSET', 'paddle_to_onnx', 'tidy_onnx',
           'restore_leaky_relu_slopes']

DEFAULT_OPSET = 11
# paddle2onnx 2.1.0 converts up to opset 21; asked for 22+ it aborts the process (C++ abort).
MAX_OPSET = 21


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


def tidy_onnx(model, input_name='image', output_name='heatmaps', dynamic_batch=False,
              dynamic_size=False):
    """Clean up a paddle2onnx graph in place and return it.

    paddle2onnx 2.1.0 stores every weight as a ``Constant`` node, wraps BN outputs in
    ``Identity`` nodes and leaves unused constants. Its own clean-up is not used: the default
    runs Polygraphy with ``POLYGRAPHY_AUTOINSTALL_DEPS=1``, i.e. a pip install of
    onnx_graphsurgeon when it is missing, and the onnxoptimizer option asks for a misspelt
    pass (``'eliminate_nop_cast '``) and is skipped. So: constants -> initializers (what the
    int8 quantiser needs to find conv weights), identities bypassed, dead nodes and initializers
    dropped, the output renamed, the batch dimension named ``batch`` when dynamic, and with
    ``dynamic_size`` the input's height and width ``height``/``width`` and the output's
    ``map_height``/``map_width`` (paddle2onnx calls them ``DynamicDimension.<n>``).
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
    if dynamic_size:
        for values, names in ((graph.input, ('height', 'width')),
                              (graph.output, ('map_height', 'map_width'))):
            for value in values:
                dims = value.type.tensor_type.shape.dim
                if len(dims) == 4:
                    for dim, name in zip(dims[2:], names):
                        dim.ClearField('dim_value')
                        dim.dim_param = name
    return model


def _leaky_relu_slopes(model_file):
    """The ``negative_slope`` of every ``leaky_relu`` of a PIR ``.json`` program (a set; None
    when the file cannot be read as one)."""
    ops = pir_op_attributes(model_file, 'leaky_relu')
    if ops is None:
        return None
    return {float(a['negative_slope']) for a in ops if a.get('negative_slope') is not None}


def restore_leaky_relu_slopes(model, model_file):
    """Give the ``LeakyRelu`` nodes of a converted ``model`` the slope of the Paddle program
    ``model_file``, in place; returns the number of nodes set.

    paddle2onnx 2.1.0 reads ``leaky_relu``'s ``negative_slope`` (a float64 attribute in Paddle
    3's programs) as a float32 and writes garbage (0 or 2.5e-43) as ``alpha``: SimplePose's
    ONNX maps were off by up to 1e32. When the program uses one slope (0.01 for SimplePose)
    every ``LeakyRelu`` gets it; a program with several slopes cannot be mapped node by node,
    and the conversion fails with that reason (the parity check would fail anyway). Tracing
    the activation as ``max(x, slope * x)`` instead would be exact too, but runs at half the
    speed in both runtimes (no conv + activation fusion).
    """
    nodes = [n for n in model.graph.node if n.op_type == 'LeakyRelu']
    if not nodes:
        return 0
    slopes = _leaky_relu_slopes(model_file)
    if not slopes or len(slopes) != 1:
        raise ExportError('paddle2onnx loses the slope of leaky_relu and %s has %s; posekit '
                          'restores one slope shared by every leaky ReLU'
                          % (os.path.basename(model_file),
                             'several (%s)' % ', '.join('%g' % v for v in sorted(slopes))
                             if slopes else 'no readable slope'))
    from onnx import helper
    alpha = slopes.pop()
    for node in nodes:
        kept = [a for a in node.attribute if a.name != 'alpha']
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute('alpha', alpha)])
    return len(nodes)


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
                   output_name='heatmaps', dynamic_batch=False, dynamic_size=False):
    """``paddle2onnx.export`` of a saved Paddle model at exactly ``opset``, then
    :func:`restore_leaky_relu_slopes` and :func:`tidy_onnx`.

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
    if isinstance(failure, OSError):  # a full disk or a file-size limit while writing
        raise ExportError('cannot write %s: %s' % (os.path.basename(onnx_file),
                                                   failure.strerror or failure))
    if failure is not None or not os.path.isfile(raw):
        # paddle2onnx logs the error, prints a traceback and then fails or calls sys.exit
        raise ExportError('paddle2onnx could not convert %s at opset %d: %s'
                          % (os.path.basename(model_file), int(opset),
                             out.error_line() or failure or 'no output'))
    try:
        model = onnx.load(raw)
        got = _onnx_opset(model)
        if got != int(opset):
            raise ExportError('paddle2onnx produced opset %d instead of %d' % (got, int(opset)))
        restore_leaky_relu_slopes(model, model_file)
        tidy_onnx(model, input_name=input_name, output_name=output_name,
                  dynamic_batch=dynamic_batch, dynamic_size=dynamic_size)
        onnx.checker.check_model(model)
        onnx.save(model, onnx_file)
    except OSError as e:
        raise ExportError('cannot write %s: %s' % (os.path.basename(onnx_file),
                                                   e.strerror or e)) from e
    finally:
        if os.path.exists(raw):
            os.remove(raw)
    return onnx_file
