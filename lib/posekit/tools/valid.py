"""Validate a pose model: ``python pose_estimation/valid.py --cfg FILE --model-file F [options]``.

MPII: the PCKh table of the reference (Head ... Mean, Mean@0.1; note that the reference's
"Mean@0.1" is computed at threshold 0.11, and the true PCKh@0.1 is printed beside it) and
``pred.mat``. COCO: the results json (rescored, OKS-NMS; soft OKS-NMS with TEST.SOFT_NMS True)
and the ten pycocotools stats. ``--model-file`` takes our ``.pdparams``/``checkpoint.pdckpt``
or a PyTorch reference checkpoint (loaded strictly); without it, TEST.MODEL_FILE, then the
run's ``final_state.pdparams``. Several processes: ``python -m paddle.distributed.launch``.
"""
import argparse
import os
import sys



def _switch(parser, name, key, help_on):
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--' + name, dest=key, action='store_true', default=None, help=help_on)
    group.add_argument('--no-' + name, dest=key, action='store_false', default=None,
                       help='turn it off')


def parse_args(argv=None):
    from posekit.config import add_config_arguments
    parser = argparse.ArgumentParser(description='Validate a top-down heatmap pose model.')
    parser.add_argument('--model-file', default=None,
                        help='weights (.pdparams, checkpoint.pdckpt or a PyTorch reference file)')
    _switch(parser, 'flip-test', 'flip_test', 'average with the mirrored input (TEST.FLIP_TEST)')
    _switch(parser, 'post-process', 'post_process', 'quarter-pixel step (TEST.POST_PROCESS)')
    _switch(parser, 'shift-heatmap', 'shift_heatmap',
            'shift flipped maps one pixel (TEST.SHIFT_HEATMAP)')
    box = parser.add_mutually_exclusive_group()
    box.add_argument('--use-detect-bbox', dest='use_gt_bbox', action='store_false', default=None,
                     help='COCO: detection boxes from TEST.COCO_BBOX_FILE')
    box.add_argument('--use-gt-bbox', dest='use_gt_bbox', action='store_true', default=None,
                     help='COCO: ground-truth boxes')
    parser.add_argument('--coco-bbox-file', default=None, help='COCO detection results json')
    parser.add_argument('--workers', type=int, default=None, help='data loader workers (WORKERS)')
    parser.add_argument('--predictions', default=None, metavar='FILE',
                        help='evaluate saved keypoints instead of running a model: an MPII '
                             'pred.mat, or .npy/.npz (preds: N x K x 2|3, 0-based image pixels)')
    parser.add_argument('--output', default=None,
                        help='folder for pred.mat / results json (default: the run folder)')
    add_config_arguments(parser)
    return parser.parse_args(argv)


def _overrides(args):
    opts = []
    for flag, key in (('flip_test', 'TEST.FLIP_TEST'), ('post_process', 'TEST.POST_PROCESS'),
                      ('shift_heatmap', 'TEST.SHIFT_HEATMAP'), ('use_gt_bbox', 'TEST.USE_GT_BBOX')):
        value = getattr(args, flag)
        if value is not None:
            opts += [key, str(value)]
    if args.coco_bbox_file:
        opts += ['TEST.COCO_BBOX_FILE', args.coco_bbox_file]
    if args.model_file:
        opts += ['TEST.MODEL_FILE', args.model_file]
    if args.workers is not None:
        opts += ['WORKERS', str(args.workers)]
    return opts


class PredictionsError(ValueError):
    pass


def _evaluate_file(cfg, path, out_dir, logger):
    """``--predictions``: the metric of saved keypoints (rank 0 only; no model is run)."""
    from posekit import distributed as dist
    from posekit.data import build_dataset
    from posekit.evaluation.validate import dataset_result, evaluate_predictions, load_predictions, log_table
    if not dist.is_main():
        return 0
    dataset = build_dataset(cfg, is_train=False)
    try:
        result = dataset_result(dataset, load_predictions(path))
    except ValueError as e:
        raise PredictionsError(str(e)) from e
    logger.info('=> evaluating %d saved predictions from %s', result['count'], path)
    name_values, _ = evaluate_predictions(cfg, dataset, result, out_dir)
    log_table(cfg, name_values)
    return 0


def main(argv=None):
    args = parse_args(argv)
    from posekit import distributed as dist
    from posekit.checkpoint import CheckpointError, load_checkpoint
    from posekit.config import ConfigError, config_from_args
    from posekit.data.synthetic import SyntheticError
    from posekit.data import DatasetError, build_dataset, prepare_synthetic
    from posekit.outputs import log_file, run_dirs, setup_logging

    try:
        # explicit switches win over the KEY VALUE pairs given after them
        args.opts = list(args.opts) + _overrides(args)
        cfg = config_from_args(args)
        dist.init()
        rank = dist.rank()
        run_dir, _, time_str = run_dirs(cfg, args.cfg, create=rank == 0)
        out_dir = args.output or run_dir
        logger = setup_logging(log_file(out_dir, args.cfg, time_str, 'valid'),
                               rank=rank)
        prepare_synthetic(cfg)
        if args.predictions:
            return _evaluate_file(cfg, args.predictions, out_dir, logger)
        model_file = cfg.TEST.MODEL_FILE or os.path.join(run_dir, 'final_state.pdparams')
        if not os.path.isfile(model_file):
            raise FileNotFoundError('model file not found: %s (give --model-file)' % model_file)
        from posekit.evaluation.validate import validate
        from posekit.training.loss import build_loss
        from posekit.models import build_model
        model = build_model(cfg)
        logger.info('=> loading model from %s', model_file)
        load_checkpoint(model, model_file)
        dataset = build_dataset(cfg, is_train=False)
        logger.info('=> %d samples, flip test %s, %d process(es)', len(dataset),
                    'on' if cfg.TEST.FLIP_TEST else 'off', dist.world_size())
        name_values, perf, result = validate(cfg, model, dataset, out_dir,
                                             criterion=build_loss(cfg))
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError, PermissionError, SyntheticError,
            PredictionsError) as e:
        print('valid: error: %s' % e, file=sys.stderr)
        return 1
    if rank == 0:
        logger.info('=> %d samples: loss %.6f, accuracy %.3f', result['count'], result['loss'],
                    result['acc'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
