"""Bottom-up (SimplePose) multi-scale losses against the reference ``MultiTaskLoss`` and
``MultiTaskLossParallel`` (fixtures README section 3, SIMPLEPOSE_SPEC 5)."""
import json
import os

import numpy as np
import paddle
import pytest

from conftest import require_fixtures
from posekit.config import load_config
from posekit.training.loss import (JointsMSELoss, MultiScaleFocalL2Loss, MultiScaleL2Loss,
                                   build_loss, scaled_targets)

RTOL_LOSS = 1e-5
ATOL_GRAD = 1e-6
F32_001 = np.float32(0.01)


def run(preds_np, target_np, mask_np, criterion):
    """Loss, per (scale, stack) sums and the gradient of every prediction (stack, scale)."""
    preds = [[paddle.to_tensor(p, stop_gradient=False) for p in stack] for stack in preds_np]
    target, mask = paddle.to_tensor(target_np), paddle.to_tensor(mask_np)
    loss = criterion(preds, target, mask)
    loss.backward()
    with paddle.no_grad():
        per = [[float(v) for v in row] for row in criterion.losses(preds, target, mask)]
    grads = [[p.grad.numpy() for p in stack] for stack in preds]
    return float(loss), per, grads


def check_scaled(target_np, mask_np, scale, ref_target, ref_mask):
    t, m = scaled_targets(paddle.to_tensor(target_np), paddle.to_tensor(mask_np),
                          ref_target.shape[-2:])
    t, m = t.numpy(), m.numpy()
    np.testing.assert_allclose(t, ref_target, rtol=0, atol=1e-7, err_msg='target s%d' % scale)
    np.testing.assert_allclose(m, ref_mask, rtol=0, atol=1e-7, err_msg='mask s%d' % scale)
    # the positives (target >= float32 0.01) and the floored mask must match exactly
    assert np.array_equal(t >= F32_001, ref_target >= F32_001), scale
    assert np.array_equal(m == 0, ref_mask == 0), scale


# ---------------------------------------------------------------------------------------------
# L128: the encoder fixtures as targets, seeded predictions

@pytest.fixture(scope='module')
def l128():
    folder = require_fixtures('simplepose')
    with open(os.path.join(folder, 'loss.json')) as f:
        ref = json.load(f)
    hand = np.load(os.path.join(folder, 'encode_handmade.npz'))
    aug = np.load(os.path.join(folder, 'encode_augmented.npz'))
    target = np.stack([hand['heatmaps'], aug['aug_heatmaps']]).astype(np.float32)
    mask = np.stack([hand['mask_miss'], aug['aug_mask_miss']])[:, None].astype(np.float32)
    rng = np.random.default_rng(77)  # the README's rule, stack-major
    preds = [[(rng.standard_normal((2, 50, 128 >> j, 128 >> j)) * 0.25 + 0.05).astype(np.float32)
              for j in range(5)] for _ in range(4)]
    scaled = dict(np.load(os.path.join(folder, 'loss_L128_scaled_targets.npz')))
    loss, per, grads = run(preds, target, mask, MultiScaleFocalL2Loss())
    return dict(ref=ref['L128'], target=target, mask=mask, preds=preds, scaled=scaled,
                loss=loss, per=per, grads=grads)


def test_l128_loss_and_its_decomposition(l128):
    ref = l128['ref']
    np.testing.assert_allclose(l128['loss'], ref['loss'], rtol=RTOL_LOSS)
    np.testing.assert_allclose(l128['per'], ref['per_scale_per_stack'], rtol=RTOL_LOSS)


def test_l128_gradients(l128):
    ref, grads, scaled = l128['ref'], l128['grads'], l128['scaled']
    sums = [[g.astype(np.float64).sum() for g in stack] for stack in grads]
    abs_sums = [[np.abs(g.astype(np.float64)).sum() for g in stack] for stack in grads]
    np.testing.assert_allclose(sums, ref['grad_sum'], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(abs_sums, ref['grad_abs_sum'], rtol=1e-5)
    samples = ref['grad_samples_stack3_scale0']
    got = [grads[3][0][tuple(i)] for i in samples['index_(b,c,y,x)']]
    np.testing.assert_allclose(got, samples['value'], rtol=1e-4, atol=ATOL_GRAD)
    np.testing.assert_allclose(grads[3][4], scaled['grad_stack3_scale4'], rtol=0, atol=ATOL_GRAD)
    np.testing.assert_allclose(grads[0][3], scaled['grad_stack0_scale3'], rtol=0, atol=ATOL_GRAD)


def test_l128_scaled_targets_and_masks(l128):
    for j in range(1, 5):
        check_scaled(l128['target'], l128['mask'], j, l128['scaled']['target_s%d' % j],
                     l128['scaled']['mask_s%d' % j])


def test_l128_plain_l2(l128):
    preds = [[paddle.to_tensor(p) for p in stack] for stack in l128['preds']]
    loss = MultiScaleL2Loss()(preds, paddle.to_tensor(l128['target']),
                              paddle.to_tensor(l128['mask']))
    np.testing.assert_allclose(float(loss), l128['ref']['loss_parallel_l2'], rtol=RTOL_LOSS)


# ---------------------------------------------------------------------------------------------
# L32: everything stored (float32 0.01 targets, masks in quarters)

@pytest.fixture(scope='module')
def l32():
    folder = require_fixtures('simplepose')
    with open(os.path.join(folder, 'loss.json')) as f:
        ref = json.load(f)
    data = dict(np.load(os.path.join(folder, 'loss_L32.npz')))
    preds = [[data['pred_stack%d_scale%d' % (i, j)].astype(np.float32) for j in range(5)]
             for i in range(4)]
    loss, per, grads = run(preds, data['target'], data['mask'], MultiScaleFocalL2Loss())
    return dict(ref=ref['L32'], data=data, preds=preds, loss=loss, per=per, grads=grads)


def test_l32_targets_hold_exact_float32_001(l32):
    # the fixture's point: float32(0.01) entries must count as positive
    assert l32['data']['target_exact_001'] == F32_001
    assert (l32['data']['target'] == F32_001).sum() > 0


def test_l32_loss_and_its_decomposition(l32):
    np.testing.assert_allclose(l32['loss'], l32['ref']['loss'], rtol=RTOL_LOSS)
    np.testing.assert_allclose(l32['per'], l32['ref']['per_scale_per_stack'], rtol=RTOL_LOSS)


def test_l32_gradients(l32):
    data, grads = l32['data'], l32['grads']
    for i in (0, 3):
        for j in range(5):
            np.testing.assert_allclose(grads[i][j], data['grad_stack%d_scale%d' % (i, j)], rtol=0,
                                       atol=ATOL_GRAD, err_msg='stack %d scale %d' % (i, j))
    sums = [[g.astype(np.float64).sum() for g in stack] for stack in grads]
    np.testing.assert_allclose(sums, l32['ref']['grad_sum'], rtol=1e-4, atol=1e-5)


def test_l32_scaled_targets_and_masks(l32):
    data = l32['data']
    for j in range(5):
        check_scaled(data['target'], data['mask'], j, data['scaled_target_s%d' % j],
                     data['scaled_mask_s%d' % j])


def test_l32_plain_l2(l32):
    preds = [[paddle.to_tensor(p) for p in stack] for stack in l32['preds']]
    loss = MultiScaleL2Loss()(preds, paddle.to_tensor(l32['data']['target']),
                              paddle.to_tensor(l32['data']['mask']))
    np.testing.assert_allclose(float(loss), l32['ref']['loss_parallel_l2'], rtol=RTOL_LOSS)


# ---------------------------------------------------------------------------------------------
# small hand-made cases

def one_scale_case(target_value, pred_value, mask_value=1.0, channel=0, n=1):
    target = np.zeros((n, 50, 2, 2), np.float32)
    target[:, channel, 0, 0] = target_value
    pred = np.zeros((n, 50, 2, 2), np.float32)
    pred[:, channel, 0, 0] = pred_value
    mask = np.full((n, 1, 2, 2), mask_value, np.float32)
    return [[paddle.to_tensor(pred)]], paddle.to_tensor(target), paddle.to_tensor(mask)


def single(**kw):
    return MultiScaleFocalL2Loss(scale_weights=[1.0], stack_weights=[1], batch_divisor=1, **kw)


def test_focal_factor_and_positive_threshold():
    # float32(0.01) is positive: factor |1 - p|; just below it: |1 - (1 - p)| = |p|
    loss = float(single()(*one_scale_case(F32_001, 0.3)))
    np.testing.assert_allclose(loss, (0.3 - 0.01) ** 2 * 0.7, rtol=1e-6)
    below = np.nextafter(F32_001, np.float32(0))
    loss = float(single()(*one_scale_case(below, 0.3)))
    np.testing.assert_allclose(loss, (0.3 - float(below)) ** 2 * 0.3, rtol=1e-6)


def test_channel_weights_and_mask_floor():
    base = float(single()(*one_scale_case(0.5, 0.2, channel=0)))
    keypoint = float(single()(*one_scale_case(0.5, 0.2, channel=35)))
    person_mask = float(single()(*one_scale_case(0.5, 0.2, channel=48)))
    np.testing.assert_allclose([keypoint, person_mask], [3 * base, 0.1 * base], rtol=1e-6)
    # mask values below 0.5 are dropped, others kept as they are (the plain L2 keeps all)
    assert float(single()(*one_scale_case(0.5, 0.2, mask_value=0.25))) == 0
    np.testing.assert_allclose(float(single()(*one_scale_case(0.5, 0.2, mask_value=0.5))),
                               0.5 * base, rtol=1e-6)
    plain = MultiScaleL2Loss(scale_weights=[1.0], stack_weights=[1])
    np.testing.assert_allclose(float(plain(*one_scale_case(0.5, 0.2, mask_value=0.25))),
                               0.25 * 0.3 ** 2, rtol=1e-6)


def test_factor_is_not_detached():
    # d/dp of (p - t)^2 |1 - p| at t = 0.5, p = 0.2: 2 (p - t)(1 - p) - (p - t)^2
    preds, target, mask = one_scale_case(0.5, 0.2)
    preds[0][0].stop_gradient = False
    single()(preds, target, mask).backward()
    np.testing.assert_allclose(preds[0][0].grad.numpy()[0, 0, 0, 0],
                               2 * (-0.3) * 0.8 - 0.09, rtol=1e-6)


def test_batch_divisor():
    case = one_scale_case(0.5, 0.2, n=3)
    constant = float(MultiScaleFocalL2Loss([1.0], [1])(*case))  # the reference's constant 4
    real = float(MultiScaleFocalL2Loss([1.0], [1], batch_divisor=None)(*case))
    np.testing.assert_allclose([constant * 4, real * 3], [3 * 0.09 * 0.8] * 2, rtol=1e-6)


def test_stack_and_scale_counts_are_checked():
    preds, target, mask = one_scale_case(0.5, 0.2)
    with pytest.raises(ValueError, match='2 stack weights'):
        MultiScaleFocalL2Loss([1.0], [1, 1])(preds, target, mask)
    with pytest.raises(ValueError, match='expected 5'):
        MultiScaleFocalL2Loss()(preds * 4, target, mask)


def test_build_loss_by_model_name():
    cfg = load_config()
    assert isinstance(build_loss(cfg), JointsMSELoss)
    cfg.MODEL.NAME = 'simplepose'
    crit = build_loss(cfg)
    assert isinstance(crit, MultiScaleFocalL2Loss)
    assert crit.scale_weights == (0.1, 0.2, 0.4, 1.6, 6.4) and crit.batch_divisor == 4
