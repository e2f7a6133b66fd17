"""``DATASET.SELECT_DATA`` (REFERENCE_SPEC 2.2): the reference training-set filter, on hand-made
records with hand-computed keep/drop decisions."""
import json
import logging
import os

import numpy as np
import pytest

from posekit.config import load_config
from posekit.data import DatasetError, JointsDataset, MPIIDataset
from posekit.data.base import select_records

K = 16  # MPII, the default MODEL.NUM_JOINTS
CENTER = np.array([300.0, 200.0])


def record(name, offsets, visible=None, scale=(1.0, 1.0), k=K):
    """A record whose first ``len(offsets)`` joints sit at CENTER + offset; ``visible`` lists
    which of them are visible (all by default); the other joints are invisible and far away."""
    joints = np.full((k, 3), 1000.0)
    joints[:, 2] = 0
    vis = np.zeros((k, 3))
    for j, off in enumerate(offsets):
        joints[j, :2] = CENTER + np.asarray(off, dtype=np.float64)
        if visible is None or j in visible:
            vis[j, :2] = 1
    return {'image': name, 'center': CENTER.copy(), 'scale': np.array(scale),
            'joints_3d': joints, 'joints_3d_vis': vis, 'filename': '', 'imgnum': 0}


def around(d, n):
    """n joints whose mean is CENTER + (d, 0), spread +-(5, 3) about it (n even)."""
    return [(d + 5, 3) if j % 2 else (d - 5, -3) for j in range(n)]


# With scale (1, 1): area = 200^2 = 40000, so ks = exp(-d^2 / (2 * 0.04 * 40000))
# = exp(-d^2 / 3200).
# metric(n) = 0.45 + 0.0125 (n - 1): 0.45 for 1 visible joint, 0.5375 for 8, 0.6375 for 16.
#   1 joint:   ks > 0.45   <=> d^2 < 3200 ln(1/0.45)   = 2555.2 (d < 50.55)
#   16 joints: ks > 0.6375 <=> d^2 < 3200 ln(1/0.6375) = 1440.6 (d < 37.96)
#   8 joints:  ks > 0.5375 <=> d^2 < 3200 ln(1/0.5375) = 1986.3 (d < 44.57)
RECORDS = [
    ('one_at_centre', record('one_at_centre', [(0, 0)]), True),              # ks 1
    ('one_at_50', record('one_at_50', [(30, 40)]), True),                     # d 50, ks 0.4578
    ('one_at_51', record('one_at_51', [(51, 0)]), False),                     # ks 0.4436
    ('sixteen_at_37', record('sixteen_at_37', around(37, 16)), True),         # ks 0.6519
    ('sixteen_at_39', record('sixteen_at_39', around(39, 16)), False),        # ks 0.6217
    # 8 of 16 visible: only they count, for the centre and for the metric (0.5375).
    ('eight_visible', record('eight_visible', around(44, 8) + around(0, 8),
                             visible=set(range(8))), True),                    # d 44, ks 0.5461
    # d 45, ks 0.5311: dropped (all 16 joints would give d 22.5, ks 0.854 > 0.6375: kept).
    ('eight_at_45', record('eight_at_45', around(45, 8) + around(0, 8),
                           visible=set(range(8))), False),
    ('no_visible', record('no_visible', [(0, 0)], visible=set()), False),     # dropped
    # area = s_x s_y 200^2 = 10000: ks = exp(-d^2 / 800); d 20 -> 0.6065, d 30 -> 0.3247
    ('small_box_20', record('small_box_20', [(0, 20)], scale=(1.0, 0.25)), True),
    ('small_box_30', record('small_box_30', [(0, 30)], scale=(1.0, 0.25)), False),
]


def names(dataset):
    return [rec['image'] for rec in dataset.db]


def expected_names():
    return [name for name, _, keep in RECORDS if keep]


def all_records():
    return [rec for _, rec, _ in RECORDS]


@pytest.fixture(scope='module')
def cfg_off():
    return load_config(None)


@pytest.fixture(scope='module')
def cfg_on():
    return load_config(None, ['DATASET.SELECT_DATA', 'true'])


def test_hand_computed_selection(cfg_on):
    ds = JointsDataset(cfg_on, all_records(), is_train=True)
    assert names(ds) == expected_names()
    assert len(ds) == 5


def test_select_records_function():
    kept = select_records(rec for _, rec, _ in RECORDS)
    assert [rec['image'] for rec in kept] == expected_names()


def test_off_by_default(cfg_off):
    assert cfg_off.DATASET.SELECT_DATA is False
    ds = JointsDataset(cfg_off, all_records(), is_train=True)
    assert names(ds) == [name for name, _, _ in RECORDS]


def test_validation_sets_are_not_filtered(cfg_on):
    ds = JointsDataset(cfg_on, all_records(), is_train=False)
    assert names(ds) == [name for name, _, _ in RECORDS]


def test_logs_counts(cfg_on, caplog):
    with caplog.at_level(logging.INFO, logger='posekit'):
        JointsDataset(cfg_on, all_records(), is_train=True)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith('posekit')]
    assert '=> num db: 10' in messages
    assert '=> num selected db: 5' in messages


def test_nothing_selected_names_the_source(cfg_on):
    dropped = [rec for _, rec, keep in RECORDS if not keep]
    with pytest.raises(DatasetError, match='my_train.json'):
        JointsDataset(cfg_on, dropped, is_train=True, source='my_train.json')
    # The same records are fine for validation and with the filter off.
    assert len(JointsDataset(cfg_on, dropped, is_train=False)) == len(dropped)


def test_experiment_yaml_coco(repo_root):
    yaml = os.path.join(repo_root, 'experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml')
    cfg = load_config(yaml, ['DATASET.SELECT_DATA', 'true'])
    assert cfg.MODEL.NUM_JOINTS == 17
    recs = [record('coco_in', around(37, 16), k=17), record('coco_out', around(39, 16), k=17)]
    assert names(JointsDataset(cfg, recs, is_train=True)) == ['coco_in']


def test_mpii_training_set_is_filtered_after_the_load_adjustments(tmp_path):
    """Through MPIIDataset: the filter sees the adjusted records (c_y + 15 s, s x 1.25, -1).

    Both persons: centre (100, 100), scale 1 -> c = (99, 114), s = 1.25, area 62500, so
    ks = exp(-d^2 / 5000) against metric 0.6375 (16 visible joints).
    'near': joints at (100, 130) -> (99, 129), d 15, ks 0.956: kept.
    'far': joints at (100, 60) -> (99, 59), d 55, ks 0.546: dropped (it would be kept without
    the 15 s shift: d 40, ks 0.726).
    """
    def person(name, y):
        return {'image': name, 'center': [100, 100], 'scale': 1.0,
                'joints': [[100, y]] * K, 'joints_vis': [1] * K}

    ann = tmp_path / 'train.json'
    ann.write_text(json.dumps([person('near.jpg', 130), person('far.jpg', 60)]))
    cfg = load_config(None, ['DATASET.SELECT_DATA', 'true'])
    train = MPIIDataset(cfg, is_train=True, ann_file=str(ann), image_dir=str(tmp_path))
    assert [os.path.basename(r['image']) for r in train.db] == ['near.jpg']
    valid = MPIIDataset(cfg, is_train=False, ann_file=str(ann), image_dir=str(tmp_path))
    assert len(valid) == 2
    off = MPIIDataset(load_config(None), is_train=True, ann_file=str(ann), image_dir=str(tmp_path))
    assert len(off) == 2
