"""Model registry: ``MODEL.NAME`` -> module.

Each model module defines

* ``EXTRA_DEFAULTS``: the valid ``MODEL.EXTRA`` keys with their default values, and
* ``get_pose_net(cfg, is_train=False)``: the ``paddle.nn.Layer`` (heatmaps out, raw, no activation).

Parameter and buffer names follow the PyTorch reference state dicts (BatchNorm statistics use
Paddle's ``_mean``/``_variance``), so a converted reference checkpoint loads strictly.
"""
import importlib

_MODULES = {
    'pose_resnet': 'posekit.models.pose_resnet',
    'lpn': 'posekit.models.lpn',
    'pose_hrnet': 'posekit.models.pose_hrnet',
    'simplenet': 'posekit.models.simplenet',
}


def model_names():
    return sorted(_MODULES)


def model_module(name):
    if name not in _MODULES:
        raise KeyError('unknown model %r; known: %s' % (name, ', '.join(model_names())))
    return importlib.import_module(_MODULES[name])


def extra_defaults(name):
    return model_module(name).EXTRA_DEFAULTS


def build_model(cfg, is_train=False):
    """Build the network named by ``cfg.MODEL.NAME``.

    With ``is_train`` the model is initialised as the reference does for training (and, if
    ``MODEL.INIT_WEIGHTS`` and ``MODEL.PRETRAINED`` are set, the ImageNet weights are loaded
    by the model's ``init_weights``).
    """
    return model_module(cfg.MODEL.NAME).get_pose_net(cfg, is_train=is_train)


def model_tag(cfg):
    """The ``<model>`` part of ``output/<dataset>/<model>/<cfg name>``.

    ``pose_resnet_<depth>`` for PoseResNet (as [MS]); ``MODEL.NAME`` otherwise ([LPN]/[CAV]).
    """
    if cfg.MODEL.NAME == 'pose_resnet':
        return 'pose_resnet_%d' % cfg.MODEL.EXTRA.NUM_LAYERS
    return cfg.MODEL.NAME
