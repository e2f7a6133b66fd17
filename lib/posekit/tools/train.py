"""Train a pose model: ``python pose_estimation/train.py --cfg FILE [options] [KEY VALUE ...]``.

One process per device; several with ``python -m paddle.distributed.launch`` (GPUs, or CPU
processes with gloo), where ``TRAIN.BATCH_SIZE_PER_GPU`` is each process's batch. Outputs go to
``OUTPUT_DIR/<dataset>/<model>/<cfg name>/`` (checkpoint.pdckpt, model_best.pdparams,
final_state.pdparams, config.yaml, the text log) and VisualDL scalars to ``LOG_DIR/...``.
``--resume`` continues from ``checkpoint.pdckpt`` exactly where the last finished epoch ended.
"""
import argparse
import sys

from posekit.cli import run_tool

PROG = 'train'


def parse_args(argv=None):
    from posekit.config import add_config_arguments
    parser = argparse.ArgumentParser(
        description='Train a pose model, top-down or bottom-up (validation every epoch).')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the run\'s checkpoint.pdckpt')
    parser.add_argument('--resume-from', default=None, metavar='CHECKPOINT',
                        help='continue from this checkpoint.pdckpt instead')
    parser.add_argument('--seed', type=int, default=None,
                        help='seed for weights, sample order and augmentation (sets SEED)')
    parser.add_argument('--workers', type=int, default=None,
                        help='data loader worker processes per process (sets WORKERS)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar on the terminal (log lines only)')
    add_config_arguments(parser)
    return parser.parse_args(argv)


def _body(argv):
    args = parse_args(argv)
    from posekit import distributed as dist
    from posekit.config import config_from_args
    from posekit.data import prepare_synthetic
    from posekit.outputs import hold_output_folder, log_file, run_dirs, setup_logging

    if args.seed is not None:
        args.opts = list(args.opts) + ['SEED', str(args.seed)]
    if args.workers is not None:
        args.opts = list(args.opts) + ['WORKERS', str(args.workers)]
    cfg = config_from_args(args)
    dist.init()
    rank = dist.rank()
    out_dir, _, time_str = run_dirs(cfg, args.cfg, create=rank == 0, logs=True)
    # one run per run folder (released on every way out: error, Ctrl-C, SIGTERM)
    with hold_output_folder(out_dir, 'wait for it to end or use another OUTPUT_DIR'):
        logger = setup_logging(log_file(out_dir, args.cfg, time_str, 'train'), rank=rank)
        logger.info('=> %s', ' '.join(sys.argv))
        prepare_synthetic(cfg)
        return _train(args, cfg, rank, logger)


def _train(args, cfg, rank, logger):
    from posekit.training.trainer import Trainer
    trainer = Trainer(cfg, args.cfg, resume=args.resume_from or (True if args.resume else None),
                      progress=not args.no_progress)
    result = trainer.fit()
    if rank == 0:
        logger.info('=> done: best %.4f at epoch %d; weights in %s', result['best_perf'],
                    result['best_epoch'], result['output_dir'])
    return 0


def main(argv=None):
    # a bad config, data or checkpoint, a diverged loss or a full disk: one line, exit 1;
    # Ctrl-C: 130, SIGTERM: 143 (the hint also follows a failed write)
    return run_tool(PROG, _body, argv, interrupted_hint='the last finished epoch is in '
                    'checkpoint.pdckpt (continue with --resume)')


if __name__ == '__main__':
    sys.exit(main())
