"""The Paddle inference model of an export: ``paddle.jit.to_static`` + ``paddle.jit.save``.

:func:`save_paddle_model` writes ``<prefix>.json`` (Paddle 3 PIR program) + ``<prefix>.pdiparams``
with one ``InputSpec`` named ``image`` of shape ``[1 or None, 3, H, W]`` (``[None, 3, None, None]``
for a bottom-up model, which takes every image at its own padded size). While tracing, two layer
kinds are rewritten into a form every runtime runs (:func:`export_friendly`); the numbers do not
change and the model gets its own layers back. The ONNX model is converted from this file
(:mod:`posekit.export.onnx_model`).
"""
import contextlib

from posekit.export.errors import ExportError
from posekit.runtime.base import ModelLoadError, error_summary
from posekit.runtime.paddle_inference import paddle_model_files

__all__ = ['save_paddle_model', 'export_friendly']


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


def _nearest_repeat_any_size(factor):
    """The same repeat for inputs whose height and width are unknown while tracing: flattening
    the repeated axes needs no size (ONNX Shape/Reshape at run time)."""
    import paddle

    def forward(x):
        y = paddle.expand(paddle.unsqueeze(x, [3, 5]), [-1, -1, -1, factor, -1, factor])
        return paddle.flatten(paddle.flatten(y, 4, 5), 2, 3)
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
def export_friendly(model, dynamic_size=False):
    """Trace two layer kinds the way every runtime handles them; the numbers do not change.

    * ``nn.Upsample`` (HRNet fuse layers, nearest, factor ``2 ** (j - i)``): Paddle 3.3.1 records
      the factor as an int or float64 array; paddle2onnx 2.1.0 only accepts float32 there ("the
      0th elementwise MUST be ir::FloatAttribute", pir_parser.cc), and Paddle Inference with
      oneDNN cannot run ``nearest_interp`` at all ("ConvertPirAttribute2RuntimeAttribute not
      support ArrayAttribute<DoubleAttribute>"). Nearest upsampling by an integer factor is a
      repeat, traced as unsqueeze + expand + reshape (ONNX Unsqueeze/Expand/Reshape, no Resize);
      measured on HRNet-W18-small-v2 256x192, 1 thread: ORT 58 ms vs 70 ms with Resize, Paddle
      Inference + oneDNN 72 ms vs 190 ms on plain kernels. Other integer-factor modes are traced
      as interpolation to a fixed size. With ``dynamic_size`` (height and width unknown while
      tracing: SimplePose's hourglass) the repeat flattens the repeated axes instead of
      reshaping to a size, and another mode cannot be traced (an :class:`ExportError`).
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
                if dynamic_size and layer.mode != 'nearest':
                    raise ExportError('cannot export %s upsampling for inputs of any size'
                                      % layer.mode)
                if dynamic_size:
                    forward = _nearest_repeat_any_size(int(factor))
                else:
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
    and ``<prefix>.pdiparams``. ``input_size`` is [W, H], or None for inputs of any height and
    width (a bottom-up model). Returns (model file, params file)."""
    import paddle
    from paddle.static import InputSpec
    if input_size is None:
        h = w = None
        what = 'an input of any size'
    else:
        w, h = int(input_size[0]), int(input_size[1])
        what = 'a %dx%d input' % (w, h)
    spec = [InputSpec(shape=[None if dynamic_batch else 1, 3, h, w], dtype='float32',
                      name=input_name)]
    model.eval()
    net = _named_input(model)
    net.eval()
    try:
        with export_friendly(model, dynamic_size=input_size is None):
            static_net = paddle.jit.to_static(net, input_spec=spec, full_graph=True)
            paddle.jit.save(static_net, prefix)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError('paddle.jit.save failed for %s: %s' % (what, error_summary(e))) from e
    try:
        return paddle_model_files(prefix)
    except ModelLoadError as e:
        raise ExportError('paddle.jit.save wrote no %s.json/.pdiparams' % prefix) from e
