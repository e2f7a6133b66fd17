"""Running a Paddle model on prepared input batches (numpy in, numpy heatmaps out)."""
import numpy as np
import paddle

from posekit.codec.heatmap import flip_test


def model_heatmaps(model, inputs):
    """One forward pass of a batch (numpy in, numpy out); a list output gives its last map."""
    out = model(paddle.to_tensor(np.ascontiguousarray(inputs, dtype=np.float32)))
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out.numpy()


def predict_heatmaps(model, inputs, flip_pairs=None, shift_heatmap=True):
    """Heatmaps (B, K, H/4, W/4) for a float32 batch (B, 3, H, W); flip test when ``flip_pairs``
    (:func:`posekit.codec.heatmap.flip_test`, REFERENCE_SPEC 7.3). The model is run in eval mode
    without gradients; its previous train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            return flip_test(lambda x: model_heatmaps(model, x), inputs, flip_pairs, shift_heatmap)
    finally:
        if was_training:
            model.train()
