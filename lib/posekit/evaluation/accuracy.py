"""The training-time "Accuracy" (PCK on heatmaps, REFERENCE_SPEC 6.1), and running averages.

Reproduced knowingly: the normaliser is (H/10, W/10) applied to (x, y), i.e. swapped for
non-square heatmaps (x / 6.4 and y / 4.8 for 64x48 maps), and a joint whose target argmax lies
in the first two rows or columns does not count (the test is ``x > 1 and y > 1``).
"""
import numpy as np

from posekit.codec.heatmap import get_max_preds

__all__ = ['heatmap_accuracy', 'AverageMeter']


def _dist_acc(dists, thr=0.5):
    valid = dists != -1
    if valid.sum() == 0:
        return -1.0
    return float(np.less(dists[valid], thr).sum() / valid.sum())


def heatmap_accuracy(output, target, thr=0.5):
    """Per-joint PCK of predicted vs target heatmap argmaxes.

    Returns ``(acc, avg_acc, cnt, pred)``: per-joint accuracies (K,) with -1 for joints that have
    no valid sample, their mean over valid joints, the number of valid joints, and the predicted
    argmax coordinates (B, K, 2).
    """
    output = np.asarray(output)
    target = np.asarray(target)
    pred, _ = get_max_preds(output)
    gt, _ = get_max_preds(target)
    h, w = output.shape[2], output.shape[3]
    norm = np.array([h, w], dtype=np.float32) / 10.0
    valid = (gt[:, :, 0] > 1) & (gt[:, :, 1] > 1)
    dists = np.linalg.norm(pred / norm - gt / norm, axis=2)
    dists = np.where(valid, dists, -1.0).T  # K x B
    acc = np.array([_dist_acc(d, thr) for d in dists])
    good = acc >= 0
    cnt = int(good.sum())
    avg_acc = float(acc[good].mean()) if cnt else 0.0
    return acc, avg_acc, cnt, pred


class AverageMeter:
    """Current value and weighted running average."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.val = 0.0
        self.avg = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val, n=1):
        self.val = float(val)
        self.sum += float(val) * n
        self.count += n
        self.avg = self.sum / self.count if self.count else 0.0
