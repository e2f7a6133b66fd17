"""One descriptor per dataset: every fact about MPII or COCO that the pipeline needs.

Joint names, left/right flip pairs, skeleton (0-based joint indices), the upper-body joints of
the half-body augmentation, the OKS sigmas, the metric, the dataset class and the synthetic
generator's format. :func:`dataset_info` resolves ``DATASET.DATASET`` to a descriptor; nothing
else looks at the dataset name. Plain Python (no numpy, no paddle): the ONNX deploy path reads it.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from posekit.errors import PosekitInputError

__all__ = ['DatasetInfo', 'UnknownDatasetError', 'dataset_info', 'DATASETS', 'MPII', 'COCO',
           'MPII_JOINTS', 'MPII_FLIP_PAIRS', 'MPII_SKELETON', 'MPII_MAT_JOINTS',
           'COCO_JOINTS', 'COCO_FLIP_PAIRS', 'COCO_SKELETON']

MPII_JOINTS = [
    'r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'pelvis', 'thorax',
    'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder', 'l_shoulder', 'l_elbow', 'l_wrist',
]
# The short names the MPII ground-truth files (gt_*.mat ``dataset_joints``) use, same order.
MPII_MAT_JOINTS = ['rank', 'rkne', 'rhip', 'lhip', 'lkne', 'lank', 'pelv', 'thrx',
                   'neck', 'head', 'rwri', 'relb', 'rsho', 'lsho', 'lelb', 'lwri']
MPII_FLIP_PAIRS = [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]
MPII_SKELETON = [[0, 1], [1, 2], [2, 6], [6, 3], [3, 4], [4, 5], [6, 7], [7, 8], [8, 9],
                 [10, 11], [11, 12], [12, 7], [7, 13], [13, 14], [14, 15]]

COCO_JOINTS = [
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
    'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
    'left_knee', 'right_knee', 'left_ankle', 'right_ankle',
]
COCO_FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]
# The COCO annotation file's skeleton, made 0-based.
COCO_SKELETON = [[15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6],
                 [5, 7], [6, 8], [7, 9], [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4],
                 [3, 5], [4, 6]]
# The COCO keypoint evaluation's per-joint sigmas (written /10 there, and so here).
_COCO_SIGMAS_X10 = (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                    1.07, 1.07, .87, .87, .89, .89)


def _pairs(pairs):
    return tuple((int(a), int(b)) for a, b in pairs)


@dataclass(frozen=True)
class DatasetInfo:
    """What the pipeline knows about one dataset (indices are 0-based joint ids)."""
    name: str                       # the prefix of DATASET.DATASET that selects it
    joint_names: Tuple[str, ...]
    flip_pairs: Tuple[Tuple[int, int], ...]
    skeleton: Tuple[Tuple[int, int], ...]
    upper_body_ids: Tuple[int, ...]  # half-body augmentation: the upper half of the person
    oks_sigmas: Optional[Tuple[float, ...]]  # OKS of the COCO evaluation (None: not used)
    metric: str                     # 'pckh' (MPII PCKh) or 'coco_ap' (COCO keypoint AP)
    dataset_class: str              # name of the class in posekit.data that loads it
    synthetic_format: str           # format of posekit.data.synthetic that imitates it

    @property
    def num_joints(self):
        return len(self.joint_names)


MPII = DatasetInfo(
    name='mpii', joint_names=tuple(MPII_JOINTS), flip_pairs=_pairs(MPII_FLIP_PAIRS),
    skeleton=_pairs(MPII_SKELETON), upper_body_ids=tuple(range(7, 16)), oks_sigmas=None,
    metric='pckh', dataset_class='MPIIDataset', synthetic_format='mpii')

COCO = DatasetInfo(
    name='coco', joint_names=tuple(COCO_JOINTS), flip_pairs=_pairs(COCO_FLIP_PAIRS),
    skeleton=_pairs(COCO_SKELETON), upper_body_ids=tuple(range(0, 11)),
    oks_sigmas=tuple(s / 10.0 for s in _COCO_SIGMAS_X10),
    metric='coco_ap', dataset_class='COCODataset', synthetic_format='coco')

DATASETS = {d.name: d for d in (MPII, COCO)}


class UnknownDatasetError(PosekitInputError):
    """``DATASET.DATASET`` (or a model's joint count) names no known dataset."""


def dataset_info(name=None, num_joints=None):
    """The descriptor of ``DATASET.DATASET`` ``name``, matched by prefix (``coco_synthetic`` is
    COCO), case-insensitively.

    With ``num_joints`` (a model's output count), a descriptor with that many joints is returned
    even when ``name`` is empty or names a dataset with another count (a 17-joint model under the
    default ``DATASET.DATASET`` 'mpii' gets COCO's joints): the model's outputs decide.
    """
    key = str(name or '').lower()
    info = next((d for k, d in DATASETS.items() if key.startswith(k)), None)
    if num_joints is None:
        if info is None:
            raise UnknownDatasetError('unknown DATASET.DATASET %r (known: %s, or a name starting '
                                      'with one of them)' % (name, ', '.join(DATASETS)))
        return info
    num_joints = int(num_joints)
    if info is None or info.num_joints != num_joints:
        info = next((d for d in DATASETS.values() if d.num_joints == num_joints), None)
    if info is None:
        raise UnknownDatasetError('no dataset has %d joints (known: %s)' % (num_joints, ', '.join(
            '%s %d' % (d.name.upper(), d.num_joints) for d in DATASETS.values())))
    return info
