"""Training-side throughput: the data pipeline, training steps and validation, in samples/s.

Each function times one thing on this machine and returns plain numbers; the benchmark script
prints them. The first pass or iteration of each measurement is a warm-up and is not timed.
"""
import time

__all__ = ['BENCH_IMAGE_SIZE', 'ensure_benchmark_images', 'dataset_throughput',
           'loader_throughput', 'train_step_times', 'validation_dataset', 'validation_throughput']

BENCH_IMAGE_SIZE = (1280, 720)   # [W, H]: MPII-sized pictures, so decoding costs what it costs
BENCH_VALID_IMAGES = 8


def ensure_benchmark_images(root, num_images):
    """A synthetic MPII set of ``num_images`` training pictures of :data:`BENCH_IMAGE_SIZE` in
    ``root`` (generated once, reused while its parameters match)."""
    from posekit.data.synthetic import ensure_synthetic
    return ensure_synthetic(root, 'mpii', num_train=num_images, num_valid=BENCH_VALID_IMAGES,
                            seed=0, image_size=BENCH_IMAGE_SIZE, max_people=2)


def dataset_throughput(ds):
    """Samples/s of ``ds[i]`` over the whole dataset in this process."""
    n = len(ds)
    ds[0]
    t0 = time.perf_counter()
    for i in range(n):
        ds[i]
    return n / (time.perf_counter() - t0)


def loader_throughput(ds, workers, batch_size=16, seed=0):
    """Samples/s of one shuffled epoch through ``paddle.io.DataLoader`` with ``workers``
    worker processes (their start-up included)."""
    from posekit.data.loader import build_loader
    loader, _, _ = build_loader(ds, batch_size, shuffle=True, workers=workers, seed=seed)
    count = 0
    t0 = time.perf_counter()
    for inputs, _, _, _ in loader:
        count += inputs.shape[0]
    return count / (time.perf_counter() - t0)


def train_step_times(cfg, batch, iters, seed=0):
    """Seconds of each of ``iters`` training steps (forward + loss + backward + optimiser step)
    of the seeded model of ``cfg`` on a fixed random batch, after one untimed step. Data loading
    is excluded; the speed does not depend on the weights, so no pretrained file is read."""
    import numpy as np
    import paddle
    from posekit.benchmark.models import seeded_model
    from posekit.training.loss import build_loss
    from posekit.training.trainer import build_optimizer
    model = seeded_model(cfg, seed, is_train=True)
    model.train()
    opt = build_optimizer(cfg, model)
    crit = build_loss(cfg)
    w, h = cfg.MODEL.IMAGE_SIZE
    hw, hh = cfg.MODEL.HEATMAP_SIZE
    k = cfg.MODEL.NUM_JOINTS
    rng = np.random.default_rng(seed)
    x = paddle.to_tensor(rng.standard_normal((batch, 3, h, w)).astype('float32'))
    y = paddle.to_tensor(rng.random((batch, k, hh, hw)).astype('float32'))
    tw = paddle.ones([batch, k, 1])
    times = []
    for it in range(iters + 1):
        t0 = time.perf_counter()
        loss = crit(model(x), y, tw)
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)
        if it:  # the first iteration warms up
            times.append(time.perf_counter() - t0)
    return times


def validation_dataset(cfg, samples=64):
    """The validation dataset of ``cfg``, its records repeated up to ``samples`` (the benchmark
    set has few validation images: more samples give a steadier number)."""
    from posekit.data import build_dataset
    ds = build_dataset(cfg, is_train=False)
    ds.db = (ds.db * 8)[:samples]
    return ds


def validation_throughput(cfg, model, ds, flip_test, batch_size=16, workers=1):
    """Samples/s of the validation loop (data + predict + decode) over ``ds``, after one
    untimed pass. ``model``: a ``paddle.nn.Layer`` (run as a dygraph runner) or any runner."""
    import paddle
    from posekit.evaluation.validate import predict_dataset
    from posekit.runtime import DygraphRunner
    runner = model
    if isinstance(model, paddle.nn.Layer):
        runner = DygraphRunner(model)
    kw = dict(flip_test=flip_test, workers=workers, batch_size=batch_size, print_freq=10 ** 9)
    predict_dataset(cfg, runner, ds, **kw)
    t0 = time.perf_counter()
    res = predict_dataset(cfg, runner, ds, **kw)
    return res['count'] / (time.perf_counter() - t0)
