"""posekit.models.complexity (parameter/MAC counter) and pose_estimation/model_info.py.

(a) tiny networks whose counts are worked out by hand below;
(b) every row of the shared ``models.json`` (counted by running the PyTorch reference code): our
    experiment yaml at the same path must give the same parameters, true MACs and reference-rule
    MACs, exactly;
(c) the command-line tool.
"""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from conftest import FIXTURES, ROOT, require_fixtures
from posekit.models.complexity import count_complexity
from posekit.config import load_config
from posekit.models import build_model, model_label

# ---------------------------------------------------------------------------------------------
# (a) hand-checked tiny networks


def test_single_conv2d():
    # Conv 3->8, k3, stride 2, pad 1 on 3x10x12 (H=10, W=12): output 8x5x6.
    # MACs per output element = Cin * kh * kw = 3*3*3 = 27; 8*5*6 = 240 outputs -> 6480.
    # Params: 8*3*3*3 weights + 8 biases = 224.
    conv = nn.Conv2D(3, 8, 3, stride=2, padding=1)
    info = count_complexity(conv, [12, 10])
    assert info['output_shape'] == [1, 8, 5, 6]
    assert info['macs'] == 6480
    assert info['macs_ref_rule'] == 6480  # the reference rule is exact for convolutions
    assert info['params'] == 224
    assert info['macs_breakdown'] == {'conv2d': 6480, 'conv_transpose2d': 0, 'linear': 0,
                                      'n_conv2d': 1, 'n_conv_transpose2d': 0, 'n_linear': 0}
    assert info['gmacs'] == pytest.approx(6480 / 1e9)
    assert info['gflops_ref'] == pytest.approx(6480 / 2 ** 30)


def test_grouped_depthwise_conv2d():
    # Depthwise-style conv 3->6, groups 3, k3, pad 1 on 3x4x5: output 6x4x5 = 120 elements, each a
    # sum over Cin/groups = 1 channel x 9 taps -> 1080 MACs.
    info = count_complexity(nn.Conv2D(3, 6, 3, padding=1, groups=3, bias_attr=False), [5, 4])
    assert info['macs'] == 1080
    assert info['macs_ref_rule'] == 1080
    assert info['params'] == 6 * 1 * 3 * 3


def test_grouped_conv2d_transpose():
    # 1x1 conv 3->4 on 3x5x7: 4*5*7 = 140 outputs x 3 -> 420 MACs.
    # Deconv 4->6, groups 2, k4, stride 2, pad 1: input 4x5x7 (140 elements), output 6x10x14.
    # Every input element is scattered into Cout/groups * kh * kw = 3*4*4 = 48 outputs
    # -> 140 * 48 = 6720 true MACs (weight shape (Cin, Cout/g, kh, kw) = (4, 3, 4, 4); using
    # Cin/g = 2 instead would give 4480, so the test tells the two apart).
    # Reference rule: prod(weight.shape) * Hout * Wout = 192 * 140 = 26880 = 4x the true count.
    model = nn.Sequential(
        nn.Conv2D(3, 4, 1, bias_attr=False),
        nn.Conv2DTranspose(4, 6, 4, stride=2, padding=1, groups=2, bias_attr=False),
    )
    info = count_complexity(model, [7, 5])
    assert info['output_shape'] == [1, 6, 10, 14]
    assert info['macs_breakdown'] == {'conv2d': 420, 'conv_transpose2d': 6720, 'linear': 0,
                                      'n_conv2d': 1, 'n_conv_transpose2d': 1, 'n_linear': 0}
    assert info['macs'] == 420 + 6720
    assert info['macs_ref_rule'] == 420 + 4 * 6720
    assert info['params'] == 4 * 3 + 4 * 3 * 4 * 4


def test_linear_layers():
    # Global pool -> 3 features; Linear 3->5 (15 MACs), ReLU, Linear 5->2 (10 MACs) = 25.
    # Params: 3*5 + 5 + 5*2 + 2 = 32.
    model = nn.Sequential(nn.AdaptiveAvgPool2D(1), nn.Flatten(), nn.Linear(3, 5), nn.ReLU(),
                          nn.Linear(5, 2))
    info = count_complexity(model, [6, 4])
    assert info['output_shape'] == [1, 2]
    assert info['macs'] == 25
    assert info['macs_ref_rule'] == 25
    assert info['macs_breakdown']['linear'] == 25 and info['macs_breakdown']['n_linear'] == 2
    assert info['params'] == 32
    assert info['elementwise_counts']['relu_output_elems'] == 5


class _Residual(nn.Layer):
    """conv(bias) -> BN -> ReLU layer, + input, functional ReLU."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2D(3)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.bn(self.conv(x)))
        return nn.functional.relu(y + x)


def test_elementwise_counts_and_params():
    # Input 3x4x5 = 60 elements; conv 3->3 k3 pad 1: 60 * 27 = 1620 MACs (its bias add happens
    # inside Paddle and is not counted). BN 60, ReLU layer 60 + functional ReLU 60, add 60.
    # Params: conv 81 + 3, BN weight/bias 3 + 3 = 90 (running mean/variance are not parameters).
    info = count_complexity(_Residual(), [5, 4])
    assert info['macs'] == 1620
    assert info['elementwise_counts'] == {'bn_output_elems': 60, 'relu_output_elems': 120,
                                          'add_output_elems': 60}
    assert info['macs_plus_bn_relu_add'] == 1620 + 60 + 120 + 60
    assert info['params'] == 90
    assert info['params_ref_summary'] == 90


def _state(model):
    return {k: np.array(v.numpy()) for k, v in model.state_dict().items()}


def test_model_left_unchanged():
    model = _Residual()
    model.train()
    before = _state(model)
    originals = (paddle.Tensor.__add__, paddle.add, nn.functional.relu)
    count_complexity(model, [5, 4])
    assert all(layer.training for layer in model.sublayers(include_self=True))
    assert all(not layer._forward_post_hooks for layer in model.sublayers(include_self=True))
    assert (paddle.Tensor.__add__, paddle.add, nn.functional.relu) == originals
    after = _state(model)
    assert sorted(after) == sorted(before)
    for key in before:  # BN statistics included: the pass ran in eval mode
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    # Counting twice gives the same numbers (nothing accumulates on the model).
    assert count_complexity(model, [5, 4]) == count_complexity(model, [5, 4])


def test_cleanup_after_failing_forward():
    class Broken(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2D(3, 3, 1)

        def forward(self, x):
            self.conv(x) + x
            raise RuntimeError('boom')

    model = Broken()
    original_add = paddle.Tensor.__add__
    with pytest.raises(RuntimeError, match='boom'):
        count_complexity(model, [4, 4])
    assert paddle.Tensor.__add__ is original_add
    assert not model.conv._forward_post_hooks and not model._forward_post_hooks
    assert model.training


# ---------------------------------------------------------------------------------------------
# (b) every model of the shared reference table

def _fixture_rows():
    path = os.path.join(FIXTURES, 'models.json')
    if not os.path.exists(path):
        return [pytest.param(None, id='no-fixtures')]
    with open(path, 'r', encoding='utf-8') as f:
        rows = json.load(f)['models']
    return [pytest.param(row, id=row['name']) for row in rows]


class _Counter:
    """Counts per (model, input size), keeping one model alive at a time.

    Rows that share a network (e.g. PoseResNet-50 at 256x192 and 384x288, LPN-18 and LPN-18h) are
    adjacent in models.json, so each network is built once.
    """

    def __init__(self):
        self.key = None
        self.model = None
        self.results = {}

    def __call__(self, cfg):
        key = json.dumps([cfg.MODEL.NAME, cfg.MODEL.STYLE, cfg.MODEL.NUM_JOINTS, cfg.MODEL.EXTRA],
                         sort_keys=True)
        size = tuple(cfg.MODEL.IMAGE_SIZE)
        if (key, size) not in self.results:
            if key != self.key:
                self.model = None  # free the previous network before building the next
                self.model = build_model(cfg, is_train=False)
                self.key = key
            self.results[(key, size)] = count_complexity(self.model, cfg.MODEL.IMAGE_SIZE)
        return self.results[(key, size)]


@pytest.fixture(scope='module')
def counter():
    c = _Counter()
    yield c
    c.model = None


@pytest.mark.parametrize('row', _fixture_rows())
def test_reference_model_counts(row, counter):
    require_fixtures('models.json')
    cfg_file = os.path.join(ROOT, row['config'])
    if not os.path.exists(cfg_file):
        pytest.skip('our experiment yaml %s does not exist (yet)' % row['config'])
    cfg = load_config(cfg_file)
    h, w = row['input_hw']
    assert list(cfg.MODEL.IMAGE_SIZE) == [w, h], 'MODEL.IMAGE_SIZE of %s' % row['config']
    assert cfg.MODEL.NUM_JOINTS == row['num_joints'], 'MODEL.NUM_JOINTS of %s' % row['config']

    info = counter(cfg)
    ours = {
        'params_trainable': info['params'],
        'macs': info['macs'],
        'macs_ref_rule': info['macs_ref_rule'],
        'macs_breakdown': info['macs_breakdown'],
        'macs_plus_bn_relu_add': info['macs_plus_bn_relu_add'],
        'output_shape_batch1': info['output_shape'],
        'ref_total_params': info['params_ref_summary'],
    }
    expected = {k: row[k] for k in ours if k in row}
    expected['ref_total_params'] = row['ref_get_model_summary']['total_params']
    assert ours == expected, '%s (%s)' % (row['name'], model_label(cfg))
    # What the READMEs print as "GFLOPs".
    assert info['gflops_ref'] == pytest.approx(row['macs_ref_rule_GiB'], rel=1e-12)


# ---------------------------------------------------------------------------------------------
# (c) pose_estimation/model_info.py

SMALL_EXPERIMENT = 'experiments/coco/lpn/lpn18h_256x192_gd256x2_gc.yaml'
TOOL = os.path.join(ROOT, 'pose_estimation', 'model_info.py')


def _run(*args):
    return subprocess.run([sys.executable, TOOL] + list(args), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_model_info_json():
    if not os.path.exists(os.path.join(ROOT, SMALL_EXPERIMENT)):
        pytest.skip('%s does not exist (yet)' % SMALL_EXPERIMENT)
    proc = _run('--cfg', SMALL_EXPERIMENT, '--json')
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    cfg = load_config(os.path.join(ROOT, SMALL_EXPERIMENT))
    expected = count_complexity(build_model(cfg), cfg.MODEL.IMAGE_SIZE)
    assert info['params'] == expected['params'] == 508473  # LPN-18h, spec 4.6
    assert info['macs'] == expected['macs']
    assert info['heatmap_shape'] == [1, 17, 64, 48]
    assert info['image_size'] == [192, 256]
    assert info['model'] == 'lpn_18h'


def test_model_info_table_and_override():
    if not os.path.exists(os.path.join(ROOT, SMALL_EXPERIMENT)):
        pytest.skip('%s does not exist (yet)' % SMALL_EXPERIMENT)
    proc = _run('--cfg', SMALL_EXPERIMENT, 'MODEL.EXTRA.NUM_LAYERS', '50')
    assert proc.returncode == 0, proc.stderr
    assert 'lpn_50' in proc.stdout
    assert '2,911,153' in proc.stdout  # LPN-50 COCO params, spec 4.6
    assert '[1, 17, 64, 48]' in proc.stdout


@pytest.mark.parametrize('case', ['missing', 'unknown_key'])
def test_model_info_bad_cfg(case, tmp_path):
    if case == 'missing':
        cfg_file = str(tmp_path / 'does_not_exist.yaml')
    else:
        cfg_file = str(tmp_path / 'bad.yaml')
        with open(cfg_file, 'w', encoding='utf-8') as f:
            f.write('MODEL:\n  NAME: pose_resnet\n  NUM_JOINT: 17\n')
    proc = _run('--cfg', cfg_file, '--json')
    assert proc.returncode == 2
    assert proc.stdout == ''
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert 'error' in lines[0]
    assert ('not found' in lines[0]) if case == 'missing' else ('NUM_JOINTS' in lines[0])
