"""The deploy config: everything needed to run an exported model without the training yaml.

It is the serialised input spec + codec (:mod:`posekit.codec`) + the joints (names, skeleton),
plus the model's name and the tensor names. ``export.py`` writes it beside the exported model
(``deploy_config.json``); ``deploy.py`` reads it; ``infer.py`` builds the same object from the
training config, so every entry point feeds the network and decodes its outputs through the
same two objects.

Version 2 (this one) nests ``input`` and ``codec``; folders written by version 1 (flat fields,
posekit 0.1) still load: :meth:`DeployConfig.from_dict` converts them.

The codec says which pipeline the model belongs to (:attr:`DeployConfig.pipeline`): a top-down
model (``topdown_crop`` input, ``topdown_heatmap`` codec) sees one person box per crop of a fixed
size; a bottom-up model (``bottomup_whole_image`` input, ``bottomup_parts`` codec, SimplePose)
takes the whole image at its own padded size - it has no fixed ``input_size`` - and finds every
person itself. A bottom-up config also writes ``"pipeline": "bottomup"`` for the reader of the
file (a top-down file is left as version 2 always wrote it).
"""
import os

from posekit.codec import codec_from_dict, input_spec_from_dict
from posekit.errors import PosekitInputError
from posekit.io import InputFileError, read_json, write_json

__all__ = ['DeployConfig', 'DeployConfigError', 'DEPLOY_CONFIG_NAME', 'deploy_config_path',
           'CODEC_PIPELINES', 'OUTPUT_NAMES']

DEPLOY_CONFIG_NAME = 'deploy_config.json'
FORMAT = 'posekit-deploy'
VERSION = 2

# Version 1 kept every parameter flat; these went to the input spec and the codec.
_V1_INPUT = ('input_size', 'color_rgb', 'pixel_scale', 'mean', 'std')
_V1_CODEC = ('input_size', 'heatmap_size', 'flip_pairs', 'post_process', 'shift_heatmap',
             'soft_argmax', 'bias', 'dark', 'dark_kernel')

# The pipeline of each codec kind and of each input-spec kind (posekit.config.PIPELINES).
CODEC_PIPELINES = {'topdown_heatmap': 'topdown', 'bottomup_parts': 'bottomup'}
INPUT_PIPELINES = {'topdown_crop': 'topdown', 'bottomup_whole_image': 'bottomup'}
# The name of the exported graph's output: heatmaps (one per joint) or the bottom-up maps.
OUTPUT_NAMES = {'topdown': 'heatmaps', 'bottomup': 'maps'}


class DeployConfigError(PosekitInputError):
    """A deploy config that is missing, unreadable or inconsistent."""


def deploy_config_path(model_path):
    """``deploy_config.json`` in the folder of ``model_path`` (a file or a folder)."""
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    return os.path.join(folder, DEPLOY_CONFIG_NAME)


def _pairs(value):
    return [[int(a), int(b)] for a, b in value]


class DeployConfig:
    """A model's input spec, codec and joints (0-based indices in ``skeleton``).

    ``flip_test`` is the default of the predictor (``TEST.FLIP_TEST`` at export).
    """

    def __init__(self, model, input_spec, codec, joint_names, skeleton, dataset='',
                 flip_test=False, input_name='image', output_name='heatmaps'):
        self.model = str(model)
        self.input_spec = input_spec
        self.codec = codec
        self.joint_names = [str(v) for v in joint_names]
        self.skeleton = _pairs(skeleton)
        self.dataset = str(dataset)
        self.flip_test = bool(flip_test)
        self.input_name = str(input_name)
        self.output_name = str(output_name)
        self._check()

    def _check(self):
        k = self.num_joints
        problems = []
        if k == 0:
            problems.append('joint_names is empty')
        paired = INPUT_PIPELINES.get(self.input_spec.kind) == self.pipeline
        if not paired:
            problems.append('the input spec (%s) does not go with the codec (%s)'
                            % (self.input_spec.kind, self.codec.kind))
        pairs = [('skeleton', self.skeleton)]
        if not self.is_bottom_up:
            pairs.insert(0, ('flip_pairs', self.codec.flip_pairs))
        for name, value in pairs:
            if any(not (0 <= a < k and 0 <= b < k) for a, b in value):
                problems.append('%s has a joint index outside 0..%d' % (name, k - 1))
        if not paired:
            pass  # a top-down spec and a bottom-up codec have no sizes to compare
        elif self.is_bottom_up:
            if k != self.codec.num_joints:
                problems.append('the bottom-up codec gives %d joints but joint_names lists %d'
                                % (self.codec.num_joints, k))
        elif list(self.input_spec.input_size) != list(self.codec.input_size):
            problems.append('the input spec (%s) and the codec (%s) disagree on the input size'
                            % (self.input_spec.input_size, self.codec.input_size))
        if problems:
            raise DeployConfigError('invalid deploy config: ' + '; '.join(problems))

    # -- what callers read --------------------------------------------------------------------
    @property
    def num_joints(self):
        return len(self.joint_names)

    @property
    def pipeline(self):
        """'topdown' or 'bottomup', from the codec's kind."""
        return CODEC_PIPELINES.get(self.codec.kind, 'topdown')

    @property
    def is_bottom_up(self):
        return self.pipeline == 'bottomup'

    @property
    def input_size(self):
        """[W, H] of the network input; None for a bottom-up model (every image is resized and
        padded to its own size)."""
        return None if self.is_bottom_up else self.input_spec.input_size

    @property
    def heatmap_size(self):
        """[W, H] of the output maps; None for a bottom-up model (input size / stride)."""
        return None if self.is_bottom_up else self.codec.heatmap_size

    @property
    def output_channels(self):
        """Channels of the network output: one heatmap per joint (top-down), or the bottom-up
        codec's maps (50 for SimplePose: limbs, keypoints, background)."""
        return self.codec.num_channels if self.is_bottom_up else self.num_joints

    @property
    def flip_pairs(self):
        """The joints' left/right pairs of a top-down model (a bottom-up codec's channel layout
        holds its own)."""
        return [] if self.is_bottom_up else self.codec.flip_pairs

    @property
    def aspect_ratio(self):
        return self.input_spec.aspect_ratio

    def with_input_size(self, width, height):
        """This config for another input size [W, H] (a model exported with a dynamic size);
        the heatmaps keep their stride."""
        if self.is_bottom_up:
            raise DeployConfigError('a bottom-up model takes every image at its own size; it has '
                                    'no input size to set')
        try:
            spec = self.input_spec.with_input_size([width, height])
            codec = self.codec.with_input_size([width, height])
        except ValueError as e:
            raise DeployConfigError(str(e)) from e
        return DeployConfig(self.model, spec, codec, self.joint_names, self.skeleton,
                            self.dataset, self.flip_test, self.input_name, self.output_name)

    # -- forms --------------------------------------------------------------------------------
    @classmethod
    def from_cfg(cls, cfg, model=None):
        """From a resolved training/validation config (``posekit.config.load_config``).

        A bottom-up model (:func:`posekit.config.is_bottom_up`) gets the bottom-up input spec
        and codec (:func:`posekit.codec.input_spec_from_cfg` / ``codec_from_cfg``), the COCO-17
        joint names and skeleton its codec outputs, whatever the dataset, and the output name
        ``maps``."""
        from posekit.codec import InputSpec, TopDownHeatmapCodec
        from posekit.config import is_bottom_up
        from posekit.data.descriptors import COCO_JOINTS, COCO_SKELETON, dataset_info
        from posekit.models import model_tag
        name = model_tag(cfg) if model is None else model
        if is_bottom_up(cfg):
            from posekit.codec import codec_from_cfg, input_spec_from_cfg
            return cls(model=name, input_spec=input_spec_from_cfg(cfg), codec=codec_from_cfg(cfg),
                       joint_names=COCO_JOINTS, skeleton=COCO_SKELETON,
                       dataset=cfg.DATASET.DATASET, flip_test=cfg.TEST.FLIP_TEST,
                       output_name=OUTPUT_NAMES['bottomup'])
        info = dataset_info(cfg.DATASET.DATASET, num_joints=int(cfg.MODEL.NUM_JOINTS))
        return cls(model=name,
                   input_spec=InputSpec.from_cfg(cfg),
                   codec=TopDownHeatmapCodec.from_cfg(cfg, info.flip_pairs),
                   joint_names=info.joint_names, skeleton=info.skeleton,
                   dataset=cfg.DATASET.DATASET, flip_test=cfg.TEST.FLIP_TEST)

    def to_dict(self):
        data = {'format': FORMAT, 'version': VERSION, 'model': self.model,
                'input_name': self.input_name, 'output_name': self.output_name,
                'dataset': self.dataset, 'joint_names': list(self.joint_names),
                'num_joints': self.num_joints, 'skeleton': [list(p) for p in self.skeleton],
                'flip_test': self.flip_test, 'input': self.input_spec.to_dict(),
                'codec': self.codec.to_dict()}
        if self.is_bottom_up:
            # for the reader of the file; the codec's type is what decides
            data['pipeline'] = self.pipeline
        return data

    @staticmethod
    def _upgrade_v1(data):
        """A version-1 dict (flat fields) in the version-2 layout."""
        out = {k: data[k] for k in ('model', 'input_name', 'output_name', 'dataset',
                                    'joint_names', 'skeleton', 'flip_test') if k in data}
        out['input'] = dict({k: data[k] for k in _V1_INPUT if k in data}, type='topdown_crop')
        out['codec'] = dict({k: data[k] for k in _V1_CODEC if k in data}, type='topdown_heatmap')
        return out

    @classmethod
    def from_dict(cls, data, source='<dict>'):
        if not isinstance(data, dict) or data.get('format') != FORMAT:
            raise DeployConfigError('%s is not a posekit deploy config (no "format": "%s")'
                                    % (source, FORMAT))
        try:
            version = int(data.get('version', 0))
        except (TypeError, ValueError):
            version = -1
        if version > VERSION or version < 1:
            raise DeployConfigError('%s has deploy config version %s; this posekit reads 1 to '
                                    '%d: re-export the model with export.py'
                                    % (source, data.get('version'), VERSION))
        if version == 1:
            required = ('model', 'input_size', 'heatmap_size', 'joint_names', 'flip_pairs',
                        'skeleton')
            missing = [f for f in required if f not in data]
            if missing:
                raise DeployConfigError('%s lacks %s; re-export the model with export.py'
                                        % (source, ', '.join(missing)))
            data = cls._upgrade_v1(data)
        missing = [f for f in ('model', 'input', 'codec', 'joint_names', 'skeleton')
                   if f not in data]
        if missing:
            raise DeployConfigError('%s lacks %s; re-export the model with export.py'
                                    % (source, ', '.join(missing)))
        try:
            kwargs = {k: data[k] for k in ('model', 'joint_names', 'skeleton', 'dataset',
                                           'flip_test', 'input_name', 'output_name') if k in data}
            config = cls(input_spec=input_spec_from_dict(data['input']),
                         codec=codec_from_dict(data['codec']), **kwargs)
            if 'pipeline' in data and data['pipeline'] != config.pipeline:
                raise DeployConfigError('"pipeline" is %r but the codec (%s) is %s'
                                        % (data['pipeline'], config.codec.kind, config.pipeline))
            return config
        except DeployConfigError as e:
            raise DeployConfigError('%s: %s' % (source, e)) from e
        except (TypeError, ValueError, KeyError) as e:
            raise DeployConfigError('%s has a malformed value: %s' % (source, e)) from e

    def save(self, path):
        """Write as indented json, atomically (:func:`posekit.io.write_json`)."""
        return write_json(path, self.to_dict(), indent=2)

    @classmethod
    def load(cls, path):
        if not os.path.isfile(path):
            raise DeployConfigError('deploy config not found: %s (export.py writes it beside the '
                                    'model)' % path)
        try:
            data = read_json(path, 'deploy config')
        except InputFileError as e:
            raise DeployConfigError(str(e)) from e
        return cls.from_dict(data, source=path)

    def __eq__(self, other):
        return isinstance(other, DeployConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        if self.is_bottom_up:
            return 'DeployConfig(model=%r, bottom-up, joints=%d)' % (self.model, self.num_joints)
        return 'DeployConfig(model=%r, input_size=%s, joints=%d)' % (
            self.model, self.input_size, self.num_joints)
