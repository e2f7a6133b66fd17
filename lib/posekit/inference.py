"""Running a Paddle model on prepared input batches (numpy in, numpy heatmaps out)."""
import numpy as np
import paddle

from .heatmap import fuse_flip


def predict_heatmaps(model, inputs, flip_pairs=None, shift_heatmap=True):
    """Heatmaps (B, K, H/4, W/4) for a float32 batch (B, 3, H, W); flip test when ``flip_pairs``.

    The flip test mirrors the *normalised* input, runs the model again and fuses the two outputs
    with :func:`posekit.heatmap.fuse_flip` (REFERENCE_SPEC 7.3). The model is run in eval mode
    without gradients; its previous train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            x = paddle.to_tensor(np.ascontiguousarray(inputs, dtype=np.float32))
            out = model(x).numpy()
            if flip_pairs is not None:
                out_flipped = model(paddle.flip(x, axis=[3])).numpy()
                out = fuse_flip(out, out_flipped, flip_pairs, shift=shift_heatmap)
    finally:
        if was_training:
            model.train()
    return out
