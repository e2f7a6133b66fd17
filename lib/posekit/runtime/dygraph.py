"""A ``paddle.nn.Layer`` behind the runner contract (:mod:`posekit.runtime.base`).

The one way a dygraph model is run on a batch: training validation, valid.py, infer.py, the
export parity check and the benchmark all call a :class:`DygraphRunner`.
"""
import paddle

from posekit.runtime.base import Runner

__all__ = ['DygraphRunner']


class DygraphRunner(Runner):
    """Runs ``model`` in eval mode under ``paddle.no_grad``; numpy in, numpy heatmaps out.

    The model keeps the mode it had: a model in training (validation between epochs) is put in
    eval mode for each call and every layer gets its own train/eval flag back afterwards. A model
    returning a list or tuple of maps gives its last one. ``input_size`` ([W, H], optional)
    fixes ``input_shape`` and lets ``output_shape`` be known before the first call (one zero
    batch is run); the batch size is always dynamic.
    """

    def __init__(self, model, input_size=None, name=None):
        self.model = model
        # the layers whose train/eval flag a call saves and restores (the structure is fixed)
        self._layers = [model] + list(model.sublayers())
        self.name = name or type(model).__name__
        self.input_name = 'image'
        if input_size is not None:
            w, h = int(input_size[0]), int(input_size[1])
            self.input_shape = [None, 3, h, w]
        else:
            self.input_shape = [None, 3, None, None]
        self.output_shape = [None] * 4
        self._probe_output_shape()

    def _forward(self, batch):
        with paddle.no_grad():
            out = self.model(paddle.to_tensor(batch))
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return out.numpy()

    def _run(self, batch):
        modes = [layer.training for layer in self._layers]
        if not any(modes):
            return self._forward(batch)
        self.model.eval()
        try:
            return self._forward(batch)
        finally:
            if modes[0]:
                self.model.train()  # also sets back Paddle's global train/eval switch
            for layer, mode in zip(self._layers, modes):
                layer.training = mode

    def __call__(self, batch):
        out = super().__call__(batch)
        if self.output_shape[1] is None:
            self.output_shape = [None] + list(out.shape[1:])
        return out
