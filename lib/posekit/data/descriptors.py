"""Joint definitions per dataset: names, left/right flip pairs, skeleton (0-based indices)."""

MPII_JOINTS = [
    'r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'pelvis', 'thorax',
    'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder', 'l_shoulder', 'l_elbow', 'l_wrist',
]
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

DATASETS = {
    'mpii': {'joints': MPII_JOINTS, 'flip_pairs': MPII_FLIP_PAIRS, 'skeleton': MPII_SKELETON},
    'coco': {'joints': COCO_JOINTS, 'flip_pairs': COCO_FLIP_PAIRS, 'skeleton': COCO_SKELETON},
}


def joint_info(num_joints, dataset=None):
    """Names, flip pairs and skeleton for a model with ``num_joints`` outputs.

    The dataset is taken from ``dataset`` when given (``DATASET.DATASET``; names such as
    ``coco_synthetic`` match by prefix), otherwise from the joint count (16 MPII, 17 COCO).
    """
    key = None
    if dataset:
        key = next((k for k in DATASETS if str(dataset).lower().startswith(k)), None)
    if key is None or len(DATASETS[key]['joints']) != num_joints:
        key = {16: 'mpii', 17: 'coco'}.get(num_joints)
    if key is None:
        raise ValueError('no joint definition for %d joints (known: 16 MPII, 17 COCO)' % num_joints)
    return DATASETS[key]
