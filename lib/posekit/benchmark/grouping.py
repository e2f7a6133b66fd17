"""Speed of the bottom-up (SimplePose) post-processing: the map post-processing (flip fusion,
x4 cubic upsampling, crop, resize to the image) and the grouping (peaks + connections + people),
which the reference runs at 5.2 images/s in pure Python (SIMPLEPOSE_SPEC 8).

Cases: the reference fixture images (``simplepose/postproc``: the stand-in network outputs of
COCO 196141 and 40083, clean and with the fixture's noise) when the fixtures folder is there, and
a synthetic 640x480 picture with 10 people (a stand-in network output drawn here) that always
is.
"""
import json
import os
import time

import numpy as np

from posekit.benchmark.timing import summary
from posekit.codec.bottomup import grouping, maps
from posekit.codec.bottomup.layout import (FLIP_HEAT_ORDER, FLIP_PAF_ORDER, HEAT_START, LIMBS,
                                           NUM_CHANNELS, NUM_LIMBS, NUM_PARTS)

__all__ = ['grouping_cases', 'synthetic_network_output', 'time_grouping', 'grouping_table']

# A standing person facing the camera, ours-18 order, (x, y) in units of the person's height.
_TEMPLATE = np.array([
    (0.0, 0.08), (0.0, 0.18), (-0.10, 0.18), (-0.13, 0.33), (-0.14, 0.46), (0.10, 0.18),
    (0.13, 0.33), (0.14, 0.46), (-0.07, 0.50), (-0.08, 0.72), (-0.08, 0.95), (0.07, 0.50),
    (0.08, 0.72), (0.08, 0.95), (-0.025, 0.06), (0.025, 0.06), (-0.05, 0.07), (0.05, 0.07)])


def synthetic_network_output(num_people=10, image_size=(640, 480), seed=0, noise=0.02):
    """A stand-in network output for a ``image_size`` [W, H] picture with ``num_people``
    standing people on a grid: ``(outputs (2, 50, h, w) float32, (padded_hw, pad, image_hw))``,
    the arguments of :func:`maps.image_maps`. The maps are drawn on the stride-4 grid of the
    network input the input spec would make (height 640, padded to 64) as the training targets
    are (keypoints sigma 9 px, limbs sigma 7 px around the segment, maximum over people), plus
    Gaussian noise; the second image is the exact mirror. For timing only."""
    w, h = image_size
    rng = np.random.default_rng(seed)
    factor = maps.test_scale((h, w))
    rh, rw = int(round(h * factor)), int(round(w * factor))
    hp, wp = -(-rh // maps.MAX_DOWNSAMPLE) * maps.MAX_DOWNSAMPLE, \
        -(-rw // maps.MAX_DOWNSAMPLE) * maps.MAX_DOWNSAMPLE
    gh, gw = hp // maps.STRIDE, wp // maps.STRIDE
    yy, xx = np.mgrid[0:gh, 0:gw] * float(maps.STRIDE) + 1.5       # cell centres, input px
    out = np.zeros((NUM_CHANNELS, gh, gw), np.float32)
    cols = int(np.ceil(num_people / 2.0))
    cell_w, cell_h = rw / float(cols), rh / 2.0
    for n in range(num_people):
        height = cell_h * rng.uniform(0.75, 0.9)
        x0 = (n % cols + 0.5) * cell_w + rng.uniform(-0.1, 0.1) * cell_w
        y0 = (n // cols) * cell_h + rng.uniform(0.02, 0.08) * cell_h
        joints = _TEMPLATE * height + [x0, y0]
        joints += rng.normal(0, 0.01 * height, joints.shape)
        for p, (x, y) in enumerate(joints):
            g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 9.0 ** 2))
            np.maximum(out[HEAT_START + p], g, out=out[HEAT_START + p])
        for k, (a, b) in enumerate(LIMBS):
            (xa, ya), (xb, yb) = joints[a], joints[b]
            vx, vy = xb - xa, yb - ya
            t = np.clip(((xx - xa) * vx + (yy - ya) * vy) / (vx * vx + vy * vy), 0, 1)
            d2 = (xx - xa - t * vx) ** 2 + (yy - ya - t * vy) ** 2
            np.maximum(out[k], np.exp(-d2 / (2 * 7.0 ** 2)), out=out[k])
    out[HEAT_START + NUM_PARTS + 1] = out[HEAT_START:HEAT_START + NUM_PARTS].max(axis=0)
    if noise:
        out += rng.normal(0, noise, out.shape).astype(np.float32)
    # the mirror's output: flipped, left/right channels swapped (the flip orders are their own
    # inverses), so that the flip fusion gives the maps above back
    mirror = out[:, :, ::-1].copy()
    mirror[:NUM_LIMBS] = mirror[list(FLIP_PAF_ORDER)]
    mirror[HEAT_START:] = mirror[[HEAT_START + c for c in FLIP_HEAT_ORDER]]
    return np.stack([out, mirror]), ([hp, wp], [0, 0, hp - rh, wp - rw], (h, w))


def _noisy(clean, noise):
    """The postproc fixture's noisy variant (its README, section 4)."""
    rng = np.random.default_rng(noise['seed'])
    out = clean.astype(np.float64) + noise['std'] * rng.standard_normal(clean.shape)
    h, w = clean.shape[2:]
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in noise['blobs']:
        b, c = rng.integers(0, 2), rng.integers(0, 48)
        cx, cy = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
        amp, s = rng.uniform(0.3, 1.0), rng.uniform(1.0, 2.5)
        out[b, c] += amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s ** 2))
    return out.astype(np.float32)


def grouping_cases(fixtures=None):
    """``[(label, network output, map arguments, heat, paf, reference ms or None)]``: the
    fixture images (clean, noisy) if ``fixtures`` holds ``simplepose/postproc``, with the
    reference's own grouping time measured when the fixtures were made (same kind of CPU), and
    the synthetic 10-person picture."""
    cases = []
    folder = os.path.join(fixtures, 'simplepose', 'postproc') if fixtures else None
    if folder and os.path.isfile(os.path.join(folder, 'postproc.json')):
        with open(os.path.join(folder, 'postproc.json')) as f:
            ref = json.load(f)
        npz = np.load(os.path.join(folder, 'postproc_net_out.npz'))
        for image_id, im in ref['images'].items():
            clean = npz['net_out_' + image_id].astype(np.float32)
            for variant, net in (('clean', clean), ('noisy', _noisy(clean, im['noise']))):
                args = (im['padded_hw'], im['pad'], (im['H'], im['W']))
                heat, paf = maps.image_maps(net, *args)
                label = 'COCO %s %dx%d, %s' % (image_id, im['W'], im['H'], variant)
                cases.append((label, net, args, heat, paf,
                              im[variant]['time_grouping_s'] * 1e3))
    net, args = synthetic_network_output()
    heat, paf = maps.image_maps(net, *args)
    cases.append(('synthetic 640x480, 10 people', net, args, heat, paf, None))
    return cases


def time_grouping(cases, runs=20, warmup=2):
    """Milliseconds of the map post-processing and of each grouping stage per case:
    ``[{'case', 'people', 'peaks', 'maps', 'peaks_ms', 'connections', 'people_ms', 'grouping'}]``
    (timing summaries; ``maps`` None for a case without a network output)."""
    params = grouping.GroupingParams()
    rows = []
    for label, net, args, heat, paf, ref_ms in cases:
        t = {'maps': [], 'peaks': [], 'connections': [], 'people': [], 'grouping': []}
        for r in range(warmup + runs):
            if net is not None:
                t0 = time.perf_counter()
                maps.image_maps(net, *args)
                dt_maps = time.perf_counter() - t0
            t0 = time.perf_counter()
            peaks = grouping.find_peaks(heat, params.thre1, params.offset_radius)
            t1 = time.perf_counter()
            candidate = np.concatenate(peaks, axis=0)
            conns, special = grouping.find_connections(peaks, paf, heat.shape[0], params)
            t2 = time.perf_counter()
            subset = grouping.find_people(conns, special, candidate, params)
            grouping.people_keypoints(subset, candidate)
            t3 = time.perf_counter()
            if r < warmup:
                continue
            if net is not None:
                t['maps'].append(dt_maps * 1e3)
            t['peaks'].append((t1 - t0) * 1e3)
            t['connections'].append((t2 - t1) * 1e3)
            t['people'].append((t3 - t2) * 1e3)
            t['grouping'].append((t3 - t0) * 1e3)
        rows.append({'case': label, 'people': int(len(subset)), 'peaks': int(len(candidate)),
                     'maps': summary(t['maps']) if t['maps'] else None,
                     'peaks_ms': summary(t['peaks']), 'connections': summary(t['connections']),
                     'people_ms': summary(t['people']), 'grouping': summary(t['grouping']),
                     'reference_ms': ref_ms})
    return rows


def grouping_table(rows, runs, warmup):
    """The markdown table of :func:`time_grouping`'s rows (medians, ms)."""
    lines = ['#### Bottom-up (SimplePose) post-processing, ms per image, median of %d run%s '
             'after %d warm-up run%s' % (runs, '' if runs == 1 else 's', warmup,
                                          '' if warmup == 1 else 's'), '',
             '| image | people | peaks | grouping (peaks + connections + people) | peaks | '
             'connections | people | reference grouping | map post-processing |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append('| %s | %d | %d | %.1f | %.1f | %.1f | %.1f | %s | %s |' % (
            r['case'], r['people'], r['peaks'], r['grouping']['median'],
            r['peaks_ms']['median'], r['connections']['median'], r['people_ms']['median'],
            '-' if r['reference_ms'] is None else '%.0f' % r['reference_ms'],
            '-' if r['maps'] is None else '%.1f' % r['maps']['median']))
    lines += ['', 'Grouping = find_peaks + find_connections + find_people (+ COCO formatting), '
              'from the maps in image pixels, same results as the reference; "reference '
              'grouping" = the reference code on the same maps, one run when the fixtures were '
              'made (its paper: 5.2 images/s). Map post-processing = flip fusion, x4 cubic '
              'upsampling, crop, cubic resize to the image (SIMPLEPOSE_SPEC 6.1).']
    return '\n'.join(lines)
