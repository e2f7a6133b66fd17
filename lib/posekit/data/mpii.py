"""MPII human pose (msft json annotation format, REFERENCE_SPEC 1.1)."""
import os

import numpy as np

from posekit.data.descriptors import MPII
from posekit.data.base import DatasetError, JointsDataset, load_json_list

__all__ = ['load_mpii_records', 'MPIIDataset', 'MPII_NUM_JOINTS']

MPII_NUM_JOINTS = MPII.num_joints


def load_mpii_records(json_path, image_dir, is_test_set=False, num_joints=MPII_NUM_JOINTS):
    """Records of an MPII json file, with the reference load-time adjustments, in order:

    c_y += 15 * s (when c_x != -1), s *= 1.25, c -= 1, joints -= 1 (1-based -> 0-based).
    ``is_test_set``: the entries carry no joints (left at zero, visibility zero).
    """
    anno = load_json_list(json_path, 'MPII annotation file', 'persons')
    records = []
    for i, a in enumerate(anno):
        try:
            c = np.array(a['center'], dtype=np.float64).reshape(2)
            s = np.array([a['scale'], a['scale']], dtype=np.float64)
            image_name = str(a['image'])
            # a person box of size <= 0 (or NaN) makes no crop; MPII persons cannot be skipped
            # (gt_<set>.mat pairs them with predictions by position), so it is an error
            if not (np.all(np.isfinite(c)) and np.isfinite(s[0]) and s[0] > 0):
                raise ValueError('center %s and scale %s: the scale must be a finite number > 0'
                                 % (a['center'], a['scale']))
            if c[0] != -1:
                c[1] = c[1] + 15 * s[1]
                s = s * 1.25
            c = c - 1
            joints_3d = np.zeros((num_joints, 3), dtype=np.float64)
            joints_3d_vis = np.zeros((num_joints, 3), dtype=np.float64)
            if not is_test_set:
                joints = np.array(a['joints'], dtype=np.float64)
                joints_vis = np.array(a['joints_vis'], dtype=np.float64).reshape(-1)
                if joints.shape != (num_joints, 2) or joints_vis.shape != (num_joints,):
                    raise ValueError('expected %d joints and %d joints_vis, got shapes %s and %s'
                                     % (num_joints, num_joints, joints.shape, joints_vis.shape))
                joints_3d[:, 0:2] = joints - 1
                joints_3d_vis[:, 0] = joints_vis
                joints_3d_vis[:, 1] = joints_vis
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError('MPII annotation file %s: malformed entry %d: %s: %s'
                               % (json_path, i, type(e).__name__, e)) from e
        records.append({
            'image': os.path.join(image_dir, image_name),
            'center': c, 'scale': s,
            'joints_3d': joints_3d, 'joints_3d_vis': joints_3d_vis,
            'filename': '', 'imgnum': 0,
        })
    return records


class MPIIDataset(JointsDataset):
    """MPII samples. Default layout: ``DATASET.ROOT/annot/<image_set>.json`` and
    ``DATASET.ROOT/images/``; ``ann_file``/``image_dir`` override them."""
    info = MPII
    flip_pairs = MPII.flip_pairs
    upper_body_ids = MPII.upper_body_ids

    def __init__(self, cfg, image_set=None, is_train=False, ann_file=None, image_dir=None, rng=None):
        if image_set is None:
            image_set = cfg.DATASET.TRAIN_SET if is_train else cfg.DATASET.TEST_SET
        root = cfg.DATASET.ROOT
        self.image_set = image_set
        self.ann_file = ann_file or os.path.join(root, 'annot', image_set + '.json')
        self.image_dir = image_dir or os.path.join(root, 'images')
        records = load_mpii_records(self.ann_file, self.image_dir,
                                    is_test_set=(image_set == 'test'),
                                    num_joints=int(cfg.MODEL.NUM_JOINTS))
        super().__init__(cfg, records, is_train=is_train, rng=rng, source=self.ann_file)
