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

Worker processes (``WORKERS`` >= 1, ``paddle.io.DataLoader``):

* they end with their parent however it ends, kill -9 included (:func:`posekit.distributed.
  die_with_parent`: the kernel's SIGTERM at the parent's death on Linux, and a thread checking
  the parent once a second everywhere; Paddle's own check sits in a loop a blocked worker never
  comes back to). They leave after removing their shared-memory files.
* A posekit error while preparing a sample (a missing or unreadable image) travels to the parent
  inside the batch and is raised there with its own message; through Paddle it would arrive as
  "Blocking queue is killed" with the worker's traceback printed by another thread.
* Datasets with large samples may declare ``raw_layout()``: the ``(shape, dtype)`` of the three
  arrays of ``raw_item(i)``, which is ``dataset[i]`` with the input left as uint8 pixels
  (``dataset[i]`` scales them with :func:`pixels_to_unit`). Their workers write raw items straight
  into shared memory mapped before the workers start (:class:`_SharedSlots`, a few batches per
  worker, reused), send Paddle only the slot number and the meta, and this process scales the
  pixels as it takes the batch out: the same arrays as in-process, as numpy. Through Paddle's own
  path a 512x512 bottom-up sample (6.4 MB in float32) was stacked, copied into a tensor and copied
  again into a fresh shared-memory file, page faults included: about 2x the cost of making it.
"""
import contextlib
import functools
import gc
import importlib
import math
import mmap
import multiprocessing
import os
import signal

import numpy as np

from posekit.config import ConfigError
from posekit.data.base import DatasetError
from posekit.distributed import die_with_parent
from posekit.errors import PosekitError

__all__ = ['EpochBatchSampler', 'FixedBatchSampler', 'SeededDataset', 'collate', 'build_loader',
           'build_eval_loader', 'shard_indices', 'pixels_to_unit']


def pixels_to_unit(pixels):
    """uint8 pixels -> float32 ``pixels / 255`` (the one place raw inputs are scaled).

    Each value is the float32 quotient ``float32(v) / float32(255)``, what the reference's
    ``img.astype(np.float32) / 255.`` gives, in one pass without a temporary.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError('pixels_to_unit expects uint8 pixels, got %s' % pixels.dtype)
    out = np.empty(pixels.shape, dtype=np.float32)
    np.divide(pixels, np.float32(255), out=out, dtype=np.float32)
    return out


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
        self.relay_errors = False  # set in worker processes (_worker_init)
        self.raw_items = False     # dataset.raw_item instead of dataset[i] (_worker_init)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        idx = int(idx)
        if self.seed is not None and self.dataset.is_train:
            self.dataset.rng = np.random.default_rng([int(self.seed), self.epoch, idx])
        try:
            if self.raw_items:
                inp, target, target_weight, meta = self.dataset.raw_item(idx)
            else:
                inp, target, target_weight, meta = self.dataset[idx]
        except PosekitError as e:
            if not self.relay_errors:
                raise
            return _Failure(e)
        meta = dict(meta, index=idx)
        return inp, target, target_weight, meta


class _Failure:
    """A sample a worker could not prepare: the error's class and message, for the parent."""

    def __init__(self, error):
        self.kind = '%s:%s' % (type(error).__module__, type(error).__qualname__)
        self.message = str(error)

    def batch(self):
        # shaped like a batch so that Paddle carries it; _WorkerLoader raises it in the parent
        empty = np.zeros((1,), np.float32)
        return empty, empty, empty, {_FAILURE_KEY: [self.kind, self.message]}


_FAILURE_KEY = 'posekit_worker_error'


def _raise_failure(kind, message):
    """Raise, in the parent, the error a worker sent (its own class when it can be rebuilt from
    the message alone, else :class:`DatasetError`)."""
    module, _, name = kind.partition(':')
    cls = None
    try:
        cls = importlib.import_module(module)
        for part in name.split('.'):
            cls = getattr(cls, part)
    except (ImportError, AttributeError):
        cls = None
    if isinstance(cls, type) and issubclass(cls, PosekitError):
        try:
            error = cls(message)
        except TypeError:  # a constructor with other arguments
            error = DatasetError(message)
    else:
        error = DatasetError(message)
    raise error


def collate(samples):
    """Stack (input, target, target_weight, meta) samples into numpy arrays (meta: dict of arrays,
    strings stay lists)."""
    for s in samples:
        if isinstance(s, _Failure):
            return s.batch()
    inputs = np.stack([s[0] for s in samples]).astype(np.float32, copy=False)
    targets = np.stack([s[1] for s in samples]).astype(np.float32, copy=False)
    weights = np.stack([s[2] for s in samples]).astype(np.float32, copy=False)
    return inputs, targets, weights, _collate_meta(samples)


def _collate_meta(samples):
    meta = {}
    for key in samples[0][3]:
        values = [s[3][key] for s in samples]
        if isinstance(values[0], str):
            meta[key] = values
        else:
            meta[key] = np.stack([np.asarray(v) for v in values])
    return meta


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


class _WorkerLoader:
    """``paddle.io.DataLoader`` that raises, in this process, an error a worker sent, and takes
    the batches of raw items out of their shared-memory slots (``slots``, None: Paddle's path)."""

    def __init__(self, loader, slots=None):
        self.loader = loader
        self.slots = slots

    def __iter__(self):
        if self.slots is not None:
            self.slots.start()  # before iter() forks the workers of this pass
        # iter() forks the workers, with every object frozen so that their garbage collector
        # leaves what they inherit alone. The queue of a pass left early (an error) is garbage
        # while its reader thread may still wait on it; a worker destroying its copy waited
        # forever for that thread, in C, where not even SIGTERM reached it (seen: passes
        # started right after one left early hung now and then, with either transport)
        thawed = gc.get_freeze_count() == 0  # (what a caller froze stays frozen)
        gc.freeze()
        try:
            with _one_opencv_thread():
                batches = iter(self.loader)
        finally:
            if thawed:
                gc.unfreeze()
        try:
            for batch in batches:
                meta = batch[3]
                if isinstance(meta, dict) and _FAILURE_KEY in meta:
                    _raise_failure(*meta[_FAILURE_KEY])
                if isinstance(batch[0], _SlotRef):
                    batch = tuple(self.slots.take(batch[0])) + (meta,)
                yield batch
        finally:
            # Paddle stops its workers at the end of a pass only: its reader thread keeps an
            # iterator left early (an error, Ctrl-C) and the workers alive until the
            # interpreter exits, where their ends are reported as failures
            shutdown = getattr(batches, '_try_shutdown_all', None)
            if shutdown is not None:
                try:
                    # (nothing left to do after a complete pass); a worker that hangs (a file
                    # on a dead network share) is not waited for: it ends with this process
                    shutdown(WORKER_JOIN_TIMEOUT)
                except Exception:
                    # a worker that has already ended is reported again here; what stopped the
                    # pass (the error or the signal on its way up) is what matters
                    pass

    def __len__(self):
        return len(self.loader)


@contextlib.contextmanager
def _one_opencv_thread():
    """OpenCV without its thread pool while the workers are forked, which they keep: one core
    per worker (a pool of one thread per core in every worker made the workers and the training
    process fight over the cores; the pixels are the same). Set here, not in the workers: a
    worker inherits the pool's state but not its threads, and cv2.setNumThreads there waits
    forever for them."""
    import cv2
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


# --------------------------------------------------------------------------------------------
# raw items through shared memory

# batches one worker can have in shared memory at once: Paddle keeps prefetch_factor (2) batches
# per worker asked for, and asks for the next one before the batch it returns is taken out
SLOTS_PER_WORKER = 3
_ALIGN = 64


class _SlotRef:
    """What a worker sends Paddle instead of the arrays of a batch."""

    def __init__(self, worker, slot, count):
        self.worker = int(worker)
        self.slot = int(slot)
        self.count = int(count)


class _Ring:
    """The batch slots of one worker in anonymous shared memory, mapped before the worker is
    forked (no file: nothing is left behind however the processes end; reused, so the pages are
    faulted in once per pass). The worker fills the slots in turn and this process empties them
    in the same order (batches come out in order), so a semaphore counting the free slots is all
    the bookkeeping; a worker ahead of the consumer waits on it."""

    def __init__(self, fields, batch_size, count):
        self.fields = fields
        self.count = int(count)
        self.offsets = []
        size = 0
        for shape, dtype in fields:
            self.offsets.append(size)
            nbytes = int(batch_size) * int(np.prod(shape)) * dtype.itemsize
            size += -(-nbytes // _ALIGN) * _ALIGN
        self.slot_bytes = size
        self.memory = mmap.mmap(-1, size * self.count)
        self.free = multiprocessing.Semaphore(self.count)
        self.filled = 0  # in the worker: batches written so far

    def arrays(self, slot, n):
        base = slot * self.slot_bytes
        return [np.frombuffer(self.memory, dtype, n * int(np.prod(shape)), base + offset)
                .reshape((n,) + shape) for (shape, dtype), offset in zip(self.fields, self.offsets)]

    def put(self, samples):
        """(worker) Copy the arrays of ``samples`` into the next slot; returns its number."""
        for s in samples:
            for f, (shape, dtype) in enumerate(self.fields):
                a = s[f]
                if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
                    raise DatasetError('raw item array %d is %s %s where raw_layout() says %s %s'
                                       % (f, getattr(a, 'dtype', type(a).__name__),
                                          getattr(a, 'shape', ''), dtype, shape))
        self.free.acquire()
        slot = self.filled % self.count
        self.filled += 1
        for f, out in enumerate(self.arrays(slot, len(samples))):
            for i, s in enumerate(samples):
                out[i] = s[f]
        return slot

    def take(self, slot, n):
        """(parent) The batch in ``slot`` as new arrays, uint8 inputs scaled by
        :func:`pixels_to_unit`; the slot is then free."""
        try:
            arrays = self.arrays(slot, n)
            inputs = arrays[0]
            out = [pixels_to_unit(inputs) if inputs.dtype == np.uint8 else inputs.copy()]
            out += [a.copy() for a in arrays[1:]]
        finally:
            arrays = inputs = None  # no view of the slot outlives it
            self.free.release()
        return out


class _SharedSlots:
    """Raw-item batches of every worker of a pass (see the module notes): ``collate`` in the
    workers, ``take`` here. Fresh rings for each pass (``start``), so a worker of an earlier pass
    that is still ending never writes into memory the next pass uses."""

    def __init__(self, layout, batch_size, workers):
        try:
            self.fields = [(tuple(int(v) for v in shape), np.dtype(dtype))
                           for shape, dtype in layout]
        except (TypeError, ValueError) as e:
            raise DatasetError('raw_layout() must list (shape, dtype) pairs, got %r'
                               % (layout,)) from e
        if len(self.fields) != 3:
            raise DatasetError('raw_layout() must describe 3 arrays (input, target, target '
                               'weight), got %d' % len(self.fields))
        self.batch_size = int(batch_size)
        self.workers = int(workers)
        self.rings = None

    def start(self):
        self.rings = [_Ring(self.fields, self.batch_size, SLOTS_PER_WORKER)
                      for _ in range(self.workers)]

    def collate(self, samples):
        for s in samples:
            if isinstance(s, _Failure):
                return s.batch()
        from paddle.io import get_worker_info
        worker = get_worker_info().id
        try:
            slot = self.rings[worker].put(samples)
        except PosekitError as e:  # a raw item unlike its raw_layout(): raised in the parent
            return _Failure(e).batch()
        # (Paddle drops a batch without any array: the meta always has SeededDataset's index)
        return _SlotRef(worker, slot, len(samples)), None, None, _collate_meta(samples)

    def take(self, ref):
        return self.rings[ref.worker].take(ref.slot, ref.count)


def _shared_slots(dataset, batch_size, workers):
    """A :class:`_SharedSlots` when ``dataset`` declares raw items, else None (Paddle's path)."""
    if not (callable(getattr(dataset, 'raw_layout', None))
            and callable(getattr(dataset, 'raw_item', None))):
        return None
    # anonymous shared memory reaches forked workers only (Paddle starts them with the default
    # method, fork on Linux); elsewhere Paddle's own path carries the batches
    if multiprocessing.get_start_method() != 'fork':
        return None
    return _SharedSlots(dataset.raw_layout(), batch_size, workers)


# --------------------------------------------------------------------------------------------
# worker processes

WORKER_JOIN_TIMEOUT = 2.0  # seconds to wait for each worker of a pass left early


def _cleanup_shared_memory():
    """Remove this worker's shared-memory files (a worker killed with SIGKILL leaves them in
    /dev/shm)."""
    try:
        from paddle.base import core
        core._cleanup_mmap_fds()
    except Exception:  # leaving matters more than tidying
        pass


def _on_sigterm(signum, frame):
    _cleanup_shared_memory()
    # end as "killed by SIGTERM", the status Paddle and multiprocessing expect of a worker they
    # stop (an exit code would be reported as a worker failure)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _orphaned():
    _cleanup_shared_memory()
    os._exit(128 + int(signal.SIGTERM))  # the parent is gone: nobody reads the status


def _worker_init(parent_pid, worker_id, raw_items=False):
    """First thing in every loader worker (``worker_init_fn``); ``raw_items``: the dataset's
    ``raw_item`` feeds the shared-memory slots."""
    # Ctrl-C reaches the whole process group: the parent stops its workers; a worker ignores it
    # (else each prints a KeyboardInterrupt traceback). SIGTERM ends a worker quietly, and it
    # comes at the parent's death, however the parent died.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    die_with_parent(_orphaned, parent_pid)
    from paddle.io import get_worker_info
    seeded = get_worker_info().dataset
    seeded.relay_errors = True
    seeded.raw_items = bool(raw_items)


def _paddle_loader(seeded, sampler, workers, use_shared_memory):
    from paddle.io import DataLoader
    slots = None
    if use_shared_memory:
        slots = _shared_slots(seeded.dataset, sampler.batch_size, workers)
    init = functools.partial(_worker_init, os.getpid(), raw_items=slots is not None)
    loader = DataLoader(seeded, batch_sampler=sampler, num_workers=int(workers),
                        collate_fn=collate if slots is None else slots.collate,
                        use_shared_memory=use_shared_memory, return_list=True,
                        worker_init_fn=init)
    return _WorkerLoader(loader, slots)


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
    return _paddle_loader(seeded, sampler, workers, use_shared_memory), seeded, sampler


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
    return _paddle_loader(seeded, sampler, workers, use_shared_memory)
