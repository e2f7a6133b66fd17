"""Validation of a bottom-up (SimplePose) model: whole images in, COCO keypoint AP out, as the
reference ``evaluate.py`` scores its model (SIMPLEPOSE_SPEC 6).

Per image of the ``TEST_SET`` annotation file (its first ``TEST.MAX_IMAGES`` when > 0; the
reference scores ``val2017[:500]``): read it (the stored pixels, :func:`posekit.io.read_image`),
resize it to height ``TEST.BOXSIZE`` (640) and pad it to a multiple of 64 with grey 128
(:class:`posekit.codec.BottomUpInputSpec`), run the model on it and, with ``TEST.FLIP_TEST``,
on its mirror in the same batch, fuse the maps and group them into people
(:class:`posekit.codec.BottomUpPartsCodec`). Any :mod:`posekit.runtime` runner does the network
pass, one image at a time (their sizes differ; ``TEST.BATCH_SIZE_PER_GPU`` does not apply).
With several processes each takes every ``world``-th image and rank 0 gathers the people in
annotation-file order.

Rank 0 writes the records (``results/keypoints_<set>_results.json``, atomically) and scores
them with pycocotools on exactly the evaluated image ids: an image where nobody was found still
counts, as the reference's ``image_ids`` do. ``perf`` is AP. There is no validation loss or
accuracy: the reference has none at test time, and the whole-image maps have no targets here;
``result['loss']`` and ``result['acc']`` are NaN, so training logs neither.
"""
import collections
import logging
import os
import time

import numpy as np

from posekit import distributed as dist
from posekit.codec import codec_from_cfg, input_spec_from_cfg
from posekit.data.base import DatasetError
from posekit.data.bottomup import load_coco_images
from posekit.data.loader import shard_indices
from posekit.evaluation.accuracy import AverageMeter
from posekit.evaluation.bottomup import (bottomup_keypoint_results, bottomup_keypoint_stats,
                                         load_bottomup_results, save_bottomup_results)
from posekit.evaluation.validate import PredictionsError
from posekit.io import ImageReadError, read_image

__all__ = ['EvalImage', 'evaluation_images', 'predict_images', 'evaluate_people',
           'evaluate_results_file', 'results_path']

logger = logging.getLogger('posekit')

# one image to evaluate: its place in the annotation file, COCO id, file and size from the json
EvalImage = collections.namedtuple('EvalImage', 'index image_id path width height')


def evaluation_images(cfg, dataset):
    """The images validation scores: every image of ``dataset``'s annotation file, in file
    order (the order of pycocotools' ``getImgIds``), the first ``TEST.MAX_IMAGES`` of them when
    that is > 0. Images without people count too (their people found are false positives)."""
    limit = int(cfg.TEST.MAX_IMAGES)
    entries = load_coco_images(dataset.ann_file)
    if limit > 0:
        entries = entries[:limit]
    out = []
    for i, (im, _anns) in enumerate(entries):
        try:
            name = im.get('file_name') or '%012d.jpg' % im['id']
            out.append(EvalImage(i, int(im['id']), os.path.join(dataset.image_dir, name),
                                 int(im['width']), int(im['height'])))
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError('COCO annotation file %s: image entry %d is malformed: %s: %s'
                               % (dataset.ann_file, i, type(e).__name__, e)) from e
    if not out:
        raise DatasetError('COCO annotation file %s lists no image to evaluate'
                           % dataset.ann_file)
    return out


def _read(entry):
    try:
        image = read_image(entry.path)
    except ImageReadError as e:
        raise DatasetError(str(e)) from e
    if image.shape[:2] != (entry.height, entry.width):
        # the people are scored in the frame of the annotation file's size
        raise DatasetError('image %s is %dx%d but its annotation file says %dx%d (W x H)'
                           % (entry.path, image.shape[1], image.shape[0], entry.width,
                              entry.height))
    return image


def predict_images(cfg, runner, images, flip_test=None, print_freq=None, progress=None):
    """The people of every image of ``images`` (:func:`evaluation_images`), gathered from every
    process in their order.

    Returns a dict: ``image_ids``, ``images`` (paths), ``keypoints`` (per image (P, 17, 3)
    float64: x, y in image pixels and the joint's peak score, (0, 0, 0) for a missing joint),
    ``scores`` (per image (P,) person scores ``1 - 1/total``), ``people`` (total found),
    ``count`` (images) and ``loss``/``acc`` (NaN: none at test time, see the module)."""
    spec = input_spec_from_cfg(cfg)
    if flip_test is not None:
        spec.flip = bool(flip_test)
    codec = codec_from_cfg(cfg)
    print_freq = int(cfg.PRINT_FREQ if print_freq is None else print_freq)
    rank, world = dist.rank(), dist.world_size()
    mine = shard_indices(len(images), rank, world)
    batch_time, found = AverageMeter(), 0
    part = []
    end = time.time()
    for i, k in enumerate(mine):
        entry = images[k]
        inputs, meta = spec.prepare(_read(entry))
        maps = codec.flip_test(runner, inputs, spec.flip)
        people = codec.decode(maps, meta)
        part.append((k, np.asarray(people.keypoints, dtype=np.float64),
                     np.asarray(people.scores, dtype=np.float64).reshape(-1)))
        found += len(part[-1][2])
        batch_time.update(time.time() - end)
        end = time.time()
        if progress is not None:
            progress(i + 1, len(mine))
        if print_freq and (i % print_freq == 0 or i == len(mine) - 1) and dist.is_main():
            logger.info('Test: [{0}/{1}]\tTime {bt.val:.3f} ({bt.avg:.3f})\tPeople {2} '
                        '({3} so far)'.format(i, len(mine), len(part[-1][2]), found,
                                              bt=batch_time))
    parts = dist.all_gather_object(part)
    rows = sorted((row for p in parts for row in p), key=lambda row: row[0])
    if [row[0] for row in rows] != list(range(len(images))):
        raise RuntimeError('validation shards do not cover the images exactly once')
    keypoints = [row[1].reshape(-1, 17, 3) if row[1].size else np.zeros((0, 17, 3))
                 for row in rows]
    scores = [row[2] for row in rows]
    return {'image_ids': [e.image_id for e in images], 'images': [e.path for e in images],
            'keypoints': keypoints, 'scores': scores,
            'people': int(sum(len(s) for s in scores)), 'count': len(images),
            'loss': float('nan'), 'acc': float('nan')}


def results_path(dataset, output_dir):
    """Where the records of ``dataset``'s set go: ``results/keypoints_<set>_results.json``
    under ``output_dir``, the file top-down validation writes."""
    return os.path.join(output_dir, 'results', 'keypoints_%s_results.json' % dataset.image_set)


def _null():
    return collections.OrderedDict([('Null', 0.0)]), 0.0


def evaluate_people(cfg, dataset, result, output_dir):
    """Records of :func:`predict_images`' ``result``, written to :func:`results_path`, and their
    COCO keypoint stats on the evaluated images. Returns ``(name_values, AP)``; a test set
    (name containing "test") has no ground truth: ``{'Null': 0.0}, 0.0``."""
    per_image = collections.OrderedDict(
        (image_id, (kp, sc)) for image_id, kp, sc in zip(result['image_ids'], result['keypoints'],
                                                         result['scores']))
    records = bottomup_keypoint_results(per_image)
    path = results_path(dataset, output_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_bottomup_results(path, records)
    logger.info('=> Writing results json to %s (%d people in %d images)', path, len(records),
                len(per_image))
    if 'test' in dataset.image_set:
        return _null()
    stats = bottomup_keypoint_stats(dataset.ann_file, records, result['image_ids'])
    return stats, stats['AP']


def evaluate_results_file(cfg, dataset, path):
    """``valid.py --predictions`` for a bottom-up model: the stats of a saved results json (ours
    or the reference's ``format_results``) on the images validation scores
    (:func:`evaluation_images`), so that the file of a validation run gives that run's stats.
    Returns ``(name_values, AP, records)``; the file is checked first
    (:func:`posekit.evaluation.bottomup.load_bottomup_results`)."""
    if os.path.splitext(path)[1].lower() != '.json':
        raise PredictionsError('%s is a bottom-up model: --predictions takes a COCO keypoint '
                               'results .json (as results/keypoints_<set>_results.json), got %s'
                               % (cfg.MODEL.NAME, path))
    records = load_bottomup_results(path)
    image_ids = [e.image_id for e in evaluation_images(cfg, dataset)]
    scored = set(image_ids)
    outside = sum(1 for r in records if r['image_id'] not in scored)
    logger.info('=> evaluating %d saved people from %s on %d images', len(records) - outside,
                path, len(image_ids))
    if outside:
        logger.warning('=> %d people of %s are on images that are not evaluated (beyond '
                       'TEST.MAX_IMAGES %d); they do not count', outside, path,
                       int(cfg.TEST.MAX_IMAGES))
    if 'test' in dataset.image_set:
        name_values, perf = _null()
        return name_values, perf, records
    stats = bottomup_keypoint_stats(dataset.ann_file, records, image_ids)
    return stats, stats['AP'], records
