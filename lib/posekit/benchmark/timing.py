"""Timing: the summary of repeated measurements, and the per-person latency of a predictor."""
import time

import numpy as np

__all__ = ['summary', 'time_predictor', 'PREDICTOR_STAGES']

# what time_predictor reports for each flip setting: the whole predict call, then its stages
PREDICTOR_STAGES = ('e2e', 'inference', 'preprocess', 'decode')


def summary(values):
    """Median, min, 10th and 90th percentile (numpy's linear interpolation) of ``values``, and
    the samples rounded to 4 decimals (the raw numbers of a table cell)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError('no measurements to summarise')
    return {'median': float(np.median(v)), 'min': float(v.min()),
            'p10': float(np.percentile(v, 10)), 'p90': float(np.percentile(v, 90)),
            'samples': [round(float(x), 4) for x in v]}


def time_predictor(deploy_config, runner, image, boxes, runs, warmup):
    """Milliseconds per ``predict`` call (one box = one person), flip off and on interleaved so
    that a load change on a shared machine hits both alike.

    Returns ``{'off'|'on': {stage: summary}}`` for the stages of :data:`PREDICTOR_STAGES`: ``e2e``
    is the wall time of the call, the others the predictor's own stage timings."""
    from posekit.inference.predictor import TopDownPredictor
    predictors = {'off': TopDownPredictor(deploy_config, runner, flip_test=False),
                  'on': TopDownPredictor(deploy_config, runner, flip_test=True)}
    for _ in range(warmup):
        for p in predictors.values():
            p.predict(image, boxes)
    samples = {f: {stage: [] for stage in PREDICTOR_STAGES} for f in predictors}
    for _ in range(runs):
        for flip, p in predictors.items():
            t0 = time.perf_counter()
            result = p.predict(image, boxes)
            dt = (time.perf_counter() - t0) * 1e3
            if len(result) != 1:
                raise RuntimeError('expected one person, got %d' % len(result))
            s = samples[flip]
            s['e2e'].append(dt)
            for stage in PREDICTOR_STAGES[1:]:
                s[stage].append(result.timings[stage])
    return {flip: {k: summary(v) for k, v in s.items()} for flip, s in samples.items()}
