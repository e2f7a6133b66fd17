"""Bottom-up (SimplePose) grouping: keypoint and limb maps in image pixels -> people
(SIMPLEPOSE_SPEC 6.2-6.4, the reference's ``find_peaks``, ``refine_centroid``,
``find_connections``, ``find_people`` and ``process``).

The results are the reference's, number for number: the same peaks (ids, refined coordinates,
scores), the same connections and the same people. Everything that does not depend on an
earlier decision is vectorised with numpy (the peak test over all parts at once, the refinement
of all peaks at once, the scoring of every candidate pair of every limb at once); the steps
that are sequential in the reference stay sequential (the one-to-one choice of connections,
the greedy assembly of people), on plain Python values. Where the reference's floating-point
result depends on the order of a summation, that order is reproduced (see :func:`_pairwise_sum`
and the limb sample sum), so ties and thresholds fall the same way.

Coordinates are (x, y) in image pixels; parts are in the "ours-18" order of
:mod:`posekit.codec.bottomup.layout`; candidate ids are consecutive over parts 0..17.
"""
import numpy as np

from posekit.codec.bottomup.layout import LIMBS, NUM_PARTS, OURS_TO_COCO

__all__ = ['GroupingParams', 'Grouping', 'find_peaks', 'refine_peaks', 'find_connections',
           'find_people', 'people_keypoints', 'coco_results', 'group', 'BRANCHES']

# Names of the branches of find_people, for the counts ``find_people(..., branches=dict)`` keeps
# (the same names as the reference fixtures' ``find_people_branches_hit``).
BRANCHES = (
    'new person row',
    'found==1: add part B',
    'found==1: existing B has higher limb score (keep)',
    'found==1: other B, limb too long (skip)',
    'found==1: replace part B',
    'found==1: same B again, refresh its limb score',
    'found==1: same B, lower score (no-op)',
    'found==2: disjoint persons merged',
    'found==2: disjoint, merge rejected',
    'found==2: overlapping persons (conflict)',
    'found==2: conflict, weaker limb skipped',
    'found==2: conflict, no-op (remove_recon=0)',
    'found==2: conflict, weaker part removed',
    'person deleted (count<2 or mean score<0.45)',
)


class GroupingParams:
    """The grouping thresholds (the reference's ``utils/config``, SIMPLEPOSE_SPEC 6).

    ``thre1`` peak threshold; ``offset_radius`` half-size of the refinement box; ``thre2`` limb
    sample threshold; ``connect_ratio`` share of samples above it; ``mid_num`` most samples per
    limb; ``len_rate`` longest allowed limb relative to a person's longest; ``connection_tole``
    merge tolerance; ``remove_recon`` (0 in the reference) removes the weaker part of two people
    competing for a limb; a person needs ``min_parts`` parts and a mean score of
    ``min_mean_score`` (total score / parts).
    """
    FIELDS = ('thre1', 'thre2', 'connect_ratio', 'mid_num', 'len_rate', 'connection_tole',
              'offset_radius', 'remove_recon', 'min_parts', 'min_mean_score')

    def __init__(self, thre1=0.1, thre2=0.1, connect_ratio=0.8, mid_num=20, len_rate=16.0,
                 connection_tole=0.7, offset_radius=2, remove_recon=0, min_parts=2,
                 min_mean_score=0.45):
        self.thre1 = float(thre1)
        self.thre2 = float(thre2)
        self.connect_ratio = float(connect_ratio)
        self.mid_num = int(mid_num)
        self.len_rate = float(len_rate)
        self.connection_tole = float(connection_tole)
        self.offset_radius = int(offset_radius)
        self.remove_recon = int(remove_recon)
        self.min_parts = float(min_parts)
        self.min_mean_score = float(min_mean_score)
        if self.mid_num < 1 or self.offset_radius < 0 or self.thre2 < 0:
            # thre2 >= 0: the unused sample slots of short limbs hold 0 and must not count
            raise ValueError('mid_num must be >= 1, offset_radius and thre2 >= 0')

    def to_dict(self):
        return {name: getattr(self, name) for name in self.FIELDS}


class Grouping:
    """What :func:`group` found in one image.

    * ``peaks``: list of 18 arrays (n_p, 4) of x, y, score, id (refined, SIMPLEPOSE_SPEC 6.3);
    * ``candidate`` (M, 4): the same rows concatenated (row = id);
    * ``connections``: list of 30 arrays (c_k, 6) of idA, idB, limb score, i, j, length;
    * ``special_k``: limbs with an empty end (no connection searched);
    * ``subset`` (N, 20, 2): per person 18 x (candidate id, limb score that attached it), then
      (total score, -1), (part count, longest limb); -1 where empty;
    * ``keypoints`` (N, 17, 3): COCO-17 x, y and the peak score of each joint (0, 0, 0 when
      missing; the reference itself only reports x, y and v);
    * ``scores`` (N,): ``1 - 1 / total score`` (can be negative), the reference's person score;
    * ``branches``: how often each branch of the assembly ran (:data:`BRANCHES`).
    """

    def __init__(self, peaks, candidate, connections, special_k, subset, keypoints, scores,
                 branches):
        self.peaks = peaks
        self.candidate = candidate
        self.connections = connections
        self.special_k = special_k
        self.subset = subset
        self.keypoints = keypoints
        self.scores = scores
        self.branches = branches

    def __len__(self):
        return len(self.keypoints)


# -- peaks --------------------------------------------------------------------------------------

def find_peaks(heat, thre1=0.1, offset_radius=2, num_parts=NUM_PARTS):
    """Peaks of the keypoint maps ``heat`` (H, W, >= 18) in image pixels (SIMPLEPOSE_SPEC 6.2).

    A pixel of part p is a peak iff it is >= ``thre1`` and equals the maximum of its 3x3
    neighbourhood in the map reflect-padded by one (ties all kept), on the maps cast to float32
    as the reference does. Peaks are listed per part in row-major order (y, then x), ids
    consecutive over the parts, and refined by :func:`refine_peaks`. Returns 18 arrays
    (n_p, 4) of x, y, score, id (float64).
    """
    heat = np.asarray(heat)
    if heat.ndim != 3 or heat.shape[2] < num_parts:
        raise ValueError('expected keypoint maps (H, W, >= %d), got shape %s'
                         % (num_parts, heat.shape))
    h, w = heat.shape[:2]
    if h < 2 or w < 2:
        raise ValueError('keypoint maps of %dx%d pixels are too small for peak search' % (w, h))
    # float32 maps (the 20 channels as they come when already float32: one contiguous pass)
    hm = heat if heat.dtype == np.float32 else heat[:, :, :num_parts].astype(np.float32)
    hm = np.ascontiguousarray(hm)
    c = hm.shape[2]
    flat = hm.ravel()
    # threshold first (float32 comparison, as torch compares a float32 tensor with 0.1), then the
    # 3x3 test only where it passed, one neighbour at a time on the survivors: the same set as
    # "max-pooled == map and >= thre1". Flat indices; a neighbour outside the map is the one
    # mirrored inside (reflect padding), which for a 3x3 window never changes the maximum.
    above = hm >= np.float32(thre1)
    above[:, :, num_parts:] = False
    idx = np.flatnonzero(above)
    v = flat[idx]
    row = w * c
    xs = (idx // c) % w
    ys = None
    for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)):
        if dy and ys is None:
            ys = idx // row
        off = 0
        if dx:
            off = np.where((xs + dx < 0) | (xs + dx >= w), -dx * c, dx * c)
        if dy:
            off = off + np.where((ys + dy < 0) | (ys + dy >= h), -dy * row, dy * row)
        keep = flat[idx + off] <= v
        idx, v, xs = idx[keep], v[keep], xs[keep]
        if ys is not None:
            ys = ys[keep]
    ps = idx % c
    order = np.argsort(ps, kind='stable')       # per part, row-major inside a part
    ys, xs, ps = ys[order], xs[order], ps[order]
    rows = refine_peaks(hm, xs, ys, ps, offset_radius)
    counts = np.bincount(ps, minlength=num_parts)[:num_parts]
    return np.split(rows, np.cumsum(counts)[:-1])


def _pairwise_sum(cols):
    """Sum of the columns ``cols`` (n, N) per column, in the order numpy sums n contiguous
    values (pairwise, 8 accumulators; ``np.add.reduce`` for n < 8 adds one by one), starting
    from 0. The reference sums a 5x5 window view, which numpy buffers into 25 contiguous values
    and sums this way; reproducing it gives the same float32 bits."""
    n = len(cols)
    dtype = cols.dtype.type
    if n < 8:
        res = np.full(cols.shape[1:], dtype(-0.0), cols.dtype)
        for i in range(n):
            res = res + cols[i]
        return res
    if n <= 128:
        r = [cols[j].copy() for j in range(8)]
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] = r[j] + cols[i + j]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for k in range(i, n):
            res = res + cols[k]
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_sum(cols[:n2]) + _pairwise_sum(cols[n2:])


def refine_peaks(hm, xs, ys, ps, radius=2):
    """(N, 4) rows x, y, score, id of the peaks (xs, ys) of parts ``ps`` on float32 maps ``hm``
    (H, W, P) (SIMPLEPOSE_SPEC 6.3, ``util.refine_centroid``).

    With B the (2r+1)^2 box around the peak: ``x' = x + sum(B[r, c] * (r - R)) / sum(B)`` and
    ``y' = y + sum(B[r, c] * (c - R)) / sum(B)`` - the reference adds the *row* offset to x and
    the column offset to y (its ``mgrid`` axes are swapped); we reproduce it because the
    published numbers come from it - and the score is the mean of B (float32). A peak closer
    than r to a border is not refined and keeps its own value. Ids are 0..N-1 in order.
    """
    h, w = hm.shape[:2]
    n = len(xs)
    rows = np.zeros((n, 4), np.float64)
    rows[:, 0] = xs
    rows[:, 1] = ys
    rows[:, 2] = hm[ys, xs, ps]
    rows[:, 3] = np.arange(n)
    r = int(radius)
    inside = (xs - r >= 0) & (ys - r >= 0) & (xs + r + 1 <= w) & (ys + r + 1 <= h)
    if not inside.any():
        return rows
    xi, yi, pi = xs[inside], ys[inside], ps[inside]
    off = np.arange(-r, r + 1)
    dy = np.repeat(off, 2 * r + 1)               # row offset of each box cell (row-major)
    dx = np.tile(off, 2 * r + 1)                 # column offset
    box = hm[yi[None, :] + dy[:, None], xi[None, :] + dx[:, None], pi[None, :]]   # (K, N) f32
    total = _pairwise_sum(box)                                                   # float32
    # numpy: float32 box * int64 grid -> float64 products, summed the same pairwise way
    sum_r = _pairwise_sum(box.astype(np.float64) * dy[:, None])
    sum_c = _pairwise_sum(box.astype(np.float64) * dx[:, None])
    total64 = total.astype(np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):    # a box summing to 0: as numpy gives
        rows[inside, 0] = xi + sum_r / total64
        rows[inside, 1] = yi + sum_c / total64
    rows[inside, 2] = total / np.float32(len(dy))    # np.mean: float32 sum / count in float32
    return rows


# -- limbs --------------------------------------------------------------------------------------

_PAIR_CHUNK = 16384     # candidate pairs scored at once (bounds the memory of random maps)


def _map_index(coord, size):
    """Map row/column of sample coordinates as the reference reads ``map[int(round(y)),
    int(round(x))]``: a negative index in [-size, -1] wraps around as Python's does. A refined
    peak can lie outside the image when its 5x5 box sums to about 0 (untrained maps with
    negative values); where the reference would raise IndexError (index >= size or < -size, or
    not finite) the sample is taken at the nearest border instead."""
    idx = np.rint(np.nan_to_num(coord, nan=0.0, posinf=size, neginf=-size - 1))
    idx = np.clip(idx, -size - 1, size).astype(np.intp)
    return np.where((idx >= -size) & (idx < size), idx % size, np.clip(idx, 0, size - 1))


def _score_pairs(xa, ya, xb, yb, limb, paf, image_height, p):
    """Scores of candidate pairs (A -> B on limb maps ``limb`` of ``paf`` (H, W, L) C-ordered),
    SIMPLEPOSE_SPEC 6.4: ``(score, length, accepted)``; pairs of zero length are not accepted.
    Samples are laid out (mid_num, pairs) so that each sample index is one contiguous row."""
    h, w, nl = paf.shape
    vx, vy = xb - xa, yb - ya
    norm = np.sqrt(vx * vx + vy * vy)
    ok = norm != 0                                   # overlapping candidates: skipped
    # m = min(round(norm + 1), mid_num) samples on np.linspace(A, B, m): i * step + A, the last
    # one exactly B (Python's round and np.rint both round half to even)
    m = np.minimum(np.rint(norm + 1), p.mid_num).astype(np.int64)
    div = np.maximum(m - 1, 1).astype(np.float64)
    step_x = np.where(m > 1, vx / div, 0.0)
    step_y = np.where(m > 1, vy / div, 0.0)
    t = np.arange(p.mid_num, dtype=np.float64)[:, None]
    sx = t * step_x + xa
    sy = t * step_y + ya
    cols = np.arange(len(m))
    sx[m - 1, cols] = np.where(m > 1, xb, sx[m - 1, cols])
    sy[m - 1, cols] = np.where(m > 1, yb, sy[m - 1, cols])
    valid = (t < m) & ok
    at = (_map_index(sy, h) * w + _map_index(sx, w)) * nl + limb
    vals = np.where(valid, paf.ravel()[np.where(valid, at, 0)], 0).astype(np.float64)
    # the reference sums the samples with Python's sum(): one by one, from the first
    total = vals[0].copy()
    for k in range(1, len(vals)):
        total += vals[k]
    with np.errstate(divide='ignore'):
        prior = np.minimum(0.5 * image_height / norm - 1, 0)
    score = total / m + prior
    above = (vals > p.thre2).sum(axis=0)      # the zeros of unused slots are not above thre2
    accepted = ok & (above >= p.connect_ratio * m) & (score > 0)
    return score, norm, accepted


def find_connections(peaks, paf, image_height, params=None, limbs=LIMBS):
    """Connections of every limb (SIMPLEPOSE_SPEC 6.4): ``(connections, special_k)``.

    For limb k with candidates A and B (both non-empty, else k is "special"), every pair gets
    ``mean(samples) + min(0.5 * image_height / length - 1, 0)`` from up to ``mid_num`` samples of
    limb map k (``paf`` (H, W, 30)) on the segment; a pair is kept when at least
    ``connect_ratio`` of its samples exceed ``thre2`` and its score is positive. Kept pairs are
    ranked by ``0.5 * score + 0.25 * score_A + 0.25 * score_B`` (descending, ties in pair
    order) and chosen one-to-one greedily, at most min(nA, nB). ``image_height`` is the image
    height (the reference's ``find_connections`` calls it width). Each limb gives an array
    (c, 6) of idA, idB, score, i, j, length (empty (0, 6) when nothing was kept).

    All pairs of all limbs are scored in one vectorised pass (in chunks); only the one-to-one
    choice, which depends on the earlier choices, is a loop.
    """
    p = params or GroupingParams()
    special_k, pair_limb, pair_i, pair_j = [], [], [], []
    for k, (part_a, part_b) in enumerate(limbs):
        na, nb = len(peaks[part_a]), len(peaks[part_b])
        if na == 0 or nb == 0:
            special_k.append(k)
            continue
        pair_limb.append(np.full(na * nb, k))
        pair_i.append(np.repeat(np.arange(na), nb))     # row-major over (i, j): pair order
        pair_j.append(np.tile(np.arange(nb), na))
    connections = [np.zeros((0, 6)) for _ in limbs]
    if not pair_limb:
        return connections, special_k
    limb, ii, jj = (np.concatenate(a) for a in (pair_limb, pair_i, pair_j))
    # per pair: the candidate rows of its ends
    offsets = np.cumsum([0] + [len(q) for q in peaks])
    cand = np.concatenate(peaks, axis=0)
    ends = np.array(limbs)
    ra = offsets[ends[limb, 0]] + ii
    rb = offsets[ends[limb, 1]] + jj
    paf = np.ascontiguousarray(paf)
    score = np.empty(len(limb))
    norm = np.empty(len(limb))
    accepted = np.empty(len(limb), bool)
    for s in range(0, len(limb), _PAIR_CHUNK):
        sl = slice(s, s + _PAIR_CHUNK)
        score[sl], norm[sl], accepted[sl] = _score_pairs(
            cand[ra[sl], 0], cand[ra[sl], 1], cand[rb[sl], 0], cand[rb[sl], 1], limb[sl], paf,
            image_height, p)
    sel = np.flatnonzero(accepted)
    key = 0.5 * score[sel] + 0.25 * cand[ra[sel], 2] + 0.25 * cand[rb[sel], 2]
    order = np.argsort(-key, kind='stable')
    order = sel[order[np.argsort(limb[sel][order], kind='stable')]]   # by limb, then by rank
    chosen = []
    used, count, current, limit = set(), 0, -1, 0
    for q, k, a, b in zip(order.tolist(), limb[order].tolist(), ii[order].tolist(),
                          jj[order].tolist()):
        if k != current:
            current, used, count = k, set(), 0
            limit = min(len(peaks[limbs[k][0]]), len(peaks[limbs[k][1]]))
        if count >= limit or ('a', a) in used or ('b', b) in used:
            continue
        used.add(('a', a))
        used.add(('b', b))
        count += 1
        chosen.append(q)
    chosen = np.array(chosen, np.intp)
    rows = np.stack([cand[ra[chosen], 3], cand[rb[chosen], 3], score[chosen],
                     ii[chosen].astype(np.float64), jj[chosen].astype(np.float64), norm[chosen]],
                    axis=1)
    bounds = np.searchsorted(limb[chosen], np.arange(len(limbs) + 1))
    for k in range(len(limbs)):
        if bounds[k + 1] > bounds[k]:
            connections[k] = rows[bounds[k]:bounds[k + 1]]
    return connections, special_k


# -- people -------------------------------------------------------------------------------------

class _Person:
    """One row of the reference's ``subset``: per part the candidate id and the limb score that
    attached it (-1 when empty), the total score, the part count and the longest limb.
    ``order`` is the creation rank, which is also the row order (rows are only appended)."""
    __slots__ = ('ids', 'limb', 'total', 'count', 'maxlen', 'order')

    def __init__(self, order):
        self.ids = [-1] * NUM_PARTS
        self.limb = [-1.0] * NUM_PARTS
        self.total = 0.0
        self.count = 0.0
        self.maxlen = 0.0
        self.order = order


def _hit(branches, name):
    if branches is not None:
        branches[name] = branches.get(name, 0) + 1


def find_people(connections, special_k, candidate, params=None, branches=None, limbs=LIMBS):
    """Greedy assembly of people from the connections, limb by limb (SIMPLEPOSE_SPEC 6.4,
    the reference's ``find_people`` with every branch; ``branches`` (a dict) counts them).

    Returns the ``subset`` array (N, 20, 2) described in :class:`Grouping`. The reference scans
    all people for each connection; a candidate id belongs to at most one person (every branch
    keeps it so), so a dict from id to person finds the same matches, and the reference's "three
    people share the limb" message cannot happen.
    """
    p = params or GroupingParams()
    cscore = [float(s) for s in candidate[:, 2]] if len(candidate) else []
    people = []                  # in row order
    created = 0
    owner = {}                   # candidate id -> person holding it
    special = set(special_k)
    for k, (pa, pb) in enumerate(limbs):
        if k in special:
            continue
        for id_a, id_b, s, _, _, length in connections[k].tolist():
            id_a, id_b = int(id_a), int(id_b)
            holder_a, holder_b = owner.get(id_a), owner.get(id_b)
            found = [q for q in (holder_a, holder_b) if q is not None]
            if len(found) == 2:
                if found[0] is found[1]:
                    found = found[:1]
                elif found[0].order > found[1].order:
                    found.reverse()
            if len(found) == 1:
                q = found[0]
                old = q.ids[pb]
                if old == -1 and p.len_rate * q.maxlen > length:
                    _hit(branches, 'found==1: add part B')
                    q.ids[pb] = id_b
                    q.limb[pb] = s
                    q.count += 1
                    q.total += cscore[id_b] + s
                    q.maxlen = max(length, q.maxlen)
                    owner[id_b] = q
                elif old != id_b:
                    if q.limb[pb] >= s:
                        _hit(branches, 'found==1: existing B has higher limb score (keep)')
                    elif p.len_rate * q.maxlen <= length:
                        _hit(branches, 'found==1: other B, limb too long (skip)')
                    else:
                        _hit(branches, 'found==1: replace part B')
                        q.total -= cscore[old] + q.limb[pb]
                        owner.pop(old, None)
                        q.ids[pb] = id_b
                        q.limb[pb] = s
                        q.total += cscore[id_b] + s
                        q.maxlen = max(length, q.maxlen)
                        owner[id_b] = q
                elif q.limb[pb] <= s:
                    _hit(branches, 'found==1: same B again, refresh its limb score')
                    q.total -= cscore[old] + q.limb[pb]
                    q.limb[pb] = s
                    q.total += cscore[id_b] + s
                    q.maxlen = max(length, q.maxlen)
                else:
                    _hit(branches, 'found==1: same B, lower score (no-op)')
            elif len(found) == 2:
                q1, q2 = found
                if not any(a >= 0 and b >= 0 for a, b in zip(q1.ids, q2.ids)):
                    tol = min(min(sc for i, sc in zip(q1.ids, q1.limb) if i >= 0),
                              min(sc for i, sc in zip(q2.ids, q2.limb) if i >= 0))
                    if s < p.connection_tole * tol or p.len_rate * q1.maxlen <= length:
                        _hit(branches, 'found==2: disjoint, merge rejected')
                        continue
                    _hit(branches, 'found==2: disjoint persons merged')
                    # the reference adds the rows with "+ 1" on the second: -1 + (v + 1) for a
                    # part only q2 has, which may round the limb score's last bit; reproduced
                    for c in range(NUM_PARTS):
                        q1.ids[c] = q1.ids[c] + (q2.ids[c] + 1)
                        q1.limb[c] = q1.limb[c] + (q2.limb[c] + 1.0)
                        if q2.ids[c] >= 0:
                            owner[q2.ids[c]] = q1
                    q1.total += q2.total
                    q1.count += q2.count
                    q1.total += s
                    q1.maxlen = max(length, q1.maxlen)
                    people.remove(q2)
                else:
                    _hit(branches, 'found==2: overlapping persons (conflict)')
                    if id_a in q1.ids:
                        c1, c2 = pa, pb
                    else:
                        c1, c2 = pb, pa
                    if s < q1.limb[c1] and s < q2.limb[c2]:
                        _hit(branches, 'found==2: conflict, weaker limb skipped')
                        continue
                    if p.remove_recon > 0:
                        _hit(branches, 'found==2: conflict, weaker part removed')
                        small, c = (q2, c2) if q1.limb[c1] > q2.limb[c2] else (q1, c1)
                        small.total -= cscore[small.ids[c]] + small.limb[c]
                        owner.pop(small.ids[c], None)
                        small.ids[c] = -1
                        small.limb[c] = -1.0
                        small.count -= 1
                    else:
                        _hit(branches, 'found==2: conflict, no-op (remove_recon=0)')
            else:
                _hit(branches, 'new person row')
                q = _Person(created)
                created += 1
                q.ids[pa], q.limb[pa] = id_a, s
                q.ids[pb], q.limb[pb] = id_b, s
                q.count = 2.0
                q.maxlen = length
                q.total = (cscore[id_a] + cscore[id_b]) + s
                owner[id_a] = owner[id_b] = q
                people.append(q)
    kept = []
    for q in people:
        if q.count < p.min_parts or q.total / q.count < p.min_mean_score:
            _hit(branches, 'person deleted (count<2 or mean score<0.45)')
        else:
            kept.append(q)
    subset = -np.ones((len(kept), NUM_PARTS + 2, 2))
    for n, q in enumerate(kept):
        subset[n, :NUM_PARTS, 0] = q.ids
        subset[n, :NUM_PARTS, 1] = q.limb
        subset[n, NUM_PARTS, 0] = q.total
        subset[n, NUM_PARTS + 1] = (q.count, q.maxlen)
    return subset


def people_keypoints(subset, candidate):
    """COCO-17 keypoints (N, 17, 3) of the people ``subset``: x, y of the candidate (0, 0 when
    missing; the neck is dropped, ``dt_gt_mapping``) and its peak score (0 when missing), and the
    person scores (N,) ``1 - 1 / total`` (the reference's ``process``)."""
    n = len(subset)
    kps = np.zeros((n, 17, 3), np.float64)
    for part, coco in enumerate(OURS_TO_COCO):
        if coco is None:
            continue
        ids = subset[:, part, 0].astype(np.int64)
        has = ids >= 0
        kps[has, coco] = candidate[ids[has], :3]
    scores = 1 - 1.0 / subset[:, NUM_PARTS, 0] if n else np.zeros((0,))
    return kps, scores


def coco_results(keypoints, scores, image_id):
    """COCO result records of one image's people, as the reference's ``format_results`` writes
    them: ``keypoints`` [x, y, v] * 17 with v = 1 when x > 0 or y > 0 (a missing joint is
    (0, 0, 0)), ``score`` the person score, category 1, in the people's order (no sorting, no
    per-image cap: COCOeval keeps the 20 best)."""
    records = []
    for kps, score in zip(np.asarray(keypoints, np.float64), np.asarray(scores, np.float64)):
        flat = []
        for x, y in kps[:, :2].tolist():
            flat += [x, y, 1 if x > 0 or y > 0 else 0]
        records.append({'image_id': int(image_id), 'category_id': 1, 'keypoints': flat,
                        'score': float(score)})
    return records


def group(heat, paf, image_height=None, params=None, branches=None):
    """Peaks, connections and people of one image's maps (``heat`` (H, W, >= 18), ``paf``
    (H, W, 30) in image pixels): a :class:`Grouping`. ``image_height`` defaults to the maps'
    height (the reference passes the original image height; the maps have that size)."""
    p = params or GroupingParams()
    if image_height is None:
        image_height = heat.shape[0]
    branches = {} if branches is None else branches
    peaks = find_peaks(heat, p.thre1, p.offset_radius)
    candidate = np.concatenate(peaks, axis=0) if peaks else np.zeros((0, 4))
    connections, special_k = find_connections(peaks, paf, image_height, p)
    subset = find_people(connections, special_k, candidate, p, branches)
    keypoints, scores = people_keypoints(subset, candidate)
    return Grouping(peaks, candidate, connections, special_k, subset, keypoints, scores,
                    branches)
