"""DARK decoding (Zhang et al., CVPR 2020): accuracy on sub-pixel peaks, the default left
unchanged, robustness on degenerate maps, and the ``TEST.DARK`` switch."""
import numpy as np
import pytest

from conftest import require_fixtures
from posekit.config import load_config
from posekit.codec import TopDownHeatmapCodec
from posekit.codec.heatmap import (dark_kernel_size, dark_refine, generate_target,
                             get_final_preds, get_max_preds, quarter_offset)
from posekit.codec.transforms import transform_preds

W, H = 48, 64  # heatmap [W, H] of a 192x256 input, stride 4
STRIDE = 4


def gaussian_maps(points, sigma, amplitude=1.0, noise=0.0, rng=None):
    """(1, N, H, W) unnormalised Gaussians centred on sub-pixel ``points`` (N, 2) -- the shape
    DARK assumes a trained network outputs."""
    yy, xx = np.mgrid[0:H, 0:W]
    d2 = (xx[None] - points[:, 0, None, None]) ** 2 + (yy[None] - points[:, 1, None, None]) ** 2
    maps = np.asarray(amplitude).reshape(-1, 1, 1) * np.exp(-d2 / (2.0 * sigma ** 2))
    if noise:
        maps = maps + noise * rng.standard_normal(maps.shape)
    return maps.astype(np.float32)[None]


def interior_points(rng, n, margin=8):
    return rng.uniform([margin, margin], [W - 1 - margin, H - 1 - margin], size=(n, 2))


def mean_error(coords, points):
    return float(np.linalg.norm(coords[0] - points, axis=1).mean())


def test_kernel_size_follows_sigma():
    assert dark_kernel_size(2) == 11
    assert dark_kernel_size(3) == 17
    assert dark_kernel_size(0.1) == 3
    for sigma in (1, 1.5, 2, 2.5, 3, 4):
        assert dark_kernel_size(sigma) % 2 == 1


@pytest.mark.parametrize('sigma', [2, 3])
@pytest.mark.parametrize('noise', [0.0, 0.01])
def test_dark_beats_quarter_step_on_subpixel_peaks(sigma, noise):
    rng = np.random.default_rng(sigma * 10 + int(noise * 100))
    points = interior_points(rng, 200)
    maps = gaussian_maps(points, sigma, amplitude=rng.uniform(0.5, 1.0, 200), noise=noise, rng=rng)
    argmax, _ = get_max_preds(maps)
    dark = dark_refine(maps, argmax, dark_kernel_size(sigma))
    quarter = quarter_offset(maps, argmax.copy())
    err_dark, err_quarter = mean_error(dark, points), mean_error(quarter, points)
    assert err_quarter > 0.15  # the quarter step is ~0.2 px off on average
    assert err_dark < 0.1
    assert err_dark < 0.5 * err_quarter
    if not noise:
        assert err_dark < 1e-3  # a blurred Gaussian stays Gaussian: the log is exactly quadratic


def test_dark_round_trip_through_get_final_preds():
    """Image keypoints -> sub-pixel heatmap peaks -> get_final_preds(dark=True) -> image."""
    rng = np.random.default_rng(1)
    n = 50
    points_hm = interior_points(rng, n)
    maps = gaussian_maps(points_hm, 2)
    # A crop whose heatmap maps to image pixels by x_img = c + (x_hm - W/2) * 200 s / W.
    center = np.array([[400.0, 300.0]])
    scale = np.array([[W * STRIDE / 200.0, H * STRIDE / 200.0]])
    truth = transform_preds(points_hm, center[0], scale[0], [W, H])
    dark, maxvals = get_final_preds(maps, center, scale, dark=True, dark_kernel=11)
    quarter, maxvals_q = get_final_preds(maps, center, scale)
    err_dark = np.linalg.norm(dark[0] - truth, axis=1).mean() / STRIDE
    err_quarter = np.linalg.norm(quarter[0] - truth, axis=1).mean() / STRIDE
    assert err_dark < 0.1 < err_quarter
    np.testing.assert_array_equal(maxvals, maxvals_q)  # confidences are the argmax values


def test_dark_keeps_generate_target_centres():
    """generate_target centres its Gaussian on the *rounded* heatmap location (REFERENCE_SPEC
    2.5), so the map is symmetric about an integer pixel: DARK must return that pixel, as argmax
    and the quarter step do (the sub-pixel part of the keypoint is not in the target at all)."""
    rng = np.random.default_rng(2)
    joints = np.zeros((30, 3))
    joints[:, :2] = interior_points(rng, 30) * STRIDE
    target, weight = generate_target(joints, np.ones((30, 3)), [W * STRIDE, H * STRIDE], [W, H], 2)
    assert weight.min() == 1
    maps = target[None]
    argmax, _ = get_max_preds(maps)
    encoded = np.floor(joints[:, :2] / STRIDE + 0.5)
    np.testing.assert_array_equal(argmax[0], encoded)
    np.testing.assert_allclose(dark_refine(maps, argmax, 11), argmax, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(quarter_offset(maps, argmax.copy()), argmax)


def test_dark_is_vectorised_consistently():
    rng = np.random.default_rng(3)
    maps = gaussian_maps(interior_points(rng, 6), 2, noise=0.02, rng=rng).reshape(2, 3, H, W)
    coords, _ = get_max_preds(maps)
    batched = dark_refine(maps, coords, 11)
    for b in range(2):
        for k in range(3):
            one = dark_refine(maps[b:b + 1, k:k + 1], coords[b:b + 1, k:k + 1], 11)
            np.testing.assert_array_equal(batched[b, k], one[0, 0])
    assert batched.shape == coords.shape and batched.dtype == coords.dtype


def random_maps(seed=4, shape=(3, 5, H, W)):
    rng = np.random.default_rng(seed)
    peaks = gaussian_maps(interior_points(rng, shape[0] * shape[1]), 2)[0].reshape(shape)
    maps = peaks + 0.1 * rng.standard_normal(shape).astype(np.float32)
    center = rng.uniform(100, 500, (shape[0], 2))
    scale = rng.uniform(0.5, 2.0, (shape[0], 2))
    return maps, center, scale


def to_image(coords, center, scale):
    return np.stack([transform_preds(coords[i], center[i], scale[i], [W, H])
                     for i in range(len(coords))])


def test_dark_off_gives_the_old_result():
    maps, center, scale = random_maps()
    # The reference path written out: argmax, quarter step, inverse crop.
    coords, maxvals = get_max_preds(maps)
    quarter_offset(maps, coords)
    expected = to_image(coords, center, scale)
    for kwargs in ({}, {'dark': False}, {'dark': False, 'dark_kernel': 17}):
        preds, vals = get_final_preds(maps, center, scale, **kwargs)
        np.testing.assert_array_equal(preds, expected)
        np.testing.assert_array_equal(vals, maxvals)
    plain, _ = get_final_preds(maps, center, scale, post_process=False, dark=False)
    np.testing.assert_array_equal(plain, to_image(get_max_preds(maps)[0], center, scale))
    dark, _ = get_final_preds(maps, center, scale, dark=True)
    assert not np.array_equal(dark, expected)


@pytest.mark.parametrize('name', ['get_final_preds.npz', 'get_final_preds_mixed_sign.npz'])
def test_dark_off_matches_reference_fixtures(name):
    d = np.load(require_fixtures('postproc', name))
    coords, maxvals = get_final_preds(d['heatmaps'], d['center'], d['scale'], dark=False)
    np.testing.assert_allclose(coords, d['coords'], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(maxvals, d['maxvals'])
    dark, dark_vals = get_final_preds(d['heatmaps'], d['center'], d['scale'], dark=True)
    assert np.isfinite(dark).all()
    np.testing.assert_array_equal(dark_vals, d['maxvals'])


def degenerate_maps():
    maps = np.zeros((1, 8, H, W), dtype=np.float32)
    maps[0, 1] = 0.5                       # constant
    maps[0, 2] = -1.0                      # all negative
    maps[0, 3, 20, 20] = 1.0               # single-pixel spike
    maps[0, 4, 10:15, 10:15] = 1.0         # plateau, argmax at its corner
    maps[0, 5, 0, W - 1] = 1.0             # peak in the corner
    maps[0, 6, 1, 7] = 1.0                 # peak one pixel from the border
    maps[0, 7] = np.float32(1e-30)         # underflows the log clamp
    return maps


def test_degenerate_maps_give_finite_coordinates():
    maps = degenerate_maps()
    argmax, _ = get_max_preds(maps)
    refined = dark_refine(maps, argmax, 11)
    assert np.isfinite(refined).all()
    assert np.abs(refined - argmax).max() <= 1.0
    # Nothing to refine: zero, constant, negative, tiny maps and border peaks keep the argmax.
    for k in (0, 1, 2, 5, 7):
        np.testing.assert_array_equal(refined[0, k], argmax[0, k])
    np.testing.assert_allclose(refined[0, 3], argmax[0, 3], atol=1e-6)  # symmetric spike
    preds, vals = get_final_preds(maps, np.array([[100.0, 100.0]]), np.array([[1.0, 1.0]]),
                                  dark=True)
    assert np.isfinite(preds).all() and np.isfinite(vals).all()


@pytest.mark.parametrize('shape', [(1, 2, 1, 1), (1, 2, 2, 5), (1, 1, 3, 3)])
def test_tiny_maps_do_not_crash(shape):
    maps = np.random.default_rng(5).random(shape).astype(np.float32)
    coords, _ = get_max_preds(maps)
    refined = dark_refine(maps, coords, 11)
    assert refined.shape == coords.shape and np.isfinite(refined).all()


def test_empty_batch():
    coords = np.zeros((0, 2, 2), dtype=np.float32)
    assert dark_refine(np.zeros((0, 2, 8, 8), np.float32), coords, 11).shape == (0, 2, 2)


def test_bad_kernel_is_rejected():
    maps = degenerate_maps()
    with pytest.raises(ValueError, match='odd'):
        dark_refine(maps, get_max_preds(maps)[0], 10)


def decode_from_cfg(maps, center, scale, cfg):
    """The codec object built from a config, as validation builds it."""
    return TopDownHeatmapCodec.from_cfg(cfg, ()).decode(maps, center, scale)


def test_soft_argmax_and_dark_are_exclusive():
    maps, center, scale = random_maps()
    with pytest.raises(ValueError, match='exclusive'):
        get_final_preds(maps, center, scale, soft_argmax_beta=160.0, dark=True)
    cfg = load_config(None, ['TEST.DARK', 'true', 'TEST.SOFT_ARGMAX', 'true'])
    with pytest.raises(ValueError, match='TEST.DARK'):
        decode_from_cfg(maps, center, scale, cfg)


def test_codec_from_cfg_honours_test_dark():
    maps, center, scale = random_maps()
    default = get_final_preds(maps, center, scale)[0]
    off = decode_from_cfg(maps, center, scale, load_config(None))[0]
    np.testing.assert_array_equal(off, default)
    on = decode_from_cfg(maps, center, scale, load_config(None, ['TEST.DARK', 'true']))[0]
    np.testing.assert_array_equal(on, get_final_preds(maps, center, scale, dark=True,
                                                      dark_kernel=11)[0])
    assert not np.array_equal(on, default)
    # The kernel follows MODEL.SIGMA (17 for sigma 3); POST_PROCESS does not matter under DARK.
    cfg3 = load_config(None, ['TEST.DARK', 'true', 'MODEL.SIGMA', '3',
                              'TEST.POST_PROCESS', 'false'])
    on3 = decode_from_cfg(maps, center, scale, cfg3)[0]
    np.testing.assert_array_equal(on3, get_final_preds(maps, center, scale, dark=True,
                                                       dark_kernel=17)[0])
    assert not np.array_equal(on3, on)
