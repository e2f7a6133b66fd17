"""Checkpoints: reading PyTorch and Paddle files, converting reference weights, strict loading.

Reading (:func:`read_torch_file`)
    A PyTorch file (``.pth``, ``.pth.tar``, ``.pt``) is unpickled with tensors turned into numpy
    arrays. With torch installed, ``torch.load(weights_only=True)`` does it; without torch, a
    small pure-python reader handles both on-disk formats of ``torch.save``: the zip archive
    (torch >= 1.6) and the legacy pickle stream (``_use_new_zipfile_serialization=False``, how the
    2018 PoseResNet releases and the SimpleNet checkpoint were written). Both readers only
    rebuild tensors and plain containers; a pickle that asks for anything else is refused, so
    no code from a checkpoint is ever executed.

Reading Paddle files (:func:`read_paddle_file`)
    ``.pdparams``/``.pdckpt`` files (and whatever ``MODEL.PRETRAINED`` or ``--resume-from``
    name) are never given to ``paddle.load``, which is ``pickle.load``: the same restricted rule
    rebuilds what ``paddle.save`` writes (dicts, lists, numbers, strings, numpy arrays) and the
    result equals ``paddle.load(path, return_numpy=True)``. Anything else is refused with one
    line naming the file and the refused global.

Unwrapping (:func:`extract_state_dict`)
    The reference repositories store weights as a plain state dict, ``{'state_dict': ...}``
    ([MS] ``checkpoint.pth.tar``, [LPN]/[CAV] ``checkpoint.pth``), ``{'best_state_dict': ...}``,
    ``{'model': ...}`` or ``{'weights': ...}`` (SimplePose), with or without the DataParallel
    ``module.`` prefix (REFERENCE_SPEC 2.7); all of these are accepted.

Converting (:func:`torch_to_paddle`, REFERENCE_SPEC Appendix A)
    ``running_mean``/``running_var`` -> ``_mean``/``_variance``; ``num_batches_tracked`` dropped;
    LayerNorm gains stored as (P, 1, 1) reshaped to Paddle's (P,); Linear weights transposed;
    floats as float32. Nothing else is renamed or dropped.

Loading (:func:`load_state_dict_strict`, :func:`load_checkpoint`, :func:`load_pretrained`)
    A checkpoint used for evaluation, resuming or conversion must fit the model exactly:
    missing, unexpected or mis-shaped keys raise :class:`CheckpointMismatchError` listing them,
    and every value is read back after loading. The reference tools loaded such files with
    ``strict=False``/``load_dict`` and silently evaluated random weights (REFERENCE_SPEC 10.15,
    10.16). Only the ImageNet initialisation (:func:`load_pretrained`) is partial by nature, and
    it reports what it did not load.

Modules, lowest first: :mod:`.errors`, :mod:`.unpickling` (the restricted unpickler both
readers share), :mod:`.torch_reader` and :mod:`.paddle_reader` (no Paddle needed),
:mod:`.convert` (unwrapping, renaming, :func:`read_checkpoint`), :mod:`.loading` (strict
loading, pretrained initialisation, saving, :func:`convert_checkpoint`).
"""
from posekit.checkpoint.errors import CheckpointError, CheckpointFormatError, CheckpointMismatchError
from posekit.checkpoint.torch_reader import (TORCH_INSTALL_HINT, TORCH_SUFFIXES, read_torch_file,
                                             torch_file_format)
from posekit.checkpoint.paddle_reader import read_paddle_file
from posekit.checkpoint.convert import (PADDLE_SUFFIXES, CheckpointInfo, extract_state_dict,
                                        read_checkpoint, torch_to_paddle)
from posekit.checkpoint.loading import (PretrainedSummary, convert_checkpoint, load_checkpoint,
                                        load_pretrained, load_state_dict_strict,
                                        save_paddle_state_dict)

__all__ = [
    'CheckpointError', 'CheckpointFormatError', 'CheckpointMismatchError', 'CheckpointInfo',
    'PretrainedSummary', 'TORCH_INSTALL_HINT', 'torch_file_format', 'read_torch_file',
    'read_paddle_file',
    'extract_state_dict', 'torch_to_paddle', 'read_checkpoint', 'load_state_dict_strict',
    'load_checkpoint', 'load_pretrained', 'save_paddle_state_dict', 'convert_checkpoint',
]
