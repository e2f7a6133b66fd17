"""Process-group helpers: one process per device, started by ``paddle.distributed.launch``.

A single process (no launcher) is world size 1, rank 0, and none of these calls communicate.
On CPU the launcher uses gloo; on GPUs NCCL. Only rank 0 writes files, logs and VisualDL.
"""
import os

__all__ = ['world_size', 'rank', 'is_main', 'init', 'all_gather_object', 'barrier', 'broadcast_object']


def world_size():
    """Number of processes of the job (from the launcher's environment)."""
    return int(os.environ.get('PADDLE_TRAINERS_NUM', os.environ.get('WORLD_SIZE', '1')) or 1)


def rank():
    return int(os.environ.get('PADDLE_TRAINER_ID', os.environ.get('RANK', '0')) or 0)


def is_main():
    return rank() == 0


_initialised = False


def init():
    """Initialise the process group once when running under the launcher with > 1 process."""
    global _initialised
    if world_size() > 1 and not _initialised:
        import paddle.distributed as dist
        dist.init_parallel_env()
        _initialised = True
    return world_size() > 1


def all_gather_object(obj):
    """List with every rank's ``obj`` (rank order); ``[obj]`` in a single process."""
    if world_size() <= 1:
        return [obj]
    import paddle.distributed as dist
    out = []
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    return all_gather_object(obj)[0]


def barrier():
    if world_size() > 1:
        import paddle.distributed as dist
        dist.barrier()
