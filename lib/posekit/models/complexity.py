"""Parameter and multiply-accumulate counts of a model (REFERENCE_SPEC 4.6).

    from posekit.models.complexity import count_complexity, model_complexity
    info = count_complexity(model, image_size=[192, 256])   # [W, H], batch 1
    info = model_complexity(cfg)                             # builds cfg's model, size from cfg

One batch-1 forward pass (``eval()`` mode, ``paddle.no_grad()``) with forward post-hooks on every
layer. Three figures, because the field uses two different ones and neither is the true cost:

``macs``
    true multiply-accumulates: ``Conv*D`` ``out.numel * Cin/groups * prod(kernel)``;
    ``Conv*DTranspose`` ``in.numel * Cout/groups * prod(kernel)`` (every input pixel is scattered
    into ``Cout/groups * prod(kernel)`` outputs); ``Linear`` ``out.numel * in_features``. Biases,
    BatchNorm, activations, pooling, upsampling, the softmax/matmul of the LPN GC block and
    residual adds are not counted. ``gmacs`` = ``macs / 1e9``.
``macs_ref_rule``
    the rule of the reference ``get_model_summary()`` ([LPN]/[CAV] ``lib/utils/utils.py``): every
    layer whose class name contains "Conv" and that has a weight counts
    ``prod(weight.shape) * prod(output spatial shape)``; ``Linear`` as above. For convolutions this
    is the true count, for stride-2 transposed convolutions it is 4x too high (weight times the
    *output* area). ``gflops_ref`` = ``macs_ref_rule / 2**30`` is what the reference READMEs print as
    "GFLOPs" (so PoseResNet-50 "8.9 GFLOPs" is 5.43 true GMACs).
``macs_plus_bn_relu_add``
    ``macs`` + one operation per element of every BatchNorm output, every ReLU output (``nn.ReLU``
    layers and ``paddle.nn.functional.relu`` called by model code; not ReLU6) and every elementwise
    add written in the model code (``+``, ``paddle.add``): the residual sums, HRNet fusion sums and
    the GC channel-add. Adds done inside Paddle itself (conv/linear bias) are not model code and
    are not counted, matching the fixture definition (which counts PyTorch's ``nn.ReLU`` modules
    and ``aten.add`` ops).

``params`` is the number of trainable parameters (the READMEs' "#Params"); ``params_ref_summary``
is what ``get_model_summary`` prints as "Total Parameters" (parameters of Conv/BatchNorm/Linear
layers only, per call: without the GC LayerNorm of LPN).

The model is left as it was: hooks and the ``+``/relu instrumentation are removed and the training
flags (of every sub-layer and Paddle's global tracer) are restored, also when the forward pass
fails. The instrumentation is process-wide while the pass runs: do not count in one thread while
another runs Paddle code.
"""
import contextlib
import math
import os
import sys

import numpy as np
import paddle
import paddle.nn as nn
from paddle.nn.layer.conv import _ConvNd

from posekit.models import build_model, model_label, model_module

__all__ = ['count_complexity', 'count_parameters', 'model_complexity', 'model_info',
           'format_model_info']

_PADDLE_DIR = os.path.dirname(os.path.abspath(paddle.__file__)) + os.sep
_CHANNEL_FIRST = ('NCL', 'NCHW', 'NCDHW')


def _numel(shape):
    return int(math.prod(int(d) for d in shape))


def _first_tensor(value):
    """The first tensor of a layer's input/output (a tensor, or a tuple/list holding tensors)."""
    if isinstance(value, paddle.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _shapes(value):
    if isinstance(value, paddle.Tensor):
        return [int(d) for d in value.shape]
    if isinstance(value, (list, tuple)):
        return [_shapes(v) for v in value]
    if isinstance(value, dict):
        return {k: _shapes(v) for k, v in value.items()}
    return None


def _is_transposed(layer):
    return 'Transpose' in type(layer).__name__


def _conv_key(layer):
    dims = len(layer.weight.shape) - 2
    return ('conv_transpose%dd' if _is_transposed(layer) else 'conv%dd') % dims


def _spatial(layer, shape):
    """Output spatial dims of a conv layer (channel-first or channel-last layout)."""
    if getattr(layer, '_data_format', 'NCHW') in _CHANNEL_FIRST:
        return shape[2:]
    return shape[1:-1]


class _Tally:
    """Accumulates the per-call counts of one forward pass."""

    def __init__(self):
        self.macs = 0
        self.macs_ref_rule = 0
        self.params_ref_summary = 0
        self.breakdown = {'conv2d': 0, 'conv_transpose2d': 0, 'linear': 0,
                          'n_conv2d': 0, 'n_conv_transpose2d': 0, 'n_linear': 0}
        self.bn_output_elems = 0
        self.relu_output_elems = 0
        self.add_output_elems = 0

    def _add(self, key, macs):
        self.macs += macs
        self.breakdown[key] = self.breakdown.get(key, 0) + macs
        self.breakdown['n_' + key] = self.breakdown.get('n_' + key, 0) + 1

    def hook(self, layer, inputs, output):
        name = type(layer).__name__
        out = _first_tensor(output)
        if out is None:
            return None
        out_shape = [int(d) for d in out.shape]
        weight = getattr(layer, 'weight', None)

        if isinstance(layer, _ConvNd):
            # weight: conv (Cout, Cin/g, *k); transposed conv (Cin, Cout/g, *k).
            per_point = _numel(weight.shape[1:])
            if _is_transposed(layer):
                self._add(_conv_key(layer), _numel(_first_tensor(inputs).shape) * per_point)
            else:
                self._add(_conv_key(layer), _numel(out_shape) * per_point)
        elif isinstance(layer, nn.Linear):
            # Paddle stores the Linear weight as (in_features, out_features).
            self._add('linear', _numel(out_shape) * int(weight.shape[0]))

        # The reference get_model_summary rule, by class name as the reference does.
        if 'Conv' in name and isinstance(weight, paddle.Tensor):
            self.macs_ref_rule += _numel(weight.shape) * _numel(_spatial(layer, out_shape))
        elif isinstance(layer, nn.Linear):
            self.macs_ref_rule += _numel(out_shape) * int(weight.shape[0])
        if 'Conv' in name or 'BatchNorm' in name or 'Linear' in name:
            # Paddle keeps BatchNorm statistics as non-trainable parameters; PyTorch as buffers.
            self.params_ref_summary += sum(_numel(p.shape) for p in layer.parameters()
                                           if not p.stop_gradient)

        if 'BatchNorm' in name:
            self.bn_output_elems += _numel(out_shape)
        elif isinstance(layer, nn.ReLU):
            self.relu_output_elems += _numel(out_shape)
        return None

    def result(self):
        return {
            'macs': self.macs,
            'macs_ref_rule': self.macs_ref_rule,
            'macs_breakdown': dict(self.breakdown),
            'params_ref_summary': self.params_ref_summary,
            'elementwise_counts': {
                'bn_output_elems': self.bn_output_elems,
                'relu_output_elems': self.relu_output_elems,
                'add_output_elems': self.add_output_elems,
            },
        }


# Elementwise adds are Python operators in Paddle, not layers, and a ReLU may be applied with
# ``paddle.nn.functional.relu`` instead of an ``nn.ReLU`` layer (the reference always uses a
# module): count both by wrapping the entry points model code uses while the forward pass runs.
# Calls made from inside the paddle package (a conv adding its bias, ``nn.ReLU.forward`` calling
# the functional relu it is already counted as) are not model code and are skipped.
_F = paddle.nn.functional
_COUNTED_CALLS = (
    (paddle.Tensor, '__add__', 'add_output_elems'), (paddle.Tensor, '__radd__', 'add_output_elems'),
    (paddle.Tensor, 'add', 'add_output_elems'), (paddle.Tensor, 'add_', 'add_output_elems'),
    (paddle, 'add', 'add_output_elems'), (paddle, 'add_', 'add_output_elems'),
    (_F, 'relu', 'relu_output_elems'), (_F, 'relu_', 'relu_output_elems'),
)


def _from_model_code():
    """True when the caller of the wrapped function (two frames up) lives outside paddle."""
    caller = sys._getframe(2).f_code.co_filename
    return not os.path.abspath(caller).startswith(_PADDLE_DIR)


_MISSING = object()


@contextlib.contextmanager
def _count_calls(tally):
    saved = []

    def wrap(original, counter):
        def counted(*args, **kwargs):
            out = original(*args, **kwargs)
            if isinstance(out, paddle.Tensor) and _from_model_code():
                setattr(tally, counter, getattr(tally, counter) + _numel(out.shape))
            return out
        return counted

    try:
        for owner, attr, counter in _COUNTED_CALLS:
            if getattr(owner, attr, None) is None:
                continue
            # Restore exactly: the object's own entry, or none if it was inherited.
            own = vars(owner).get(attr, _MISSING)
            saved.append((owner, attr, own))
            setattr(owner, attr, wrap(getattr(owner, attr), counter))
        yield
    finally:
        for owner, attr, own in reversed(saved):
            if own is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, own)


def _tracer():
    from paddle.base import framework
    return framework._dygraph_tracer()


@contextlib.contextmanager
def _eval_mode(model):
    """``model.eval()`` for the block, then every training flag back as it was."""
    flags = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
    tracer = _tracer()
    tracer_mode = getattr(tracer, '_train_mode', None)
    model.eval()
    try:
        yield
    finally:
        for layer, flag in flags:
            layer.training = flag
        if tracer is not None and tracer_mode is not None:
            tracer._train_mode = tracer_mode


def count_parameters(model):
    """Trainable parameters (the READMEs' "#Params"). Paddle lists the BatchNorm running
    statistics as parameters too, with ``stop_gradient`` set; they are not counted."""
    return int(sum(_numel(p.shape) for p in model.parameters() if not p.stop_gradient))


def count_complexity(model, image_size, batch_size=1, seed=0):
    """Count parameters and MACs of ``model`` on one forward pass of a ``[W, H]`` input.

    Returns a dict: ``params``, ``params_ref_summary``, ``macs``, ``gmacs``,
    ``macs_ref_rule``, ``gflops_ref``, ``macs_plus_bn_relu_add``, ``macs_breakdown``
    (``conv2d``/``conv_transpose2d``/``linear`` MACs and ``n_*`` layer calls),
    ``elementwise_counts``, ``input_shape`` and ``output_shape``. Counts are for the whole
    batch; use the default batch 1 for the per-image figures.
    """
    width, height = (int(v) for v in image_size)
    # Values do not matter for the counts; a fixed local generator leaves paddle's RNG alone.
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((batch_size, 3, height, width)).astype('float32')
    tally = _Tally()
    handles = []
    try:
        with _eval_mode(model), paddle.no_grad():
            for layer in model.sublayers(include_self=True):
                handles.append(layer.register_forward_post_hook(tally.hook))
            x = paddle.to_tensor(data)
            with _count_calls(tally):
                output = model(x)
    finally:
        for handle in handles:
            handle.remove()

    info = tally.result()
    elementwise = info['elementwise_counts']
    info.update({
        'params': count_parameters(model),
        'gmacs': info['macs'] / 1e9,
        'gflops_ref': info['macs_ref_rule'] / 2 ** 30,
        'macs_plus_bn_relu_add': info['macs'] + elementwise['bn_output_elems']
                                 + elementwise['relu_output_elems'] + elementwise['add_output_elems'],
        'input_shape': [batch_size, 3, height, width],
        'output_shape': _shapes(output),
    })
    return info


def model_complexity(cfg, model=None):
    """:func:`count_complexity` of the model of ``cfg`` (built if not given) at ``MODEL.IMAGE_SIZE``."""
    if model is None:
        model = build_model(cfg, is_train=False)
    return count_complexity(model, cfg.MODEL.IMAGE_SIZE)


def model_info(cfg, cfg_file=None, model=None):
    """Everything ``pose_estimation/model_info.py`` shows, as a JSON-ready dict."""
    info = model_complexity(cfg, model)
    out = {
        'model': model_label(cfg),
        'model_name': cfg.MODEL.NAME,
        'cfg': cfg_file,
        'image_size': [int(v) for v in cfg.MODEL.IMAGE_SIZE],
        'num_joints': int(cfg.MODEL.NUM_JOINTS),
    }
    for key in ('params', 'params_ref_summary', 'macs', 'gmacs', 'macs_ref_rule', 'gflops_ref',
                'macs_plus_bn_relu_add', 'macs_breakdown', 'elementwise_counts', 'input_shape'):
        out[key] = info[key]
    out['heatmap_shape'] = info['output_shape']
    # A model whose reference code does more work than our forward pass (SimplePose computes
    # every stack's 5 scales and its stride-4 merges twice) also states the reference's figure,
    # from the model module's ``reference_macs(cfg)`` (same counting rule).
    reference = getattr(model_module(cfg.MODEL.NAME), 'reference_macs', None)
    if reference is not None:
        out['macs_reference_code'] = int(reference(cfg))
    return out


def format_model_info(info):
    """Short human-readable table of :func:`model_info`."""
    w, h = info['image_size']
    rows = [
        ('model', info['model'] + ('   (%s)' % info['cfg'] if info.get('cfg') else '')),
        ('input [W,H]', '[%d, %d]' % (w, h)),
        ('joints', '%d' % info['num_joints']),
        ('params', '{:,}  ({:.2f} M, trainable)'.format(info['params'], info['params'] / 1e6)),
        ('GMACs', '%.3f   true multiply-accumulates / 1e9, batch 1' % info['gmacs']),
        ('"GFLOPs" (ref)', '%.3f   reference get_model_summary figure: / 2^30, deconvolutions '
                           'counted 4x' % info['gflops_ref']),
        ('heatmaps', '%s   [N, K, H, W]' % (info['heatmap_shape'],)),
    ]
    if 'macs_reference_code' in info:
        rows.insert(5, ('GMACs (ref code)', '%.3f   the reference implementation\'s forward pass, '
                                            'same rule (it computes more than ours)'
                        % (info['macs_reference_code'] / 1e9)))
    width = max(len(k) for k, _ in rows)
    return '\n'.join('%-*s  %s' % (width, k, v) for k, v in rows)
