"""Process-group helpers: one process per device, started by ``paddle.distributed.launch``.

A single process (no launcher) is world size 1, rank 0, and none of these calls communicate.
On CPU the launcher uses gloo; on GPUs NCCL. Only rank 0 writes files, logs and VisualDL.

Every collective operation goes through :func:`_communicate`, so that the death of another
process (or of a whole node) ends this one with one line (:class:`PeerLost`) instead of a
traceback. That is also why gradients are averaged here, from Python, rather than by
``paddle.DataParallel``: its reducer communicates inside the C++ backward pass, where a gloo
error aborts the process with a C++ dump (Paddle 3.3).

gloo gives up on a peer that does not answer within 30 s (fixed in Paddle 3.3), so no collective
waits for ever, but neither may rank 0 work alone for longer (COCO evaluation, saving a large
checkpoint) while the others wait in one. :func:`barrier` and :func:`broadcast_object`, which
follow such work, therefore first wait for rank 0 on the launcher's key-value store, which has
no such limit (its own is 900 s) and fails at once when rank 0's process is gone.
"""
import os
import re
import signal
import sys
import threading

from posekit.errors import PosekitRuntimeError

__all__ = ['world_size', 'rank', 'is_main', 'local_rank', 'is_local_main', 'init',
           'all_gather_object', 'barrier', 'broadcast_object', 'PeerLost', 'all_reduce_sum',
           'broadcast_tensors', 'broadcast_parameters', 'average_gradients', 'die_with_parent',
           'launched']


class PeerLost(PosekitRuntimeError):
    """A collective operation failed: another process of the job died or stopped answering."""


def _communicate(what, call, *args, **kwargs):
    """``call(*args, **kwargs)``, a collective; its failure (Paddle raises a RuntimeError with
    gloo's message) becomes :class:`PeerLost` naming ``what`` was being done."""
    try:
        return call(*args, **kwargs)
    except PosekitRuntimeError:
        raise
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # gloo prefixes its messages with its source position: "[.../pair.cc:576] Read error"
        detail = re.sub(r'^\[[^\]]*\]\s*', '', lines[0]) if lines else type(e).__name__
        raise PeerLost('lost contact with the other processes of the job while %s (one died or '
                       'did not answer within gloo\'s 30 s; this is rank %d of %d): %s'
                       % (what, rank(), world_size(), detail)) from e


def world_size():
    """Number of processes of the job (from the launcher's environment)."""
    return int(os.environ.get('PADDLE_TRAINERS_NUM', os.environ.get('WORLD_SIZE', '1')) or 1)


def rank():
    return int(os.environ.get('PADDLE_TRAINER_ID', os.environ.get('RANK', '0')) or 0)


def is_main():
    return rank() == 0


def local_rank():
    """Rank of this process among those of its machine (0 without the launcher)."""
    for key in ('PADDLE_LOCAL_RANK', 'PADDLE_RANK_IN_NODE', 'LOCAL_RANK'):
        if os.environ.get(key):
            return int(os.environ[key])
    return 0


def is_local_main():
    """The first process of its machine: the one that prepares what each machine needs on its
    own disk (a generated dataset) when the job spans several machines."""
    return local_rank() == 0


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_WATCH_INTERVAL = 1.0  # seconds between two checks that the parent is alive


def die_with_parent(on_orphan, parent_pid=None):
    """End this process when its parent dies, however the parent dies (kill -9 included).

    On Linux the kernel sends this process SIGTERM at the parent's death
    (``prctl(PR_SET_PDEATHSIG)``); everywhere, a daemon thread polls the parent and calls
    ``on_orphan()`` once it is gone (also the fallback if the parent died before this call).
    Used by the loader's worker processes and by the processes ``paddle.distributed.launch``
    starts, which it puts in sessions of their own: killing the launcher alone would otherwise
    leave them training.
    """
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    if sys.platform.startswith('linux'):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watching thread still ends this process
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        on_orphan()
        return

    def watch():
        import time
        while os.getppid() == parent_pid:
            time.sleep(PARENT_WATCH_INTERVAL)
        on_orphan()

    threading.Thread(target=watch, name='posekit-parent-watch', daemon=True).start()


def launched():
    """True in a process started by ``paddle.distributed.launch`` (it sets these two)."""
    return 'PADDLE_TRAINER_ID' in os.environ and 'PADDLE_LOG_DIR' in os.environ


def _stop_self():
    # the launcher is gone: stop as on its SIGTERM (posekit.cli prints one line, exit 143)
    os.kill(os.getpid(), signal.SIGTERM)


_initialised = False
_tied_to_launcher = False


def init():
    """Under ``paddle.distributed.launch``: tie this process to the launcher (it ends when the
    launcher dies) and, with > 1 process, initialise the process group once."""
    global _initialised, _tied_to_launcher
    if launched() and not _tied_to_launcher:
        die_with_parent(_stop_self)
        _tied_to_launcher = True
    if world_size() > 1 and not _initialised:
        import paddle.distributed as dist
        dist.init_parallel_env()
        _initialised = True
    return world_size() > 1


_rank0_waits = 0


def _wait_for_rank0(what):
    """Every process but rank 0 waits (without gloo's 30 s limit) until rank 0 gets here too."""
    global _rank0_waits
    _rank0_waits += 1   # every process calls this in the same order: the keys match
    from paddle.base import core
    key = 'posekit/rank0_ready/%d' % _rank0_waits
    store = core.create_or_get_global_tcp_store()
    if is_main():
        store.set(key, b'1')
        return
    try:
        store.wait(key)
    except Exception as e:  # the store raises ValueError/RuntimeError when rank 0 is gone
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise PeerLost('lost contact with rank 0 while %s (this is rank %d of %d): %s'
                       % (what, rank(), world_size(), lines[0] if lines else type(e).__name__)
                       ) from e


def all_gather_object(obj):
    """List with every rank's ``obj`` (rank order); ``[obj]`` in a single process."""
    if world_size() <= 1:
        return [obj]
    import paddle.distributed as dist
    out = []
    _communicate('gathering results', dist.all_gather_object, out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (the others' ``obj`` is not sent)."""
    if world_size() <= 1:
        return obj
    import paddle.distributed as dist
    _wait_for_rank0('waiting for rank 0\'s data')
    box = [obj]
    _communicate('receiving rank 0\'s data', dist.broadcast_object_list, box, src=0)
    return box[0]


def barrier():
    """Every process waits for the others (for rank 0 without a time limit, see above)."""
    if world_size() > 1:
        import paddle.distributed as dist
        _wait_for_rank0('waiting for rank 0')
        _communicate('waiting for the other processes', dist.barrier)


def all_reduce_sum(tensor, what='summing a value'):
    """Sum ``tensor`` over the processes, in place."""
    if world_size() > 1:
        import paddle.distributed as dist
        _communicate(what, dist.all_reduce, tensor)
    return tensor


def broadcast_tensors(tensors, src=0, what='copying rank 0\'s values'):
    """Give every process rank ``src``'s values of ``tensors``, in place."""
    if world_size() > 1:
        import paddle.distributed as dist
        for t in tensors:
            _communicate(what, dist.broadcast, t, src=src)


def broadcast_parameters(layer):
    """Start every process from rank 0's parameters and buffers (as ``paddle.DataParallel``
    does when it wraps a model)."""
    if world_size() > 1:
        from paddle.distributed.parallel import sync_params_buffers
        _communicate('copying rank 0\'s initial weights', sync_params_buffers, layer)


def average_gradients(parameters):
    """Average the gradients of ``parameters`` over the processes, in place, after backward.

    The reducer of ``paddle.DataParallel`` does the same arithmetic (each gradient scaled by
    1 / world size, then summed across processes), here on one flat buffer per dtype; with two
    processes the result is bit for bit the reducer's. Unlike the reducer, the exchange does not
    overlap the backward pass.
    """
    world = world_size()
    if world <= 1:
        return
    import paddle
    import paddle.distributed as dist
    groups = {}
    for p in parameters:
        if not p.stop_gradient and p.grad is not None:
            groups.setdefault(str(p.grad.dtype), []).append(p.grad)
    with paddle.no_grad():
        for grads in groups.values():
            flat = paddle.concat([g.reshape([-1]) for g in grads])
            flat.scale_(1.0 / world)
            _communicate('averaging the gradients', dist.all_reduce, flat)
            offset = 0
            for g in grads:
                n = int(g.numel())
                paddle.assign(flat[offset:offset + n].reshape(g.shape), output=g)
                offset += n
