"""Model registry: ``MODEL.NAME`` -> module.

Each model module (one per key of ``posekit.config.default.MODEL_EXTRA_DEFAULTS``, which holds
the valid ``MODEL.EXTRA`` keys of each model, read by the module as ``EXTRA_DEFAULTS``) defines

* ``get_pose_net(cfg, is_train=False)``: the ``paddle.nn.Layer`` (heatmaps out, raw, no activation),
* its names: ``model_tag(cfg)`` (the ``<model>`` folder of runs and exports), ``model_label(cfg)``
  (readable name with depth/variant, printed by model_info.py) and optionally ``arch_suffix(cfg)``
  (appended to the result table's row label).

The functions below dispatch to them; nothing else spells a model's name.

Parameter and buffer names follow the PyTorch reference state dicts (BatchNorm statistics use
Paddle's ``_mean``/``_variance``), so a converted reference checkpoint loads strictly.
"""
import importlib

from posekit.config import ConfigError
from posekit.config.default import MODEL_EXTRA_DEFAULTS

# MODEL.NAME -> module: the config schema names the models, each lives in the module of its name.
_MODULES = {name: 'posekit.models.' + name for name in MODEL_EXTRA_DEFAULTS}


def model_names():
    return sorted(_MODULES)


def model_module(name):
    if name not in _MODULES:
        raise ConfigError('unknown model %r; known: %s' % (name, ', '.join(model_names())))
    return importlib.import_module(_MODULES[name])


def build_model(cfg, is_train=False):
    """Build the network named by ``cfg.MODEL.NAME``.

    With ``is_train`` the model is initialised as the reference does for training (and, if
    ``MODEL.INIT_WEIGHTS`` and ``MODEL.PRETRAINED`` are set, the ImageNet weights are loaded
    by the model's ``init_weights``).
    """
    return model_module(cfg.MODEL.NAME).get_pose_net(cfg, is_train=is_train)


def model_tag(cfg):
    """The ``<model>`` part of ``output/<dataset>/<model>/<cfg name>`` (and of export folders).

    ``pose_resnet_<depth>`` for PoseResNet (as [MS]); ``MODEL.NAME`` otherwise ([LPN]/[CAV]).
    """
    return model_module(cfg.MODEL.NAME).model_tag(cfg)


def model_label(cfg):
    """Readable model name with depth/variant: ``pose_resnet_50``, ``lpn_18h``, ``pose_hrnet_w32``."""
    return model_module(cfg.MODEL.NAME).model_label(cfg)


def arch_name(cfg):
    """Row label of the result table: ``<H>x<W>_<model tag>`` plus the model's suffix, e.g.
    ``256x256_pose_resnet_50_d256d256d256`` ([MS] layout), ``256x192_lpn``."""
    w, h = cfg.MODEL.IMAGE_SIZE
    suffix = getattr(model_module(cfg.MODEL.NAME), 'arch_suffix', None)
    return '%dx%d_%s%s' % (h, w, model_tag(cfg), suffix(cfg) if suffix else '')
