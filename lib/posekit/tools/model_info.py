"""Parameters, MACs and output shape of the model of an experiment.

    python pose_estimation/model_info.py --cfg experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml
    python pose_estimation/model_info.py --cfg FILE --json MODEL.IMAGE_SIZE 288,384

Prints true GMACs (1e9) next to the "GFLOPs" of the reference READMEs (their get_model_summary
counter: / 2^30 and deconvolutions counted 4x); see posekit.models.complexity.
"""
import argparse
import json
import sys

from posekit.cli import run_tool
from posekit.config import ConfigError, add_config_arguments, config_from_args
from posekit.models import build_model
from posekit.models.complexity import format_model_info, model_info

PROG = 'model_info'
USAGE_EXIT_CODE = 2  # argparse's code for a bad command line; a bad --cfg is one too


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object instead of a table')
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    # `--json` written after the KEY VALUE overrides lands in them (argparse REMAINDER).
    if '--json' in args.opts:
        args.opts = [o for o in args.opts if o != '--json']
        args.json = True
    return args


def _body(argv):
    args = parse_args(argv)
    try:
        cfg = config_from_args(args)
        model = build_model(cfg, is_train=False)
    except ConfigError as e:
        # a bad yaml/override or a model setting the constructor rejects: a usage error, exit 2
        e.exit_code = USAGE_EXIT_CODE
        raise
    info = model_info(cfg, cfg_file=args.cfg, model=model)
    if args.json:
        print(json.dumps(info))
    else:
        print(format_model_info(info))
    return 0


def main(argv=None):
    return run_tool(PROG, _body, argv)


if __name__ == '__main__':
    sys.exit(main())
