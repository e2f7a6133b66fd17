"""Units of the training machinery: LR schedule, sample order, accuracy, optimiser state."""
import numpy as np
import paddle
import pytest

from posekit.evaluation.accuracy import AverageMeter, heatmap_accuracy
from posekit.config import load_config
from posekit.codec.heatmap import generate_target
from posekit.data.loader import EpochBatchSampler, FixedBatchSampler, SeededDataset, collate, shard_indices
from posekit.training.trainer import (build_optimizer, learning_rate, load_optimizer_state, optimizer_state,
                             resolve_seed)


def cfg_with(*opts):
    return load_config(None, list(opts))


# ------------------------------------------------------------------ learning rate

def test_multistep_rate_follows_the_epoch_it_is_in():
    cfg = cfg_with('TRAIN.LR', '0.001', 'TRAIN.LR_STEP', '90,120', 'TRAIN.LR_FACTOR', '0.1')
    assert learning_rate(cfg, 0, 0, 100) == pytest.approx(1e-3)
    assert learning_rate(cfg, 89, 99, 100) == pytest.approx(1e-3)   # not shifted one epoch early
    assert learning_rate(cfg, 90, 0, 100) == pytest.approx(1e-4)
    assert learning_rate(cfg, 119, 5, 100) == pytest.approx(1e-4)
    assert learning_rate(cfg, 120, 0, 100) == pytest.approx(1e-5)
    assert learning_rate(cfg, 139, 99, 100) == pytest.approx(1e-5)


def test_warmup_ramps_linearly_per_iteration():
    cfg = cfg_with('TRAIN.LR', '0.001', 'TRAIN.WARMUP_EPOCHS', '2')
    rates = [learning_rate(cfg, e, i, 10) for e in range(3) for i in range(10)]
    assert rates[0] == pytest.approx(1e-3 / 20)
    assert rates[9] == pytest.approx(1e-3 * 10 / 20)
    assert all(b > a for a, b in zip(rates[:19], rates[1:20]))
    assert rates[19] == rates[20] == pytest.approx(1e-3)


def test_polynomial_decay_is_the_paddle_port_schedule():
    cfg = cfg_with('TRAIN.LR', '0.001', 'TRAIN.LR_TYPE', 'PolynomialDecay', 'TRAIN.END_EPOCH', '4')
    assert learning_rate(cfg, 0, 0, 10) == pytest.approx(1e-3)
    assert learning_rate(cfg, 2, 0, 10) == pytest.approx(1e-3 * 0.5 ** 0.9)
    assert learning_rate(cfg, 3, 9, 10) == pytest.approx(1e-3 * (1 / 40.0) ** 0.9)


def test_unknown_schedule_and_optimizer_are_errors():
    with pytest.raises(ValueError, match='LR_TYPE'):
        learning_rate(cfg_with('TRAIN.LR_TYPE', 'cosine'), 0, 0, 1)
    with pytest.raises(ValueError, match='OPTIMIZER'):
        build_optimizer(cfg_with('TRAIN.OPTIMIZER', 'rmsprop'), paddle.nn.Linear(2, 2))


def test_seed_is_kept_or_drawn():
    assert resolve_seed(cfg_with('SEED', '17')) == 17
    drawn = {resolve_seed(cfg_with('SEED', '-1')) for _ in range(5)}
    assert len(drawn) > 1 and all(0 <= s < 2 ** 31 for s in drawn)


# ------------------------------------------------------------------ sample order

def test_epoch_order_depends_on_seed_and_epoch_only():
    a = EpochBatchSampler(50, 8, shuffle=True, seed=3)
    b = EpochBatchSampler(50, 8, shuffle=True, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    b.set_epoch(5)
    assert list(a) != list(b)
    flat = sum(list(a), [])
    assert sorted(flat) == list(range(50)) and flat != list(range(50))
    assert len(a) == 7 and len(list(a)[-1]) == 2


def test_ranks_split_the_same_permutation_like_one_big_batch():
    single = EpochBatchSampler(12, 4, seed=9)
    ranks = [EpochBatchSampler(12, 2, seed=9, rank=r, world_size=2) for r in range(2)]
    for s in [single] + ranks:
        s.set_epoch(1)
    # step i of the two processes sees exactly the samples of step i of one process with batch 4
    for step, batch in enumerate(single):
        assert sorted(ranks[0].indices()[2 * step:2 * step + 2]
                      + ranks[1].indices()[2 * step:2 * step + 2]) == sorted(batch)


def test_uneven_shards_are_padded_for_training_and_exact_for_validation():
    ranks = [EpochBatchSampler(7, 2, shuffle=False, rank=r, world_size=3) for r in range(3)]
    assert [len(r.indices()) for r in ranks] == [3, 3, 3]
    assert sorted(set(sum((r.indices() for r in ranks), []))) == list(range(7))
    val = [shard_indices(7, r, 3) for r in range(3)]
    assert sorted(sum(val, [])) == list(range(7))
    assert list(FixedBatchSampler(val[0], 2)) == [[0, 3], [6]]


def test_drop_last():
    s = EpochBatchSampler(10, 4, shuffle=False, drop_last=True)
    assert len(s) == 2 and list(s) == [[0, 1, 2, 3], [4, 5, 6, 7]]


class _Recorder:
    is_train = True

    def __init__(self):
        self.rng = None

    def __len__(self):
        return 4

    def __getitem__(self, idx):
        draw = self.rng.random()
        return (np.full((3, 2, 2), draw, np.float32), np.zeros((1, 2, 2), np.float32),
                np.ones((1, 1), np.float32), {'image': 'im%d.jpg' % idx, 'center': np.ones(2)})


def test_augmentation_draws_depend_on_seed_epoch_and_sample_not_on_call_order():
    ds = SeededDataset(_Recorder(), seed=5)
    ds.set_epoch(2)
    forward = [float(ds[i][0][0, 0, 0]) for i in range(4)]
    backward = [float(ds[i][0][0, 0, 0]) for i in reversed(range(4))][::-1]
    assert forward == backward and len(set(forward)) == 4
    ds.set_epoch(3)
    assert float(ds[0][0][0, 0, 0]) != forward[0]
    inputs, targets, weights, meta = collate([ds[0], ds[1]])
    assert inputs.shape == (2, 3, 2, 2) and meta['image'] == ['im0.jpg', 'im1.jpg']
    assert meta['index'].tolist() == [0, 1] and meta['center'].shape == (2, 2)


# ------------------------------------------------------------------ accuracy

def test_accuracy_uses_the_reference_normaliser():
    # 64x48 maps: x is divided by H/10 = 6.4 and y by W/10 = 4.8 (swapped, as the reference)
    joints = np.array([[[20.0, 30.0, 0], [20.0, 30.0, 0], [0.0, 0.0, 0]]]) * 4
    vis = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], np.float64)
    target, _ = generate_target(joints[0], vis, [192, 256], [48, 64], 2)
    out = target.copy()[None]
    # joint 1 predicted 3 px off in x: 3/6.4 = 0.47 < 0.5 -> correct; joint 0 exact
    out[0, 1] = np.roll(target[1], 3, axis=1)
    acc, avg, cnt, pred = heatmap_accuracy(out, target[None])
    assert acc.tolist() == [1.0, 1.0, -1.0] and cnt == 2 and avg == 1.0
    # 3 px off in y: 3/4.8 = 0.625 -> wrong
    out[0, 1] = np.roll(target[1], 3, axis=0)
    acc, avg, cnt, _ = heatmap_accuracy(out, target[None])
    assert acc.tolist() == [1.0, 0.0, -1.0] and avg == 0.5 and cnt == 2


def test_average_meter_is_weighted():
    m = AverageMeter()
    m.update(1.0, 1)
    m.update(4.0, 3)
    assert m.val == 4.0 and m.avg == pytest.approx(13 / 4.0)


# ------------------------------------------------------------------ optimiser state

def _trained(model, opt):
    x = paddle.ones([2, 4])
    loss = model(x).sum()
    loss.backward()
    opt.step()
    opt.clear_grad()


def test_optimizer_state_moves_between_models_with_different_runtime_names():
    cfg = cfg_with('TRAIN.OPTIMIZER', 'adam')
    paddle.seed(0)
    a = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.Linear(3, 1))
    opt_a = build_optimizer(cfg, a)
    _trained(a, opt_a)
    # as written to and read from disk: copies, not the live accumulators of opt_a
    saved = {k: paddle.to_tensor(v.numpy()) if isinstance(v, paddle.Tensor) else v
             for k, v in optimizer_state(opt_a, a).items()}
    assert any(k.startswith('0.weight_') for k in saved), sorted(saved)[:4]

    b = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.Linear(3, 1))
    assert b[0].weight.name != a[0].weight.name
    b.set_state_dict(a.state_dict())
    opt_b = build_optimizer(cfg, b)
    load_optimizer_state(opt_b, b, saved)
    _trained(a, opt_a)
    _trained(b, opt_b)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=ka)
