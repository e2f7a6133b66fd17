"""Convert a PyTorch reference checkpoint into a Paddle ``.pdparams`` file for one experiment.

    python pose_estimation/convert.py --cfg experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml \\
        --src pose_resnet_50_256x192.pth.tar --dst output/pose_resnet_50_256x192.pdparams

The model is built from the config and the converted weights are loaded strictly, so a
checkpoint that does not fit the config (wrong depth, joints, head) fails with the list of
mismatching keys instead of producing a file. The resolved config is written beside the weights
(``<dst without extension>.yaml``). Plain state dicts, ``{'state_dict': ...}``
checkpoints and DataParallel ``module.`` prefixes are all accepted; torch is optional.
"""
import argparse
import os
import sys

from posekit.cli import run_tool

PROG = 'convert'


def parse_args(argv=None):
    from posekit.config import add_config_arguments
    parser = argparse.ArgumentParser(
        description='Convert a PyTorch pose checkpoint (.pth/.pth.tar/.pt) to Paddle .pdparams, '
                    'checked strictly against the model of the config.')
    parser.add_argument('--src', required=True, help='PyTorch checkpoint to convert')
    parser.add_argument('--dst', required=True, help='Paddle state dict to write (.pdparams)')
    add_config_arguments(parser)
    return parser.parse_args(argv)


def _body(argv):
    args = parse_args(argv)
    from posekit.checkpoint import convert_checkpoint
    from posekit.config import config_from_args, save_config
    from posekit.models import build_model, model_tag
    from posekit.models.layers import count_parameters
    # ConfigError (also a bad model setting), CheckpointError (mismatch, unreadable file, torch
    # needed) or a missing/unwritable file: run_tool prints the one line
    cfg = config_from_args(args)
    model = build_model(cfg)
    info = convert_checkpoint(model, args.src, args.dst)
    # the resolved config goes beside the weights: together they describe the model fully
    cfg_out = save_config(cfg, os.path.splitext(args.dst)[0] + '.yaml')
    state = model.state_dict()
    elements = sum(int(v.size) for v in state.values())
    print('source : %s' % args.src)
    print('         %s' % info.describe())
    print('tensors: %d in the checkpoint -> %d Paddle tensors (%d num_batches_tracked dropped, '
          '%d BN statistics renamed%s)'
          % (info.num_source_tensors, len(state), len(info.dropped), info.renamed,
             ''.join(', %d %s' % (len(v), w) for v, w in ((info.transposed, 'Linear transposed'),
                                                          (info.reshaped, 'LayerNorm reshaped'))
                     if v)))
    print('model  : %s, %s trainable parameters, %s values in the state dict'
          % (model_tag(cfg), format(count_parameters(model), ','), format(elements, ',')))
    print('written: %s (re-read and verified)' % args.dst)
    print('config : %s (the resolved config, usable as --cfg)' % cfg_out)
    return 0


def main(argv=None):
    return run_tool(PROG, _body, argv)


if __name__ == '__main__':
    sys.exit(main())
