"""Validation: run a model over a dataset, decode, and compute the dataset's metric.

:func:`predict_dataset` runs a runner (:mod:`posekit.runtime`: a dygraph model through
:class:`~posekit.runtime.dygraph.DygraphRunner`, or an exported ONNX / Paddle inference model;
flip test optional) over this process's share of the samples and decodes the heatmaps with the
shared codec; with several processes the shares are gathered and put back in dataset order, so
the metric is computed on every sample exactly once (the Paddle port evaluated each shard
against full-size arrays, REFERENCE_SPEC 10.11).
:func:`evaluate_predictions` computes MPII PCKh (6.2, writes ``pred.mat``) or COCO keypoint AP
(6.3, writes ``results/keypoints_<set>_results.json``) on rank 0.
"""
import logging
import os
import time
from collections import OrderedDict

import numpy as np
import paddle

from posekit import distributed as dist
from posekit.config import is_bottom_up
from posekit.evaluation.accuracy import AverageMeter, heatmap_accuracy
from posekit.evaluation.coco_eval import (check_coco_ground_truth, coco_keypoint_results,
                                          coco_keypoint_stats, image_id_from_path)
from posekit.data.loader import build_eval_loader
from posekit.evaluation.pckh import evaluate_pckh, format_table, load_ground_truth, write_pred_mat
from posekit.data.base import DatasetError
from posekit.errors import PosekitInputError
from posekit.io import write_json
from posekit.data.descriptors import dataset_info
from posekit.models import arch_name

__all__ = ['PredictionsError', 'predict_dataset', 'check_ground_truth',
           'evaluate_predictions', 'validate', 'dataset_result',
           'load_predictions', 'log_table']

logger = logging.getLogger('posekit')


def predict_dataset(cfg, runner, dataset, flip_test=None, criterion=None, batch_size=None,
                    workers=None, print_freq=None, progress=None):
    """Predictions for every sample of ``dataset`` (gathered across processes, dataset order).

    ``runner`` maps a float32 NCHW batch to heatmaps (any :mod:`posekit.runtime` runner); the
    loss (with ``criterion``) is computed from those heatmaps, whatever ran them.

    Returns a dict: ``preds`` (N, K, 3) image pixels + confidence, ``boxes`` (N, 6) centre,
    scale, area, score, ``images`` (N paths), ``loss`` and ``acc`` (averages of the heatmap loss
    and accuracy over samples; meaningless for detection boxes, REFERENCE_SPEC 10.24), ``count``.
    """
    t = cfg.TEST
    flip_test = bool(t.FLIP_TEST if flip_test is None else flip_test)
    batch_size = int(batch_size or t.BATCH_SIZE_PER_GPU)
    workers = int(cfg.WORKERS if workers is None else workers)
    print_freq = int(print_freq or cfg.PRINT_FREQ)
    rank, world = dist.rank(), dist.world_size()
    loader = build_eval_loader(dataset, batch_size, workers, rank, world)
    n_batches = len(loader)

    losses, accs, batch_time = AverageMeter(), AverageMeter(), AverageMeter()
    indices, preds, boxes, images = [], [], [], []
    end = time.time()
    with paddle.no_grad():  # the loss needs no gradients
        for i, (inputs, target, target_weight, meta) in enumerate(loader):
            inputs, target, target_weight, meta = _as_numpy(inputs, target, target_weight, meta)
            out = dataset.codec.flip_test(runner, inputs, flip_test)
            n = inputs.shape[0]
            if criterion is not None:
                loss = criterion(paddle.to_tensor(out), paddle.to_tensor(target),
                                 paddle.to_tensor(target_weight))
                losses.update(float(loss), n)
            _, avg_acc, cnt, _ = heatmap_accuracy(out, target)
            accs.update(avg_acc, cnt)
            c, s = meta['center'], meta['scale']
            coords, maxvals = dataset.codec.decode(out, c, s)
            preds.append(np.concatenate([coords, maxvals], axis=2))
            score = np.asarray(meta['score'], dtype=np.float64).reshape(-1)
            area = np.prod(s * 200, axis=1)
            boxes.append(np.column_stack([c[:, 0:2], s[:, 0:2], area, score]))
            images.extend(meta['image'])
            indices.extend(int(v) for v in np.asarray(meta['index']).reshape(-1))
            batch_time.update(time.time() - end)
            end = time.time()
            if progress is not None:
                progress(i + 1, n_batches)
            if print_freq and (i % print_freq == 0 or i == n_batches - 1) and dist.is_main():
                logger.info('Test: [{0}/{1}]\tTime {bt.val:.3f} ({bt.avg:.3f})\t'
                            'Loss {loss.val:.4f} ({loss.avg:.4f})\t'
                            'Accuracy {acc.val:.3f} ({acc.avg:.3f})'.format(
                                i, n_batches, bt=batch_time, loss=losses, acc=accs))

    k = int(cfg.MODEL.NUM_JOINTS)
    part = {
        'indices': indices,
        'preds': np.concatenate(preds) if preds else np.zeros((0, k, 3)),
        'boxes': np.concatenate(boxes) if boxes else np.zeros((0, 6)),
        'images': images,
        'loss': (losses.sum, losses.count), 'acc': (accs.sum, accs.count),
    }
    parts = dist.all_gather_object(part)
    order = np.concatenate([np.asarray(p['indices'], dtype=np.int64) for p in parts])
    if sorted(order.tolist()) != list(range(len(dataset))):
        raise RuntimeError('validation shards do not cover the dataset exactly once')
    inv = np.argsort(order, kind='stable')
    all_images = sum((list(p['images']) for p in parts), [])
    loss_sum = sum(p['loss'][0] for p in parts)
    loss_cnt = sum(p['loss'][1] for p in parts)
    acc_sum = sum(p['acc'][0] for p in parts)
    acc_cnt = sum(p['acc'][1] for p in parts)
    return {
        'preds': np.concatenate([p['preds'] for p in parts])[inv],
        'boxes': np.concatenate([p['boxes'] for p in parts])[inv],
        'images': [all_images[j] for j in inv],
        'loss': loss_sum / loss_cnt if loss_cnt else float('nan'),
        'acc': acc_sum / acc_cnt if acc_cnt else 0.0,
        'count': len(order),
    }


class PredictionsError(PosekitInputError):
    """Saved keypoints (``valid.py --predictions``) that cannot be read or do not fit the
    dataset."""


def dataset_result(dataset, preds):
    """A :func:`predict_dataset`-style result for given keypoints ``preds`` (N, K, 2 or 3; image
    pixels, 0-based, dataset order; confidence 1 when absent) with the dataset's own boxes."""
    preds = np.asarray(preds, dtype=np.float64)
    n, k = len(dataset), dataset.num_joints
    if preds.ndim != 3 or preds.shape[0] != n or preds.shape[1] != k or preds.shape[2] not in (2, 3):
        raise PredictionsError('predictions should be %d x %d x 2 (or x 3) for this dataset, '
                               'got %s' % (n, k, preds.shape))
    if preds.shape[2] == 2:
        preds = np.concatenate([preds, np.ones((n, k, 1))], axis=2)
    boxes = np.zeros((n, 6))
    for i, rec in enumerate(dataset.db):
        c = np.asarray(rec['center'], dtype=np.float64)
        s = np.asarray(rec['scale'], dtype=np.float64)
        boxes[i] = [c[0], c[1], s[0], s[1], np.prod(s * 200), rec.get('score', 1)]
    return {'preds': preds, 'boxes': boxes, 'images': [rec['image'] for rec in dataset.db],
            'loss': float('nan'), 'acc': float('nan'), 'count': n}


def load_predictions(path):
    """Keypoints saved by another run: an MPII ``pred.mat`` (variable ``preds``, 1-based, as the
    reference writes it) or a ``.npy``/``.npz`` (``preds``) array in 0-based image pixels.

    Whatever is wrong with the file (empty, damaged, no ``preds``, an object or text array)
    raises :class:`PredictionsError` naming it; the shape is checked by :func:`dataset_result`.
    """
    if not os.path.isfile(path):
        raise PredictionsError('predictions file not found: %s' % path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in ('.mat', '.npz', '.npy'):
        raise PredictionsError('unknown predictions file type %s (expected .mat, .npy or .npz; '
                               'a results .json is for bottom-up models)' % path)
    if os.path.getsize(path) == 0:
        raise PredictionsError('predictions file %s is empty (0 bytes)' % path)
    try:
        if ext == '.mat':
            from scipy.io import loadmat
            mat = loadmat(path)
            if 'preds' not in mat:
                raise PredictionsError('%s holds no variable preds' % path)
            arr, offset = mat['preds'], 1.0  # pred.mat is 1-based
        elif ext == '.npz':
            # never allow_pickle: an object array would unpickle (run) whatever it names
            with np.load(path, allow_pickle=False) as z:
                if 'preds' not in z.files:
                    raise PredictionsError('%s holds no array preds (it has: %s)'
                                           % (path, ', '.join(z.files) or 'nothing'))
                arr, offset = z['preds'], 0.0
        else:
            arr, offset = np.load(path, allow_pickle=False), 0.0
    except PredictionsError:
        raise
    except Exception as e:  # numpy and scipy raise several types for a damaged file
        raise PredictionsError('cannot read predictions from %s: %s: %s'
                               % (path, type(e).__name__, e)) from e
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in 'biuf':
        raise PredictionsError('predictions in %s must be a numeric array, got %s'
                               % (path, getattr(arr, 'dtype', type(arr).__name__)))
    return np.asarray(arr, dtype=np.float64) - offset


def _as_numpy(*values):
    out = []
    for v in values:
        if isinstance(v, dict):
            out.append({k: _as_numpy(x)[0] for k, x in v.items()})
        elif isinstance(v, paddle.Tensor):
            out.append(v.numpy())
        else:
            out.append(v)
    return out


def _mpii_gt_file(cfg, dataset):
    ann = getattr(dataset, 'ann_file', '')
    if ann:
        return os.path.join(os.path.dirname(ann), 'gt_%s.mat' % dataset.image_set)
    return os.path.join(cfg.DATASET.ROOT, 'annot', 'gt_%s.mat' % cfg.DATASET.TEST_SET)


def check_ground_truth(cfg, dataset):
    """Read the ground truth the metric of ``dataset`` needs, before any model runs (valid.py,
    and training before its first epoch): MPII ``gt_<set>.mat`` (one person per sample of the
    annotation file), the COCO annotation file as pycocotools reads it. Test sets have none.
    A damaged or mismatched file raises a one-line error naming it. (A bottom-up model's
    validation set is a COCO one: the same check.)"""
    image_set = getattr(dataset, 'image_set', cfg.DATASET.TEST_SET)
    if 'test' in image_set:
        return
    if dataset_info(cfg.DATASET.DATASET).metric == 'pckh':
        path = _mpii_gt_file(cfg, dataset)
        n_gt = load_ground_truth(path)[0].shape[1]
        if n_gt != len(dataset):
            raise DatasetError('MPII ground truth %s has %d people but %s has %d; they must be '
                               'the same people in the same order'
                               % (path, n_gt, getattr(dataset, 'ann_file', 'the dataset'),
                                  len(dataset)))
    else:
        check_coco_ground_truth(dataset.ann_file)


def evaluate_predictions(cfg, dataset, result, output_dir):
    """The dataset's metric for :func:`predict_dataset`'s ``result``; writes the artefacts.

    Returns ``(name_values, perf_indicator)``: MPII PCKh table (+ the true PCKh@0.1 after the
    reference's Mean@0.1, which is computed at 0.11) and ``Mean``; COCO the ten stats and ``AP``.
    Test sets (name containing "test") have no ground truth: ``{'Null': 0.0}``, 0.0.
    """
    metric = dataset_info(cfg.DATASET.DATASET).metric
    image_set = getattr(dataset, 'image_set', cfg.DATASET.TEST_SET)
    os.makedirs(output_dir, exist_ok=True)
    if metric == 'pckh':
        pred_file = write_pred_mat(result['preds'][:, :, 0:2], os.path.join(output_dir, 'pred.mat'))
        logger.info('=> predictions written to %s', pred_file)
        if 'test' in image_set:
            return OrderedDict([('Null', 0.0)]), 0.0
        name_values = evaluate_pckh(result['preds'][:, :, 0:2], _mpii_gt_file(cfg, dataset),
                                    with_true_pckh01=True)
        return name_values, name_values['Mean']

    t = cfg.TEST
    image_ids = [image_id_from_path(p) for p in result['images']]
    records = coco_keypoint_results(result['preds'], result['boxes'], image_ids,
                                    in_vis_thre=t.IN_VIS_THRE, oks_thre=t.OKS_THRE, soft=t.SOFT_NMS)
    res_dir = os.path.join(output_dir, 'results')
    os.makedirs(res_dir, exist_ok=True)
    res_file = os.path.join(res_dir, 'keypoints_%s_results.json' % image_set)
    write_json(res_file, records)
    logger.info('=> Writing results json to %s', res_file)
    if 'test' in image_set:
        return OrderedDict([('Null', 0.0)]), 0.0
    name_values = coco_keypoint_stats(dataset.ann_file, records)
    return name_values, name_values['AP']


def log_table(cfg, name_values):
    """Log the result table in the reference's markdown layout (REFERENCE_SPEC 8.5)."""
    for line in format_table(name_values, arch_name(cfg)).split('\n'):
        logger.info(line)


def validate(cfg, runner, dataset, output_dir, flip_test=None, criterion=None, workers=None,
             progress=None):
    """:func:`predict_dataset` with ``runner`` then, on rank 0, :func:`evaluate_predictions`
    and the table.

    Every rank returns ``(name_values, perf, result)`` (rank 0's metric is broadcast).
    A bottom-up model (:func:`posekit.config.is_bottom_up`) is validated on whole images
    (:mod:`posekit.evaluation.bottomup_validate`: COCO AP; ``criterion`` and ``workers`` do not
    apply there).
    """
    if is_bottom_up(cfg):
        from posekit.evaluation import bottomup_validate as bu
        result = bu.predict_images(cfg, runner, bu.evaluation_images(cfg, dataset),
                                   flip_test=flip_test, progress=progress)
        evaluate = bu.evaluate_people
    else:
        result = predict_dataset(cfg, runner, dataset, flip_test=flip_test, criterion=criterion,
                                 workers=workers, progress=progress)
        evaluate = evaluate_predictions
    if dist.is_main():
        name_values, perf = evaluate(cfg, dataset, result, output_dir)
        log_table(cfg, name_values)
    else:
        name_values, perf = None, None
    name_values, perf = dist.broadcast_object((name_values, perf))
    return name_values, perf, result
