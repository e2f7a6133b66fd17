"""COCO person keypoints for bottom-up (SimplePose) training and validation, straight from the
COCO json and images: no HDF5 preprocessing step (SIMPLEPOSE_SPEC 4, 9.3).

One sample per (image, main person) (:func:`.annotations.image_instances`). A sample is read,
masked, augmented (:mod:`.augment`) and encoded (:class:`posekit.codec.bottomup.encode.
BottomUpEncoder`) on the fly.

A set reads only its own annotation file and image folder: training uses ``DATASET.TRAIN_SET``
alone. (The reference moved val2017 images 100-4999 into its training file while scoring on
val2017[:500], SIMPLEPOSE_SPEC 9.2; nothing of the kind happens here.)
"""
import collections
import os

import numpy as np

from posekit.codec.bottomup.encode import STRIDE, BottomUpEncoder
from posekit.codec.bottomup.layout import NUM_CHANNELS
from posekit.config import ConfigError
from posekit.data.base import DatasetError, load_json
from posekit.data.bottomup.annotations import (image_instances, make_masks, needs_mask_miss,
                                               num_keypoints)
from posekit.data.bottomup.augment import AugmentSelection, augment_sample
from posekit.data.loader import pixels_to_unit
from posekit.io import ImageReadError, read_image

__all__ = ['BottomUpCOCODataset', 'load_coco_images', 'retain_freed_memory']

# one image of the set: file, size from the json, its person annotations, whether anything in it
# is excluded from supervision (else mask_miss is all 255 and is skipped), its COCO id
ImageEntry = collections.namedtuple('ImageEntry', 'path width height anns needs_mask_miss image_id')


def load_coco_images(ann_file):
    """``[(image record, [its person annotations in file order])]`` in the file's image order
    (the order pycocotools' ``COCO.imgs`` and ``getAnnIds`` give)."""
    data = load_json(ann_file, 'COCO annotation file')
    try:
        cats = data.get('categories') or []
        person_ids = {c['id'] for c in cats if c.get('name') == 'person'}
        images = collections.OrderedDict((im['id'], im) for im in data['images'])
        anns = {}
        for ann in data['annotations']:
            if person_ids and ann['category_id'] not in person_ids:
                continue
            anns.setdefault(ann['image_id'], []).append(ann)
    except (KeyError, TypeError, AttributeError) as e:
        raise DatasetError('COCO annotation file %s is malformed: %s: %s'
                           % (ann_file, type(e).__name__, e)) from e
    return [(im, anns.get(image_id, [])) for image_id, im in images.items()]


# glibc mallopt parameters (<malloc.h>)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_RETAINED = []


def retain_freed_memory(mmap_threshold=32 << 20, trim_threshold=128 << 20):
    """Let glibc keep freed memory for reuse instead of returning it to the system (once per
    process; forked loader workers inherit it; a no-op without glibc). Returns True if set.

    A sample allocates and frees about 10 MB of arrays (3 x 512 x 512 and 50 x 128 x 128
    float32, warped images); with glibc's defaults the freed top of the heap is trimmed and the
    next sample page-faults all of it in again, which costs about as much as decoding,
    augmenting and encoding it (84 -> 135 samples/s on the benchmark set). Allocations below
    ``mmap_threshold`` then come from the heap, which keeps up to ``trim_threshold`` bytes free.
    """
    if _RETAINED:
        return _RETAINED[0]
    ok = False
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        mallopt = getattr(libc, 'mallopt', None)
        if mallopt is not None:
            ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
                mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    except (OSError, AttributeError, TypeError):
        ok = False
    _RETAINED.append(ok)
    return ok


def _compact(ann):
    """What the masks need of an annotation, polygons as float arrays: a few objects per person
    instead of one per coordinate (the json of train2017 as Python lists takes gigabytes, and
    loader workers would copy the pages their reference counts touch)."""
    seg = ann.get('segmentation')
    if isinstance(seg, list):
        seg = [np.asarray(p, dtype=np.float64) for p in seg]
    return {'bbox': tuple(float(v) for v in ann['bbox']), 'iscrowd': int(ann.get('iscrowd', 0)),
            'num_keypoints': int(num_keypoints(ann)), 'segmentation': seg}


class BottomUpCOCODataset:
    """Bottom-up samples of one COCO set.

    From a config: ``BottomUpCOCODataset(cfg, is_train=True)`` reads
    ``DATASET.ROOT/annotations/person_keypoints_<DATASET.TRAIN_SET>.json`` (``TEST_SET`` when not
    training) and the images in ``DATASET.ROOT/images/<set>/``, with the input size
    ``MODEL.IMAGE_SIZE`` [W, H] (512 x 512 -> 128 x 128 maps). Without a config:
    ``BottomUpCOCODataset(ann_file=..., image_dir=..., input_size=(512, 512), is_train=...)``.

    ``dataset[i]`` -> ``(image (3, H, W) float32 BGR in [0, 1], heatmaps (50, H/4, W/4) float32,
    mask_miss (1, H/4, W/4) float32, meta)``: the (inputs, targets, target weights, meta) order of
    :func:`posekit.data.loader.build_loader`; ``mask_miss`` (1 = supervised) is the loss mask.
    ``meta`` holds ``image_id`` and ``people_index`` (the main person's annotation index).
    ``raw_item(i)`` is the same with the image as uint8 pixels (3, H, W) (``dataset[i]`` scales
    them with :func:`posekit.data.loader.pixels_to_unit`) and ``raw_layout()`` declares its
    arrays: loader workers then send a quarter of the image bytes through shared memory and the
    loader scales the pixels (:mod:`posekit.data.loader`).

    Training draws the augmentation from ``self.rng`` (a ``numpy.random.Generator``; the
    loader's :class:`~posekit.data.loader.SeededDataset` sets one per ``(seed, epoch, index)``);
    validation uses no augmentation but the same centring on the main person.

    ``fix_reference_defects`` True fixes the two annotation quirks the reference has
    (:mod:`.annotations`: main-person radius, crowd order); False (default) reproduces them.
    ``mask_cache_size`` keeps the full-resolution masks of that many recent images (0: none).
    ``scale_divisor`` (default: the input height) divides the bbox height into the main
    person's ``scale_provided``. ``retain_memory`` calls :func:`retain_freed_memory` (glibc:
    freed sample arrays are reused instead of page-faulted in again, 1.6x faster loading).
    """

    def __init__(self, cfg=None, image_set=None, is_train=False, ann_file=None, image_dir=None,
                 input_size=None, rng=None, fix_reference_defects=False, mask_cache_size=0,
                 scale_divisor=None, retain_memory=True):
        self.is_train = bool(is_train)
        if cfg is not None:
            if image_set is None:
                image_set = cfg.DATASET.TRAIN_SET if self.is_train else cfg.DATASET.TEST_SET
            root = cfg.DATASET.ROOT
            ann_file = ann_file or os.path.join(root, 'annotations',
                                                'person_keypoints_%s.json' % image_set)
            image_dir = image_dir or os.path.join(root, 'images', image_set)
            if input_size is None:
                input_size = cfg.MODEL.IMAGE_SIZE
        if not ann_file or not image_dir:
            raise ConfigError('BottomUpCOCODataset needs a config or both ann_file and image_dir')
        input_size = (512, 512) if input_size is None else input_size
        try:
            self.input_size = tuple(int(v) for v in input_size)
        except (TypeError, ValueError):
            raise ConfigError('input size must be [W, H], got %r' % (input_size,))
        if len(self.input_size) != 2 or min(self.input_size) <= 0 or any(
                v % STRIDE for v in self.input_size):
            raise ConfigError('bottom-up input size [W, H] must be positive multiples of %d, '
                              'got %s' % (STRIDE, list(self.input_size)))
        self.image_set = image_set or ''
        self.ann_file = ann_file
        self.image_dir = image_dir
        self.stride = STRIDE
        self.output_size = (self.input_size[0] // STRIDE, self.input_size[1] // STRIDE)
        self.encoder = BottomUpEncoder(self.input_size, stride=STRIDE)
        self.fix_reference_defects = bool(fix_reference_defects)
        self.scale_divisor = float(scale_divisor or self.input_size[1])
        self.rng = rng if rng is not None else np.random.default_rng()
        self.mask_cache_size = int(mask_cache_size)
        self._mask_cache = collections.OrderedDict()
        if retain_memory:
            retain_freed_memory()

        radius_from = 'own' if self.fix_reference_defects else 'last'
        self.images = []   # ImageEntry of every image with a main person
        self.samples = []  # (index in self.images, instance of .annotations.image_instances)
        for im, anns in load_coco_images(ann_file):
            try:
                instances = image_instances(anns, self.scale_divisor, radius_from)
                path = os.path.join(image_dir, im.get('file_name') or '%012d.jpg' % im['id'])
                entry = ImageEntry(path, int(im['width']), int(im['height']),
                                   [_compact(a) for a in anns], needs_mask_miss(anns), im['id'])
            except (KeyError, TypeError, ValueError) as e:
                raise DatasetError('COCO annotation file %s: malformed image %r or its '
                                   'annotations: %s: %s' % (ann_file, im.get('id'),
                                                            type(e).__name__, e)) from e
            if not instances:
                continue
            self.images.append(entry)
            for inst in instances:
                self.samples.append((len(self.images) - 1, inst))
        if not self.samples:
            raise DatasetError('no bottom-up sample in %s: no person with >= 5 keypoints and '
                               'an area >= 32^2' % ann_file)

    def __len__(self):
        return len(self.samples)

    # ------------------------------------------------------------------------------------------
    def masks(self, image_index):
        """``(mask_miss or None (all supervised), mask_all)`` uint8 0/255 of an image, at its
        resolution (cached per image when ``mask_cache_size`` > 0)."""
        cached = self._mask_cache.get(image_index)
        if cached is not None:
            self._mask_cache.move_to_end(image_index)
            return cached
        entry = self.images[image_index]
        try:
            masks = make_masks(entry.anns, entry.height, entry.width,
                               crowd_minus='all' if self.fix_reference_defects else 'seen',
                               with_mask_miss=entry.needs_mask_miss)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise DatasetError('COCO annotation file %s: unusable segmentation on image %s: '
                               '%s: %s' % (self.ann_file, entry.path, type(e).__name__, e)) from e
        if self.mask_cache_size > 0:
            self._mask_cache[image_index] = masks
            while len(self._mask_cache) > self.mask_cache_size:
                self._mask_cache.popitem(last=False)
        return masks

    def read_image(self, image_index):
        path, width, height = self.images[image_index][:3]
        try:
            # posekit.io.read_image: the stored pixels, EXIF orientation ignored (the frame
            # COCO's keypoints are in); the reference's plain cv2.imread would honour the tag
            image = read_image(path)
        except ImageReadError as e:
            raise DatasetError(str(e)) from e
        if image.shape[:2] != (height, width):
            raise DatasetError('image %s is %dx%d but its annotation file says %dx%d (W x H)'
                               % (path, image.shape[1], image.shape[0], width, height))
        return image

    def prepare(self, idx, aug=None, tint_rng=None):
        """The sample before float conversion: a dict with ``image`` (H, W, 3) uint8 BGR,
        ``mask_miss``, ``mask_all`` (H/4, W/4) float32, ``joints`` (N, 18, 3) in input pixels,
        ``M`` (2, 3), ``aug``, ``image_id``, ``people_index``. ``aug`` None draws one from
        ``self.rng`` when training (no augmentation otherwise); the tint draws from ``tint_rng``
        (default ``self.rng``)."""
        if not -len(self.samples) <= idx < len(self.samples):
            raise IndexError('sample index %d out of range (%d samples)' % (idx, len(self.samples)))
        image_index, inst = self.samples[idx]
        if aug is None:
            aug = (AugmentSelection.random(self.rng) if self.is_train
                   else AugmentSelection.unrandom())
        image = self.read_image(image_index)
        mask_miss, mask_all = self.masks(image_index)
        out, miss, all_, joints, M = augment_sample(
            image, mask_miss, mask_all, inst['joints18'], inst['objpos'][0],
            inst['scale_provided'][0], aug, self.input_size, self.stride,
            tint_rng=self.rng if tint_rng is None else tint_rng)
        return {'image': out, 'mask_miss': miss, 'mask_all': all_, 'joints': joints, 'M': M,
                'aug': aug, 'image_id': self.images[image_index].image_id,
                'people_index': inst['people_index']}

    def raw_layout(self):
        """``(shape, dtype)`` of the image, heatmaps and mask of :meth:`raw_item`."""
        w, h = self.input_size
        ow, oh = self.output_size
        return [((3, h, w), np.uint8), ((NUM_CHANNELS, oh, ow), np.float32),
                ((1, oh, ow), np.float32)]

    def raw_item(self, idx):
        """``dataset[idx]`` with the image as uint8 BGR pixels (3, H, W)."""
        s = self.prepare(idx)
        heatmaps = self.encoder.encode(s['joints'], s['mask_all'])
        image = np.ascontiguousarray(s['image'].transpose(2, 0, 1))
        meta = {'image_id': s['image_id'], 'people_index': s['people_index']}
        return image, heatmaps, s['mask_miss'][None], meta

    def __getitem__(self, idx):
        image, heatmaps, mask_miss, meta = self.raw_item(idx)
        # the reference's img.astype(float32) / 255.
        return pixels_to_unit(image), heatmaps, mask_miss, meta
