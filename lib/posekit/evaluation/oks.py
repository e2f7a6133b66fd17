"""Object keypoint similarity (OKS), OKS-NMS and soft OKS-NMS, as the reference evaluation uses them.

Pure numpy. Keypoints are flattened ``[x0, y0, v0, x1, y1, v1, ...]`` vectors (or ``(K, 3)`` arrays,
which are flattened here); ``v`` is the predicted keypoint score. Areas are the *enlarged* person-box
areas the reference passes (``(200 s_x) (200 s_y)``), not segmentation areas.

Reproduced knowingly (REFERENCE_SPEC 6.3, 10.22):

* ``sigma'_j = 2 sigma_j``: the squared-distance term is divided by ``(2 sigma_j)^2`` and by
  ``2 ((A_g + A_d) / 2 + eps)``.
* The optional visibility filter is written ``list(vg > t) and list(vd > t)`` in the reference. A
  non-empty Python list is truthy, so that expression is just ``list(vd > t)``: only the
  *detection's* keypoint scores select the joints, the ground-truth/kept person's are ignored.
* Suppression keeps a detection when ``OKS <= thresh`` (strict ``>`` discards).
* Soft OKS-NMS keeps at most 20 detections (hard-coded ``max_dets`` in the reference).
"""
import numpy as np

from posekit.data.descriptors import COCO

COCO_SIGMAS = np.array(COCO.oks_sigmas)

SOFT_NMS_MAX_DETS = 20


def oks_iou(g, d, a_g, a_d, sigmas=None, in_vis_thre=None):
    """OKS of one person ``g`` against every row of ``d``.

    Args:
        g: flattened keypoints of the reference person, length 3K (or a ``(K, 3)`` array).
        d: ``(M, 3K)`` (or ``(M, K, 3)``) keypoints of the other persons.
        a_g: area of ``g``; a_d: ``(M,)`` areas of ``d``.
        sigmas: per-joint sigmas; the COCO ones when not a numpy array (as the reference).
        in_vis_thre: if given, only joints whose *detection* score exceeds it count (quirk above).

    Returns:
        ``(M,)`` float64 OKS values; 0 for a row with no counted joint.
    """
    g = np.asarray(g, dtype=np.float64).reshape(-1)
    d = np.asarray(d, dtype=np.float64)
    d = d.reshape(d.shape[0], g.shape[0]) if d.ndim > 1 else d.reshape(-1, g.shape[0])
    a_d = np.asarray(a_d, dtype=np.float64).reshape(-1)
    if not isinstance(sigmas, np.ndarray):
        sigmas = COCO_SIGMAS
    variances = (sigmas * 2) ** 2
    xg, yg = g[0::3], g[1::3]
    ious = np.zeros(d.shape[0])
    for n_d in range(d.shape[0]):
        xd, yd, vd = d[n_d, 0::3], d[n_d, 1::3], d[n_d, 2::3]
        dx = xd - xg
        dy = yd - yg
        # Same operation order as the reference, so results agree to the last bit.
        e = (dx ** 2 + dy ** 2) / variances / ((a_g + a_d[n_d]) / 2 + np.spacing(1)) / 2
        if in_vis_thre is not None:
            # Reference: ind = list(vg > t) and list(vd > t)  ->  always list(vd > t).
            e = e[vd > in_vis_thre]
        ious[n_d] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] != 0 else 0.0
    return ious


def _unpack(kpts_db):
    """Records (dicts with keypoints / score / area) -> (flattened keypoints, scores, areas)."""
    scores = np.array([float(k['score']) for k in kpts_db], dtype=np.float64)
    kpts = np.array([np.asarray(k['keypoints'], dtype=np.float64).reshape(-1) for k in kpts_db])
    areas = np.array([float(k['area']) for k in kpts_db], dtype=np.float64)
    return kpts, scores, areas


def _as_arrays(keypoints, scores, areas):
    """float64 arrays: keypoints (N, 3K), scores (N,), areas (N,)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    kpts = np.asarray(keypoints, dtype=np.float64)
    kpts = kpts.reshape(scores.size, -1) if scores.size else kpts.reshape(0, 0)
    return kpts, scores, np.asarray(areas, dtype=np.float64).reshape(-1)


def oks_nms_arrays(keypoints, scores, areas, thresh, sigmas=None, in_vis_thre=None):
    """Greedy OKS-NMS on arrays: ``keypoints (N, K, 3)`` or ``(N, 3K)``, ``scores (N,)``, ``areas (N,)``.

    Returns the kept indices (into the inputs), best score first.
    """
    kpts, scores, areas = _as_arrays(keypoints, scores, areas)
    if scores.size == 0:
        return []
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
        inds = np.where(ovr <= thresh)[0]
        order = order[inds + 1]
    return keep


def oks_nms(kpts_db, thresh, sigmas=None, in_vis_thre=None):
    """OKS-NMS over a list of records ``{'keypoints', 'score', 'area', ...}`` (reference signature).

    Returns the kept indices into ``kpts_db``, best score first; ``[]`` for an empty list.
    """
    if len(kpts_db) == 0:
        return []
    kpts, scores, areas = _unpack(kpts_db)
    return oks_nms_arrays(kpts, scores, areas, thresh, sigmas, in_vis_thre)


def rescore(overlap, scores, thresh, type='gaussian'):
    """Soft-NMS score decay: gaussian ``s exp(-o^2 / thresh)`` or linear ``s (1 - o)`` where ``o >= thresh``.

    Unlike the reference (whose linear branch writes into ``scores``), the input is not modified.
    """
    overlap = np.asarray(overlap, dtype=np.float64)
    scores = np.array(scores, dtype=np.float64, copy=True)
    if overlap.shape[0] != scores.shape[0]:
        raise ValueError('overlap and scores differ in length: %d vs %d'
                         % (overlap.shape[0], scores.shape[0]))
    if type == 'linear':
        inds = np.where(overlap >= thresh)[0]
        scores[inds] = scores[inds] * (1 - overlap[inds])
    elif type == 'gaussian':
        scores = scores * np.exp(-overlap ** 2 / thresh)
    else:
        raise ValueError("rescore type must be 'gaussian' or 'linear', got %r" % (type,))
    return scores


def soft_oks_nms_arrays(keypoints, scores, areas, thresh, sigmas=None, in_vis_thre=None,
                        max_dets=SOFT_NMS_MAX_DETS):
    """Gaussian soft OKS-NMS on arrays; returns at most ``max_dets`` kept indices in pick order."""
    kpts, scores, areas = _as_arrays(keypoints, scores, areas)
    if scores.size == 0:
        return []
    order = scores.argsort()[::-1]
    scores = scores[order]
    keep = []
    while order.size > 0 and len(keep) < max_dets:
        i = order[0]
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
        order = order[1:]
        scores = rescore(ovr, scores[1:], thresh)
        tmp = scores.argsort()[::-1]
        order = order[tmp]
        scores = scores[tmp]
        keep.append(int(i))
    return keep


def soft_oks_nms(kpts_db, thresh, sigmas=None, in_vis_thre=None, max_dets=SOFT_NMS_MAX_DETS):
    """Soft OKS-NMS over records (reference [LPN]/[CAV] ``soft_oks_nms``; ``max_dets`` = 20 there)."""
    if len(kpts_db) == 0:
        return []
    kpts, scores, areas = _unpack(kpts_db)
    return soft_oks_nms_arrays(kpts, scores, areas, thresh, sigmas, in_vis_thre, max_dets)
