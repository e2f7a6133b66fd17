"""Bottom-up training data (SIMPLEPOSE_SPEC 4.1, 4.2): masks, main persons and augmentation
against the reference fixtures ``encode_augmented.*`` and ``augment_random_draws.json``, and the
COCO dataset built from json + images (from a config and from arguments)."""
import json
import os
import random
import shutil

import cv2
import numpy as np
import pytest

from conftest import real_coco_root, require_fixtures, simplepose_encode_fixture
from posekit.codec.bottomup.encode import BottomUpEncoder
from posekit.codec.bottomup.layout import BKG_START, NUM_CHANNELS
from posekit.config import ConfigError, load_config
from posekit.data.base import DatasetError
from posekit.data.bottomup import (AugmentSelection, BottomUpCOCODataset, augment_sample,
                                   image_instances, load_coco_images, make_masks)
from posekit.data.loader import build_loader, pixels_to_unit

# pycocotools' mask decoding trips a numpy 2 deprecation inside pycocotools itself
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')

IMAGE_ID = 196141
PREFIXES = {'aug_': 'aug', 'aug_tint_': 'aug_tint'}


@pytest.fixture(scope='module')
def augmented():
    return simplepose_encode_fixture('augmented')


@pytest.fixture(scope='module')
def real():
    return require_fixtures('real', 'coco')


@pytest.fixture(scope='module')
def image_196141(real):
    for im, anns in load_coco_images(os.path.join(real, 'test_coco.json')):
        if im['id'] == IMAGE_ID:
            return im, anns
    raise AssertionError('image %d not in test_coco.json' % IMAGE_ID)


def _aug(meta, key):
    a = meta['augmentations'][key]
    return AugmentSelection(a['flip'], a['tint'], a['degree'], a['crop'], a['scale'])


def _check_image(got, ref):
    # cv2 warps may differ by one grey level across OpenCV versions (fixtures README 2)
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) / diff.size < 0.01


def _check_sample(data, prefix, image, miss, all_, joints, M, heatmaps):
    np.testing.assert_allclose(M, data[prefix + 'M'], rtol=0, atol=1e-12)
    np.testing.assert_allclose(joints, data[prefix + 'joints18_out'], rtol=0, atol=1e-9)
    _check_image(image, data[prefix + 'image_uint8'])
    np.testing.assert_allclose(miss, data[prefix + 'mask_miss'], rtol=0, atol=1.01 / 255)
    np.testing.assert_allclose(all_, data[prefix + 'mask_all'], rtol=0, atol=1.01 / 255)
    ref = data[prefix + 'heatmaps']
    np.testing.assert_allclose(np.delete(heatmaps, BKG_START, 0), np.delete(ref, BKG_START, 0),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(heatmaps[BKG_START], ref[BKG_START], rtol=0, atol=1.01 / 255)


def test_make_mask_matches_reference(augmented, image_196141, real):
    data, _ = augmented
    im, anns = image_196141
    image = cv2.imread(os.path.join(real, im['file_name']))
    np.testing.assert_array_equal(image, data['image_bgr_uint8'])
    mask_miss, mask_all = make_masks(anns, im['height'], im['width'])
    np.testing.assert_array_equal(np.dstack([mask_miss, mask_all]), data['mask_concat_uint8'])
    # one annotation has no keypoints: its region is excluded from supervision
    assert (mask_miss == 0).any() and set(np.unique(mask_miss)) == {0, 255}


def test_instances_match_reference(augmented, image_196141):
    data, meta = augmented
    _, anns = image_196141
    instances = image_instances(anns, meta['hdf5_image_size_used_for_scale_provided'])
    ref = meta['instances']
    assert [i['people_index'] for i in instances] == [r['people_index'] for r in ref]
    assert [i['people_index'] for i in instances] == [0, 1, 3, 4]
    for got, exp in zip(instances, ref):
        np.testing.assert_array_equal(got['objpos'], np.array(exp['objpos']))
        np.testing.assert_array_equal(got['scale_provided'], np.array(exp['scale_provided']))
        np.testing.assert_array_equal(got['joints'], np.array(exp['joints']))
    for prefix in PREFIXES:
        np.testing.assert_array_equal(instances[0]['joints18'], data[prefix + 'joints18_in'])


@pytest.mark.parametrize('prefix', sorted(PREFIXES))
def test_augmented_sample_matches_reference(augmented, image_196141, prefix):
    data, meta = augmented
    im, anns = image_196141
    inst = image_instances(anns, 512)[0]
    aug = _aug(meta, PREFIXES[prefix])
    M, scale_size = aug.affine(inst['objpos'][0], inst['scale_provided'][0], (512, 512))
    assert scale_size == pytest.approx(meta['augmentations'][PREFIXES[prefix]]['scale_size'],
                                       rel=1e-15)
    mask_miss, mask_all = make_masks(anns, im['height'], im['width'])
    tint_rng = np.random.RandomState(3)  # the fixture's np.random.seed(3)
    image, miss, all_, joints, M = augment_sample(
        data['image_bgr_uint8'], mask_miss, mask_all, inst['joints18'], inst['objpos'][0],
        inst['scale_provided'][0], aug, (512, 512), 4, tint_rng=tint_rng)
    heatmaps = BottomUpEncoder((512, 512)).encode(joints, all_)
    _check_sample(data, prefix, image, miss, all_, joints, M, heatmaps)
    # the encoder on the reference's own warped joints and mask: float32 rounding only
    ref_maps = BottomUpEncoder().encode(data[prefix + 'joints18_out'], data[prefix + 'mask_all'])
    np.testing.assert_allclose(ref_maps, data[prefix + 'heatmaps'], rtol=0, atol=1e-6)


def test_random_draws_match_reference():
    path = require_fixtures('simplepose', 'augment_random_draws.json')
    with open(path) as f:
        ref = json.load(f)
    rng = random.Random(ref['python_random_seed'])
    draws = [AugmentSelection.random(rng).to_dict() for _ in ref['draws']]
    assert len(draws) == 8
    for got, exp in zip(draws, ref['draws']):
        assert (got['flip'], got['tint'], got['crop']) == (exp['flip'], exp['tint'], exp['crop'])
        assert got['degree'] == exp['degree'] and got['scale'] == exp['scale']


def test_tint_accepts_a_generator():
    image = np.full((8, 8, 3), 100, np.uint8)
    aug = AugmentSelection(tint=True)
    masks = (None, np.zeros((8, 8), np.uint8))
    joints = np.zeros((1, 18, 3))
    a = augment_sample(image, *masks, joints, (4, 4), 0.5, aug, (16, 16), 4,
                       tint_rng=np.random.default_rng(1))
    b = augment_sample(image, *masks, joints, (4, 4), 0.5, aug, (16, 16), 4,
                       tint_rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a[0], b[0])
    assert (a[1] == 1).all()  # no mask_miss: everything supervised


# ----------------------------------------------------------------------------------------------
# masks: crowd handling and missing segmentations

def _box_ann(x, y, w, h, num_keypoints=5, crowd=False, segmentation=True):
    ann = {'bbox': [x, y, w, h], 'iscrowd': int(crowd), 'num_keypoints': num_keypoints,
           'area': float(w * h)}
    if segmentation:
        ann['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return ann


def test_crowd_reduced_by_persons_seen_before_it():
    person_a = _box_ann(0, 0, 10, 10)
    person_b = _box_ann(20, 0, 10, 10)
    crowd = _box_ann(0, 0, 40, 10, num_keypoints=0, crowd=True)
    miss, mask_all = make_masks([person_a, crowd, person_b], 20, 40)
    assert (mask_all[0:10, 0:40] == 255).all() and (mask_all[10:] == 0).all()
    # A (before the crowd) stays supervised; B (after it) does not: the reference's quirk
    assert miss[5, 5] == 255 and miss[5, 25] == 0 and miss[5, 15] == 0 and miss[15, 5] == 255
    miss_fixed, all_fixed = make_masks([person_a, crowd, person_b], 20, 40, crowd_minus='all')
    assert miss_fixed[5, 25] == 255 and miss_fixed[5, 15] == 0
    np.testing.assert_array_equal(all_fixed, mask_all)


def test_two_crowds_are_united_and_missing_segmentation_uses_bbox():
    anns = [_box_ann(0, 0, 10, 10, crowd=True, num_keypoints=0),
            _box_ann(20, 0, 10, 10, crowd=True, num_keypoints=0),
            _box_ann(0, 12, 10, 6, num_keypoints=0, segmentation=False)]
    miss, mask_all = make_masks(anns, 20, 40)
    assert miss[5, 5] == 0 and miss[5, 25] == 0 and miss[15, 5] == 0 and miss[5, 15] == 255
    assert mask_all[15, 5] == 255 and mask_all[5, 35] == 0


# ----------------------------------------------------------------------------------------------
# the dataset

@pytest.fixture(scope='module')
def fixture_dataset(real):
    return BottomUpCOCODataset(ann_file=os.path.join(real, 'test_coco.json'), image_dir=real,
                               input_size=(512, 512), is_train=True,
                               rng=np.random.default_rng(0))


def _index_of(ds, image_id, people_index):
    for i in range(len(ds)):
        image_index, inst = ds.samples[i]
        if ds.images[image_index].image_id == image_id and inst['people_index'] == people_index:
            return i
    raise AssertionError('no sample for image %d person %d' % (image_id, people_index))


def test_dataset_samples_per_main_person(fixture_dataset, augmented):
    _, meta = augmented
    ds = fixture_dataset
    ids = [(ds.images[i].image_id, inst['people_index']) for i, inst in ds.samples]
    assert [p for im, p in ids if im == IMAGE_ID] == [r['people_index'] for r in meta['instances']]
    assert len(set(im for im, _ in ids)) == 4  # every image of test_coco.json has a main person


@pytest.mark.parametrize('prefix', sorted(PREFIXES))
def test_dataset_prepare_matches_reference(fixture_dataset, augmented, prefix):
    data, meta = augmented
    ds = fixture_dataset
    idx = _index_of(ds, IMAGE_ID, 0)
    s = ds.prepare(idx, aug=_aug(meta, PREFIXES[prefix]), tint_rng=np.random.RandomState(3))
    heatmaps = ds.encoder.encode(s['joints'], s['mask_all'])
    _check_sample(data, prefix, s['image'], s['mask_miss'], s['mask_all'], s['joints'], s['M'],
                  heatmaps)


def test_dataset_item_layout_and_seeding(fixture_dataset):
    ds = fixture_dataset
    ds.rng = np.random.default_rng([7, 0, 3])
    image, heatmaps, mask_miss, meta = ds[3]
    assert image.shape == (3, 512, 512) and image.dtype == np.float32 and image.flags.c_contiguous
    assert heatmaps.shape == (NUM_CHANNELS, 128, 128) and heatmaps.dtype == np.float32
    assert mask_miss.shape == (1, 128, 128) and mask_miss.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1 and 0 <= heatmaps.min() and heatmaps.max() <= 1
    assert set(meta) == {'image_id', 'people_index'}
    ds.rng = np.random.default_rng([7, 0, 3])
    again = ds[3]
    for a, b in zip((image, heatmaps, mask_miss), again[:3]):
        np.testing.assert_array_equal(a, b)
    # the image is the uint8 warp / 255 in float32 and the heatmaps are the encoder's
    ds.rng = np.random.default_rng([7, 0, 3])
    s = ds.prepare(3)
    np.testing.assert_array_equal(image, s['image'].transpose(2, 0, 1).astype(np.float32) / 255.)
    np.testing.assert_array_equal(heatmaps, ds.encoder.encode(s['joints'], s['mask_all']))


def test_validation_sample_is_centred_without_augmentation(real):
    ds = BottomUpCOCODataset(ann_file=os.path.join(real, 'test_coco.json'), image_dir=real,
                             input_size=(512, 512), is_train=False)
    idx = _index_of(ds, IMAGE_ID, 0)
    s = ds.prepare(idx)
    assert s['aug'].to_dict() == AugmentSelection.unrandom().to_dict()
    cx, cy = ds.samples[idx][1]['objpos'][0]
    np.testing.assert_allclose(s['M'] @ [cx, cy, 1.0], [255.5, 255.5], atol=1e-9)
    np.testing.assert_array_equal(ds[idx][0], ds[idx][0])


def _cfg(root, *extra):
    return load_config(None, ['DATASET.ROOT', root, 'MODEL.IMAGE_SIZE', '[256,256]'] + list(extra))


def test_dataset_from_config_reads_only_its_set(tmp_path, real):
    root = real_coco_root(str(tmp_path / 'coco'))
    # a training set of one image; the validation set keeps the others
    with open(os.path.join(root, 'annotations', 'person_keypoints_val2017.json')) as f:
        full = json.load(f)
    train = dict(full, images=[im for im in full['images'] if im['id'] == IMAGE_ID],
                 annotations=[a for a in full['annotations'] if a['image_id'] == IMAGE_ID])
    with open(os.path.join(root, 'annotations', 'person_keypoints_train2017.json'), 'w') as f:
        json.dump(train, f)
    os.makedirs(os.path.join(root, 'images', 'train2017'))
    shutil.copy(os.path.join(real, '%012d.jpg' % IMAGE_ID),
                os.path.join(root, 'images', 'train2017'))
    cfg = _cfg(root, 'DATASET.TRAIN_SET', 'train2017', 'DATASET.TEST_SET', 'val2017')
    train_ds = BottomUpCOCODataset(cfg, is_train=True, rng=np.random.default_rng(0))
    assert {im.image_id for im in train_ds.images} == {IMAGE_ID} and len(train_ds) == 4
    train_dir = os.path.join(root, 'images', 'train2017')
    assert all(im.path.startswith(train_dir) for im in train_ds.images)
    val_ds = BottomUpCOCODataset(cfg, is_train=False)
    assert len({im.image_id for im in val_ds.images}) == 4
    # the validation images are never read for training
    shutil.rmtree(os.path.join(root, 'images', 'val2017'))
    image, heatmaps, mask_miss, _ = train_ds[1]
    assert image.shape == (3, 256, 256) and heatmaps.shape == (NUM_CHANNELS, 64, 64)
    assert mask_miss.shape == (1, 64, 64)
    with pytest.raises(DatasetError, match='not found'):
        val_ds[0]


def test_loader_batches_are_seeded(fixture_dataset):
    def first_batch(seed):
        loader, seeded, sampler = build_loader(fixture_dataset, 2, shuffle=True, workers=0,
                                               seed=seed)
        seeded.set_epoch(1)
        sampler.set_epoch(1)
        return next(iter(loader))

    a, b, c = first_batch(3), first_batch(3), first_batch(4)
    assert a[0].shape == (2, 3, 512, 512) and a[1].shape == (2, NUM_CHANNELS, 128, 128)
    assert a[2].shape == (2, 1, 128, 128) and a[3]['index'].shape == (2,)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_pixels_to_unit_is_the_reference_quotient():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    got = pixels_to_unit(pixels)
    assert got.dtype == np.float32 and got.shape == (1, 16, 16)
    # the reference: img.astype(np.float32) / 255.
    np.testing.assert_array_equal(got, pixels.astype(np.float32) / 255.)
    np.testing.assert_array_equal(pixels_to_unit(pixels.transpose(0, 2, 1)),
                                  pixels.transpose(0, 2, 1).astype(np.float32) / 255.)
    with pytest.raises(TypeError):
        pixels_to_unit(got)


def test_raw_item_is_the_item_before_scaling(fixture_dataset):
    ds = fixture_dataset
    ds.rng = np.random.default_rng([7, 1, 2])
    raw = ds.raw_item(2)
    ds.rng = np.random.default_rng([7, 1, 2])
    item = ds[2]
    assert [(a.shape, a.dtype) for a in raw[:3]] == [
        (tuple(shape), np.dtype(dtype)) for shape, dtype in ds.raw_layout()]
    assert raw[0].dtype == np.uint8 and raw[0].flags.c_contiguous
    np.testing.assert_array_equal(pixels_to_unit(raw[0]), item[0])
    for a, b in zip(raw[1:3], item[1:3]):
        np.testing.assert_array_equal(a, b)
    assert raw[3] == item[3]


def _epoch_batches(ds, workers, batch_size=5, seed=5, epoch=2):
    loader, seeded, sampler = build_loader(ds, batch_size, shuffle=True, workers=workers,
                                           seed=seed)
    seeded.set_epoch(epoch)
    sampler.set_epoch(epoch)
    return loader, list(loader)


def test_worker_batches_equal_in_process_batches(fixture_dataset):
    """The raw items cross process boundaries in shared memory and are scaled here: the batches
    are those of the in-process loader, bit for bit, as numpy."""
    ds = fixture_dataset
    assert len(ds) % 5  # a short last batch too
    _, expected = _epoch_batches(ds, 0)
    for workers in (1, 2):
        loader, got = _epoch_batches(ds, workers)
        assert loader.slots is not None  # the shared-memory path, not Paddle's
        assert len(got) == len(expected)
        for a, b in zip(expected, got):
            for x, y in zip(a[:3], b[:3]):
                assert type(y) is np.ndarray and y.dtype == np.float32 and y.shape == x.shape
                np.testing.assert_array_equal(x, y)
            assert set(a[3]) == set(b[3])
            for key in a[3]:
                np.testing.assert_array_equal(np.asarray(b[3][key]), a[3][key])
    # the next pass gets fresh slots and the same batches again
    loader, _ = _epoch_batches(ds, 1)
    again = list(loader)
    for a, b in zip(expected, again):
        np.testing.assert_array_equal(a[1], b[1])


def test_worker_errors_reach_the_parent(tmp_path, real):
    # no image where the annotations point: the worker's DatasetError is raised here
    ds = BottomUpCOCODataset(ann_file=os.path.join(real, 'test_coco.json'),
                             image_dir=str(tmp_path), input_size=(512, 512), is_train=True)
    loader, _, _ = build_loader(ds, 2, workers=1, seed=0)
    with pytest.raises(DatasetError, match='not found'):
        next(iter(loader))


class _MisdeclaredDataset:
    """Raw items whose heatmaps are float64 where ``raw_layout()`` says float32."""
    is_train = False

    def __len__(self):
        return 4

    def raw_layout(self):
        return [((3, 8, 8), np.uint8), ((2, 2, 2), np.float32), ((1, 2, 2), np.float32)]

    def raw_item(self, idx):
        return (np.zeros((3, 8, 8), np.uint8), np.zeros((2, 2, 2), np.float64),
                np.zeros((1, 2, 2), np.float32), {'image_id': idx})

    def __getitem__(self, idx):
        image, *rest = self.raw_item(idx)
        return (pixels_to_unit(image), *rest)


def test_raw_items_unlike_their_layout_are_refused():
    loader, _, _ = build_loader(_MisdeclaredDataset(), 2, workers=1)
    with pytest.raises(DatasetError, match='raw item array 1 is float64'):
        next(iter(loader))


class _OpenCVThreads(_MisdeclaredDataset):
    """Samples that report the OpenCV thread count of the process that made them."""

    def raw_item(self, idx):
        return (np.zeros((3, 8, 8), np.uint8), np.zeros((2, 2, 2), np.float32),
                np.zeros((1, 2, 2), np.float32), {'threads': cv2.getNumThreads()})


def test_workers_use_one_opencv_thread():
    threads = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        loader, _, _ = build_loader(_OpenCVThreads(), 2, workers=2)
        seen = np.concatenate([np.asarray(b[3]['threads']) for b in loader])
        assert list(seen) == [1, 1, 1, 1]
        assert cv2.getNumThreads() == 2  # this process keeps its own
    finally:
        cv2.setNumThreads(threads)


def test_synthetic_coco_set_gives_samples(tmp_path):
    from posekit.data.synthetic import ensure_synthetic
    root = str(tmp_path / 'syn')
    ensure_synthetic(root, 'coco', num_train=3, num_valid=1, seed=0, image_size=(320, 240),
                     max_people=3)
    ds = BottomUpCOCODataset(_cfg(root, 'DATASET.TRAIN_SET', 'train2017'), is_train=True,
                             rng=np.random.default_rng(0))
    assert len(ds) >= 1
    image, heatmaps, mask_miss, _ = ds[0]
    assert heatmaps[BKG_START].max() == 1.0       # the person mask (bbox polygons) is there
    assert heatmaps[:BKG_START].max() > 0.5
    assert mask_miss.min() >= 0 and mask_miss.max() == 1


def test_bad_inputs(tmp_path, real):
    with pytest.raises(ConfigError):
        BottomUpCOCODataset(ann_file=os.path.join(real, 'test_coco.json'), image_dir=real,
                            input_size=(510, 512))
    with pytest.raises(ConfigError):
        BottomUpCOCODataset()
    empty = tmp_path / 'empty.json'
    empty.write_text(json.dumps({'images': [{'id': 1, 'width': 10, 'height': 10}],
                                 'annotations': [], 'categories': []}))
    with pytest.raises(DatasetError, match='no bottom-up sample'):
        BottomUpCOCODataset(ann_file=str(empty), image_dir=str(tmp_path))
    broken = tmp_path / 'broken.json'
    broken.write_text('{"images": [')
    with pytest.raises(DatasetError):
        BottomUpCOCODataset(ann_file=str(broken), image_dir=str(tmp_path))
