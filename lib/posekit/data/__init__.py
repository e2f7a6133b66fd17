"""Dataset loading (framework-free numpy): MPII and COCO person keypoints.

``dataset[i]`` returns (input CHW float32, target, target_weight, meta) as in REFERENCE_SPEC
2.1; ``dataset.prepare(i)`` gives the warped BGR uint8 crop before normalisation.
"""
from posekit.config import ConfigError, is_bottom_up
from posekit.data.base import DatasetError, JointsDataset, flip_joints, half_body_center_scale, read_image
from posekit.data.coco import COCODataset, coco_image_path, load_coco_det_records, load_coco_gt_records
from posekit.data.mpii import MPIIDataset, load_mpii_records
from posekit.data.descriptors import DatasetInfo, UnknownDatasetError, dataset_info

__all__ = ['DatasetError', 'JointsDataset', 'read_image', 'flip_joints', 'half_body_center_scale',
           'COCODataset', 'coco_image_path', 'load_coco_gt_records', 'load_coco_det_records',
           'MPIIDataset', 'load_mpii_records', 'build_dataset', 'prepare_synthetic',
           'DatasetInfo', 'UnknownDatasetError', 'dataset_info']


def build_dataset(cfg, is_train=False, rng=None, **kwargs):
    """The dataset named by ``DATASET.DATASET`` (see :func:`dataset_info`), in the form the
    model's pipeline needs (:func:`posekit.config.pipeline`): person crops for a top-down model,
    whole COCO images with keypoint and limb maps for a bottom-up one."""
    info = dataset_info(cfg.DATASET.DATASET)
    if is_bottom_up(cfg):
        if info.name != 'coco':
            raise ConfigError('%s is a bottom-up model, trained and validated on COCO keypoints; '
                              'DATASET.DATASET is %r' % (cfg.MODEL.NAME, cfg.DATASET.DATASET))
        from posekit.data.bottomup import BottomUpCOCODataset
        return BottomUpCOCODataset(cfg, is_train=is_train, rng=rng, **kwargs)
    cls = {c.__name__: c for c in (COCODataset, MPIIDataset)}[info.dataset_class]
    return cls(cfg, is_train=is_train, rng=rng, **kwargs)


def prepare_synthetic(cfg):
    """Generate the synthetic set of ``DATASET.SYNTHETIC`` under ``DATASET.ROOT`` if it is enabled
    and not there yet. The first process of each machine generates (a job across machines has
    no shared disk; on a shared one the first finished set is kept), the others wait. Returns
    the root or None."""
    syn = cfg.DATASET.SYNTHETIC
    if not syn.ENABLED:
        return None
    from posekit import distributed as dist
    from posekit.data.synthetic import ensure_synthetic
    fmt = dataset_info(cfg.DATASET.DATASET).synthetic_format
    if dist.is_local_main():
        import logging
        logger = logging.getLogger('posekit')
        step = max((int(syn.NUM_TRAIN) + int(syn.NUM_VALID)) // 10, 1)

        def progress(split, done, total):
            if done == total or done % step == 0:
                logger.info('=> generating synthetic %s data in %s: %s %d/%d', fmt.upper(),
                            cfg.DATASET.ROOT, split, done, total)

        _, created = ensure_synthetic(cfg.DATASET.ROOT, fmt, progress=progress,
                                      num_train=int(syn.NUM_TRAIN), num_valid=int(syn.NUM_VALID),
                                      seed=int(syn.SEED),
                                      image_size=tuple(int(v) for v in syn.IMAGE_SIZE),
                                      max_people=int(syn.MAX_PEOPLE))
        logger.info('=> synthetic %s data %s %s', fmt.upper(),
                    'generated in' if created else 'found in', cfg.DATASET.ROOT)
    dist.barrier()
    return cfg.DATASET.ROOT
