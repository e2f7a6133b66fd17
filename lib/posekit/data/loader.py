"""Feeding a dataset to Paddle: seeded sample order and augmentation, sharded across processes.

Reproducibility does not depend on the number of loader workers or on where a run was resumed:

* the sample order of epoch ``e`` is a permutation drawn from ``(seed, e)``;
* the augmentation of sample ``i`` in epoch ``e`` is drawn from its own generator seeded with
  ``(seed, e, i)``, set just before the sample is prepared (also inside worker processes).

With several processes (``paddle.distributed.launch``), each rank takes every ``world_size``-th
sample of the shared permutation, so ``TRAIN.BATCH_SIZE_PER_GPU`` is the batch of one process and
the effective batch is that times the number of processes. The order is padded by repeating its
first samples so that every rank runs the same number of iterations (like
``DistributedBatchSampler``).
"""
import math

import numpy as np

from posekit.config import ConfigError
from posekit.data.base import DatasetError

__all__ = ['EpochBatchSampler', 'FixedBatchSampler', 'SeededDataset', 'collate', 'build_loader',
           'build_eval_loader', 'shard_indices']


def shard_indices(num_samples, rank=0, world_size=1):
    """Indices of an ordered pass over ``num_samples`` that belong to ``rank`` (no padding).

    Used for validation, where every sample must be predicted exactly once.
    """
    return list(range(rank, num_samples, world_size))


class EpochBatchSampler:
    """Batches of sample indices for one rank; call :meth:`set_epoch` before each epoch."""

    def __init__(self, num_samples, batch_size, shuffle=True, drop_last=False, seed=0, rank=0,
                 world_size=1):
        if num_samples <= 0:
            raise DatasetError('cannot sample from an empty dataset')
        if batch_size <= 0:
            raise ConfigError('batch size must be positive, got %d' % batch_size)
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.per_rank = int(math.ceil(self.num_samples / float(self.world_size)))

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def indices(self):
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        total = self.per_rank * self.world_size
        if total > self.num_samples:  # pad so that every rank gets the same count
            order = np.concatenate([order, order[:total - self.num_samples]])
        return order[self.rank:total:self.world_size].tolist()

    def __iter__(self):
        idx = self.indices()
        for start in range(0, len(idx), self.batch_size):
            batch = idx[start:start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self):
        if self.drop_last:
            return self.per_rank // self.batch_size
        return int(math.ceil(self.per_rank / float(self.batch_size)))


class SeededDataset:
    """Wraps a :class:`posekit.data.JointsDataset`: each sample gets its own generator.

    ``seed`` None keeps the dataset's own generator (not reproducible with several workers).
    """

    def __init__(self, dataset, seed=None):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        idx = int(idx)
        if self.seed is not None and self.dataset.is_train:
            self.dataset.rng = np.random.default_rng([int(self.seed), self.epoch, idx])
        inp, target, target_weight, meta = self.dataset[idx]
        meta = dict(meta, index=idx)
        return inp, target, target_weight, meta


def collate(samples):
    """Stack (input, target, target_weight, meta) samples into numpy arrays (meta: dict of arrays,
    strings stay lists)."""
    inputs = np.stack([s[0] for s in samples]).astype(np.float32, copy=False)
    targets = np.stack([s[1] for s in samples]).astype(np.float32, copy=False)
    weights = np.stack([s[2] for s in samples]).astype(np.float32, copy=False)
    meta = {}
    for key in samples[0][3]:
        values = [s[3][key] for s in samples]
        if isinstance(values[0], str):
            meta[key] = values
        else:
            meta[key] = np.stack([np.asarray(v) for v in values])
    return inputs, targets, weights, meta


class _ListLoader:
    """In-process loader (``workers == 0``): no worker processes, same batches."""

    def __init__(self, dataset, batch_sampler):
        self.dataset = dataset
        self.batch_sampler = batch_sampler

    def __iter__(self):
        for batch in self.batch_sampler:
            yield collate([self.dataset[i] for i in batch])

    def __len__(self):
        return len(self.batch_sampler)


def build_loader(dataset, batch_size, shuffle=False, workers=0, seed=None, rank=0, world_size=1,
                 drop_last=False, use_shared_memory=True):
    """A loader yielding numpy ``(inputs, targets, target_weights, meta)`` batches.

    Returns ``(loader, seeded_dataset, batch_sampler)``; call ``set_epoch`` on the last two before
    iterating an epoch. ``workers > 0`` uses ``paddle.io.DataLoader`` with worker processes.
    """
    seeded = SeededDataset(dataset, seed)
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=shuffle, drop_last=drop_last,
                                seed=0 if seed is None else seed, rank=rank, world_size=world_size)
    if workers <= 0:
        return _ListLoader(seeded, sampler), seeded, sampler
    from paddle.io import DataLoader
    loader = DataLoader(seeded, batch_sampler=sampler, num_workers=int(workers), collate_fn=collate,
                        use_shared_memory=use_shared_memory, return_list=True)
    return loader, seeded, sampler


class FixedBatchSampler:
    """Consecutive batches of a fixed index list (validation: every sample exactly once)."""

    def __init__(self, indices, batch_size):
        self.idx = list(indices)
        self.batch_size = int(batch_size)

    def set_epoch(self, epoch):
        pass

    def __iter__(self):
        for start in range(0, len(self.idx), self.batch_size):
            yield self.idx[start:start + self.batch_size]

    def __len__(self):
        return int(math.ceil(len(self.idx) / float(self.batch_size)))


def build_eval_loader(dataset, batch_size, workers=0, rank=0, world_size=1,
                      use_shared_memory=True):
    """A loader over this rank's share of ``dataset`` in order (see :func:`shard_indices`)."""
    sampler = FixedBatchSampler(shard_indices(len(dataset), rank, world_size), batch_size)
    seeded = SeededDataset(dataset, None)
    if workers <= 0:
        return _ListLoader(seeded, sampler)
    from paddle.io import DataLoader
    return DataLoader(seeded, batch_sampler=sampler, num_workers=int(workers), collate_fn=collate,
                      use_shared_memory=use_shared_memory, return_list=True)
