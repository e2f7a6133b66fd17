"""Bottom-up ground truth (SIMPLEPOSE_SPEC 4.1, 4.3): the encoder and the annotation pipeline
against the reference fixtures ``encode_handmade.*``, plus small hand-checked cases."""

import cv2
import numpy as np
import pytest

from conftest import simplepose_encode_fixture
from posekit.codec.bottomup.encode import BottomUpEncoder
from posekit.codec.bottomup.layout import BKG_START, HEAT_START, LIMBS, NUM_CHANNELS
from posekit.data.bottomup.annotations import (coco_to_ours, image_instances, remap_visibility,
                                               select_main_persons, person_records)


@pytest.fixture(scope='module')
def handmade():
    return simplepose_encode_fixture('handmade')


@pytest.fixture(scope='module')
def encoder():
    return BottomUpEncoder((512, 512))


def test_handmade_heatmaps_match_reference(handmade, encoder):
    data, _ = handmade
    out = encoder.encode(data['joints18'].astype(np.float32), data['mask_all_in'])
    ref = data['heatmaps']
    assert out.shape == (NUM_CHANNELS, 128, 128) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    # window extents exactly (round half to even decides them)
    np.testing.assert_array_equal(out > 0, ref > 0)
    assert np.count_nonzero(ref[:HEAT_START]) and np.count_nonzero(ref[HEAT_START:BKG_START])


def test_handmade_annotation_pipeline_matches_reference(handmade):
    data, meta = handmade
    anns = meta['annotations']
    keypoints = np.array([a['keypoints'] for a in anns], dtype=np.float64).reshape(-1, 17, 3)
    np.testing.assert_array_equal(keypoints, data['coco_keypoints'])
    instances = image_instances(anns, 512)
    ref = meta['instances']
    # 3 main persons [A, B, C] thanks to the stale-radius quirk; D is never main but included
    assert [i['people_index'] for i in instances] == [r['people_index'] for r in ref] == [0, 1, 2]
    for got, exp in zip(instances, ref):
        np.testing.assert_array_equal(got['objpos'], np.array(exp['objpos']))
        np.testing.assert_array_equal(got['scale_provided'], np.array(exp['scale_provided']))
        np.testing.assert_array_equal(got['joints'], np.array(exp['joints']))
    np.testing.assert_array_equal(instances[0]['joints18'], data['joints18'])


def test_main_person_radius_fix_changes_selection(handmade):
    _, meta = handmade
    records = person_records(meta['annotations'], 512)
    assert select_main_persons(records, 'last') == [0, 1, 2]
    # A's own radius (0.3 x 340 px) covers B's centre (91 px away): B is no longer main
    assert select_main_persons(records, 'own') == [0, 2]


def test_visibility_remap_and_neck():
    assert remap_visibility([2, 1, 0]).tolist() == [1.0, 0.0, 2.0]
    joints = np.zeros((2, 17, 3))
    joints[:, :, 2] = 2
    joints[0, 5] = (10, 20, 1)   # Lsho visible
    joints[0, 6] = (30, 40, 0)   # Rsho occluded
    joints[1, 5] = (10, 20, 1)   # Rsho unlabelled
    ours = coco_to_ours(joints)
    assert ours.shape == (2, 18, 3)
    np.testing.assert_array_equal(ours[0, 1], [20, 30, 0])
    np.testing.assert_array_equal(ours[1, 1], [0, 0, 2])
    np.testing.assert_array_equal(ours[0, 2], joints[0, 6])  # ours Rsho = COCO 6
    np.testing.assert_array_equal(ours[0, 5], joints[0, 5])  # ours Lsho = COCO 5


def _person(points):
    joints = np.zeros((1, 18, 3), dtype=np.float32)
    joints[0, :, 2] = 2
    for p, (x, y) in points.items():
        joints[0, p] = (x, y, 1)
    return joints


def test_keypoint_window_rounds_half_to_even(encoder):
    # x = 10 -> x / 4 = 2.5 rounds to 2: window columns [0, 10); x = 14 -> 3.5 -> 4: [0, 12)
    for x, last in ((10.0, 9), (14.0, 11)):
        out = encoder.encode(_person({0: (x, 200.0)}))
        cols = np.nonzero(out[HEAT_START].any(axis=0))[0]
        assert cols.min() == 0 and cols.max() == last
        assert out[BKG_START + 1].max() == out[HEAT_START].max()


def test_unlabelled_and_far_joints_draw_nothing(encoder):
    joints = _person({0: (-100.0, 50.0), 5: (50.0, 50.0)})
    joints[0, 5, 2] = 2  # unlabelled: skipped even though inside
    out = encoder.encode(joints)
    assert not out.any()


def test_limb_average_and_floor(encoder):
    # limb 9 = neck -> Rsho; a horizontal limb at y = 201.5 (on a cell centre row)
    one = _person({1: (101.5, 201.5), 2: (181.5, 201.5)})
    out = encoder.encode(one)
    k = LIMBS.index((1, 2))
    row = out[k, 50]  # cell centre y = 4 * 50 + 1.5
    assert row[25] == pytest.approx(1.0) and row[45] == pytest.approx(1.0)
    # box: the joints' extent +- 4 px in cells, Python round: rows 49..51, columns 24..46
    rows, cols = np.nonzero(out[k])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (49, 51, 24, 46)
    # the same limb twice: averaging keeps it; an overlapping far limb dilutes with 0.01s
    two = np.concatenate([one, one])
    np.testing.assert_allclose(encoder.encode(two)[k], out[k], atol=1e-7)
    # a tilted limb whose box covers cell (50, 30) 34 px from its line: value floored to 0.01,
    # and the floor counts in the average
    other = _person({1: (101.5, 121.5), 2: (181.5, 221.5)})
    mixed = encoder.encode(np.concatenate([one, other]))
    assert encoder.encode(other)[k, 50, 30] == pytest.approx(0.01)
    assert mixed[k, 50, 30] == pytest.approx((1.0 + 0.01) / 2)


def test_zero_length_limb_skipped(encoder):
    out = encoder.encode(_person({14: (100.0, 100.0), 16: (100.0, 100.0)}))
    k = LIMBS.index((14, 16))
    assert not out[k].any()
    assert out[HEAT_START + 14].max() > 0.9


def test_mask_channel_eroded_not_at_border(encoder):
    mask = np.zeros((128, 128), np.float32)
    mask[0:10, 0:10] = 1
    mask[50:60, 50:60] = 1
    out = encoder.encode(np.zeros((0, 18, 3)), mask)
    ch = out[BKG_START]
    assert ch[0, 0] == 1 and ch[8, 8] == 1 and ch[9, 9] == 0      # border kept, inner edge eroded
    assert ch[50, 50] == 0 and ch[51:59, 51:59].all() and ch[50:60, 50:60].sum() == 64


def test_non_square_input():
    enc = BottomUpEncoder((256, 128))
    out = enc.encode(_person({0: (250.0, 10.0)}))
    assert out.shape == (NUM_CHANNELS, 32, 64)
    y, x = np.unravel_index(np.argmax(out[HEAT_START]), out.shape[1:])
    assert (y, x) == (2, 62)


def _loop_encode(joints, mask):
    """The encoding written as plain per-person loops, the way the reference is structured
    (SIMPLEPOSE_SPEC 4.3): a check that the vectorised encoder keeps every rounding step."""
    joints = np.asarray(joints, np.float32)
    maps = np.zeros((NUM_CHANNELS, 128, 128), np.float32)
    grid = np.arange(128) * 4 + 1.5
    div = np.array([162], np.float32)
    for p in range(18):
        for x, y in joints[joints[:, p, 2] < 2, p, :2]:
            cx, cy = round(x / 4), round(y / 4)
            if cy + 8 < 0 or cx + 8 < 0:
                continue
            x0, y0 = max(cx - 7, 0), max(cy - 7, 0)
            ex = np.exp(-(grid[x0:cx + 8].astype(np.float32) - x) ** 2 / div)
            ey = np.exp(-(grid[y0:cy + 8].astype(np.float32) - y) ** 2 / div)
            win = maps[HEAT_START + p, y0:cy + 8, x0:cx + 8]
            win[...] = np.maximum(win, np.outer(ey, ex))
    for k, (fr, to) in enumerate(LIMBS):
        vis = (joints[:, fr, 2] < 2) & (joints[:, to, 2] < 2)
        count = np.zeros((128, 128), np.float32)
        for (x1, y1), (x2, y2) in zip(joints[vis, fr, :2], joints[vis, to, :2]):
            dx, dy = x2 - x1, y2 - y1
            if dx * dx + dy * dy == 0:
                continue
            c0, c1 = round((min(x1, x2) - 4) / 4), round((max(x1, x2) + 4) / 4)
            r0, r1 = round((min(y1, y2) - 4) / 4), round((max(y1, y2) + 4) / 4)
            if r1 < 0 or c1 < 0:
                continue
            c0, r0 = max(c0, 0), max(r0, 0)
            X, Y = np.meshgrid(grid[c0:c1 + 1], grid[r0:r1 + 1])
            d = np.abs(dx * (y1 - Y) - (x1 - X) * dy) / (np.sqrt(float(dx ** 2 + dy ** 2)) + 1e-6)
            g = np.exp(-d ** 2 / 98)
            g[g <= 0.015] = 0.01
            maps[k, r0:r1 + 1, c0:c1 + 1] += g
            count[r0:r1 + 1, c0:c1 + 1] += 1
        maps[k][count > 0] /= count[count > 0]
    maps[BKG_START] = cv2.erode(mask, np.ones((3, 3), np.uint8))
    maps[BKG_START + 1] = maps[HEAT_START:BKG_START].max(axis=0)
    return np.clip(maps, 0, 1)


def test_matches_plain_loops_on_random_crowds(encoder):
    rng = np.random.default_rng(1)
    for case in range(12):
        n = int(rng.integers(1, 8))
        joints = np.zeros((n, 18, 3))
        # coordinates on quarter / half / whole pixels (ties for the rounding), inside and
        # outside the 512 x 512 input, mixed visibilities, a zero-length limb now and then
        step = rng.choice([1, 2, 4, 10], size=(n, 18, 1))
        joints[..., :2] = np.round(rng.uniform(-60, 570, (n, 18, 2)) * step) / step
        joints[..., 2] = rng.choice([0, 1, 2], (n, 18), p=[0.2, 0.6, 0.2])
        if case % 3 == 0:
            joints[0, 14] = joints[0, 16]
        mask = (rng.random((128, 128)) > 0.5).astype(np.float32)
        out = encoder.encode(joints, mask)
        ref = _loop_encode(joints, mask)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(out > 0, ref > 0)
