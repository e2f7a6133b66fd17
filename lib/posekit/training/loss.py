"""Heatmap losses (REFERENCE_SPEC 3).

JointsMSELoss: L = (1/K) * sum_k 0.5 * mean_{batch, pixels} (w_bk * P_bk - w_bk * G_bk)^2, the
weight multiplying both prediction and target. JointsOHKMMSELoss (online hard keypoint mining):
per sample, the mean of its ``topk`` largest per-joint losses, averaged over the batch.
"""
import paddle
import paddle.nn as nn


def _weighted(pred, target, target_weight, use_target_weight):
    if use_target_weight:
        w = target_weight.reshape([target_weight.shape[0], target_weight.shape[1], 1, 1])
        return pred * w, target * w
    return pred, target


class JointsMSELoss(nn.Layer):
    def __init__(self, use_target_weight=True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, output, target, target_weight):
        pred, gt = _weighted(output, target, target_weight, self.use_target_weight)
        # mean over batch and pixels per joint, then over joints: the same as one global mean
        return 0.5 * paddle.mean((pred - gt) ** 2)


class JointsOHKMMSELoss(nn.Layer):
    def __init__(self, use_target_weight=True, topk=8):
        super().__init__()
        self.use_target_weight = use_target_weight
        self.topk = topk

    def forward(self, output, target, target_weight):
        pred, gt = _weighted(output, target, target_weight, self.use_target_weight)
        per_joint = 0.5 * paddle.mean((pred - gt) ** 2, axis=[2, 3])  # B x K
        k = min(self.topk, per_joint.shape[1])
        hardest, _ = paddle.topk(per_joint, k=k, axis=1)
        return paddle.mean(paddle.mean(hardest, axis=1))


def build_loss(cfg):
    if cfg.LOSS.USE_OHKM:
        return JointsOHKMMSELoss(cfg.LOSS.USE_TARGET_WEIGHT, cfg.LOSS.TOPK)
    return JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT)
