"""Validate a pose model: ``python pose_estimation/valid.py --cfg FILE --model-file F [options]``.

MPII: the PCKh table of the reference (Head ... Mean, Mean@0.1; note that the reference's
"Mean@0.1" is computed at threshold 0.11, and the true PCKh@0.1 is printed beside it) and
``pred.mat``. COCO: the results json (rescored, OKS-NMS; soft OKS-NMS with TEST.SOFT_NMS True)
and the ten pycocotools stats. ``--model-file`` takes our ``.pdparams``/``checkpoint.pdckpt``
or a PyTorch reference checkpoint (loaded strictly into the config's model, run in dygraph);
without it, TEST.MODEL_FILE, then the run's ``final_state.pdparams``. Several processes:
``python -m paddle.distributed.launch``.

It also evaluates an exported model with the same loop, so the accuracy of the deployed artefact
is one command (``--type`` overrides the runtime found from the file name)::

    python pose_estimation/valid.py --cfg FILE --model-file output/export/.../model_int8.onnx

``model.onnx``/``model_int8.onnx`` run in ONNX Runtime, ``model.json``/``.pdmodel`` (or their
folder) in Paddle Inference; a model exported with a fixed batch is run in chunks. Its input and
heatmap sizes must be those of ``--cfg``, which also gives the dataset, flip test and decoding.

A bottom-up model (SimplePose) is scored on the whole images of ``TEST_SET`` with the reference's
test pipeline (height ``TEST.BOXSIZE`` 640, padded to 64 with grey 128, flip test with
``--flip-test``), its first ``TEST.MAX_IMAGES`` when > 0; the people go to
``results/keypoints_<set>_results.json`` and ``--predictions`` takes such a file. The top-down
box and heatmap switches do not apply to it.
"""
import argparse
import os
import sys

from posekit.cli import run_tool

PROG = 'valid'


def _switch(parser, name, key, help_on):
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--' + name, dest=key, action='store_true', default=None, help=help_on)
    group.add_argument('--no-' + name, dest=key, action='store_false', default=None,
                       help='turn it off')


def parse_args(argv=None):
    from posekit.config import add_config_arguments
    parser = argparse.ArgumentParser(prog=PROG,
                                     description='Validate a pose model (top-down or '
                                                 'bottom-up).')
    parser.add_argument('--model-file', default=None,
                        help='weights (.pdparams, checkpoint.pdckpt or a PyTorch reference '
                             'file), or an exported model: model.onnx, model_int8.onnx, a '
                             'Paddle inference model.json/.pdmodel, or its folder')
    parser.add_argument('--type', type=str.lower, choices=('onnx', 'paddle'), default=None,
                        help='runtime of an exported --model-file: onnx (onnxruntime) or paddle '
                             '(Paddle Inference); default from the file name')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads of the runtime (default: physical cores for exported '
                             'models, Paddle\'s own choice in dygraph)')
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
                             'pred.mat, or .npy/.npz (preds: N x K x 2|3, 0-based image pixels); '
                             'bottom-up models: a COCO keypoint results .json')
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


# switches of the top-down pipeline (person boxes, heatmap decoding) and their config keys
TOPDOWN_ONLY = (('post_process', '--post-process/--no-post-process'),
                ('shift_heatmap', '--shift-heatmap/--no-shift-heatmap'),
                ('use_gt_bbox', '--use-gt-bbox/--use-detect-bbox'),
                ('coco_bbox_file', '--coco-bbox-file'))


def _check_pipeline_switches(cfg, args):
    """One line when a top-down switch is given for a bottom-up model (it would do nothing)."""
    from posekit.config import is_bottom_up
    from posekit.errors import PosekitInputError
    if not is_bottom_up(cfg):
        return
    given = [flag for key, flag in TOPDOWN_ONLY if getattr(args, key) not in (None, '')]
    if given:
        raise PosekitInputError('%s does not apply to %s, a bottom-up model (it finds the people '
                                'in the whole image, without boxes or per-joint heatmaps)'
                                % (', '.join(given), cfg.MODEL.NAME))


def _evaluate_file(cfg, path, out_dir, logger):
    """``--predictions``: the metric of saved keypoints (rank 0 only; no model is run)."""
    from posekit import distributed as dist
    from posekit.config import is_bottom_up
    from posekit.data import build_dataset
    from posekit.evaluation.validate import (check_ground_truth, dataset_result,
                                             evaluate_predictions, load_predictions, log_table)
    if not dist.is_main():
        return 0
    dataset = build_dataset(cfg, is_train=False)
    check_ground_truth(cfg, dataset)
    if is_bottom_up(cfg):
        from posekit.evaluation.bottomup_validate import evaluate_results_file
        name_values = evaluate_results_file(cfg, dataset, path)[0]
        log_table(cfg, name_values)
        return 0
    result = dataset_result(dataset, load_predictions(path))
    logger.info('=> evaluating %d saved predictions from %s', result['count'], path)
    name_values, _ = evaluate_predictions(cfg, dataset, result, out_dir)
    log_table(cfg, name_values)
    return 0


def _open_runner(cfg, args, model_file):
    """The runner to evaluate: an exported model through its runtime (checked against the
    config's input and heatmap sizes), or the config's model with the checkpoint's weights."""
    from posekit.config import is_bottom_up
    from posekit.inference.loading import RUNTIME_NAMES, open_trained
    from posekit.runtime import ModelLoadError, check_shapes, exported_kind, open_runner
    kind = args.type or exported_kind(model_file)
    if is_bottom_up(cfg):
        return _open_bottom_up(cfg, args, model_file, kind), RUNTIME_NAMES[kind or 'dygraph']
    if not kind:
        return open_trained(cfg, model_file, threads=args.threads)[0], RUNTIME_NAMES['dygraph']
    runner = open_runner(model_file, kind=kind, threads=args.threads)
    try:
        check_shapes(runner, cfg.MODEL.IMAGE_SIZE, cfg.MODEL.HEATMAP_SIZE, cfg.MODEL.NUM_JOINTS,
                     source='the config %s' % args.cfg)
    except ModelLoadError as e:
        raise ModelLoadError('%s; is --cfg the config the model was exported from?' % e) from e
    return runner, RUNTIME_NAMES[kind]


def _open_bottom_up(cfg, args, model_file, kind):
    """A bottom-up model's runner: the config's model with the checkpoint's weights, or an
    export, which must take images of any size (multiples of 64) and give the 50 maps of
    SIMPLEPOSE_SPEC 2."""
    from posekit.codec import codec_from_cfg
    from posekit.runtime import DygraphRunner, ModelLoadError, open_runner
    if not kind:
        from posekit.checkpoint import load_checkpoint
        from posekit.models import build_model
        if args.threads:
            from paddle.base import core
            core.set_num_threads(int(args.threads))
        model = build_model(cfg)
        load_checkpoint(model, model_file)
        return DygraphRunner(model, name=cfg.MODEL.NAME)
    from posekit.runtime.base import check_free_size
    runner = open_runner(model_file, kind=kind, threads=args.threads)
    try:
        check_free_size(runner, codec_from_cfg(cfg).num_channels, 'the config %s' % args.cfg)
    except ModelLoadError as e:
        raise ModelLoadError('%s; is --cfg the config the model was exported from?' % e) from e
    return runner


def _body(argv):
    args = parse_args(argv)
    from posekit import distributed as dist
    from posekit.config import config_from_args
    from posekit.outputs import check_output_folder, hold_output_folder, run_dirs

    if args.output:
        check_output_folder(args.output, '--output')
    # explicit switches win over the KEY VALUE pairs given after them
    args.opts = list(args.opts) + _overrides(args)
    cfg = config_from_args(args)
    _check_pipeline_switches(cfg, args)
    dist.init()
    rank = dist.rank()
    run_dir, _, time_str = run_dirs(cfg, args.cfg, create=rank == 0)
    out_dir = args.output or run_dir
    # one run per output folder (released on every way out: error, Ctrl-C, SIGTERM)
    with hold_output_folder(out_dir, 'wait for it to end or give another --output'):
        return _validate(args, cfg, run_dir, out_dir, time_str, rank)


def _validate(args, cfg, run_dir, out_dir, time_str, rank):
    from posekit import distributed as dist
    from posekit.data import build_dataset, prepare_synthetic
    from posekit.errors import PosekitInputError
    from posekit.outputs import log_file, setup_logging
    logger = setup_logging(log_file(out_dir, args.cfg, time_str, 'valid'), rank=rank)
    prepare_synthetic(cfg)
    if args.predictions:
        return _evaluate_file(cfg, args.predictions, out_dir, logger)
    model_file = cfg.TEST.MODEL_FILE or os.path.join(run_dir, 'final_state.pdparams')
    if not os.path.exists(model_file):
        raise PosekitInputError('model file not found: %s (give --model-file)' % model_file)
    from posekit.evaluation.validate import check_ground_truth, validate
    from posekit.training.loss import build_loss
    logger.info('=> loading model from %s', model_file)
    runner, runtime = _open_runner(cfg, args, model_file)
    # every input file is read before the model runs: a bad annotation, detection or
    # ground-truth file stops valid.py at once, not after the whole set
    dataset = build_dataset(cfg, is_train=False)
    check_ground_truth(cfg, dataset)
    from posekit.config import is_bottom_up
    if is_bottom_up(cfg):
        from posekit.evaluation.bottomup_validate import evaluation_images
        logger.info('=> %d images at height %d, %s, flip test %s, %d process(es)',
                    len(evaluation_images(cfg, dataset)), int(cfg.TEST.BOXSIZE), runtime,
                    'on' if cfg.TEST.FLIP_TEST else 'off', dist.world_size())
        _, _, result = validate(cfg, runner, dataset, out_dir)
        if rank == 0:
            logger.info('=> %d images: %d people found', result['count'], result['people'])
        return 0
    logger.info('=> %d samples, %s, flip test %s, %d process(es)', len(dataset), runtime,
                'on' if cfg.TEST.FLIP_TEST else 'off', dist.world_size())
    _, _, result = validate(cfg, runner, dataset, out_dir, criterion=build_loss(cfg))
    if rank == 0:
        logger.info('=> %d samples: loss %.6f, accuracy %.3f', result['count'], result['loss'],
                    result['acc'])
    return 0


def main(argv=None):
    return run_tool(PROG, _body, argv)


if __name__ == '__main__':
    sys.exit(main())
