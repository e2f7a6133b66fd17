"""Export a trained pose model to ONNX and/or a Paddle inference model, checked for parity.

    python pose_estimation/export.py \\
        --cfg experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml \\
        --model-file output/simplenet_coco_256x192.pdparams
    python pose_estimation/export.py --cfg FILE --model-file F --format onnx --dynamic-batch \\
        --quantize int8 --calib-dir images/calib --calib-num 32

Writes into --output (default output/export/<dataset>/<model>/<cfg name>/):
model.onnx (input "image" float32 1x3xHxW, output "heatmaps" 1xKx(H/4)x(W/4), opset 11 unless
--opset), model.json + model.pdiparams (Paddle Inference), deploy_config.json (what deploy.py
needs: input size, normalisation, joints, flip pairs, decoding), config.yaml (the resolved
config) and, with --quantize int8, model_int8.onnx. The graph ends at the heatmaps; decoding and
the flip test stay in numpy. A bottom-up model (simplepose) is exported for any batch, height
and width (output "maps" Nx50x(H/4)x(W/4), the last stack's), checked at two input sizes, and
cannot be quantised. The dygraph model, ONNX Runtime and Paddle Inference are run on the
same inputs and the export fails (exit 1) if their heatmaps differ by more than --tol (> 0).
Everything is built and checked in a sibling folder that replaces --output in one step: a failed
check, a full disk, Ctrl-C or a kill leaves the previous export there complete and unchanged
(posekit.export.exporter). A checkpoint that does not fit the config, a missing file or an empty
calibration folder is a one-line error with exit code 1.
"""
import argparse
import os
import sys

from posekit.cli import run_tool  # no paddle import

# Paddle's C++ warnings (glog) during tracing are noise here; set before paddle is imported.
os.environ.setdefault('GLOG_minloglevel', '2')

PROG = 'export'


def parse_args(argv=None):
    from posekit.config import add_config_arguments
    from posekit.export.exporter import DEFAULT_OPSET, FORMATS, PARITY_TOL
    parser = argparse.ArgumentParser(
        description='Export a pose model (heatmaps out) to ONNX and/or Paddle Inference, with a '
                    'deploy_config.json beside it, and check that the runtimes agree.',
        epilog='Output folder by default: output/export/<dataset>/<model>/<cfg name>/ (with '
               '_<W>x<H> appended when MODEL.IMAGE_SIZE is overridden on the command line). '
               'Files: model.onnx, model.json + model.pdiparams, deploy_config.json, config.yaml '
               '[, model_int8.onnx].')
    parser.add_argument('--model-file', default='',
                        help='trained weights (.pdparams, or a PyTorch reference .pth/.pth.tar); '
                             'default: TEST.MODEL_FILE of the config')
    parser.add_argument('--output', default='',
                        help='output folder (default: output/export/<dataset>/<model>/<cfg name>)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help='ONNX opset (default %(default)s: the widest runtime support)')
    parser.add_argument('--format', default='both', choices=FORMATS,
                        help='onnx, paddle or both (default %(default)s)')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='variable batch size (default: fixed batch 1)')
    parser.add_argument('--quantize', choices=('int8',), default=None,
                        help='also write model_int8.onnx (static QDQ int8, needs --calib-dir)')
    parser.add_argument('--calib-dir', default='',
                        help='folder of images for int8 calibration (each whole image is one '
                             'person box)')
    parser.add_argument('--calib-num', type=int, default=None,
                        help='use at most N calibration images (default: all)')
    parser.add_argument('--tol', type=float, default=PARITY_TOL,
                        help='largest allowed heatmap difference between runtimes, > 0 '
                             '(default %(default)s)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads for the parity and int8 checks (default: physical cores)')
    add_config_arguments(parser)
    return parser.parse_args(argv)


def _body(argv):
    args = parse_args(argv)
    from posekit.cli import one_line
    from posekit.checkpoint import CheckpointMismatchError, load_checkpoint
    from posekit.config import config_from_args, is_bottom_up
    from posekit.export.exporter import (ExportError, check_bottomup_export, check_export_options,
                                         default_output_dir, export_model)
    from posekit.models import build_model
    from posekit.export.quantize import calibration_images
    # every option is checked before the slow part (building the model, loading the weights)
    check_export_options(args.format, args.opset, args.tol, args.quantize)
    if args.output:
        from posekit.outputs import check_output_folder
        check_output_folder(args.output, '--output')
    if args.calib_dir and not args.quantize:
        raise ExportError('--calib-dir is only used with --quantize int8')
    cfg = config_from_args(args)
    if is_bottom_up(cfg):
        check_bottomup_export(args.quantize)
    if args.quantize:
        calibration_images(args.calib_dir, args.calib_num)  # fail before the slow part
    model_file = args.model_file or cfg.TEST.MODEL_FILE
    if not model_file:
        raise ExportError('no weights to export: give --model-file (or TEST.MODEL_FILE)')
    if not os.path.isfile(model_file):
        raise ExportError('model file not found: %s' % model_file)
    model = build_model(cfg)
    try:
        load_checkpoint(model, model_file)
    except CheckpointMismatchError as e:  # a refused or unreadable file needs no such hint
        raise CheckpointMismatchError('%s; is --cfg the config this checkpoint was trained with?'
                                      % one_line(e)) from e
    output = args.output or default_output_dir(cfg, args.cfg)
    result = export_model(model, cfg, output, fmt=args.format, opset=args.opset,
                          dynamic_batch=args.dynamic_batch, tol=args.tol, threads=args.threads,
                          quantize=args.quantize, calib_dir=args.calib_dir,
                          calib_num=args.calib_num)
    print('weights: %s' % model_file)
    print(result.describe())  # with the int8 report
    return 0


def main(argv=None):
    # ConfigError, CheckpointError, ExportError/ParityError, ModelLoadError, QuantizeError,
    # DeployConfigError (PosekitErrors) and a missing or unwritable file: one line, exit 1
    return run_tool(PROG, _body, argv)


if __name__ == '__main__':
    sys.exit(main())
