"""Shared dataset machinery: records, annotation reading and the per-sample procedure.

Framework-free numpy (REFERENCE_SPEC 2.1, 2.3, 2.5, 2.6). A *record* is a dict with keys
``image`` (path), ``center`` (2,), ``scale`` (2,), ``joints_3d`` (K, 3), ``joints_3d_vis``
(K, 3), ``filename``, ``imgnum`` and optionally ``score``. A Paddle ``DataLoader`` can wrap the
dataset classes directly (they only need ``__len__`` and ``__getitem__``).
"""
import copy
import logging

import numpy as np

from posekit.codec import InputSpec, TopDownHeatmapCodec
from posekit.codec.transforms import PIXEL_STD, affine_points, fit_aspect_ratio, get_affine_transform
from posekit.errors import PosekitInputError
from posekit.io import ImageReadError, InputFileError, read_image, read_json

__all__ = ['DatasetError', 'JointsDataset', 'read_image', 'load_json', 'flip_joints',
           'half_body_center_scale', 'select_records']

logger = logging.getLogger(__name__)


class DatasetError(PosekitInputError):
    """Unusable dataset input: missing/unreadable image, malformed annotation file, empty set."""


def load_json(path, what='annotation file'):
    """Parse a json file (:func:`posekit.io.read_json`); any failure becomes a
    :class:`DatasetError` naming the file."""
    try:
        return read_json(path, what)
    except InputFileError as e:
        raise DatasetError(str(e)) from e


def load_json_list(path, what, items):
    """:func:`load_json` for files whose top level must be a list (of ``items``)."""
    data = load_json(path, what)
    if not isinstance(data, list):
        raise DatasetError('%s %s: expected a list of %s, got %s'
                           % (what, path, items, type(data).__name__))
    return data


def flip_joints(joints, joints_vis, width, flip_pairs):
    """Mirror joints horizontally in an image of ``width`` px and swap the left/right pairs.

    Returns (joints * joints_vis, joints_vis) as the reference ``fliplr_joints`` does.
    """
    joints = joints.copy()
    joints_vis = joints_vis.copy()
    joints[:, 0] = width - joints[:, 0] - 1
    for a, b in flip_pairs:
        joints[[a, b], :] = joints[[b, a], :]
        joints_vis[[a, b], :] = joints_vis[[b, a], :]
    return joints * joints_vis, joints_vis


def half_body_center_scale(joints, joints_vis, upper_ids, aspect_ratio, rng):
    """Half-body box (REFERENCE_SPEC 2.3); (None, None) when fewer than 2 joints are selected.

    The upper/lower choice uses a *Gaussian* draw against 0.5 as the reference does.
    """
    upper, lower = [], []
    for k in range(len(joints)):
        if joints_vis[k][0] > 0:
            (upper if k in upper_ids else lower).append(joints[k])
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        selected = upper
    else:
        selected = lower if len(lower) > 2 else upper
    if len(selected) < 2:
        return None, None
    selected = np.array(selected, dtype=np.float32)
    center = selected.mean(axis=0)[:2]
    left_top = selected.min(axis=0)
    right_bottom = selected.max(axis=0)
    w = right_bottom[0] - left_top[0]
    h = right_bottom[1] - left_top[1]
    w, h = fit_aspect_ratio(w, h, aspect_ratio)
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * 1.5
    return center, scale


def select_records(records):
    """The reference ``DATASET.SELECT_DATA`` filter (REFERENCE_SPEC 2.2): the records to keep.

    For a record with visible joints (``joints_3d_vis[:, 0] > 0``): joints_center = their mean,
    area = s_x s_y 200^2, ks = exp(-|joints_center - center|^2 / (2 * 0.2^2 * area)) and
    metric = 0.45 + (0.2 / 16) (num_visible - 1); the record is kept if ks > metric, i.e. when
    its visible joints are centred in its box, more tightly the more joints are visible.
    Records without a visible joint are dropped, as the reference does (it skips them before
    the test). Logs ``=> num db: N`` and ``=> num selected db: M``.
    """
    records = list(records)
    selected = []
    for rec in records:
        vis = np.asarray(rec['joints_3d_vis'], dtype=np.float64)[:, 0] > 0
        num_vis = int(vis.sum())
        if num_vis == 0:
            continue
        joints = np.asarray(rec['joints_3d'], dtype=np.float64)[vis, :2]
        joints_center = joints.mean(axis=0)
        center = np.asarray(rec['center'], dtype=np.float64)[:2]
        scale = np.asarray(rec['scale'], dtype=np.float64)
        area = scale[0] * scale[1] * PIXEL_STD ** 2
        dist2 = float(np.sum((joints_center - center) ** 2))
        ks = np.exp(-dist2 / (0.2 ** 2 * 2.0 * area))
        metric = 0.45 + (0.2 / 16) * (num_vis - 1)
        if ks > metric:
            selected.append(rec)
    logger.info('=> num db: %d', len(records))
    logger.info('=> num selected db: %d', len(selected))
    return selected


class JointsDataset:
    """Records + the per-sample procedure of REFERENCE_SPEC 2.1.

    ``dataset[i]`` -> (input CHW float32, target (K, Hh, Wh) float32, target_weight (K, 1)
    float32, meta dict). Training augmentation (half-body, scale, rotation, flip) is drawn from
    ``rng`` (a ``numpy.random.Generator``; seed it for reproducible samples). A training set
    (``is_train``) is filtered by :func:`select_records` when ``DATASET.SELECT_DATA`` is on.
    """
    info = None  # the dataset's posekit.data.descriptors.DatasetInfo (subclasses set it)
    flip_pairs = ()
    upper_body_ids = ()

    def __init__(self, cfg, records, is_train=False, rng=None, source=''):
        self.cfg = cfg
        self.is_train = bool(is_train)
        self.db = list(records)
        if not self.db:
            raise DatasetError('empty dataset: no samples loaded from %s' % (source or '<records>'))
        self.num_joints = int(cfg.MODEL.NUM_JOINTS)
        nj = len(self.db[0]['joints_3d'])
        if nj != self.num_joints:
            raise DatasetError('%s has %d joints per sample but MODEL.NUM_JOINTS is %d'
                               % (source or 'dataset', nj, self.num_joints))
        if self.is_train and cfg.DATASET.SELECT_DATA:
            num_db = len(self.db)
            self.db = select_records(self.db)
            if not self.db:
                raise DatasetError('DATASET.SELECT_DATA kept none of the %d samples of %s'
                                   % (num_db, source or '<records>'))
        self.image_size = np.array(cfg.MODEL.IMAGE_SIZE, dtype=np.int64)
        self.heatmap_size = np.array(cfg.MODEL.HEATMAP_SIZE, dtype=np.int64)
        self.aspect_ratio = self.image_size[0] * 1.0 / self.image_size[1]
        self.sigma = cfg.MODEL.SIGMA
        # The same input spec and codec objects validation and inference use (posekit.codec).
        self.input_spec = InputSpec.from_cfg(cfg)
        self.codec = TopDownHeatmapCodec.from_cfg(cfg, self.flip_pairs)
        d = cfg.DATASET
        self.scale_factor = float(d.SCALE_FACTOR)
        self.rotation_factor = float(d.ROT_FACTOR)
        self.flip = bool(d.FLIP)
        self.prob_half_body = float(d.PROB_HALF_BODY)
        self.num_joints_half_body = int(d.NUM_JOINTS_HALF_BODY)
        self.rng = rng if rng is not None else np.random.default_rng()

    def __len__(self):
        return len(self.db)

    def _record(self, idx):
        if not -len(self.db) <= idx < len(self.db):
            raise IndexError('sample index %d out of range (%d samples)' % (idx, len(self.db)))
        return copy.deepcopy(self.db[idx])

    def _augment(self, image, joints, joints_vis, c, s):
        """Training augmentation (2.1 step 4, 2.3): returns flipped, joints, joints_vis, c, s, r
        (joints and centre already in the mirrored image's coordinates when ``flipped``)."""
        rng = self.rng
        if (np.sum(joints_vis[:, 0]) > self.num_joints_half_body
                and rng.random() < self.prob_half_body):
            c_hb, s_hb = half_body_center_scale(joints, joints_vis, set(self.upper_body_ids),
                                                self.aspect_ratio, rng)
            if c_hb is not None:
                c, s = c_hb, s_hb
        sf, rf = self.scale_factor, self.rotation_factor
        s = s * np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf)
        r = np.clip(rng.standard_normal() * rf, -rf * 2, rf * 2) if rng.random() <= 0.6 else 0
        flipped = bool(self.flip and rng.random() <= 0.5)
        if flipped:
            # The image is not mirrored here: prepare() folds the mirror into the crop's affine
            # map (same pixels, without copying a whole 1280x720 image per sample).
            joints, joints_vis = flip_joints(joints, joints_vis, image.shape[1], self.flip_pairs)
            c = c.copy()
            c[0] = image.shape[1] - c[0] - 1
        return flipped, joints, joints_vis, c, s, r

    def prepare(self, idx):
        """Steps 1-5 and 7 of 2.1: (warped BGR uint8 crop (H, W, 3), joints in crop, joints_vis, meta).

        This is the crop before normalisation (what the reference fixtures store).
        """
        rec = self._record(idx)
        try:
            # posekit.io.read_image: EXIF orientation ignored, as the reference reads
            # (REFERENCE_SPEC 2.1 step 1) and as the annotations' pixel frame is
            image = read_image(rec['image'])
        except ImageReadError as e:
            raise DatasetError(str(e)) from e
        joints = np.asarray(rec['joints_3d'], dtype=np.float64)
        joints_vis = np.asarray(rec['joints_3d_vis'], dtype=np.float64)
        c = np.asarray(rec['center'])
        s = np.asarray(rec['scale'])
        score = rec.get('score', 1)
        r = 0
        flipped = False
        if self.is_train:
            flipped, joints, joints_vis, c, s, r = self._augment(image, joints, joints_vis, c, s)
        warped = self.input_spec.crop(image, c, s, r, mirror=flipped)
        trans = get_affine_transform(c, s, r, self.image_size)
        vis = joints_vis[:, 0] > 0.0
        if vis.any():
            joints[vis, 0:2] = affine_points(joints[vis, 0:2], trans)
        meta = {
            'image': rec['image'], 'filename': rec.get('filename', ''),
            'imgnum': rec.get('imgnum', 0), 'joints': joints, 'joints_vis': joints_vis,
            'center': c, 'scale': s, 'rotation': r, 'score': score,
        }
        return warped, joints, joints_vis, meta

    def __getitem__(self, idx):
        warped, joints, joints_vis, meta = self.prepare(idx)
        inp = self.input_spec.normalize(warped)
        target, target_weight = self.codec.encode(joints, joints_vis)
        return inp, target, target_weight, meta
