"""Random-weight models that run like trained ones, for latency and throughput benchmarks.

Latency does not depend on the weight values, but plain random weights do change the work: the
activations drift far outside a trained network's range (overflow, denormal numbers that slow a
CPU down) and the heatmaps have no peak. So a benchmark model gets seeded random weights, then
*conditioning*: every BatchNorm layer gets the mean/variance of its own input on synthetic
pictures of people (each layer then normalises what it actually receives, as in a trained
network), and the final layer is scaled so that the heatmaps peak near 1.
"""
import os

__all__ = ['synthetic_pictures', 'write_calibration_pictures', 'seeded_model',
           'calibrate_batchnorm', 'scale_final_layer', 'condition_model', 'conditioned_model']


def synthetic_pictures(count, size, seed):
    """``count`` real-looking BGR pictures of ``size`` (W, H) with one person each, and that
    person's box [x, y, w, h] (None when the person left the picture)."""
    import numpy as np
    from posekit.data.synthetic import render_scene
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image, people = render_scene(rng, image_size=size, max_people=1)
        box = people[0]['bbox'] if people and min(people[0]['bbox'][2:]) > 1 else None
        out.append((image, box))
    return out


def write_calibration_pictures(folder, count, size, seed):
    """Make sure ``folder`` holds ``count`` synthetic pictures (``calib_NN.png``); returns their
    sorted paths. They feed the BatchNorm conditioning and the int8 calibration alike."""
    import cv2
    from posekit.io import atomic_path
    names = ['calib_%02d.png' % i for i in range(count)]
    if not all(os.path.isfile(os.path.join(folder, n)) for n in names):
        os.makedirs(folder, exist_ok=True)
        for name, (image, _) in zip(names, synthetic_pictures(count, size, seed)):
            with atomic_path(os.path.join(folder, name)) as tmp:
                if not cv2.imwrite(tmp, image):
                    raise OSError('cannot write %s' % os.path.join(folder, name))
    return [os.path.join(folder, n) for n in names]


def seeded_model(cfg, seed, is_train=False):
    """The model of ``cfg`` with the random initial weights of ``paddle.seed(seed)``."""
    import paddle
    from posekit.models import build_model
    paddle.seed(seed)
    return build_model(cfg, is_train=is_train)


def calibrate_batchnorm(model, batch):
    """Set every BatchNorm's running mean/variance to the statistics of its own input on
    ``batch`` (N, 3, H, W), in one eval-mode forward pass: each layer then normalises what it
    actually receives, as in a trained network. Returns the number of layers set."""
    import paddle
    handles = []

    def hook(layer, inputs):
        x = inputs[0]
        axes = [0] + list(range(2, x.ndim))
        layer._mean.set_value(x.mean(axis=axes))
        layer._variance.set_value(x.var(axis=axes, unbiased=False))

    for layer in model.sublayers():
        if hasattr(layer, '_mean') and hasattr(layer, '_variance'):
            handles.append(layer.register_forward_pre_hook(hook))
    model.eval()
    with paddle.no_grad():
        model(paddle.to_tensor(batch))
    for h in handles:
        h.remove()  # before export: the traced graph must not contain the hook
    return len(handles)


def scale_final_layer(model, batch):
    """Scale the last 1x1 convolution so that heatmaps peak near 1, like a trained model's.
    Returns the raw peak (None for a model without a ``final_layer`` convolution)."""
    import paddle
    final = getattr(model, 'final_layer', None)
    if final is None or not hasattr(final, 'weight'):
        return None
    with paddle.no_grad():
        peak = float(paddle.abs(model(paddle.to_tensor(batch))).max())
    if peak > 0:
        final.weight.set_value(final.weight.numpy() / peak)
        if getattr(final, 'bias', None) is not None:
            final.bias.set_value(final.bias.numpy() / peak)
    return peak


def condition_model(model, batch):
    """BatchNorm statistics from ``batch``, then the final layer scaled; leaves ``model`` in
    eval mode and returns the note a benchmark prints about its weights."""
    n_bn = calibrate_batchnorm(model, batch)
    peak = scale_final_layer(model, batch)
    model.eval()
    return ('random seeded weights; %d BatchNorm layers set from synthetic pictures; raw heatmap '
            'peak %.3g scaled to 1' % (n_bn, peak or 0))


def conditioned_model(cfg, batch, seed):
    """``(model, note)``: :func:`seeded_model` conditioned on ``batch`` (a pure function of the
    config, the pictures and the seed)."""
    model = seeded_model(cfg, seed)
    return model, condition_model(model, batch)
