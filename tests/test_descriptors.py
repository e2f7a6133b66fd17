"""Dataset descriptors (posekit.data.descriptors) and model names (posekit.models).

The descriptor is the only place that knows a dataset by name; these tests pin its facts (the
values the reference code uses) and the resolution of ``DATASET.DATASET`` names.
"""
import os
import types

import numpy as np
import pytest

import posekit.data
from posekit.config import load_config
from posekit.data import build_dataset
from posekit.data.descriptors import (COCO, COCO_FLIP_PAIRS, COCO_JOINTS, COCO_SKELETON, DATASETS, MPII,
                                      MPII_FLIP_PAIRS, MPII_JOINTS, MPII_MAT_JOINTS, MPII_SKELETON,
                                      UnknownDatasetError, dataset_info)
from posekit.data.synthetic import FORMATS
from posekit.errors import PosekitInputError
from posekit.evaluation import pckh
from posekit.evaluation.oks import COCO_SIGMAS
from posekit.evaluation.validate import evaluate_predictions
from posekit.models import arch_name, model_label, model_names, model_tag

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('name, expected', [
    ('mpii', MPII), ('MPII', MPII), ('mpii_synthetic', MPII),
    ('coco', COCO), ('coco_synthetic', COCO), ('COCO2017', COCO)])
def test_names_resolve_by_prefix(name, expected):
    assert dataset_info(name) is expected


@pytest.mark.parametrize('name', ['', None, 'crowdpose', 'lsp', 'xcoco'])
def test_unknown_name_is_one_line_input_error(name):
    with pytest.raises(UnknownDatasetError) as e:
        dataset_info(name)
    assert isinstance(e.value, PosekitInputError) and isinstance(e.value, ValueError)
    msg = str(e.value)
    assert '\n' not in msg and 'coco' in msg and 'mpii' in msg


def test_joint_count_decides_when_given():
    assert dataset_info('coco', num_joints=17) is COCO
    assert dataset_info('mpii', num_joints=17) is COCO    # a COCO-sized model, default DATASET
    assert dataset_info('coco_synthetic', num_joints=16) is MPII
    assert dataset_info(None, num_joints=16) is MPII
    assert dataset_info('lsp', num_joints=17) is COCO
    with pytest.raises(UnknownDatasetError, match='no dataset has 14 joints'):
        dataset_info('mpii', num_joints=14)


def _side(joint_name):
    for prefix, side in (('left_', 'left'), ('right_', 'right'), ('l_', 'left'), ('r_', 'right')):
        if joint_name.startswith(prefix):
            return side, joint_name[len(prefix):]
    return None, joint_name


@pytest.mark.parametrize('info', list(DATASETS.values()), ids=list(DATASETS))
def test_descriptor_is_consistent(info):
    k = info.num_joints
    seen = [j for pair in info.flip_pairs for j in pair]
    assert len(seen) == len(set(seen)), 'a joint in two flip pairs'
    for a, b in info.flip_pairs:
        # one name is the mirror of the other (r_/l_ in MPII, left_/right_ in COCO)
        (side_a, part_a), (side_b, part_b) = _side(info.joint_names[a]), _side(info.joint_names[b])
        assert part_a == part_b and {side_a, side_b} == {'left', 'right'}
    unpaired = [n for j, n in enumerate(info.joint_names) if j not in seen]
    assert all(_side(n)[0] is None for n in unpaired)
    assert all(0 <= a < k and 0 <= b < k for a, b in info.skeleton)
    assert all(0 <= j < k for j in info.upper_body_ids)
    assert info.metric in ('pckh', 'coco_ap')
    assert (info.oks_sigmas is not None) == (info.metric == 'coco_ap')
    if info.oks_sigmas is not None:
        assert len(info.oks_sigmas) == k
    assert info.synthetic_format in FORMATS
    cls = getattr(posekit.data, info.dataset_class)
    assert cls.info is info and cls.flip_pairs == info.flip_pairs
    assert cls.upper_body_ids == info.upper_body_ids
    with pytest.raises(Exception):
        info.metric = 'other'  # frozen


def test_facts_match_the_reference():
    # the half-body augmentation's upper body (reference MPIIDataset / COCODataset)
    assert [MPII.joint_names[j] for j in MPII.upper_body_ids] == [
        'thorax', 'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder', 'l_shoulder',
        'l_elbow', 'l_wrist']
    assert [COCO.joint_names[j] for j in COCO.upper_body_ids] == COCO_JOINTS[:11]
    assert (MPII.metric, COCO.metric) == ('pckh', 'coco_ap')
    assert (MPII.dataset_class, COCO.dataset_class) == ('MPIIDataset', 'COCODataset')
    # the COCO evaluation's sigmas, bit for bit
    ref = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                    1.07, 1.07, .87, .87, .89, .89]) / 10.0
    np.testing.assert_array_equal(np.array(COCO.oks_sigmas), ref)
    np.testing.assert_array_equal(COCO_SIGMAS, ref)
    # the constants and the descriptors are the same facts
    assert list(MPII.joint_names) == MPII_JOINTS and list(COCO.joint_names) == COCO_JOINTS
    assert [list(p) for p in MPII.flip_pairs] == MPII_FLIP_PAIRS
    assert [list(p) for p in COCO.flip_pairs] == COCO_FLIP_PAIRS
    assert [list(p) for p in MPII.skeleton] == MPII_SKELETON
    assert [list(p) for p in COCO.skeleton] == COCO_SKELETON
    assert pckh.MPII_MAT_JOINTS is MPII_MAT_JOINTS and len(MPII_MAT_JOINTS) == pckh.NUM_JOINTS == 16


def test_build_dataset_rejects_unknown_name():
    cfg = load_config(None, ['DATASET.DATASET', 'crowdpose'])
    with pytest.raises(UnknownDatasetError, match="unknown DATASET.DATASET 'crowdpose'"):
        build_dataset(cfg)


@pytest.mark.parametrize('name, written', [
    ('mpii_synthetic', 'pred.mat'),
    ('coco_synthetic', os.path.join('results', 'keypoints_test2017_results.json'))])
def test_metric_is_chosen_by_the_descriptor(tmp_path, name, written):
    """Test sets have no ground truth: only the metric's prediction file is written."""
    info = dataset_info(name)
    cfg = load_config(None, ['DATASET.DATASET', name, 'MODEL.NUM_JOINTS', str(info.num_joints)])
    k = info.num_joints
    preds = np.concatenate([np.full((2, k, 2), 10.0), np.full((2, k, 1), 0.9)], axis=2)
    result = {'preds': preds, 'boxes': np.tile([[10, 10, 1, 1, 40000, 1]], (2, 1)).astype(float),
              'images': ['images/000000000785.jpg', 'images/000000000786.jpg']}
    dataset = types.SimpleNamespace(image_set='test2017' if info is COCO else 'test')
    name_values, perf = evaluate_predictions(cfg, dataset, result, str(tmp_path))
    assert perf == 0.0 and list(name_values) == ['Null']
    assert os.path.isfile(os.path.join(tmp_path, written))
    other = 'pred.mat' if info is COCO else 'results'
    assert not os.path.exists(os.path.join(tmp_path, other))


# -- model names: one dispatch, facts in the model modules ----------------------------------------

# Folder tag, model_info label, result-table row label: pinned (runs, exports and tables use them).
NAMES = [
    ('experiments/mpii/resnet50/256x256_d256x3_adam_lr1e-3.yaml', [],
     'pose_resnet_50', 'pose_resnet_50', '256x256_pose_resnet_50_d256d256d256'),
    ('experiments/mpii/resnet50/256x256_d256x3_adam_lr1e-3.yaml', ['MODEL.STYLE', 'caffe'],
     'pose_resnet_50', 'pose_resnet_50 (caffe style)', '256x256_pose_resnet_50_d256d256d256'),
    ('experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml', [], 'lpn', 'lpn_50', '256x192_lpn'),
    (None, ['MODEL.NAME', 'lpn', 'MODEL.EXTRA.NUM_LAYERS', '18'], 'lpn', 'lpn_18h', '256x256_lpn'),
    (None, ['MODEL.NAME', 'lpn', 'MODEL.EXTRA.NUM_LAYERS', '18', 'MODEL.EXTRA.BASIC_GROUP_WIDTH', '1',
            'MODEL.EXTRA.ATTENTION', 'SE'], 'lpn', 'lpn_18 (SE attention)', '256x256_lpn'),
    (None, ['MODEL.NAME', 'lpn', 'MODEL.EXTRA.ATTENTION', 'NONE'], 'lpn', 'lpn_50 (no attention)',
     '256x256_lpn'),
    ('experiments/coco/hrnet/w18_small_v1_256x192_adam_lr1e-3.yaml', [],
     'pose_hrnet', 'pose_hrnet_w18_small_v1', '256x192_pose_hrnet'),
    ('experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml', [],
     'pose_hrnet', 'pose_hrnet_w32', '256x192_pose_hrnet'),
    ('experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml', [],
     'simplenet', 'simplenet', '256x192_simplenet'),
]


@pytest.mark.parametrize('cfg_file, opts, tag, label, arch', NAMES)
def test_model_names(cfg_file, opts, tag, label, arch):
    cfg = load_config(os.path.join(ROOT, cfg_file) if cfg_file else None, opts)
    assert (model_tag(cfg), model_label(cfg), arch_name(cfg)) == (tag, label, arch)


def test_every_model_module_names_itself():
    from posekit.models import model_module
    for name in model_names():
        module = model_module(name)
        assert callable(module.model_tag) and callable(module.model_label), name
