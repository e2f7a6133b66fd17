"""Training: optimiser, learning-rate schedule, the epoch loop, validation, checkpoints, resume.

The per-epoch loop of every reference (REFERENCE_SPEC 2.7): train one epoch, validate (flip
test if ``TEST.FLIP_TEST``), keep ``model_best`` when the indicator (PCKh Mean / COCO AP)
improves, save the checkpoint; after the last epoch save ``final_state``.

What is done differently from the references, on purpose:

* The multi-step schedule follows the epoch it is in: epochs ``< LR_STEP[0]`` use ``LR``, then
  ``LR * LR_FACTOR`` and so on ([MS] stepped its scheduler before the optimiser, which on modern
  PyTorch shifts the schedule one epoch early, 10.17). ``TRAIN.WARMUP_EPOCHS`` ramps the rate
  linearly per iteration over the first epochs. ``PolynomialDecay`` is the [PD] per-iteration
  schedule (power 0.9, end 0). The rate is a pure function of (epoch, iteration), so resuming
  restores it exactly.
* Every file is written atomically (temporary file + rename): a kill at any moment leaves the
  last good ``checkpoint.pdckpt``, ``model_best.pdparams`` and ``final_state.pdparams``.
* ``checkpoint.pdckpt`` holds the model, the optimiser (keyed by structured parameter names, so
  it fits any process), the next epoch, best/last indicator, the seed and the history; a resumed
  run with the same seed reproduces an uninterrupted one (sample order and augmentation are
  functions of (seed, epoch, sample), see :mod:`posekit.data.loader`).
* Several processes (``paddle.distributed.launch``): ``TRAIN.BATCH_SIZE_PER_GPU`` is the batch of
  each process; before validating, every process takes rank 0's BatchNorm statistics (the model
  rank 0 saves); validation predicts each sample once across processes and rank 0 computes the
  metric; only rank 0 writes.
* A loss that is not finite stops the run with :class:`TrainingDiverged`; the last checkpoint
  (previous epoch) is kept.
"""
import logging
import math
import os
import random
import time
import warnings

import numpy as np
import paddle

from posekit import distributed as dist
from posekit.cli import one_line
from posekit.errors import PosekitError, PosekitRuntimeError
from posekit.evaluation.accuracy import AverageMeter, heatmap_accuracy
from posekit.checkpoint import (CheckpointError, load_state_dict_strict, read_paddle_file,
                                save_paddle_state_dict)
from posekit.config import ConfigError, config_to_dict, is_bottom_up, save_config
from posekit.config.checks import LR_TYPES, OPTIMIZERS
from posekit.data import build_dataset
from posekit.evaluation.validate import check_ground_truth, validate
from posekit.data.loader import build_loader
from posekit.training.loss import build_loss
from posekit.models import arch_name, build_model
from posekit.outputs import ProgressLine, run_dirs
from posekit.runtime.dygraph import DygraphRunner

__all__ = ['Trainer', 'TrainingDiverged', 'learning_rate', 'build_optimizer', 'resolve_seed',
           'CHECKPOINT_NAME', 'BEST_NAME', 'FINAL_NAME']

logger = logging.getLogger('posekit')

CHECKPOINT_NAME = 'checkpoint.pdckpt'
BEST_NAME = 'model_best.pdparams'
FINAL_NAME = 'final_state.pdparams'


class TrainingDiverged(PosekitRuntimeError):
    """The loss became NaN or infinite."""


def resolve_seed(cfg):
    """``SEED`` when >= 0, else a fresh random seed (logged and stored in the checkpoint)."""
    seed = int(cfg.SEED)
    if seed < 0:
        seed = int.from_bytes(os.urandom(4), 'little') & 0x7FFFFFFF
    return seed


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    paddle.seed(seed)


def learning_rate(cfg, epoch, iteration, iters_per_epoch):
    """The rate for ``iteration`` (0-based) of ``epoch`` (see the module docstring)."""
    tr = cfg.TRAIN
    base = float(tr.LR)
    # load_config has checked the names (posekit.config.checks); the raise below is for a
    # hand-made cfg
    kind = LR_TYPES.get(str(tr.LR_TYPE).lower())
    if kind == 'MultiStepDecay':
        passed = sum(1 for m in tr.LR_STEP if epoch >= int(m))
        lr = base * float(tr.LR_FACTOR) ** passed
    elif kind == 'PolynomialDecay':
        total = max((int(tr.END_EPOCH) - int(tr.BEGIN_EPOCH)) * iters_per_epoch, 1)
        step = min((epoch - int(tr.BEGIN_EPOCH)) * iters_per_epoch + iteration, total)
        lr = base * (1.0 - step / float(total)) ** 0.9
    else:
        raise ConfigError("TRAIN.LR_TYPE must be 'MultiStepDecay' or 'PolynomialDecay', got %r"
                         % tr.LR_TYPE)
    warm = float(tr.WARMUP_EPOCHS)
    if warm > 0:
        done = (epoch - int(tr.BEGIN_EPOCH)) * iters_per_epoch + iteration + 1
        span = warm * iters_per_epoch
        if done < span:
            lr *= done / span
    return lr


def build_optimizer(cfg, model):
    """Adam without weight decay (all references) or SGD with momentum/WD/Nesterov."""
    tr = cfg.TRAIN
    params = model.parameters()
    name = str(tr.OPTIMIZER).lower()
    if name == 'adam':
        return paddle.optimizer.Adam(learning_rate=float(tr.LR), parameters=params)
    if name == 'sgd':
        return paddle.optimizer.Momentum(learning_rate=float(tr.LR), momentum=float(tr.MOMENTUM),
                                         parameters=params, use_nesterov=bool(tr.NESTEROV),
                                         weight_decay=paddle.regularizer.L2Decay(float(tr.WD)))
    raise ConfigError("TRAIN.OPTIMIZER must be one of %s, got %r"
                      % (', '.join(OPTIMIZERS), tr.OPTIMIZER))


def _param_names(model):
    """Runtime parameter name -> structured name (``backbone.conv1.weight``)."""
    return {p.name: k for k, p in model.named_parameters()}


def optimizer_state(optimizer, model):
    """The optimiser state with accumulator keys renamed after the structured parameter names,
    so that it loads into a model built in another process (Paddle's runtime names differ)."""
    names = _param_names(model)
    out = {}
    for key, value in optimizer.state_dict().items():
        out[_rename(key, names)] = value
    return out


def load_optimizer_state(optimizer, model, state):
    back = {v: k for k, v in _param_names(model).items()}
    optimizer.set_state_dict({_rename(key, back): value for key, value in state.items()})


def _rename(key, mapping):
    if not isinstance(key, str):
        return key
    if key in mapping:
        return mapping[key]
    # accumulators are '<param name>_<accumulator>_<n>'; take the longest matching parameter
    best = None
    for name in mapping:
        if key.startswith(name + '_') and (best is None or len(name) > len(best)):
            best = name
    return mapping[best] + key[len(best):] if best else key


class Trainer:
    """One training run of ``cfg`` (a resolved config) named after ``cfg_file``."""

    def __init__(self, cfg, cfg_file, resume=None, workers=None, vdl=True, progress=True):
        self.cfg = cfg
        self.cfg_file = cfg_file
        self.rank = dist.rank()
        self.world = dist.world_size()
        self.is_main = self.rank == 0
        self.workers = int(cfg.WORKERS if workers is None else workers)
        self.progress = progress
        self.output_dir, self.vdl_dir, self.time_str = run_dirs(cfg, cfg_file, create=self.is_main)
        self.checkpoint_path = os.path.join(self.output_dir, CHECKPOINT_NAME)
        self.resume_from, self.state, self.seed = self._starting_point(resume)
        seed_everything(self.seed + self.rank)

        self.net = build_model(cfg, is_train=True)
        # several processes: rank 0's initial weights everywhere, gradients averaged after each
        # backward (posekit.distributed, not paddle.DataParallel: a lost peer is one line there)
        dist.broadcast_parameters(self.net)
        self.model = self.net
        self.criterion = build_loss(cfg)
        # the training "Accuracy" is PCK of one heatmap argmax per joint and person crop; a
        # bottom-up model's maps hold every person at once, so it has none (not logged)
        self.with_accuracy = not is_bottom_up(cfg)
        self.optimizer = build_optimizer(cfg, self.net)
        self.amp = self._amp_enabled()
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=1024) if self.amp else None

        self.train_set = build_dataset(cfg, is_train=True)
        self.valid_set = build_dataset(cfg, is_train=False)
        check_ground_truth(cfg, self.valid_set)  # now, not after the first epoch
        if is_bottom_up(cfg):  # whole images are scored, not the samples (also read now)
            from posekit.evaluation.bottomup_validate import evaluation_images
            self.valid_count = '%d validation images' % len(evaluation_images(cfg, self.valid_set))
        else:
            self.valid_count = '%d validation samples' % len(self.valid_set)
        self.loader, self.seeded, self.sampler = build_loader(
            self.train_set, int(cfg.TRAIN.BATCH_SIZE_PER_GPU), shuffle=bool(cfg.TRAIN.SHUFFLE),
            workers=self.workers, seed=self.seed, rank=self.rank, world_size=self.world)
        self.iters_per_epoch = len(self.sampler)

        self.begin_epoch = int(cfg.TRAIN.BEGIN_EPOCH)
        self.end_epoch = int(cfg.TRAIN.END_EPOCH)
        self.best_perf = -math.inf
        self.best_epoch = -1
        self.last_perf = None
        self.history = []
        if self.state is not None:
            self._restore(self.state)
        self.writer = self._visualdl() if (vdl and self.is_main) else None

    # ------------------------------------------------------------------ set-up helpers
    def _starting_point(self, resume):
        """``(checkpoint path or None, checkpoint or None, seed)``, decided and read by rank 0
        and sent to every process: in a job across machines only rank 0's machine has the
        checkpoint, and a drawn seed (``SEED -1``) must be the same everywhere, since the
        processes share one sample order."""
        answer = failure = None
        if self.is_main:
            try:
                path = self._resume_path(resume)
                state = self._read_checkpoint(path) if path else None
                seed = resolve_seed(self.cfg)
                if state is not None:
                    seed = int(state.get('seed', seed))
                answer = (path, state, seed)
            except (PosekitError, OSError) as e:
                if self.world <= 1:
                    raise
                failure, answer = e, 'rank 0: %s' % one_line(e)
        answer = dist.broadcast_object(answer)
        if failure is not None:
            raise failure
        if isinstance(answer, str):  # rank 0 could not start: every process stops with its reason
            raise CheckpointError(answer)
        return answer

    def _resume_path(self, resume):
        cfg = self.cfg
        if resume is True or (resume is None and (cfg.TRAIN.RESUME or cfg.AUTO_RESUME)):
            path = cfg.TRAIN.CHECKPOINT or self.checkpoint_path
            if not os.path.isfile(path):
                if resume is True or cfg.TRAIN.RESUME:
                    raise CheckpointError('cannot resume: no checkpoint at %s (train without '
                                          '--resume to start a new run)' % path)
                return None  # AUTO_RESUME and nothing to resume: start afresh
            return path
        if isinstance(resume, str) and resume:
            if not os.path.isfile(resume):
                raise CheckpointError('cannot resume: checkpoint not found: %s' % resume)
            return resume
        return None

    def _read_checkpoint(self, path):
        # never paddle.load (pickle.load): a checkpoint from elsewhere must not run code; every
        # Tensor comes back as a numpy array, which set_state_dict/set_value take as they are
        state = read_paddle_file(path)
        needed = ('epoch', 'state_dict', 'optimizer')
        if not isinstance(state, dict) or any(k not in state for k in needed):
            raise CheckpointError('%s is not a training checkpoint (needs %s); to start from '
                                  'weights only use MODEL.PRETRAINED' % (path, ', '.join(needed)))
        return state

    def _restore(self, state):
        load_state_dict_strict(self.net, {k: np.asarray(v) if not isinstance(v, np.ndarray) else v
                                          for k, v in state['state_dict'].items()},
                               source=self.resume_from)
        load_optimizer_state(self.optimizer, self.net, state['optimizer'])
        if self.scaler is not None and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        self.begin_epoch = int(state['epoch'])
        self.best_perf = float(state.get('best_perf', -math.inf))
        self.best_epoch = int(state.get('best_epoch', -1))
        self.last_perf = state.get('perf')
        self.history = list(state.get('history', []))
        saved = state.get('config') or {}
        now = config_to_dict(self.cfg)
        changed = [k for k in ('MODEL', 'DATASET', 'LOSS') if saved.get(k) not in (None, now.get(k))]
        if changed:
            logger.warning('=> the checkpoint was trained with different %s settings; resuming '
                           'anyway', '/'.join(changed))
        logger.info('=> resumed from %s (next epoch %d, best %.4f at epoch %d, seed %d)',
                    self.resume_from, self.begin_epoch, self.best_perf, self.best_epoch, self.seed)

    def _amp_enabled(self):
        if not self.cfg.TRAIN.AMP:
            return False
        if not paddle.is_compiled_with_cuda() or 'gpu' not in paddle.device.get_device():
            logger.warning('=> TRAIN.AMP needs a GPU; training in float32 on %s',
                           paddle.device.get_device())
            return False
        return True

    def _visualdl(self):
        try:
            from visualdl import LogWriter
        except ImportError:
            logger.warning('=> visualdl is not installed; no VisualDL scalars are written')
            return None
        return LogWriter(logdir=self.vdl_dir)

    def _scalar(self, tag, value, step):
        if self.writer is not None and value is not None and np.isfinite(value):
            self.writer.add_scalar(tag=tag, value=float(value), step=int(step))

    # ------------------------------------------------------------------ the loop
    def fit(self):
        """Train from ``begin_epoch`` to ``END_EPOCH``; returns the best and last indicator."""
        try:
            return self._fit()
        except dist.PeerLost as e:
            # every process of the job stops; rank 0 kept the last finished epoch
            raise dist.PeerLost('%s; the last finished epoch is in %s on rank 0\'s machine: '
                                'start every node again with --resume' % (e, self.checkpoint_path)
                                ) from e

    def _fit(self):
        cfg = self.cfg
        # Paddle's BN announces once that it tracks statistics in training mode, as expected
        warnings.filterwarnings('ignore', message='When training, we now always track')
        if self.is_main:
            path = save_config(cfg, os.path.join(self.output_dir, 'config.yaml'))
            logger.info('=> config (also in %s):\n%s', path, _yaml(cfg))
            logger.info('=> output folder %s, VisualDL logs %s', self.output_dir, self.vdl_dir)
            logger.info('=> %d training samples, %s; %d process(es) x batch '
                        '%d = %d per step, %d iterations per epoch; seed %d',
                        len(self.train_set), self.valid_count, self.world,
                        int(cfg.TRAIN.BATCH_SIZE_PER_GPU),
                        self.world * int(cfg.TRAIN.BATCH_SIZE_PER_GPU), self.iters_per_epoch,
                        self.seed)
        if self.begin_epoch >= self.end_epoch:
            logger.info('=> nothing to train: next epoch %d, END_EPOCH %d', self.begin_epoch,
                        self.end_epoch)
        for epoch in range(self.begin_epoch, self.end_epoch):
            self.train_epoch(epoch)
            self._sync_bn_statistics()
            name_values, perf, result = validate(
                cfg, DygraphRunner(self.net), self.valid_set, self.output_dir,
                criterion=self.criterion,
                workers=self.workers, progress=self._progress('valid %d' % epoch))
            is_best = perf > self.best_perf
            if is_best:
                self.best_perf, self.best_epoch = float(perf), epoch
            self.last_perf = float(perf)
            self.history.append({'epoch': epoch, 'perf': float(perf),
                                 'valid_loss': float(result['loss']),
                                 'valid_acc': float(result['acc']),
                                 'metrics': {k: float(v) for k, v in name_values.items()}})
            self._scalar('valid_loss', result['loss'], epoch)
            self._scalar('valid_acc', result['acc'], epoch)
            for k, v in name_values.items():
                self._scalar('valid/%s' % k, v, epoch)
            if self.is_main:
                if is_best:
                    save_paddle_state_dict(self.net.state_dict(),
                                           os.path.join(self.output_dir, BEST_NAME))
                logger.info('=> epoch %d: %s %.4f (best %.4f at epoch %d)', epoch,
                            'AP' if 'AP' in name_values else 'Mean', perf, self.best_perf,
                            self.best_epoch)
                self.save_checkpoint(epoch + 1)
            dist.barrier()
        if self.is_main:
            path = os.path.join(self.output_dir, FINAL_NAME)
            logger.info('=> saving final model state to %s', path)
            save_paddle_state_dict(self.net.state_dict(), path)
        if self.writer is not None:
            self.writer.close()
        dist.barrier()
        return {'best_perf': self.best_perf, 'best_epoch': self.best_epoch,
                'last_perf': self.last_perf, 'output_dir': self.output_dir,
                'history': self.history}

    def _sync_bn_statistics(self):
        """Give every process rank 0's BatchNorm statistics before validating and saving.

        Parameters stay identical across processes (gradients are averaged), but each process
        accumulates running statistics from its own batches; without this, each rank would
        validate its share with a slightly different model than the one rank 0 saves.
        """
        if self.world <= 1:
            return
        # Paddle keeps BN statistics as non-trainable parameters, not buffers: take both
        stats = [p for p in self.net.parameters() if p.stop_gradient] + list(self.net.buffers())
        dist.broadcast_tensors(stats, what='copying rank 0\'s BatchNorm statistics')

    def _progress(self, label):
        if not (self.progress and self.is_main):
            return None
        return ProgressLine(label, 1)

    def save_checkpoint(self, next_epoch):
        state = {
            'epoch': next_epoch,
            'model': arch_name(self.cfg),
            'state_dict': self.net.state_dict(),
            'optimizer': optimizer_state(self.optimizer, self.net),
            'perf': self.last_perf,
            'best_perf': self.best_perf,
            'best_epoch': self.best_epoch,
            'seed': self.seed,
            'lr': float(self.optimizer.get_lr()),
            'history': self.history,
            'config': config_to_dict(self.cfg),
        }
        if self.scaler is not None:
            state['scaler'] = self.scaler.state_dict()
        logger.info('=> saving checkpoint to %s', self.checkpoint_path)
        save_paddle_state_dict(state, self.checkpoint_path)

    def train_epoch(self, epoch):
        cfg = self.cfg
        self.sampler.set_epoch(epoch)
        self.seeded.set_epoch(epoch)
        self.model.train()
        n = self.iters_per_epoch
        batch_time, data_time = AverageMeter(), AverageMeter()
        losses, accs = AverageMeter(), AverageMeter()
        print_freq = max(int(cfg.PRINT_FREQ), 1)
        remaining_epochs = self.end_epoch - epoch
        bar = ProgressLine('epoch %d' % epoch, n, enabled=self.progress and self.is_main)
        end = time.time()
        for i, (inputs, target, target_weight, _meta) in enumerate(self.loader):
            data_time.update(time.time() - end)
            lr = learning_rate(cfg, epoch, i, n)
            self.optimizer.set_lr(lr)
            x, y, w = _tensor(inputs), _tensor(target), _tensor(target_weight)
            if self.amp:
                with paddle.amp.auto_cast():
                    output = self.model(x)
                    loss = self.criterion(_float32(output), y, w)
                scaled = self.scaler.scale(loss)
                scaled.backward()
                dist.average_gradients(self.net.parameters())
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                output = self.model(x)
                loss = self.criterion(output, y, w)
                loss.backward()
                dist.average_gradients(self.net.parameters())
                self.optimizer.step()
            self.optimizer.clear_grad()

            loss_value = self._global_loss(loss)
            if not math.isfinite(loss_value):
                last = ('%s (next epoch %d)' % (self.checkpoint_path, epoch)
                        if os.path.isfile(self.checkpoint_path) else 'none written yet')
                raise TrainingDiverged(
                    'loss is %s at epoch %d, iteration %d (lr %.3g); stopping. The last good '
                    'checkpoint is kept: %s. Lower TRAIN.LR or check the data, then resume with '
                    '--resume.' % (loss_value, epoch, i, lr, last))
            bs = inputs.shape[0]
            losses.update(loss_value, bs)
            if self.with_accuracy:
                _, avg_acc, cnt, _ = heatmap_accuracy(output.numpy(), y.numpy())
                accs.update(avg_acc, cnt)
            batch_time.update(time.time() - end)
            end = time.time()
            bar(i + 1)
            if i % print_freq == 0 or i == n - 1:
                left = (remaining_epochs * n - i - 1) * batch_time.avg
                acc = ('Accuracy {acc.val:.3f} ({acc.avg:.3f})\t'.format(acc=accs)
                       if self.with_accuracy else '')
                logger.info(
                    'Epoch: [{0}][{1}/{2}]\tTime {bt.val:.3f}s ({bt.avg:.3f}s)\t'
                    'Speed {speed:.1f} samples/s\tData {dt.val:.3f}s ({dt.avg:.3f}s)\t'
                    'Lr {lr:.6f}\tLoss {loss.val:.5f} ({loss.avg:.5f})\t'
                    '{acc}eta: {eta}'.format(
                        epoch, i, n, bt=batch_time, speed=bs * self.world / max(batch_time.val, 1e-9),
                        dt=data_time, lr=lr, loss=losses, acc=acc, eta=_eta(left)))
                step = epoch * n + i
                self._scalar('train_loss', losses.val, step)
                if self.with_accuracy:
                    self._scalar('train_acc', accs.val, step)
                self._scalar('lr', lr, step)
        bar.close()
        return losses.avg, accs.avg if self.with_accuracy else None

    def _global_loss(self, loss):
        if self.world <= 1:
            return float(loss)
        t = dist.all_reduce_sum(loss.detach().clone(), what='summing the loss')
        return float(t) / self.world


def _float32(output):
    """``output`` cast to float32 for the loss under AMP: one tensor (top-down heatmaps) or the
    nested stacks x scales lists of a bottom-up model."""
    if isinstance(output, (list, tuple)):
        return [_float32(o) for o in output]
    return output.astype('float32')


def _tensor(x):
    # worker processes of paddle.io.DataLoader hand over tensors, the in-process loader numpy
    return x if isinstance(x, paddle.Tensor) else paddle.to_tensor(x)


def _yaml(cfg):
    import yaml
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None).rstrip()


def _eta(seconds):
    seconds = int(max(seconds, 0))
    return '%02d:%02d:%02d' % (seconds // 3600, seconds % 3600 // 60, seconds % 60)
