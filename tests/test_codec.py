"""The numpy heatmap codec and geometry, against the reference fixtures and by construction."""
import cv2
import numpy as np
import pytest

from conftest import require_fixtures
from posekit.codec.heatmap import (flip_back, fuse_flip, generate_target, get_final_preds, get_max_preds)
from posekit.data.descriptors import DATASETS
from posekit.codec.transforms import (affine_points, box_to_center_scale, crop, get_affine_transform,
                                normalize, transform_preds)


def postproc(name):
    return np.load(require_fixtures('postproc', name))


def test_affine_transform_matches_reference():
    d = postproc('get_affine_transform.npz')
    for i in range(len(d['center'])):
        for o, size in enumerate(d['output_sizes']):
            for inv in (0, 1):
                t = get_affine_transform(d['center'][i], d['scale'][i], d['rot'][i], size, inv=inv)
                np.testing.assert_allclose(t, d['trans'][i, o, inv], rtol=0, atol=1e-9)
            pts = affine_points(d['pts'][i], d['trans'][i, o, 0])
            np.testing.assert_allclose(pts, d['pts_affine'][i, o], rtol=0, atol=1e-9)


def test_generate_target_matches_reference():
    d = postproc('generate_target.npz')
    for i in range(len(d['joints'])):
        target, weight = generate_target(d['joints'][i], d['joints_vis'][i], d['image_size'],
                                         d['heatmap_size'], int(d['sigma']))
        np.testing.assert_array_equal(target, d['target'][i])
        np.testing.assert_array_equal(weight, d['target_weight'][i])


@pytest.mark.parametrize('name', ['get_final_preds.npz', 'get_final_preds_mixed_sign.npz'])
def test_final_preds_match_reference(name):
    d = postproc(name)
    coords, maxvals = get_final_preds(d['heatmaps'], d['center'], d['scale'])
    np.testing.assert_allclose(coords, d['coords'], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(maxvals, d['maxvals'])
    if 'argmax_coords' in d.files:
        np.testing.assert_array_equal(get_max_preds(d['heatmaps'])[0], d['argmax_coords'])


def test_soft_argmax_matches_reference():
    d = postproc('get_final_preds.npz')
    s = postproc('get_final_preds_softargmax.npz')
    coords, maxvals = get_final_preds(d['heatmaps'], d['center'], d['scale'],
                                      soft_argmax_beta=float(s['beta']))
    np.testing.assert_allclose(coords, s['coords'], rtol=0, atol=1e-3)
    np.testing.assert_allclose(maxvals, s['maxvals'], rtol=0, atol=1e-6)


@pytest.mark.parametrize('ds', ['coco', 'mpii'])
def test_flip_back_matches_reference_and_keeps_input(ds):
    d = postproc('flip_back.npz')
    x = d[ds + '_in'].copy()
    out = flip_back(x, d[ds + '_flip_pairs'])
    np.testing.assert_array_equal(out, d[ds + '_out'])
    np.testing.assert_array_equal(x, d[ds + '_in'])  # unlike the reference, no side effect
    assert [list(p) for p in d[ds + '_flip_pairs']] == [list(p) for p in DATASETS[ds].flip_pairs]


def test_encode_then_decode_round_trip():
    # joints on the heatmap grid (multiples of the stride 4) come back exactly
    joints = np.array([[40, 60, 0], [100, 20, 0], [8, 240, 0]], dtype=np.float64)
    vis = np.ones_like(joints)
    vis[:, 2] = 0
    target, weight = generate_target(joints, vis, [192, 256], [48, 64], 2)
    coords, maxvals = get_max_preds(target[None])
    np.testing.assert_array_equal(coords[0], joints[:, :2] / 4)
    assert np.all(maxvals == 1.0) and np.all(weight == 1)


def test_decode_maps_back_through_the_crop():
    center, scale = box_to_center_scale(100, 50, 90, 160, aspect_ratio=192 / 256)
    joint_img = np.array([[150.0, 120.0]])
    trans = get_affine_transform(center, scale, 0, [192, 256])
    joint_crop = affine_points(joint_img, trans)
    target, _ = generate_target(np.c_[joint_crop, [0]], np.ones((1, 3)), [192, 256], [48, 64], 2)
    preds, _ = get_final_preds(target[None], center[None], scale[None], post_process=True)
    # the decoded joint lands within one heatmap pixel (4 crop px = 4/k image px) of the truth
    k = 192 / (scale[0] * 200)
    assert np.abs(preds[0, 0] - joint_img[0]).max() <= 4 / k
    # transform_preds is the exact inverse at heatmap scale
    hm = affine_points(joint_img, get_affine_transform(center, scale, 0, [48, 64]))
    np.testing.assert_allclose(transform_preds(hm, center, scale, [48, 64]), joint_img, atol=1e-3)


def test_fuse_flip_shifts_right_and_keeps_column_zero():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    f = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    pairs = [[0, 1]]
    back = flip_back(f, pairs)
    fused = fuse_flip(a, f, pairs, shift=True)
    np.testing.assert_allclose(fused[..., 1:], (a[..., 1:] + back[..., :-1]) / 2)
    np.testing.assert_allclose(fused[..., 0], (a[..., 0] + back[..., 0]) / 2)
    np.testing.assert_allclose(fuse_flip(a, f, pairs, shift=False), (a + back) / 2)


def test_box_to_center_scale_pads_to_aspect_ratio():
    c, s = box_to_center_scale(10, 20, 100, 100, aspect_ratio=0.75)
    np.testing.assert_allclose(c, [60, 70])
    np.testing.assert_allclose(s, [100 / 200 * 1.25, 100 / 0.75 / 200 * 1.25], rtol=1e-6)
    c, s = box_to_center_scale(0, 0, 300, 100, aspect_ratio=0.75)
    np.testing.assert_allclose(s, [300 / 200 * 1.25, 400 / 200 * 1.25], rtol=1e-6)


def test_normalize_keeps_bgr_order_unless_asked():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255  # blue in OpenCV's BGR order
    bgr = normalize(img)
    assert bgr.shape == (3, 2, 3)
    np.testing.assert_allclose(bgr[0], (1 - 0.485) / 0.229, rtol=1e-6)  # channel 0 stays blue
    rgb = normalize(img, color_rgb=True)
    np.testing.assert_allclose(rgb[2], (1 - 0.406) / 0.225, rtol=1e-6)  # blue moved to channel 2
    raw = normalize(img, pixel_scale=1.0)  # the Paddle port's un-scaled quirk
    np.testing.assert_allclose(raw[0], (255 - 0.485) / 0.229, rtol=1e-6)


def test_crop_output_size_and_content():
    img = np.zeros((100, 80, 3), np.uint8)
    img[40:60, 30:50] = 200
    center, scale = box_to_center_scale(0, 0, 80, 100, aspect_ratio=0.75, padding=1.0)
    out = crop(img, center, scale, 0, [48, 64])
    assert out.shape == (64, 48, 3)
    assert out[32, 24].max() == 200 and out[2, 2].max() == 0


def test_mirrored_crop_equals_the_crop_of_the_mirrored_image():
    """Training flips fold the mirror into the affine map instead of copying the image."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (5, 5), 0)  # smooth, so interpolation rounding stays small
    for center, scale, rot in (((60.0, 40.0), (0.5, 0.5), 0.0), ((70.3, 47.9), (0.4, 0.55), 23.0)):
        center, scale = np.array(center), np.array(scale)
        want = crop(np.ascontiguousarray(image[:, ::-1]), center, scale, rot, [48, 64])
        got = crop(image, center, scale, rot, [48, 64], mirror=True)
        assert np.abs(want.astype(int) - got.astype(int)).max() <= 1
        # and it is not the unmirrored crop
        plain = crop(image, center, scale, rot, [48, 64])
        assert np.abs(plain.astype(int) - got.astype(int)).mean() > 5
