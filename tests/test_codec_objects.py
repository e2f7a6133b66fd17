"""The codec objects (posekit.codec): InputSpec and TopDownHeatmapCodec, their serialised forms
and the deploy config built from them (including folders exported by posekit 0.1)."""
import json

import numpy as np
import pytest

from conftest import ROOT, require_fixtures
from posekit.codec import InputSpec, TopDownHeatmapCodec, codec_from_dict, input_spec_from_dict
from posekit.codec import heatmap, transforms
from posekit.config import load_config
from posekit.inference.deploy_config import DeployConfig, DeployConfigError

COCO_CFG = ROOT + '/experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml'
PAIRS = [[1, 2], [3, 4]]


def test_encode_then_decode_gives_the_keypoints_back():
    """Joints on heatmap pixels, encoded as targets and decoded with the inverse crop, come back
    exactly (no sub-pixel step: a symmetric Gaussian has equal neighbours)."""
    rng = np.random.default_rng(0)
    codec = TopDownHeatmapCodec([192, 256], [48, 64], sigma=2, flip_pairs=PAIRS)
    spec = InputSpec([192, 256])
    box = [40.0, 30.0, 120.0, 200.0]
    _, meta = spec.prepare(np.zeros((300, 240, 3), np.uint8), [box])
    hm_xy = np.stack([rng.integers(3, 45, 5), rng.integers(3, 61, 5)], axis=1).astype(np.float64)
    joints = np.concatenate([hm_xy * 4, np.zeros((5, 1))], axis=1)  # input-crop pixels
    target, weight = codec.encode(joints, np.ones((5, 3)))
    assert target.shape == (5, 64, 48) and weight.ravel().tolist() == [1] * 5
    keypoints = codec.keypoints(target[None], meta)
    expected = transforms.transform_preds(hm_xy, meta['centers'][0], meta['scales'][0], [48, 64])
    np.testing.assert_allclose(keypoints[0, :, :2], expected, atol=1e-4)
    np.testing.assert_allclose(keypoints[0, :, 2], 1.0)


@pytest.mark.parametrize('options', [{}, {'post_process': False}, {'soft_argmax': True, 'bias': 1.0},
                                     {'dark': True}, {'dark': True, 'sigma': 3}])
def test_decode_is_get_final_preds_with_the_codec_options(options):
    d = np.load(require_fixtures('postproc', 'get_final_preds.npz'))
    codec = TopDownHeatmapCodec([192, 256], [48, 64], **options)
    got = codec.decode(d['heatmaps'], d['center'], d['scale'])
    want = heatmap.get_final_preds(
        d['heatmaps'], d['center'], d['scale'], post_process=options.get('post_process', True),
        soft_argmax_beta=heatmap.SOFT_ARGMAX_BETA if options.get('soft_argmax') else None,
        bias=options.get('bias', 0.0), dark=options.get('dark', False),
        dark_kernel=heatmap.dark_kernel_size(options.get('sigma', 2)))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_flip_test_uses_the_codec_pairs_and_shift():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 6)).astype(np.float32)

    def run(batch):  # a fake network whose maps depend on the input's left/right layout
        return np.repeat(batch[:, :1], 5, axis=1) * np.arange(1, 6)[None, :, None, None]
    codec = TopDownHeatmapCodec([6, 8], [6, 8], flip_pairs=PAIRS, shift_heatmap=False)
    np.testing.assert_array_equal(codec.flip_test(run, x, flip=False), run(x))
    np.testing.assert_array_equal(codec.flip_test(run, x),
                                  heatmap.fuse_flip(run(x), run(x[..., ::-1].copy()), PAIRS, False))


def test_input_spec_is_the_reference_crop_and_normalisation():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    spec = InputSpec([96, 128], color_rgb=True, pixel_scale=255.0)
    boxes = [[10, 12, 40, 60, 0.9], [0, 0, 90, 120, 1.0]]
    inputs, meta = spec.prepare(image, boxes)
    assert inputs.shape == (2, 3, 128, 96) and inputs.dtype == np.float32
    for i, b in enumerate(boxes):
        c, s = transforms.box_to_center_scale(*b[:4], aspect_ratio=96 / 128.0)
        crop = transforms.crop(image, c, s, 0, [96, 128])
        np.testing.assert_array_equal(inputs[i], transforms.normalize(crop, True))
        np.testing.assert_array_equal(meta['centers'][i], c)
    whole, meta = spec.prepare(image)
    np.testing.assert_array_equal(whole[0], inputs[1])
    np.testing.assert_array_equal(meta['boxes'], [[0, 0, 90, 120]])


def test_serialised_forms_round_trip_and_name_their_type():
    spec = InputSpec([192, 256], color_rgb=True, pixel_scale=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    codec = TopDownHeatmapCodec([192, 256], [48, 64], sigma=3, flip_pairs=PAIRS, dark=True)
    assert input_spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert codec_from_dict(json.loads(json.dumps(codec.to_dict()))) == codec
    assert codec.to_dict()['type'] == 'topdown_heatmap' and codec.dark_kernel == 17
    with pytest.raises(ValueError, match='unknown codec type'):
        codec_from_dict({'type': 'bottomup_nothing'})
    with pytest.raises(ValueError, match='exclusive'):
        TopDownHeatmapCodec([192, 256], [48, 64], dark=True, soft_argmax=True)


def test_codec_and_spec_follow_the_config():
    cfg = load_config(COCO_CFG, ['TEST.SOFT_ARGMAX', 'true', 'TEST.BIAS', '0.5',
                                 'DATASET.COLOR_RGB', 'true', 'MODEL.SIGMA', '3'])
    codec = TopDownHeatmapCodec.from_cfg(cfg, PAIRS)
    spec = InputSpec.from_cfg(cfg)
    assert codec.input_size == [192, 256] and codec.heatmap_size == [48, 64]
    assert codec.soft_argmax and codec.bias == 0.5 and codec.sigma == 3.0
    assert codec.flip_pairs == PAIRS and spec.color_rgb and spec.input_size == [192, 256]


def _v1_dict(dc):
    """What posekit 0.1's export.py wrote for the same model (flat fields, version 1)."""
    s, c = dc.input_spec, dc.codec
    return {'format': 'posekit-deploy', 'version': 1, 'model': dc.model, 'input_name': 'image',
            'output_name': 'heatmaps', 'input_size': s.input_size,
            'heatmap_size': c.heatmap_size, 'color_rgb': s.color_rgb,
            'pixel_scale': s.pixel_scale, 'mean': s.mean, 'std': s.std, 'dataset': dc.dataset,
            'joint_names': dc.joint_names, 'flip_pairs': c.flip_pairs, 'skeleton': dc.skeleton,
            'post_process': c.post_process, 'shift_heatmap': c.shift_heatmap,
            'soft_argmax': c.soft_argmax, 'bias': c.bias, 'dark': c.dark,
            'dark_kernel': c.dark_kernel, 'flip_test': dc.flip_test, 'num_joints': dc.num_joints}


def test_deploy_config_is_spec_codec_and_joints(tmp_path):
    dc = DeployConfig.from_cfg(load_config(COCO_CFG))
    data = dc.to_dict()
    assert data['version'] == 2 and data['input'] == dc.input_spec.to_dict()
    assert data['codec'] == dc.codec.to_dict() and data['num_joints'] == 17
    path = dc.save(str(tmp_path / 'deploy_config.json'))
    assert DeployConfig.load(path) == dc


def test_a_version_1_deploy_config_still_loads(tmp_path):
    dc = DeployConfig.from_cfg(load_config(COCO_CFG, ['TEST.DARK', 'true']))
    path = tmp_path / 'deploy_config.json'
    path.write_text(json.dumps(_v1_dict(dc)))
    old = DeployConfig.load(str(path))
    # version 1 had no sigma (only training needs it); everything that decodes is the same
    assert old.input_spec == dc.input_spec and old.joint_names == dc.joint_names
    assert {k: v for k, v in old.codec.to_dict().items() if k != 'sigma'} == \
        {k: v for k, v in dc.codec.to_dict().items() if k != 'sigma'}
    bad = dict(_v1_dict(dc))
    del bad['heatmap_size']
    path.write_text(json.dumps(bad))
    with pytest.raises(DeployConfigError, match='lacks heatmap_size; re-export'):
        DeployConfig.load(str(path))
    path.write_text(json.dumps(dict(dc.to_dict(), version=3)))
    with pytest.raises(DeployConfigError, match='re-export'):
        DeployConfig.load(str(path))


def test_deploy_config_for_another_input_size():
    dc = DeployConfig.from_cfg(load_config(COCO_CFG))
    big = dc.with_input_size(288, 384)
    assert big.input_size == [288, 384] and big.heatmap_size == [72, 96]
    with pytest.raises(DeployConfigError, match='multiple of the heatmap stride'):
        dc.with_input_size(290, 384)
