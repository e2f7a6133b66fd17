"""Generate a synthetic pose dataset (cartoon people) in the MPII and/or COCO layout.

    python pose_estimation/make_synthetic.py --format mpii --root data/synthetic_mpii \\
        --num-train 2000 --num-valid 200 --seed 0
    python pose_estimation/make_synthetic.py --format both --root data/synthetic --image-size 256 256

With ``--format both`` the two sets go to ROOT/mpii and ROOT/coco. A folder that already holds
the same set (same generator version and parameters, see its synthetic.json) is reused; use
``--force`` to rebuild it. A set is built in a temporary folder and renamed into place when
complete. Point ``DATASET.ROOT`` at the folder to train on it (COCO detections:
``TEST.COCO_BBOX_FILE ROOT/annotations/person_detection_val2017.json``).
"""
import argparse
import os
import sys
import time

from posekit.cli import run_tool

PROG = 'make_synthetic'


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line, like the library errors below
        print('%s: error: %s (see --help)' % (PROG, message), file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None):
    from posekit.data.synthetic import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PEOPLE
    parser = _Parser(prog=PROG, description=__doc__.split('\n')[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--format', choices=['mpii', 'coco', 'both'], default='mpii',
                        help='annotation layout (both: ROOT/mpii and ROOT/coco)')
    parser.add_argument('--root', required=True, help='output folder')
    parser.add_argument('--num-train', type=int, default=2000, help='training images')
    parser.add_argument('--num-valid', type=int, default=200, help='validation images')
    parser.add_argument('--seed', type=int, default=0, help='random seed (same seed, same files)')
    parser.add_argument('--image-size', type=int, nargs=2, metavar=('W', 'H'),
                        default=list(DEFAULT_IMAGE_SIZE), help='image width and height in pixels')
    parser.add_argument('--max-people', type=int, default=DEFAULT_MAX_PEOPLE,
                        help='at most this many people per image (1 to 10)')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if ROOT already holds this set')
    parser.add_argument('--quiet', action='store_true', help='no progress lines')
    args = parser.parse_args(argv)
    if args.num_train < 1 or args.num_valid < 1:
        parser.error('--num-train and --num-valid must be at least 1')
    if args.seed < 0:
        parser.error('--seed must be non-negative')
    if not all(64 <= v <= 4096 for v in args.image_size):
        parser.error('--image-size W H must be between 64 and 4096 px, got %d %d'
                     % tuple(args.image_size))
    if not 1 <= args.max_people <= 10:
        parser.error('--max-people must be from 1 to 10, got %d' % args.max_people)
    return args


def _progress_printer(fmt, quiet):
    def progress(split, done, total):
        step = max(1, total // 10)
        if not quiet and (done % step == 0 or done == total):
            print('%s %s: %d/%d images' % (fmt, split, done, total), flush=True)
    return progress


def _body(argv):
    args = parse_args(argv)
    from posekit.data.synthetic import ensure_synthetic
    formats = ['mpii', 'coco'] if args.format == 'both' else [args.format]
    for fmt in formats:
        root = os.path.join(args.root, fmt) if args.format == 'both' else args.root
        start = time.time()
        # SyntheticError (bad parameter, a folder holding other data) or a file system error:
        # one line from run_tool
        manifest, created = ensure_synthetic(
            root, fmt, progress=_progress_printer(fmt, args.quiet), force=args.force,
            num_train=args.num_train, num_valid=args.num_valid, seed=args.seed,
            image_size=tuple(args.image_size), max_people=args.max_people)
        c = manifest['counts']
        print('%s: %s %s: %d train images (%d persons), %d valid images (%d persons), %s'
              % (PROG, fmt, os.path.abspath(root), c['train']['images'], c['train']['persons'],
                 c['valid']['images'], c['valid']['persons'],
                 'generated in %.1f s' % (time.time() - start) if created
                 else 'already there (same parameters), reused'), flush=True)
    return 0


def main(argv=None):
    return run_tool(PROG, _body, argv)


if __name__ == '__main__':
    sys.exit(main())
