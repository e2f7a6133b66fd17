"""The value rules of a loaded config: one table, one row per key.

:func:`posekit.config.load_config` types every value by its default; this table then checks the
values themselves, so that a batch size of 0, a negative learning rate or an unknown optimiser
stops a run at once (one line naming the key) instead of minutes later, in the middle of the
loop or, worse, not at all (``END_EPOCH 0`` used to save untrained weights as ``final_state``).

A row is ``(key, test, requirement)``: ``test(value, cfg)`` is True for a good value (a NaN fails
every numeric test, as it should); ``requirement`` completes "must be ...". Rows are checked in
order and the first failure is reported. ``MODEL.EXTRA`` (per model) and ``DATASET.SYNTHETIC``
(checked by the generator itself) are not in the table.
"""
import math
import numbers

__all__ = ['OPTIMIZERS', 'LR_TYPES', 'TARGET_TYPES', 'STYLES', 'RULES', 'get_key',
           'first_problem']

# The names training understands (posekit.training.trainer reads them from here), lower case;
# TRAIN.OPTIMIZER and TRAIN.LR_TYPE are compared case-insensitively.
OPTIMIZERS = ('adam', 'sgd')
LR_TYPES = {'multistepdecay': 'MultiStepDecay', 'multistep': 'MultiStepDecay',
            'polynomialdecay': 'PolynomialDecay', 'poly': 'PolynomialDecay'}
# The codec draws Gaussian targets only; another name would be silently trained as Gaussian.
TARGET_TYPES = ('gaussian',)
STYLES = ('pytorch', 'caffe')


def get_key(cfg, dotted):
    node = cfg
    for part in dotted.split('.'):
        node = node[part]
    return node


def _number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(n):
    return (lambda v, cfg: isinstance(v, int) and not isinstance(v, bool) and v >= n,
            'an integer >= %d' % n)


def _positive():
    return lambda v, cfg: _number(v) and v > 0, 'a finite number > 0'


def _at_least_zero():
    return lambda v, cfg: _number(v) and v >= 0, 'a finite number >= 0'


def _within(lo, hi):
    return lambda v, cfg: _number(v) and lo <= v <= hi, 'a number from %g to %g' % (lo, hi)


def _one_of(names, fold_case=False):
    def test(v, cfg):
        return isinstance(v, str) and (v.lower() if fold_case else v) in names
    shown = sorted(set(names.values())) if isinstance(names, dict) else list(names)
    return test, 'one of %s' % ', '.join(shown)


def _positive_pair():
    return (lambda v, cfg: len(v) == 2 and all(_number(x) and x > 0 for x in v),
            '[W, H] with both sizes > 0')


def _three(positive):
    def test(v, cfg):
        return len(v) == 3 and all(_number(x) and (x > 0 or not positive) for x in v)
    return test, 'three finite numbers%s (one per channel)' % (' > 0' if positive else '')


def _each_int_at_least(n):
    return (lambda v, cfg: all(isinstance(x, int) and x >= n for x in v),
            'a list of integers >= %d' % n)


def _after_begin_epoch():
    return (lambda v, cfg: isinstance(v, int) and v > cfg.TRAIN.BEGIN_EPOCH,
            'greater than TRAIN.BEGIN_EPOCH (at least one epoch to train)')


RULES = (
    ('WORKERS', *_int_at_least(0)),
    ('PRINT_FREQ', *_int_at_least(0)),
    ('MODEL.NUM_JOINTS', *_int_at_least(1)),
    ('MODEL.IMAGE_SIZE', *_positive_pair()),
    ('MODEL.HEATMAP_SIZE', *_positive_pair()),
    ('MODEL.SIGMA', *_positive()),
    ('MODEL.TARGET_TYPE', *_one_of(TARGET_TYPES)),
    ('MODEL.STYLE', *_one_of(STYLES)),
    ('LOSS.TOPK', *_int_at_least(1)),  # hard-keypoint mining keeps min(TOPK, joints) joints
    ('DATASET.MEAN', *_three(positive=False)),
    ('DATASET.STD', *_three(positive=True)),
    ('DATASET.PIXEL_SCALE', *_positive()),
    ('DATASET.SCALE_FACTOR', *_at_least_zero()),
    ('DATASET.ROT_FACTOR', *_at_least_zero()),
    ('DATASET.NUM_JOINTS_HALF_BODY', *_int_at_least(0)),
    ('TRAIN.OPTIMIZER', *_one_of(OPTIMIZERS, fold_case=True)),
    ('TRAIN.LR', *_positive()),
    ('TRAIN.LR_TYPE', *_one_of(LR_TYPES, fold_case=True)),
    ('TRAIN.LR_FACTOR', *_positive()),
    ('TRAIN.LR_STEP', *_each_int_at_least(0)),
    ('TRAIN.WARMUP_EPOCHS', *_at_least_zero()),
    ('TRAIN.MOMENTUM', *_within(0, 1)),
    ('TRAIN.WD', *_at_least_zero()),
    ('TRAIN.BEGIN_EPOCH', *_int_at_least(0)),
    ('TRAIN.END_EPOCH', *_after_begin_epoch()),
    ('TRAIN.BATCH_SIZE_PER_GPU', *_int_at_least(1)),
    ('TEST.BATCH_SIZE_PER_GPU', *_int_at_least(1)),
    ('TEST.OKS_THRE', *_within(0, 1)),
    ('TEST.IN_VIS_THRE', *_within(0, 1)),
    ('TEST.BOXSIZE', *_int_at_least(1)),
    ('TEST.MAX_IMAGES', *_int_at_least(0)),
)


def first_problem(cfg):
    """``(key, requirement, value)`` of the first rule ``cfg`` breaks, or None."""
    for key, test, requirement in RULES:
        value = get_key(cfg, key)
        if not test(value, cfg):
            return key, requirement, value
    return None
