"""The bottom-up (SimplePose) input spec and codec objects (SIMPLEPOSE_SPEC 6.1, fixtures
``simplepose/postproc`` and ``simplepose/e2e``): the network input the reference built, the
serialised forms, the flip test contract and keypoints from the reference's network outputs."""
import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from conftest import require_fixtures
from posekit.codec import (BottomUpInputSpec, BottomUpPartsCodec, codec_from_dict,
                           input_spec_from_dict)
from posekit.codec.bottomup import maps
from posekit.codec.bottomup.layout import FLIP_HEAT_ORDER, FLIP_PAF_ORDER
from posekit.config import ConfigError
from posekit.errors import PosekitInputError


def _image(name):
    return cv2.imread(os.path.join(require_fixtures('real', 'coco'), name))


def _postproc():
    folder = require_fixtures('simplepose', 'postproc')
    with open(os.path.join(folder, 'postproc.json')) as f:
        ref = json.load(f)
    return ref, np.load(os.path.join(folder, 'postproc_net_out.npz'))


def _e2e():
    folder = require_fixtures('simplepose', 'e2e')
    with open(os.path.join(folder, 'e2e_196141_seed5_ss0.25.json')) as f:
        ref = json.load(f)
    return ref, np.load(os.path.join(folder, 'e2e_196141_seed5_ss0.25.npz'))


def test_forms_round_trip_through_json_and_the_registry():
    spec = BottomUpInputSpec(scale=0.5, flip=False)
    codec = BottomUpPartsCodec(thre1=0.2, remove_recon=1)
    assert input_spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert codec_from_dict(json.loads(json.dumps(codec.to_dict()))) == codec
    assert spec.to_dict()['type'] == 'bottomup_whole_image'
    assert codec.to_dict()['type'] == 'bottomup_parts'
    assert BottomUpPartsCodec() != codec and BottomUpInputSpec() != spec
    d = BottomUpPartsCodec().to_dict()
    assert (d['thre1'], d['thre2'], d['connect_ratio'], d['mid_num'], d['len_rate'],
            d['connection_tole'], d['offset_radius'], d['stride']) == (0.1, 0.1, 0.8, 20, 16.0,
                                                                       0.7, 2, 4)
    assert BottomUpInputSpec().to_dict()['max_size'] == [3800, 2600]     # [W, H]


def test_bad_options_and_images_are_one_line_errors():
    with pytest.raises(ConfigError, match='unknown bottom-up grouping option'):
        BottomUpPartsCodec(thre=0.1)
    with pytest.raises(ConfigError):
        BottomUpPartsCodec(mid_num=0)
    with pytest.raises(ConfigError):
        BottomUpInputSpec(scale=0)
    with pytest.raises(ConfigError):
        BottomUpInputSpec(max_size=[100])
    spec = BottomUpInputSpec()
    with pytest.raises(PosekitInputError, match='H x W x 3'):
        spec.prepare(np.zeros((10, 10), np.uint8))
    with pytest.raises(PosekitInputError, match='uint8'):
        spec.prepare(np.zeros((10, 10, 3), np.float32))


def test_prepare_matches_the_reference_input_sizes():
    ref, _ = _postproc()
    spec = BottomUpInputSpec()
    for im in ref['images'].values():
        inputs, meta = spec.prepare(_image(im['file_name']), boxes=[[1, 2, 3, 4]])   # ignored
        hp, wp = im['padded_hw']
        assert inputs.shape == (2, 3, hp, wp) and inputs.dtype == np.float32
        assert meta['image_size'] == [im['W'], im['H']]
        assert meta['factor'] == pytest.approx(im['scale'], abs=0)
        assert meta['resized_size'] == im['resized_hw'][::-1]
        assert meta['padded_size'] == [wp, hp] and meta['pad'] == im['pad']
        assert list(im['net_out_shape'][2:]) == [hp // 4, wp // 4]
        np.testing.assert_array_equal(inputs[1], inputs[0][:, :, ::-1])
        # padding: grey 128 / 255 at the right of the resized picture
        assert np.all(inputs[0][:, :, im['resized_hw'][1]:] == np.float32(128 / 255))


def test_prepare_reproduces_the_reference_network_input():
    ref, npz = _e2e()
    spec = BottomUpInputSpec(scale=ref['scale_search'][0])
    inputs, meta = spec.prepare(_image(ref['image']))
    nhwc = np.ascontiguousarray(inputs.transpose(0, 2, 3, 1))
    assert list(nhwc.shape) == ref['input_shape']
    assert hashlib.sha256(nhwc.tobytes()).hexdigest() == ref['input_sha256']
    np.testing.assert_array_equal(np.float32(npz['input_uint8'] / 255), nhwc)
    assert meta['factor'] == ref['multiplier']
    assert meta['padded_size'] == [256, 192] and meta['resized_size'] == [239, 160]
    # no flip: the picture alone
    single, _ = BottomUpInputSpec(scale=0.25, flip=False).prepare(_image(ref['image']))
    np.testing.assert_array_equal(single, inputs[:1])


def test_resize_factor_is_clamped_to_the_reference_limits():
    assert maps.test_scale((400, 600)) == 640 / 400
    f = maps.test_scale((200, 3000))                 # 3.2 x 3000 > 3800
    assert f == min(2600 / 200, 3800 / 3000)
    f = maps.test_scale((100, 100), scale=30)        # 19200 > 2600
    assert f == 26.0


def test_flip_test_runs_the_pair_once_and_fuses_it():
    rng = np.random.default_rng(0)
    raw = rng.random((2, 50, 6, 8)).astype(np.float32)
    calls = []

    def run(x):
        calls.append(x.shape)
        return raw[:len(x)]
    codec = BottomUpPartsCodec()
    batch = np.zeros((2, 3, 24, 32), np.float32)
    fused = codec.flip_test(run, batch, flip=True)
    assert calls == [(2, 3, 24, 32)] and fused.shape == (1, 50, 6, 8)
    back = raw[1][:, :, ::-1]
    np.testing.assert_array_equal(fused[0, :30],
                                  (raw[0, :30] + back[:30][list(FLIP_PAF_ORDER)]) / 2)
    np.testing.assert_array_equal(fused[0, 30:],
                                  (raw[0, 30:] + back[30:][list(FLIP_HEAT_ORDER)]) / 2)
    calls.clear()
    np.testing.assert_array_equal(codec.flip_test(run, batch, flip=False), raw[:1])
    assert calls == [(1, 3, 24, 32)]
    # a batch without the mirror gets it made here
    seen = []
    codec.flip_test(lambda x: (seen.append(x.copy()), raw)[1], batch[:1] + 1, flip=True)
    assert seen[0].shape == (2, 3, 24, 32)
    with pytest.raises(ValueError, match='expected'):
        codec.flip_test(lambda x: raw[:, :20], batch, flip=True)


def test_keypoints_from_the_reference_network_output():
    ref, npz = _postproc()
    spec, codec = BottomUpInputSpec(), BottomUpPartsCodec()
    for image_id, im in ref['images'].items():
        _, meta = spec.prepare(_image(im['file_name']))
        net = npz['net_out_' + image_id].astype(np.float32)
        kps = codec.keypoints(net, meta)
        want = np.array(im['clean']['keypoints'])
        assert kps.shape == (len(want), 17, 3) and kps.dtype == np.float32
        np.testing.assert_allclose(kps[:, :, :2], want, rtol=0, atol=1e-4)
        # fused first (flip_test's output) or fused inside: the same people
        fused = codec.flip_test(lambda x: net, np.zeros((2, 3, 1, 1), np.float32))
        result = codec.decode(fused, meta)
        np.testing.assert_array_equal(result.keypoints.astype(np.float32), kps)
        np.testing.assert_allclose(result.scores, im['clean']['scores'], rtol=0, atol=1e-5)
        # joint scores: the refined peak scores of the joints' candidates
        cand = np.array(im['clean']['candidate'])
        subset = np.array(im['clean']['subset'])
        ids = subset[0, 0, 0].astype(int)                    # the nose of person 0
        assert kps[0, 0, 2] == pytest.approx(cand[ids, 2], abs=1e-6)


def test_keypoints_on_the_seeded_network_output_end_to_end():
    ref, npz = _e2e()
    spec = BottomUpInputSpec(scale=ref['scale_search'][0])
    _, meta = spec.prepare(_image(ref['image']))
    result = BottomUpPartsCodec().decode(npz['net_out_last_stack_scale0'], meta)
    assert len(result) == 111
    np.testing.assert_allclose(result.keypoints[:, :, :2], np.array(ref['keypoints']), rtol=0,
                               atol=1e-4)
    np.testing.assert_allclose(result.scores, ref['scores'], rtol=0, atol=1e-5)
