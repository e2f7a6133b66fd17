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


def test_real_checkpoint_finds_a_person():
    """With the inferred strides and ReLU6, the released weights give the confident heatmaps the
    architecture was recovered from (REFERENCE_SPEC 4.4: mean peak 0.464 on the [PD] test image)."""
    cv2 = pytest.importorskip('cv2')
    ref = _checkpoint_state_dict()
    image = cv2.imread(require_fixtures('real', 'paddle', 'test.jpg'))  # BGR, as [SN] was trained
    h, w = image.shape[:2]
    # Whole image as the box, widened to 3:4 and enlarged 1.25x (the [MS] box convention).
    box_h = max(h, w / 0.75) * 1.25
    box_w = box_h * 0.75
    cx, cy = w / 2.0, h / 2.0
    src = np.float32([[cx - box_w / 2, cy - box_h / 2], [cx + box_w / 2, cy - box_h / 2],
                      [cx - box_w / 2, cy + box_h / 2]])
    dst = np.float32([[0, 0], [192, 0], [0, 256]])
    crop = cv2.warpAffine(image, cv2.getAffineTransform(src, dst), (192, 256), flags=cv2.INTER_LINEAR)
    x = (crop.astype(np.float32) / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    x = x.transpose(2, 0, 1)[None].astype(np.float32)

    model = build_model(sn_cfg())
    model.set_state_dict(ref)
    model.eval()
    heatmaps = forward(model, x)
    assert heatmaps.shape == (1, 17, 64, 48)
    peaks = heatmaps.reshape(17, -1).max(axis=1)
    assert abs(peaks.mean() - 0.464) < 0.01, peaks.mean()


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
