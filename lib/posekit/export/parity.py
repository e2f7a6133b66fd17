"""The parity check of an export: the same inputs through several runners, compared.

:func:`parity_inputs` gives Gaussian noise and a synthetic picture cropped and normalised like a
person box (for a bottom-up model, which takes images of any size: two sizes, the picture resized
and padded by its input spec); :func:`compare_runners` runs every runner (any backend,
posekit.runtime contract) on them and reports the max heatmap difference to the reference (the
dygraph model's maps).
:func:`allowed_difference` is the tolerance: ``tol`` for heatmaps up to 1, relative beyond.
"""
import numpy as np

from posekit.export.errors import ExportError

__all__ = ['PARITY_TOL', 'ParityError', 'synthetic_image', 'parity_inputs',
           'bottomup_parity_inputs', 'compare_runners', 'allowed_difference']

PARITY_TOL = 1e-4


class ParityError(ExportError):
    """The exported model's heatmaps differ from the dygraph model's."""


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


def parity_inputs(deploy_config, batch=1, seed=0, size=None):
    """{'random': N(0, 1) batch, 'image': the synthetic picture pre-processed like a crop}.

    A bottom-up deploy config (no fixed input size): :func:`bottomup_parity_inputs` at ``size``
    [W, H] (``MODEL.IMAGE_SIZE``)."""
    if deploy_config.input_size is None:
        if size is None:
            raise ValueError('a bottom-up model has no input size: give the parity size [W, H]')
        return bottomup_parity_inputs(deploy_config, size, seed=seed)
    w, h = deploy_config.input_size
    rng = np.random.RandomState(seed)
    noise = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
    spec = deploy_config.input_spec  # the whole picture as the person box
    pics = [spec.prepare(synthetic_image(seed=seed + i))[0][0] for i in range(batch)]
    return {'random': noise, 'image': np.stack(pics).astype(np.float32)}


def bottomup_parity_inputs(deploy_config, size, seed=0):
    """Inputs of two sizes for a model that takes images of any size (multiples of 64):

    * 'random': N(0, 1) noise of ``size`` [W, H], batch 1;
    * 'image': a 4:3 synthetic picture through the deploy config's input spec resized to
      height H (so padded to another width than W), with its mirror: batch 2, the flip test's.
    """
    w, h = int(size[0]), int(size[1])
    rng = np.random.RandomState(seed)
    spec = deploy_config.input_spec
    spec = type(spec).from_dict(dict(spec.to_dict(), boxsize=h, scale=1.0, flip=True))
    picture = spec.prepare(synthetic_image(width=h * 4 // 3 + 1, height=h, seed=seed))[0]
    if tuple(picture.shape[2:]) == (h, w):
        w += spec.multiple   # another size than the picture's
    noise = rng.standard_normal((1, 3, h, w)).astype(np.float32)
    return {'random': noise, 'image': np.ascontiguousarray(picture, dtype=np.float32)}


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


def allowed_difference(tol, scale):
    """Allowed max abs difference: ``tol`` for heatmaps up to 1 (any trained model), ``tol``
    relative to the heatmap maximum beyond (float32 rounding grows with the values, e.g. an
    untrained HRNet whose maps reach 100+)."""
    return tol * max(1.0, float(scale))
