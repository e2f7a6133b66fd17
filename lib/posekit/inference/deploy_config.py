"""The deploy config: everything needed to run an exported model without the training yaml.

``export.py`` writes it beside the exported model (``deploy_config.json``); ``deploy.py`` reads it;
``infer.py`` builds the same object from the training config, so both entry points feed the
network and decode its heatmaps through one description (input size, channel order and
normalisation, heatmap size, joint names, flip pairs, skeleton and decode options).
"""
import json
import os

from posekit.codec.heatmap import dark_kernel_size
from posekit.data.joints import joint_info

__all__ = ['DeployConfig', 'DeployConfigError', 'DEPLOY_CONFIG_NAME', 'deploy_config_path']

DEPLOY_CONFIG_NAME = 'deploy_config.json'
FORMAT = 'posekit-deploy'
VERSION = 1


class DeployConfigError(ValueError):
    """A deploy config that is missing, unreadable or inconsistent."""


def deploy_config_path(model_path):
    """``deploy_config.json`` in the folder of ``model_path`` (a file or a folder)."""
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    return os.path.join(folder, DEPLOY_CONFIG_NAME)


def _pairs(value):
    return [[int(a), int(b)] for a, b in value]


class DeployConfig:
    """Input/output description of a top-down heatmap model.

    Sizes are ``[W, H]``; ``flip_pairs`` and ``skeleton`` hold 0-based joint indices.
    """
    FIELDS = ('model', 'input_name', 'output_name', 'input_size', 'heatmap_size', 'color_rgb',
              'pixel_scale', 'mean', 'std', 'dataset', 'joint_names', 'flip_pairs', 'skeleton',
              'post_process', 'shift_heatmap', 'soft_argmax', 'bias', 'dark', 'dark_kernel',
              'flip_test')

    def __init__(self, model, input_size, heatmap_size, joint_names, flip_pairs, skeleton,
                 color_rgb=False, pixel_scale=255.0, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), dataset='', post_process=True, shift_heatmap=True,
                 soft_argmax=False, bias=0.0, dark=False, dark_kernel=11, flip_test=False,
                 input_name='image',
                 output_name='heatmaps'):
        self.model = str(model)
        self.input_name = str(input_name)
        self.output_name = str(output_name)
        self.input_size = [int(v) for v in input_size]
        self.heatmap_size = [int(v) for v in heatmap_size]
        self.color_rgb = bool(color_rgb)
        self.pixel_scale = float(pixel_scale)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.dataset = str(dataset)
        self.joint_names = [str(v) for v in joint_names]
        self.flip_pairs = _pairs(flip_pairs)
        self.skeleton = _pairs(skeleton)
        self.post_process = bool(post_process)
        self.shift_heatmap = bool(shift_heatmap)
        self.soft_argmax = bool(soft_argmax)
        self.bias = float(bias)
        self.dark = bool(dark)
        self.dark_kernel = int(dark_kernel)  # DARK's blur kernel, from the training sigma
        self.flip_test = bool(flip_test)
        self._check()

    def _check(self):
        k = self.num_joints
        problems = []
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            problems.append('input_size must be [W, H] > 0, got %s' % self.input_size)
        if len(self.heatmap_size) != 2 or min(self.heatmap_size) <= 0:
            problems.append('heatmap_size must be [W, H] > 0, got %s' % self.heatmap_size)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append('mean and std need 3 values (std > 0)')
        if self.dark_kernel < 1 or self.dark_kernel % 2 == 0:
            problems.append('dark_kernel must be odd and positive, got %d' % self.dark_kernel)
        if self.pixel_scale <= 0:
            problems.append('pixel_scale must be > 0')
        if k == 0:
            problems.append('joint_names is empty')
        for name, pairs in (('flip_pairs', self.flip_pairs), ('skeleton', self.skeleton)):
            if any(not (0 <= a < k and 0 <= b < k) for a, b in pairs):
                problems.append('%s has a joint index outside 0..%d' % (name, k - 1))
        if problems:
            raise DeployConfigError('invalid deploy config: ' + '; '.join(problems))

    @property
    def num_joints(self):
        return len(self.joint_names)

    @property
    def aspect_ratio(self):
        return self.input_size[0] / float(self.input_size[1])

    @classmethod
    def from_cfg(cls, cfg, model=None):
        """From a resolved training/validation config (``posekit.config.load_config``)."""
        if model is None:
            from posekit.models import model_tag
            model = model_tag(cfg)
        info = joint_info(int(cfg.MODEL.NUM_JOINTS), cfg.DATASET.DATASET)
        d, t = cfg.DATASET, cfg.TEST
        return cls(model=model, input_size=cfg.MODEL.IMAGE_SIZE, heatmap_size=cfg.MODEL.HEATMAP_SIZE,
                   joint_names=info['joints'], flip_pairs=info['flip_pairs'],
                   skeleton=info['skeleton'], color_rgb=d.COLOR_RGB, pixel_scale=d.PIXEL_SCALE,
                   mean=d.MEAN, std=d.STD, dataset=d.DATASET, post_process=t.POST_PROCESS,
                   shift_heatmap=t.SHIFT_HEATMAP, soft_argmax=t.SOFT_ARGMAX, bias=t.BIAS,
                   dark=t.DARK, dark_kernel=dark_kernel_size(cfg.MODEL.SIGMA),
                   flip_test=t.FLIP_TEST)

    def to_dict(self):
        out = {'format': FORMAT, 'version': VERSION}
        out.update({f: getattr(self, f) for f in self.FIELDS})
        out['num_joints'] = self.num_joints
        return out

    @classmethod
    def from_dict(cls, data, source='<dict>'):
        if not isinstance(data, dict) or data.get('format') != FORMAT:
            raise DeployConfigError('%s is not a posekit deploy config (no "format": "%s")'
                                    % (source, FORMAT))
        if int(data.get('version', 0)) > VERSION:
            raise DeployConfigError('%s has deploy config version %s; this posekit reads up to %d'
                                    % (source, data.get('version'), VERSION))
        required = ('model', 'input_size', 'heatmap_size', 'joint_names', 'flip_pairs', 'skeleton')
        missing = [f for f in required if f not in data]
        if missing:
            raise DeployConfigError('%s lacks %s' % (source, ', '.join(missing)))
        kwargs = {f: data[f] for f in cls.FIELDS if f in data}
        try:
            return cls(**kwargs)
        except DeployConfigError as e:
            raise DeployConfigError('%s: %s' % (source, e)) from e
        except (TypeError, ValueError) as e:
            raise DeployConfigError('%s has a malformed value: %s' % (source, e)) from e

    def save(self, path):
        """Write atomically (a temporary file renamed over ``path``)."""
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = path + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write('\n')
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path):
        if not os.path.isfile(path):
            raise DeployConfigError('deploy config not found: %s (export.py writes it beside the '
                                    'model)' % path)
        try:
            with open(path, 'r', encoding='utf-8') as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DeployConfigError('cannot parse deploy config %s: %s' % (path, e)) from e
        return cls.from_dict(data, source=path)

    def __eq__(self, other):
        return isinstance(other, DeployConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return 'DeployConfig(model=%r, input_size=%s, joints=%d)' % (
            self.model, self.input_size, self.num_joints)
