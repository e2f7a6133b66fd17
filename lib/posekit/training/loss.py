"""Heatmap losses (REFERENCE_SPEC 3).

JointsMSELoss: L = (1/K) * sum_k 0.5 * mean_{batch, pixels} (w_bk * P_bk - w_bk * G_bk)^2, the
weight multiplying both prediction and target. JointsOHKMMSELoss (online hard keypoint mining):
per sample, the mean of its ``topk`` largest per-joint losses, averaged over the batch.

Bottom-up (SimplePose, SIMPLEPOSE_SPEC 5): :class:`MultiScaleFocalL2Loss` (the reference
``MultiTaskLoss`` its published model was trained with) and :class:`MultiScaleL2Loss` (its plain
masked L2 ``MultiTaskLossParallel``), over every stack and scale of the hourglass outputs.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from posekit.codec.bottomup.layout import BKG_START, HEAT_START


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


# --------------------------------------------------------------------------------------------
# bottom-up (SimplePose): every stack and scale of the hourglass outputs is supervised

# scale 0 (stride 4, the targets' own resolution) ... scale 4 (stride 64)
REFERENCE_SCALE_WEIGHTS = (0.1, 0.2, 0.4, 1.6, 6.4)
REFERENCE_STACK_WEIGHTS = (1, 1, 1, 1)


def scaled_targets(target, mask, size, mask_floor=0.5):
    """The target maps and the loss mask at one output scale ``size`` ``(h, w)``, as the reference
    loss makes them (SIMPLEPOSE_SPEC 5).

    Targets: ``adaptive_avg_pool2d`` (exact 2^j x 2^j block means when the sizes divide). Mask:
    bilinear resize with ``align_corners=False`` (a reduction by 4 or more reads only the middle
    2x2 pixels of each block, as the reference), then values below ``mask_floor`` become 0 (the
    others are kept as they are; ``None``: no floor, as ``MultiTaskLossParallel``).
    """
    h, w = int(size[0]), int(size[1])
    if tuple(target.shape[-2:]) != (h, w):
        target = F.adaptive_avg_pool2d(target, [h, w])
    if tuple(mask.shape[-2:]) != (h, w):
        mask = F.interpolate(mask, size=[h, w], mode='bilinear', align_corners=False,
                             align_mode=0)
    if mask_floor is not None:
        mask = paddle.where(mask < mask_floor, paddle.zeros_like(mask), mask)
    return target, mask


class _MultiScaleLoss(nn.Layer):
    """Sum of a per-pixel loss over every stack and scale, weighted as the reference:
    ``total = sum_j scale_weights[j] * (sum_i stack_weights[i] * L_ij / sum(stack_weights))
    / sum(scale_weights) / batch_divisor`` with ``L_ij`` the sum over (n, c, y, x) of stack i,
    scale j.

    ``forward(preds, target, mask)``: ``preds[i][j]`` (N, C, h_j, w_j) for stack i, scale j;
    ``target`` (N, C, H, W) at the finest scale; ``mask`` (N, 1, H, W) the ``mask_miss`` (1 =
    supervised, 0 = ignored). ``batch_divisor=None`` divides by the actual batch size.
    """
    mask_floor = None

    def __init__(self, scale_weights, stack_weights, batch_divisor):
        super().__init__()
        self.scale_weights = tuple(float(w) for w in scale_weights)
        self.stack_weights = tuple(float(w) for w in stack_weights)
        self.batch_divisor = batch_divisor

    def pixel_loss(self, pred, target, mask):
        raise NotImplementedError

    def losses(self, preds, target, mask):
        """``L[j][i]``: the (unweighted) loss sum of scale j, stack i, as 0-d tensors."""
        if len(preds) != len(self.stack_weights):
            raise ValueError('got %d stacks of predictions for %d stack weights'
                             % (len(preds), len(self.stack_weights)))
        for i, stack in enumerate(preds):
            if len(stack) != len(self.scale_weights):
                raise ValueError('stack %d has %d scales, expected %d (one per scale weight)'
                                 % (i, len(stack), len(self.scale_weights)))
        out = []
        for j in range(len(self.scale_weights)):
            t, m = scaled_targets(target, mask, preds[0][j].shape[-2:], self.mask_floor)
            out.append([paddle.sum(self.pixel_loss(stack[j], t, m)) for stack in preds])
        return out

    def forward(self, preds, target, mask):
        total = 0.0
        for w_scale, per_stack in zip(self.scale_weights, self.losses(preds, target, mask)):
            stacks = sum(l * w for l, w in zip(per_stack, self.stack_weights))
            total = total + stacks / sum(self.stack_weights) * w_scale
        total = total / sum(self.scale_weights)
        divisor = self.batch_divisor if self.batch_divisor is not None else target.shape[0]
        return total / divisor if divisor != 1 else total


class MultiScaleFocalL2Loss(_MultiScaleLoss):
    """The focal L2 loss the published SimplePose model was trained with (SIMPLEPOSE_SPEC 5,
    reference ``MultiTaskLoss``); the defaults are the reference constants.

    Per pixel: ``(p - T)^2 * |1 - s_t| * W`` with ``s_t = p`` where ``T >= positive_threshold``
    (compared in float32), else ``1 - p``; ``W`` = the floored mask, times ``keypoint_weight`` on
    the keypoint maps (channels 30-47) and ``mask_channel_weight`` on the person mask (48).

    Reproduced on purpose: the focusing exponent is 1 (``|1 - s_t|``; the reference README says
    gamma 2, its code uses 1) and the factor is not detached (it gets gradients too); float32
    0.01, the encoder's limb floor, counts as positive; the total is divided by the constant
    ``batch_divisor`` 4 (the reference's per-process batch size, whatever the real batch; pass
    ``None`` to divide by the real batch).
    """
    def __init__(self, scale_weights=REFERENCE_SCALE_WEIGHTS,
                 stack_weights=REFERENCE_STACK_WEIGHTS, keypoint_weight=3.0,
                 mask_channel_weight=0.1, positive_threshold=0.01, mask_floor=0.5,
                 batch_divisor=4):
        super().__init__(scale_weights, stack_weights, batch_divisor)
        self.keypoint_weight = float(keypoint_weight)
        self.mask_channel_weight = float(mask_channel_weight)
        self.positive_threshold = float(positive_threshold)
        self.mask_floor = mask_floor

    def channel_weights(self, channels):
        w = [1.0] * channels
        w[BKG_START] = self.mask_channel_weight
        w[HEAT_START:BKG_START] = [self.keypoint_weight] * (BKG_START - HEAT_START)
        return paddle.to_tensor(w, dtype='float32').reshape([1, channels, 1, 1])

    def pixel_loss(self, pred, target, mask):
        weight = mask * self.channel_weights(target.shape[1])
        threshold = paddle.full([], self.positive_threshold, dtype=target.dtype)
        s_t = paddle.where(target >= threshold, pred, 1.0 - pred)
        factor = paddle.abs(1.0 - s_t)
        return (pred - target) ** 2 * factor * weight


class MultiScaleL2Loss(_MultiScaleLoss):
    """Plain masked L2 over stacks and scales (reference ``MultiTaskLossParallel``, used by its
    ``train.py``/``train_parallel.py``): ``(p - T)^2 * mask`` with the resized mask not floored,
    no channel weights and no batch division."""
    def __init__(self, scale_weights=REFERENCE_SCALE_WEIGHTS,
                 stack_weights=REFERENCE_STACK_WEIGHTS, batch_divisor=1):
        super().__init__(scale_weights, stack_weights, batch_divisor)

    def pixel_loss(self, pred, target, mask):
        return (pred - target) ** 2 * mask


def build_loss(cfg):
    if cfg.MODEL.NAME == 'simplepose':
        # the loss of the published SimplePose model, reference constants (SIMPLEPOSE_SPEC 5);
        # its stack weights are all 1, so a variant with another MODEL.EXTRA.NSTACK weighs each
        # of its stacks 1 too
        nstack = int((cfg.MODEL.EXTRA or {}).get('NSTACK', len(REFERENCE_STACK_WEIGHTS)))
        return MultiScaleFocalL2Loss(stack_weights=(1,) * nstack)
    if cfg.LOSS.USE_OHKM:
        return JointsOHKMMSELoss(cfg.LOSS.USE_TARGET_WEIGHT, cfg.LOSS.TOPK)
    return JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT)
