"""SimpleNet (REFERENCE_SPEC 4.4): size, key layout of the real [SN] checkpoint, options."""
import numpy as np
import paddle
import pytest

from conftest import require_fixtures
from posekit.config import load_config
from posekit.models import build_model
from posekit.models.layers import count_parameters

CHECKPOINT = ('real', 'simplenet_coco_256x192_model_best.pth.tar')


def sn_cfg(*opts):
    return load_config(None, ['MODEL.NAME', 'simplenet', 'MODEL.NUM_JOINTS', '17'] + list(opts))


@pytest.fixture(scope='module')
def simplenet():
    model = build_model(sn_cfg())
    model.eval()
    return model


def forward(model, x):
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def test_parameter_count(simplenet):
    assert count_parameters(simplenet) == 578097


def test_output_stride_4(simplenet):
    x = np.random.default_rng(0).standard_normal((1, 3, 128, 96)).astype('float32')
    assert forward(simplenet, x).shape == (1, 17, 32, 24)


def test_residual_blocks(simplenet):
    # MobileNetV2 rule (stride 1 and in == out): blocks 3, 5, 7, 8, 10, 12 of REFERENCE_SPEC 4.4.
    residual = [i for i in range(1, 14) if simplenet.features[i].use_residual]
    assert residual == [3, 5, 7, 8, 10, 12]


def _checkpoint_state_dict():
    torch = pytest.importorskip('torch')
    sd = torch.load(require_fixtures(*CHECKPOINT), map_location='cpu', weights_only=True)
    out = {}
    for key, value in sd.items():
        if key.endswith('num_batches_tracked'):
            continue
        assert key.startswith('module.')
        key = key[len('module.'):].replace('running_mean', '_mean').replace('running_var', '_variance')
        out[key] = value.numpy()
    return out


def test_state_dict_matches_real_checkpoint(simplenet):
    ref = _checkpoint_state_dict()
    ours = simplenet.state_dict()
    assert list(ref) == list(ours)  # same names, same order
    for key, value in ref.items():
        assert tuple(ours[key].shape) == value.shape, key


def test_relu_activation():
    model = build_model(sn_cfg('MODEL.EXTRA.ACTIVATION', 'relu'))
    model.eval()
    kinds = {type(m).__name__ for m in model.features.sublayers()}
    assert 'ReLU' in kinds and 'ReLU6' not in kinds
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype('float32')
    assert forward(model, x).shape == (1, 17, 16, 16)
    assert 'ReLU6' in {type(m).__name__ for m in build_model(sn_cfg()).features.sublayers()}


def test_invalid_activation():
    with pytest.raises(ValueError, match='ACTIVATION.*swish'):
        build_model(sn_cfg('MODEL.EXTRA.ACTIVATION', 'swish'))


def test_invalid_block_row():
    with pytest.raises(ValueError, match=r'BLOCKS\[1\]'):
        build_model(sn_cfg('MODEL.EXTRA.BLOCKS', '[[64, 16, 1], [32, 24, 3]]'))
