"""Bottom-up (SimplePose) map post-processing and grouping against the reference
(SIMPLEPOSE_SPEC 6; fixtures ``simplepose/postproc`` and ``simplepose/e2e``, README sections 4, 5).

The reference's stand-in network outputs (clean, noisy, dropped limbs) of two COCO images go
through our flip fusion + upsampling and grouping; peaks, connections and people must be the
reference's (ids exact, coordinates atol 1e-4, scores atol 1e-5). The end-to-end fixture runs the
grouping on the stored output of the seeded reference network (111 "people"). Small hand-made
maps check the quirks one by one.
"""
import functools
import hashlib
import json
import os

import numpy as np
import pytest

from conftest import require_fixtures
from posekit.codec.bottomup import grouping, maps
from posekit.codec.bottomup.grouping import GroupingParams
from posekit.codec.bottomup.layout import LIMBS, NUM_PARTS

IMAGES = ('196141', '40083')
VARIANTS = ('clean', 'noisy', 'dropped')


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def _postproc():
    folder = require_fixtures('simplepose', 'postproc')
    with open(os.path.join(folder, 'postproc.json')) as f:
        ref = json.load(f)
    return ref, dict(np.load(os.path.join(folder, 'postproc_net_out.npz')))


def _noisy(clean, noise):
    """The README's rule (section 4) for the noisy variant."""
    rng = np.random.default_rng(noise['seed'])
    out = noise['std'] * rng.standard_normal(clean.shape)
    h, w = clean.shape[2:]
    yy, xx = np.mgrid[0:h, 0:w]
    blobs = np.zeros(clean.shape)
    for drawn in noise['blobs']:
        b, c = rng.integers(0, 2), rng.integers(0, 48)
        cx, cy = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
        amp, s = rng.uniform(0.3, 1.0), rng.uniform(1.0, 2.5)
        assert (b, c, cx, cy, amp, s) == (drawn['b'], drawn['c'], drawn['cx'], drawn['cy'],
                                          drawn['amp'], drawn['s'])
        blobs[b, c] += amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s ** 2))
    return (clean.astype(np.float64) + out + blobs).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _case(image, variant):
    """(reference image entry, network output of the variant, heat, paf, grouping)."""
    ref, npz = _postproc()
    im = ref['images'][image]
    net = npz['net_out_' + image].astype(np.float32)
    assert _sha(net) == im['clean_sha256']
    if variant == 'noisy':
        net = _noisy(net, im['noise'])
    elif variant == 'dropped':
        net = net.copy()
        net[:, im['dropped_limb_channels']] = 0
    assert _sha(net) == im[variant + '_sha256']
    heat, paf = maps.image_maps(net, im['padded_hw'], im['pad'], (im['H'], im['W']))
    result = grouping.group(heat, paf, im['H'], GroupingParams())
    return im, net, heat, paf, result


CASES = [(i, v) for i in IMAGES for v in VARIANTS]


@pytest.mark.parametrize('image,variant', CASES)
def test_averaged_maps_match_reference(image, variant):
    im, _, heat, paf, _ = _case(image, variant)
    _, npz = _postproc()
    ref = im[variant]
    assert list(heat.shape) == ref['heatmap_avg_shape']
    assert paf.shape == (im['H'], im['W'], 30)
    yx = npz['probe_yx_' + image]
    np.testing.assert_allclose(heat[yx[:, 0], yx[:, 1]], npz['probe_heat_%s_%s' % (image, variant)],
                               rtol=0, atol=1e-4)
    np.testing.assert_allclose(paf[yx[:, 0], yx[:, 1]], npz['probe_paf_%s_%s' % (image, variant)],
                               rtol=0, atol=1e-4)
    np.testing.assert_allclose(heat.max(axis=(0, 1)), ref['heat_max_per_channel'], rtol=0,
                               atol=1e-4)
    np.testing.assert_allclose(paf.max(axis=(0, 1)), ref['paf_max_per_channel'], rtol=0,
                               atol=1e-4)


@pytest.mark.parametrize('image,variant', CASES)
def test_peaks_match_reference(image, variant):
    im, _, _, _, g = _case(image, variant)
    ref = im[variant]
    assert [len(p) for p in g.peaks] == ref['n_peaks_per_part']
    for part in range(NUM_PARTS):
        mine = g.peaks[part].reshape(-1, 4)
        want = np.array(ref['all_peaks'][part], np.float64).reshape(-1, 4)
        np.testing.assert_array_equal(mine[:, 3], want[:, 3])
        np.testing.assert_allclose(mine[:, :2], want[:, :2], rtol=0, atol=1e-4)
        np.testing.assert_allclose(mine[:, 2], want[:, 2], rtol=0, atol=1e-5)
    np.testing.assert_allclose(g.candidate, np.array(ref['candidate']).reshape(-1, 4), rtol=0,
                               atol=1e-4)


def _assert_connections(mine, want_all, special_k, want_special):
    assert special_k == want_special
    assert len(mine) == len(LIMBS)
    for k in range(len(LIMBS)):
        got = np.asarray(mine[k]).reshape(-1, 6)
        want = np.array(want_all[k], np.float64).reshape(-1, 6)
        assert got.shape == want.shape, 'limb %d' % k
        np.testing.assert_array_equal(got[:, [0, 1, 3, 4]], want[:, [0, 1, 3, 4]])
        np.testing.assert_allclose(got[:, 2], want[:, 2], rtol=0, atol=1e-5)
        np.testing.assert_allclose(got[:, 5], want[:, 5], rtol=0, atol=1e-4)


def _assert_people(g, subset, keypoints, scores):
    subset = np.array(subset, np.float64).reshape(-1, 20, 2)
    assert g.subset.shape == subset.shape
    np.testing.assert_array_equal(g.subset[:, :18, 0], subset[:, :18, 0])       # ids
    np.testing.assert_array_equal(g.subset[:, 19, 0], subset[:, 19, 0])         # counts
    np.testing.assert_allclose(g.subset[:, :18, 1], subset[:, :18, 1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(g.subset[:, 18:, :], subset[:, 18:, :], rtol=0, atol=1e-4)
    np.testing.assert_allclose(g.keypoints[:, :, :2], np.array(keypoints).reshape(-1, 17, 2),
                               rtol=0, atol=1e-4)
    np.testing.assert_allclose(g.scores, scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize('image,variant', CASES)
def test_connections_and_people_match_reference(image, variant):
    im, _, _, _, g = _case(image, variant)
    ref = im[variant]
    _assert_connections(g.connections, ref['connection_all'], g.special_k, ref['special_k'])
    _assert_people(g, ref['subset'], ref['keypoints'], ref['scores'])
    # joint scores: the refined peak score of the joint's candidate, 0 when missing
    missing = (g.keypoints[:, :, 0] == 0) & (g.keypoints[:, :, 1] == 0)
    assert np.all(g.keypoints[missing, 2] == 0) and np.all(g.keypoints[~missing, 2] > 0)
    # the same branches of the assembly ran as in the reference
    assert g.branches == ref['find_people_branches_hit']


@pytest.mark.parametrize('variant', VARIANTS)
def test_coco_results_match_the_reference_result_files(variant):
    folder = require_fixtures('simplepose', 'postproc')
    with open(os.path.join(folder, 'results_%s.json' % variant)) as f:
        want = json.load(f)
    got = []
    for image in IMAGES:
        g = _case(image, variant)[4]
        got += grouping.coco_results(g.keypoints, g.scores, int(image))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert (a['image_id'], a['category_id']) == (b['image_id'], b['category_id'])
        np.testing.assert_allclose(a['keypoints'], b['keypoints'], rtol=0, atol=1e-4)
        assert a['keypoints'][2::3] == b['keypoints'][2::3]
        assert a['score'] == pytest.approx(b['score'], abs=1e-5)


def test_variants_exercise_merge_and_conflict_branches():
    noisy = _case('196141', 'noisy')[4]
    assert noisy.branches.get('found==2: overlapping persons (conflict)', 0) > 0
    assert noisy.branches.get('found==2: conflict, weaker limb skipped', 0) > 0
    assert noisy.branches.get('person deleted (count<2 or mean score<0.45)', 0) > 0
    assert noisy.branches.get('found==1: existing B has higher limb score (keep)', 0) > 0
    for image in IMAGES:
        dropped = _case(image, 'dropped')[4]
        assert dropped.branches.get('found==2: disjoint persons merged', 0) > 0
    assert len(noisy) == 7                 # 3 spurious people besides the 4 real ones


def test_end_to_end_grouping_on_stored_reference_output():
    folder = require_fixtures('simplepose', 'e2e')
    with open(os.path.join(folder, 'e2e_196141_seed5_ss0.25.json')) as f:
        ref = json.load(f)
    net = np.load(os.path.join(folder, 'e2e_196141_seed5_ss0.25.npz'))['net_out_last_stack_scale0']
    h, w = ref['image_hw']
    factor = maps.test_scale((h, w), ref['scale_search'][0])
    assert factor == ref['multiplier']
    resized = [int(round(h * factor)), int(round(w * factor))]
    padded = [ref['input_shape'][1], ref['input_shape'][2]]
    pad = [0, 0, padded[0] - resized[0], padded[1] - resized[1]]
    heat, paf = maps.image_maps(net, padded, pad, (h, w))
    np.testing.assert_allclose(heat.max(axis=(0, 1)), ref['heat_max'], rtol=0, atol=1e-4)
    np.testing.assert_allclose(paf.max(axis=(0, 1)), ref['paf_max'], rtol=0, atol=1e-4)
    g = grouping.group(heat, paf, h)
    assert [len(p) for p in g.peaks] == ref['n_peaks_per_part']
    for part in range(NUM_PARTS):
        mine = g.peaks[part].reshape(-1, 4)
        want = np.array(ref['all_peaks'][part], np.float64).reshape(-1, 4)
        np.testing.assert_array_equal(mine[:, 3], want[:, 3])
        np.testing.assert_allclose(mine[:, :3], want[:, :3], rtol=0, atol=1e-5)
    _assert_connections(g.connections, ref['connection_all'], g.special_k, ref['special_k'])
    assert len(g) == 111
    _assert_people(g, ref['subset'], ref['keypoints'], ref['scores'])


# -- hand-made maps -------------------------------------------------------------------------------

def _blank(h=12, w=14):
    return np.zeros((h, w, 20), np.float32)


def test_peaks_threshold_plateau_and_reflect_border():
    heat = _blank()
    heat[5, 6, 0] = 0.1             # exactly thre1 (float32): kept
    heat[8, 3, 0] = 0.0999          # below: dropped
    heat[2, 9:11, 3] = 0.5          # a plateau of two pixels: both kept, row-major
    heat[0, 4, 7] = 0.3             # top row: the reflected row -1 is row 1
    heat[1, 4, 7] = 0.3             # ... equal, so both are peaks
    heat[11, 13, 2] = 0.7           # bottom-right corner
    peaks = grouping.find_peaks(heat)
    assert [len(p) for p in peaks] == [1, 0, 1, 2, 0, 0, 0, 2] + [0] * 10
    # alone in its 5x5 box: not moved, score = box mean in float32
    np.testing.assert_array_equal(peaks[0][0], [6, 5, np.float32(0.1) / np.float32(25), 0])
    np.testing.assert_array_equal(peaks[2], [[13, 11, np.float32(0.7), 1]])   # border: as is
    np.testing.assert_array_equal(peaks[3][:, 3], [2, 3])
    # the plateau neighbour is in the next *column*, and moves y (the reference's axis swap)
    np.testing.assert_array_equal(peaks[3][:, :2], [[9, 2.5], [10, 1.5]])
    np.testing.assert_array_equal(peaks[7], [[4, 0, np.float32(0.3), 4],
                                             [4, 1, np.float32(0.3), 5]])


def test_refinement_swaps_axes_and_scores_the_box_mean():
    heat = _blank()
    heat[5, 6, 0] = 1.0
    heat[6, 6, 0] = 0.5             # below the peak: the row offset goes to x (reference quirk)
    peaks = grouping.find_peaks(heat)
    x, y, score, pid = peaks[0][0]
    assert pid == 0
    assert x == pytest.approx(6 + 0.5 / 1.5) and y == pytest.approx(5.0)
    assert score == np.float32(np.float32(1.5) / np.float32(25))


def test_pairwise_sum_is_numpys_order():
    rng = np.random.default_rng(3)
    m = (rng.random((30, 40)) * 1.3).astype(np.float32)
    cols, want = [], []
    for _ in range(300):
        y, x = rng.integers(2, 27), rng.integers(2, 37)
        box = m[y - 2:y + 3, x - 2:x + 3]
        cols.append(box.ravel())
        want.append(box.sum())
    got = grouping._pairwise_sum(np.array(cols).T.copy())
    np.testing.assert_array_equal(got, np.array(want, np.float32))


def _slow_limb(cand_a, cand_b, limb_map, height, p):
    """Straight from SIMPLEPOSE_SPEC 6.4, one pair at a time (np.linspace, Python sum)."""
    rows = []
    for i, a in enumerate(cand_a):
        for j, b in enumerate(cand_b):
            vx, vy = b[0] - a[0], b[1] - a[1]
            norm = float(np.sqrt(vx * vx + vy * vy))
            if norm == 0:
                continue
            m = min(int(round(norm + 1)), p.mid_num)
            xs, ys = np.linspace(a[0], b[0], num=m), np.linspace(a[1], b[1], num=m)
            vals = [limb_map[int(round(yy)), int(round(xx))] for xx, yy in zip(xs, ys)]
            s = sum(vals) / len(vals) + min(0.5 * height / norm - 1, 0)
            if sum(v > p.thre2 for v in vals) >= p.connect_ratio * m and s > 0:
                rows.append((i, j, s, norm, 0.5 * s + 0.25 * a[2] + 0.25 * b[2]))
    rows.sort(key=lambda r: r[4], reverse=True)
    out = []
    for i, j, s, norm, _ in rows:
        if i not in [r[3] for r in out] and j not in [r[4] for r in out]:
            out.append([cand_a[i][3], cand_b[j][3], s, i, j, norm])
            if len(out) >= min(len(cand_a), len(cand_b)):
                break
    return np.array(out).reshape(-1, 6)


def test_limb_scoring_matches_the_one_pair_at_a_time_rule():
    rng = np.random.default_rng(11)
    h, w = 60, 80
    p = GroupingParams()
    paf = (rng.random((h, w, 30)) * 0.3 + 0.02).astype(np.float32).astype(np.float64)
    peaks = []
    next_id = 0
    for part in range(NUM_PARTS):
        n = int(rng.integers(2 if part < 2 else 0, 6))
        rows = np.zeros((n, 4))
        # integer (unrefined) and fractional (refined) positions, within the image
        rows[:, 0] = rng.integers(0, w - 1, n) + rng.random(n) * (rng.random(n) < 0.7)
        rows[:, 1] = rng.integers(0, h - 1, n) + rng.random(n) * (rng.random(n) < 0.7)
        rows[:, 2] = rng.random(n).astype(np.float32)
        rows[:, 3] = np.arange(next_id, next_id + n)
        next_id += n
        peaks.append(rows)
    peaks[0][0, :2] = peaks[1][0, :2]          # a nose on a neck: a zero-length pair (skipped)
    peaks[0][-1, :2] = peaks[1][0, :2] + [0.3, 0.2]     # a pair with a single sample
    connections, special = grouping.find_connections(peaks, paf, h, p)
    assert sum(len(c) for c in connections) > 10
    assert special == [k for k, (a, b) in enumerate(LIMBS)
                       if not len(peaks[a]) or not len(peaks[b])]
    for k, (a, b) in enumerate(LIMBS):
        if k in special:
            continue
        want = _slow_limb(peaks[a], peaks[b], paf[:, :, k], h, p)
        np.testing.assert_array_equal(connections[k], want)


def _conn(*rows):
    return np.array(rows, np.float64).reshape(-1, 6)


def _cand(scores):
    cand = np.zeros((len(scores), 4))
    cand[:, 2] = scores
    cand[:, 3] = np.arange(len(scores))
    return cand


def test_find_people_merges_disjoint_pieces():
    # ids: 0 nose, 1 neck, 2 Rsho, 3 Relb
    cand = _cand([0.9] * 4)
    conns = [_conn() for _ in LIMBS]
    conns[0] = _conn([1, 0, 0.8, 0, 0, 10.0])           # neck-nose: person P
    conns[10] = _conn([2, 3, 0.9, 0, 0, 12.0])          # Rsho-Relb: person Q
    conns[21] = _conn([0, 2, 0.85, 0, 0, 11.0])         # nose-Rsho joins them: merged into P
    branches = {}
    subset = grouping.find_people(conns, [], cand, GroupingParams(), branches)
    assert branches == {'new person row': 2, 'found==2: disjoint persons merged': 1}
    assert subset.shape == (1, 20, 2)
    np.testing.assert_array_equal(subset[0, :4, 0], [0, 1, 2, 3])
    # merging adds the rows with '+ 1' on the second (-1 + (v + 1)): the last bit of Q's limb
    # scores may change, as in the reference
    np.testing.assert_array_equal(subset[0, :4, 1], [0.8, 0.8, -1 + (0.9 + 1), -1 + (0.9 + 1)])
    assert -1 + (0.9 + 1) != 0.9
    assert subset[0, 18, 0] == pytest.approx(4 * 0.9 + 0.8 + 0.9 + 0.85)
    # the count adds up; the longest limb is P's or the joining one, not Q's (reference)
    assert subset[0, 19, 0] == 4 and subset[0, 19, 1] == 11.0
    # a joining limb much weaker than the pieces' limbs (< 0.7 x their weakest) is rejected
    conns[21] = _conn([0, 2, 0.5, 0, 0, 11.0])
    branches = {}
    assert len(grouping.find_people(conns, [], cand, GroupingParams(), branches)) == 2
    assert branches['found==2: disjoint, merge rejected'] == 1


def test_find_people_conflicting_people():
    # P = neck 0, nose 1; Q = neck 2, nose 3, Rsho 4; limb nose-Rsho (21) from P's nose to
    # Q's Rsho: both people have a neck and a nose, so it is a conflict, not a merge
    cand = _cand([0.9] * 5)
    conns = [_conn() for _ in LIMBS]
    conns[0] = _conn([0, 1, 0.8, 0, 0, 10.0], [2, 3, 0.8, 1, 1, 10.0])
    conns[9] = _conn([2, 4, 0.9, 0, 0, 10.0])
    conns[21] = _conn([1, 4, 0.5, 0, 0, 10.0], [1, 4, 0.85, 0, 0, 10.0])
    branches = {}
    subset = grouping.find_people(conns, [], cand, GroupingParams(), branches)
    assert branches['found==2: overlapping persons (conflict)'] == 2
    assert branches['found==2: conflict, weaker limb skipped'] == 1       # 0.5 < 0.8 and 0.9
    assert branches['found==2: conflict, no-op (remove_recon=0)'] == 1
    assert len(subset) == 2 and list(subset[:, 19, 0]) == [2, 3]
    # remove_recon > 0: the weaker person (P's nose, limb score 0.8 < 0.9) loses the part
    branches = {}
    subset = grouping.find_people(conns, [], cand, GroupingParams(remove_recon=1), branches)
    assert branches['found==2: conflict, weaker part removed'] == 1
    assert len(subset) == 1 and list(subset[0, :3, 0]) == [3, 2, 4]     # P (1 part) deleted


def test_found_one_branches_replace_and_keep():
    cand = _cand([0.9, 0.9, 0.9, 0.8, 0.5])      # ids 1 neck, 2 Rsho, 3 and 4 Relb
    conns = [_conn() for _ in LIMBS]
    conns[9] = _conn([1, 2, 0.8, 0, 0, 10.0])
    conns[10] = _conn([2, 3, 0.5, 0, 0, 10.0], [2, 4, 0.9, 0, 1, 10.0])
    branches = {}
    subset = grouping.find_people(conns, [], cand, GroupingParams(), branches)
    assert branches == {'new person row': 1, 'found==1: add part B': 1,
                        'found==1: replace part B': 1}
    assert subset[0, 3, 0] == 4 and subset[0, 3, 1] == 0.9
    assert subset[0, 18, 0] == pytest.approx(0.9 + 0.9 + 0.8 + 0.5 + 0.9)
    conns[10] = _conn([2, 3, 0.9, 0, 0, 10.0], [2, 4, 0.5, 0, 1, 10.0])
    branches = {}
    grouping.find_people(conns, [], cand, GroupingParams(), branches)
    assert branches['found==1: existing B has higher limb score (keep)'] == 1
    conns[10] = _conn([2, 3, 0.9, 0, 0, 170.0])          # 16 x longest (10) <= 170: not added
    branches = {}
    subset = grouping.find_people(conns, [], cand, GroupingParams(), branches)
    assert branches['found==1: other B, limb too long (skip)'] == 1 and subset[0, 19, 0] == 2


def test_people_below_the_mean_score_are_deleted():
    cand = np.zeros((2, 4))
    cand[:, 2] = 0.2
    conns = [_conn() for _ in LIMBS]
    conns[0] = _conn([1, 0, 0.3, 0, 0, 10.0])            # total 0.7 over 2 parts < 0.45
    branches = {}
    assert len(grouping.find_people(conns, [], cand, GroupingParams(), branches)) == 0
    assert branches['person deleted (count<2 or mean score<0.45)'] == 1
    kps, scores = grouping.people_keypoints(np.zeros((0, 20, 2)), cand)
    assert kps.shape == (0, 17, 3) and scores.shape == (0,)


def test_grouping_benchmark_runs_on_the_synthetic_picture():
    from posekit.benchmark.grouping import grouping_cases, grouping_table, time_grouping
    cases = grouping_cases(None)                     # no fixtures: the synthetic case only
    assert len(cases) == 1
    rows = time_grouping(cases, runs=1, warmup=0)
    # 10 drawn people, all found with every joint (the mirror's maps fused back exactly)
    assert rows[0]['people'] == 10
    g = grouping.group(cases[0][3], cases[0][4])
    assert len(g) == 10 and np.all(g.keypoints[:, :, 2] > 0.5)
    table = grouping_table(rows, 1, 0)
    assert '| synthetic 640x480, 10 people | 10 |' in table


def test_samples_outside_the_image_read_as_the_reference_or_at_the_border():
    from posekit.codec.bottomup.grouping import _map_index
    idx = _map_index(np.array([-0.4, -1.0, -5.0, -6.0, 4.6, 5.0, 7.2, np.nan, np.inf, -np.inf]), 5)
    # in [-5, -1] Python indexing wraps around (the reference reads there too); beyond, where the
    # reference raises IndexError, the nearest border
    assert idx.tolist() == [0, 4, 0, 0, 4, 4, 4, 0, 4, 0]


def test_untrained_maps_with_negative_values_group_without_error():
    """Refined peaks of maps with large negative values can leave the image (a 5x5 box summing
    to about 0); the grouping must still finish."""
    from posekit.codec.bottomup.grouping import group
    rng = np.random.default_rng(0)
    heat = (rng.standard_normal((60, 80, 20)) * 1e3).astype(np.float64)
    paf = (rng.standard_normal((60, 80, 30)) * 1e3).astype(np.float64)
    result = group(heat, paf, 60)
    assert result.keypoints.shape[1:] == (17, 3)
