"""Training-side throughput on this machine: data loading, training steps, validation.

    python pose_estimation/benchmark_train.py            # everything (a few minutes on 2 cores)
    python pose_estimation/benchmark_train.py --only data --num-images 64
    python pose_estimation/benchmark_train.py --only bottomup-data   # SimplePose samples only

Prints markdown tables (the README keeps the latest run):

* data loader: MPII-sized JPEGs (1280x720, generated once into ``--data-root``) through the full
  training sample procedure (decode, augmentation, affine crop, normalisation, target heatmaps),
  in this process and with 1 and 2 ``paddle.io.DataLoader`` workers; samples/s in total and per
  worker (the SimplePose authors report 40 samples/s per CPU process);
* bottom-up data loader (``--only bottomup-data``, not in the default run): SimplePose 512x512
  training samples (COCO json + JPEGs -> masks, augmentation, 50 target maps) from a synthetic
  COCO-format set of 640x480 pictures (or a real COCO root with ``--coco-root``), in this process
  and with 1 and 2 workers, in batches of the SimplePose experiment's size (4 per process;
  ``--bottomup-batch``) (target: at least 80 samples/s per process);
* training: samples/s of forward + backward + Adam step per model (data excluded);
* validation: samples/s of predict + decode with and without flip test (data included).
"""
import argparse
import os
import sys
import tempfile


MODELS = [
    # label, experiment, batch
    ('SimpleNet', 'experiments/mpii/mobile/256x256_d256x3_adam_lr1e-3.yaml'),
    ('LPN-50', 'experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml'),
    ('PoseResNet-50', 'experiments/mpii/resnet50/256x256_d256x3_adam_lr1e-3.yaml'),
    ('HRNet-W32', 'experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml'),
    ('HRNet-W18-small-v2', 'experiments/coco/hrnet/w18_small_v2_256x192_adam_lr1e-3.yaml'),
]
SIMPLEPOSE_EXPERIMENT = 'experiments/coco/simplepose/simplepose_512x512.yaml'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--only', choices=['data', 'train', 'valid', 'bottomup-data'], action='append',
                   help='run only these parts (repeatable; bottomup-data runs only when named)')
    p.add_argument('--data-root', default=os.path.join(tempfile.gettempdir(),
                                                       'posekit_bench_mpii_1280x720'),
                   help='where the MPII-sized benchmark images are generated (reused)')
    p.add_argument('--num-images', type=int, default=96)
    p.add_argument('--bottomup-root', default=os.path.join(tempfile.gettempdir(),
                                                           'posekit_bench_coco_640x480'),
                   help='where the synthetic COCO set of the bottom-up data part is generated')
    p.add_argument('--coco-root', default='',
                   help='bottom-up data part on a real COCO root (annotations/, images/<set>/)')
    p.add_argument('--coco-set', default='val2017', help='the set of --coco-root to read')
    p.add_argument('--bottomup-batch', type=int, default=0,
                   help='batch of the bottom-up data part (default: TRAIN.BATCH_SIZE_PER_GPU of '
                        '%s)' % SIMPLEPOSE_EXPERIMENT)
    p.add_argument('--batch', type=int, default=8, help='training batch')
    p.add_argument('--iters', type=int, default=4, help='timed training iterations per model')
    p.add_argument('--models', default=','.join(m[0] for m in MODELS),
                   help='comma-separated labels of: ' + ', '.join(m[0] for m in MODELS))
    return p.parse_args(argv)


def mpii_cfg(root, extra=()):
    from posekit.config import load_config
    return load_config(os.path.join(ROOT, 'experiments/mpii/mobile/256x256_d256x3_adam_lr1e-3.yaml'),
                       ['DATASET.ROOT', root, 'DATASET.TEST_SET', 'valid'] + list(extra))


def bench_data(args):
    import numpy as np
    from posekit.benchmark.throughput import (dataset_throughput, ensure_benchmark_images,
                                              loader_throughput)
    from posekit.data import build_dataset
    ensure_benchmark_images(args.data_root, args.num_images)
    ds = build_dataset(mpii_cfg(args.data_root), is_train=True, rng=np.random.default_rng(0))
    rate = dataset_throughput(ds)
    rows = [('in-process (0 workers)', 1, rate, rate)]
    for workers in (1, 2):
        rate = loader_throughput(ds, workers)
        rows.append(('paddle.io.DataLoader, %d worker%s' % (workers, 's' if workers > 1 else ''),
                     workers, rate, rate / workers))
    print('\n### Data loader (%d training samples, one per person, of %d MPII-sized 1280x720 '
          'JPEGs; 256x256 crops with augmentation and targets)\n'
          % (len(ds), len({r['image'] for r in ds.db})))
    print('| loader | processes | samples/s | samples/s per process |')
    print('|---|---|---|---|')
    for name, procs, total, per in rows:
        print('| %s | %d | %.1f | %.1f |' % (name, procs, total, per))
    sys.stdout.flush()


BOTTOMUP_IMAGE_SIZE = (640, 480)  # [W, H], a typical COCO picture
BOTTOMUP_MAX_PEOPLE = 4


def bench_bottomup_data(args):
    import numpy as np
    from posekit.benchmark.throughput import dataset_throughput, loader_throughput
    from posekit.config import load_config
    from posekit.data.bottomup import BottomUpCOCODataset
    # the loader as SimplePose training runs it: its input size and batch per process
    cfg = load_config(os.path.join(ROOT, SIMPLEPOSE_EXPERIMENT))
    batch = args.bottomup_batch or cfg.TRAIN.BATCH_SIZE_PER_GPU
    input_size = tuple(cfg.MODEL.IMAGE_SIZE)
    if args.coco_root:
        root, image_set = args.coco_root, args.coco_set
        source = 'COCO %s' % image_set
    else:
        from posekit.data.synthetic import ensure_synthetic
        root, image_set = args.bottomup_root, 'train2017'
        ensure_synthetic(root, 'coco', num_train=args.num_images, num_valid=8, seed=0,
                         image_size=BOTTOMUP_IMAGE_SIZE, max_people=BOTTOMUP_MAX_PEOPLE)
        source = 'synthetic COCO-format %dx%d, up to %d people' % (
            BOTTOMUP_IMAGE_SIZE + (BOTTOMUP_MAX_PEOPLE,))
    ds = BottomUpCOCODataset(
        ann_file=os.path.join(root, 'annotations', 'person_keypoints_%s.json' % image_set),
        image_dir=os.path.join(root, 'images', image_set), input_size=input_size,
        is_train=True, rng=np.random.default_rng(0))
    rate = dataset_throughput(ds)
    rows = [('in-process (0 workers)', 1, rate, rate)]
    for workers in (1, 2):
        rate = loader_throughput(ds, workers, batch_size=batch)
        rows.append(('paddle.io.DataLoader, %d worker%s' % (workers, 's' if workers > 1 else ''),
                     workers, rate, rate / workers))
    print('\n### Bottom-up data loader (%d samples of %d images, %s; %dx%d SimplePose training '
          'samples: masks, augmentation, 50 target maps; loader batches of %d)\n'
          % ((len(ds), len(ds.images), source) + input_size + (batch,)))
    print('| loader | processes | samples/s | samples/s per process |')
    print('|---|---|---|---|')
    for name, procs, total, per in rows:
        print('| %s | %d | %.1f | %.1f |' % (name, procs, total, per))
    sys.stdout.flush()


def _selected(args):
    wanted = [s.strip() for s in args.models.split(',') if s.strip()]
    known = {m[0]: m for m in MODELS}
    bad = [w for w in wanted if w not in known]
    if bad:
        raise SystemExit('benchmark_train: error: unknown model %s (known: %s)'
                         % (', '.join(bad), ', '.join(known)))
    return [known[w] for w in wanted]


def bench_train(args):
    from posekit.benchmark.timing import summary
    from posekit.benchmark.throughput import train_step_times
    from posekit.config import load_config
    rows = []
    for label, exp in _selected(args):
        # no ImageNet file needed: the speed does not depend on the initial weights
        cfg = load_config(os.path.join(ROOT, exp), ['MODEL.INIT_WEIGHTS', 'False'])
        med = summary(train_step_times(cfg, args.batch, args.iters))['median']
        w, h = cfg.MODEL.IMAGE_SIZE
        rows.append((label, '%dx%d' % (w, h), args.batch, args.batch / med, med * 1000))
        print('  %s: %.2f samples/s' % (label, args.batch / med), file=sys.stderr)
    # Paddle sets OMP_NUM_THREADS to 1 at import when it is unset: dygraph uses one core per
    # process (train with two processes to use two cores, see the README)
    print('\n### Training step (one process, OMP_NUM_THREADS=%s: forward + backward + Adam, '
          'batch %d, median of %d)\n' % (os.environ.get('OMP_NUM_THREADS', '?'), args.batch,
                                           args.iters))
    print('| model | input WxH | batch | samples/s | ms/iteration |')
    print('|---|---|---|---|---|')
    for label, size, b, sps, ms in rows:
        print('| %s | %s | %d | %.2f | %.0f |' % (label, size, b, sps, ms))
    sys.stdout.flush()


def bench_valid(args):
    from posekit.benchmark.models import seeded_model
    from posekit.benchmark.throughput import (ensure_benchmark_images, validation_dataset,
                                              validation_throughput)
    ensure_benchmark_images(args.data_root, args.num_images)
    rows = []
    for label, exp in _selected(args):
        if not exp.startswith('experiments/mpii'):
            continue
        cfg = mpii_cfg(args.data_root)
        if 'resnet' in exp:
            from posekit.config import load_config
            cfg = load_config(os.path.join(ROOT, exp), ['DATASET.ROOT', args.data_root])
        model = seeded_model(cfg, 0)
        ds = validation_dataset(cfg)
        for flip in (False, True):
            rows.append((label, 'on' if flip else 'off',
                         validation_throughput(cfg, model, ds, flip)))
    print('\n### Validation (MPII 256x256, batch 16, 1 loader worker, data + predict + decode)\n')
    print('| model | flip test | samples/s |')
    print('|---|---|---|')
    for label, flip, sps in rows:
        print('| %s | %s | %.1f |' % (label, flip, sps))
    sys.stdout.flush()


def main(argv=None):
    args = parse_args(argv)
    import logging
    logging.getLogger('posekit').setLevel(logging.WARNING)
    parts = args.only or ['data', 'train', 'valid']
    print('CPU: %d logical cores' % os.cpu_count())
    if 'data' in parts:
        bench_data(args)
    if 'train' in parts:
        bench_train(args)
    if 'valid' in parts:
        bench_valid(args)
    if 'bottomup-data' in parts:
        bench_bottomup_data(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
