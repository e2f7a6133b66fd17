"""MPII PCKh, as the reference ``MPIIDataset.evaluate`` computes it (REFERENCE_SPEC 6.2).

Pure numpy/scipy: predictions in, an ordered name -> value table out.

Reproduced knowingly:

* Head size = head-box diagonal x ``SC_BIAS`` = 0.6; a joint is correct when
  ``error / head size <= threshold`` (inclusive).
* Pelvis (6) and thorax (7) are left out of "Mean"; "Mean" is weighted by how many times each joint
  is visible; the group values (Shoulder, ...) are plain left/right means.
* A person whose head box has size 0 (or a non-finite corner) has no head size: every visible
  joint of theirs counts as a miss, as in the reference. It is not hidden: a
  :class:`HeadBoxWarning` gives the count.
* QUIRK: "Mean@0.1" is row 11 of ``np.arange(0, 0.51, 0.01)``, i.e. PCKh at threshold **0.11**, not
  0.10. It is kept so that tables match the published ones. The true PCKh at 0.1 is available under
  the separate key ``'PCKh@0.1'`` (``evaluate_pckh(..., with_true_pckh01=True)`` or
  :func:`pckh_details`); it is not part of the reference table.
"""
import os
import warnings
from collections import OrderedDict

import numpy as np

from posekit.data.base import DatasetError
# MPII_MAT_JOINTS: the joint names of gt_*.mat ``dataset_joints``, in MPII joint-id order.
from posekit.data.descriptors import MPII, MPII_MAT_JOINTS
from posekit.io import write_mat

SC_BIAS = 0.6
NUM_JOINTS = MPII.num_joints
# Joints left out of Mean (and Mean@0.1): pelvis, thorax.
MASKED_JOINTS = (6, 7)
# Row of the 0.00:0.01:0.50 threshold grid the reference reports as "Mean@0.1" (threshold 0.11).
MEAN_AT_01_ROW = 11
TRUE_PCKH01_KEY = 'PCKh@0.1'

REQUIRED_KEYS = ('jnt_missing', 'pos_gt_src', 'headboxes_src')


class HeadBoxWarning(UserWarning):
    """Persons of the MPII ground truth whose joints all count as misses (head box of size 0)."""


def load_ground_truth(gt_mat_path_or_dict):
    """Read and check an MPII ``gt_<set>.mat`` (or the dict ``loadmat`` gives): returns
    ``(jnt_missing (16, N), pos_gt_src (16, 2, N), headboxes_src (2, 2, N), joint names)``.
    A missing file raises ``FileNotFoundError``, a damaged one :class:`DatasetError`."""
    return _load_gt(gt_mat_path_or_dict)


def _load_gt(gt_mat_path_or_dict):
    """The ground-truth dict (from a gt_*.mat path or an already loaded dict), validated."""
    if isinstance(gt_mat_path_or_dict, (str, os.PathLike)):
        path = os.fspath(gt_mat_path_or_dict)
        if not os.path.isfile(path):
            raise FileNotFoundError('MPII ground-truth file not found: %s' % path)
        from scipy.io import loadmat
        try:
            gt = loadmat(path)
        except Exception as exc:  # scipy raises several types for a damaged file
            raise DatasetError('cannot read MPII ground-truth file %s (corrupt or not a .mat '
                               'file): %s' % (path, exc)) from exc
        source = path
    elif isinstance(gt_mat_path_or_dict, dict):
        gt = gt_mat_path_or_dict
        source = '<dict>'
    else:
        raise TypeError('expected a path to gt_*.mat or a dict, got %s' % type(gt_mat_path_or_dict))

    missing = [k for k in REQUIRED_KEYS if k not in gt]
    if missing:
        raise DatasetError('MPII ground truth %s lacks %s' % (source, ', '.join(missing)))
    jnt_missing = np.asarray(gt['jnt_missing'], dtype=np.float64)
    pos_gt = np.asarray(gt['pos_gt_src'], dtype=np.float64)
    headboxes = np.asarray(gt['headboxes_src'], dtype=np.float64)
    if jnt_missing.ndim != 2 or jnt_missing.shape[0] != NUM_JOINTS:
        raise DatasetError('%s: jnt_missing should be 16 x N, got %s' % (source, jnt_missing.shape))
    n = jnt_missing.shape[1]
    if pos_gt.shape != (NUM_JOINTS, 2, n):
        raise DatasetError('%s: pos_gt_src should be 16 x 2 x %d, got %s' % (source, n, pos_gt.shape))
    if headboxes.shape != (2, 2, n):
        raise DatasetError('%s: headboxes_src should be 2 x 2 x %d, got %s' % (source, n, headboxes.shape))

    names = MPII_MAT_JOINTS
    if 'dataset_joints' in gt:
        try:
            names = [str(np.asarray(x).reshape(-1)[0]) for x in np.asarray(gt['dataset_joints']).reshape(-1)]
        except Exception as exc:
            raise DatasetError('%s: unreadable dataset_joints' % source) from exc
        if len(names) != NUM_JOINTS or set(names) != set(MPII_MAT_JOINTS):
            raise DatasetError('%s: dataset_joints should name the 16 MPII joints, got %s' % (source, names))
    _warn_degenerate_head_boxes(jnt_missing, headboxes, source)
    return jnt_missing, pos_gt, headboxes, names


def _warn_degenerate_head_boxes(jnt_missing, headboxes, source):
    with np.errstate(invalid='ignore'):
        sizes = np.linalg.norm(headboxes[1, :, :] - headboxes[0, :, :], axis=0)
        no_size = ~(np.isfinite(sizes) & (sizes > 0))
    visible = (1 - jnt_missing) > 0
    persons = no_size & visible.any(axis=0)
    if persons.any():
        warnings.warn('MPII ground truth %s: %d person(s) have a head box of size 0; their %d '
                      'visible joints count as misses (first: person %d)'
                      % (source, int(persons.sum()), int(visible[:, persons].sum()),
                         int(np.flatnonzero(persons)[0])), HeadBoxWarning, stacklevel=2)


def _check_preds(preds, n_gt):
    # DatasetError is a ValueError that the entry points print as one line
    preds = np.asarray(preds, dtype=np.float64)
    if preds.ndim != 3 or preds.shape[1] != NUM_JOINTS or preds.shape[2] < 2:
        raise DatasetError('preds should be N x 16 x 2 (or x 3), got %s' % (preds.shape,))
    if n_gt is not None and preds.shape[0] != n_gt:
        raise DatasetError('got %d predictions but the ground truth has %d people; predictions must '
                         'cover the whole evaluation set in dataset order' % (preds.shape[0], n_gt))
    return preds[:, :, 0:2]


def pckh_details(preds, gt_mat_path_or_dict, threshold=0.5):
    """Per-joint intermediate results of the PCKh computation.

    Returns a dict with ``pckh`` (16,), ``pck_all`` (51, 16) for thresholds ``np.arange(0, 0.51, 0.01)``,
    ``thresholds``, ``jnt_count`` (16,), ``jnt_ratio`` (16; 0 for pelvis/thorax), ``pckh01`` (16; true
    threshold 0.1), ``joint_names``.
    """
    jnt_missing, pos_gt, headboxes, names = _load_gt(gt_mat_path_or_dict)
    preds = _check_preds(preds, jnt_missing.shape[1]) + 1.0  # back to 1-based, like the .mat
    pos_pred = np.transpose(preds, [1, 2, 0])

    jnt_visible = 1 - jnt_missing
    uv_err = np.linalg.norm(pos_pred - pos_gt, axis=1)
    headsizes = np.linalg.norm(headboxes[1, :, :] - headboxes[0, :, :], axis=0)
    headsizes *= SC_BIAS
    scale = np.multiply(headsizes, np.ones((len(uv_err), 1)))
    with np.errstate(divide='ignore', invalid='ignore'):
        scaled_uv_err = np.multiply(np.divide(uv_err, scale), jnt_visible)
    jnt_count = np.sum(jnt_visible, axis=1)

    def pck_at(thr):
        hits = np.multiply(scaled_uv_err <= thr, jnt_visible)
        with np.errstate(divide='ignore', invalid='ignore'):
            return np.divide(100. * np.sum(hits, axis=1), jnt_count)

    pckh = pck_at(threshold)
    thresholds = np.arange(0, 0.5 + 0.01, 0.01)
    pck_all = np.stack([pck_at(t) for t in thresholds])

    keep = np.ones(NUM_JOINTS, dtype=bool)
    keep[list(MASKED_JOINTS)] = False
    total = np.sum(jnt_count[keep]).astype(np.float64)
    jnt_ratio = np.where(keep, jnt_count / total, 0.0)
    return {
        'pckh': pckh, 'pck_all': pck_all, 'thresholds': thresholds, 'jnt_count': jnt_count,
        'jnt_ratio': jnt_ratio, 'keep': keep, 'pckh01': pck_at(0.1), 'joint_names': names,
    }


def _weighted_mean(values, jnt_ratio, keep):
    # The reference uses masked arrays; a masked sum fills masked entries with 0, same as here.
    return float(np.sum(np.where(keep, values * jnt_ratio, 0.0)))


def evaluate_pckh(preds, gt_mat_path_or_dict, threshold=0.5, with_true_pckh01=False):
    """MPII PCKh table exactly as the reference ``MPIIDataset.evaluate``.

    Args:
        preds: ``(N, 16, 2)`` (extra channels ignored) predicted joints, 0-based image pixels, for every
            person of the set in dataset order. 1 is added here (the .mat is 1-based).
        gt_mat_path_or_dict: path to ``annot/gt_<set>.mat`` or the dict ``scipy.io.loadmat`` returns.
        threshold: PCKh threshold (0.5, inclusive).
        with_true_pckh01: also return the true PCKh at 0.1 under ``'PCKh@0.1'`` (after the reference keys).

    Returns:
        OrderedDict Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean, Mean@0.1 (percent, floats).
        The indicator for "best model" is ``['Mean']``.
    """
    det = pckh_details(preds, gt_mat_path_or_dict, threshold)
    pckh, ratio, keep = det['pckh'], det['jnt_ratio'], det['keep']
    idx = {name: i for i, name in enumerate(det['joint_names'])}

    def pair(a, b):
        return float(0.5 * (pckh[idx[a]] + pckh[idx[b]]))

    name_value = OrderedDict([
        ('Head', float(pckh[idx['head']])),
        ('Shoulder', pair('lsho', 'rsho')),
        ('Elbow', pair('lelb', 'relb')),
        ('Wrist', pair('lwri', 'rwri')),
        ('Hip', pair('lhip', 'rhip')),
        ('Knee', pair('lkne', 'rkne')),
        ('Ankle', pair('lank', 'rank')),
        ('Mean', _weighted_mean(pckh, ratio, keep)),
        # QUIRK (kept for parity with published tables): row 11 of the 0.01-step grid = threshold 0.11.
        ('Mean@0.1', _weighted_mean(det['pck_all'][MEAN_AT_01_ROW], ratio, keep)),
    ])
    if with_true_pckh01:
        name_value[TRUE_PCKH01_KEY] = _weighted_mean(det['pckh01'], ratio, keep)
    return name_value


def write_pred_mat(preds, path):
    """Save predictions as the reference ``pred.mat``: variable ``preds``, N x 16 x 2, **1-based**.

    ``preds`` are 0-based (as given to :func:`evaluate_pckh`); 1 is added here.
    """
    preds = _check_preds(preds, None) + 1.0
    return write_mat(path, {'preds': preds})


def format_table(name_values, arch_name):
    """The three-line markdown table the reference logs ([MS] layout, 3 decimals).

    ``name_values``: an (ordered) dict or a list of (name, value) pairs. Returns the three lines joined
    by newlines.
    """
    items = list(name_values.items()) if hasattr(name_values, 'items') else list(name_values)
    header = '| Arch ' + ' '.join('| {}'.format(name) for name, _ in items) + ' |'
    separator = '|---' * (len(items) + 1) + '|'
    row = '| ' + arch_name + ' ' + ' '.join('| {:.3f}'.format(value) for _, value in items) + ' |'
    return '\n'.join([header, separator, row])
