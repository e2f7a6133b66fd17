"""The configuration system: the yaml file is the experiment.

    cfg = load_config('experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml', ['TRAIN.LR', '0.0005'])

* defaults live in :mod:`posekit.config.default`, ``MODEL.EXTRA`` ones per ``MODEL.NAME``
  (``MODEL_EXTRA_DEFAULTS``): loading a config imports no network code;
* a yaml (or a ``KEY VALUE`` override) may only set keys that exist; an unknown key raises
  :class:`ConfigError` naming the closest valid key;
* values are typed by the default's type (an int is accepted for a float, a list for a list;
  ``IMAGE_SIZE``/``HEATMAP_SIZE`` also accept a single int, expanded to a square ``[n, n]``);
* values are then checked against the rules of :mod:`posekit.config.checks` (batch sizes >= 1,
  LR > 0, a known optimiser, END_EPOCH > BEGIN_EPOCH, ...): a bad one raises :class:`ConfigError`
  naming the key and where it was set; an empty yaml file is an error too;
* the resolved config can be written next to a run's outputs with :func:`save_config`.
"""
import argparse
import copy
import difflib
import os

import yaml
from easydict import EasyDict

from posekit.config.checks import first_problem
from posekit.config.default import MODEL_EXTRA_DEFAULTS, MODEL_PIPELINES, get_defaults
from posekit.errors import PosekitInputError
from posekit.io import write_yaml

__all__ = ['ConfigError', 'pipeline', 'is_bottom_up', 'load_config', 'add_config_arguments', 'config_from_args',
           'save_config', 'config_to_dict', 'cfg_name_of']


class ConfigError(PosekitInputError):
    """A config file or override that does not fit the schema."""


_SIZE_KEYS = ('MODEL.IMAGE_SIZE', 'MODEL.HEATMAP_SIZE')
_TRUE = {'true', 'yes', 'on', '1'}
_FALSE = {'false', 'no', 'off', '0'}


def _flat_keys(tree, prefix=''):
    keys = []
    for k, v in tree.items():
        full = prefix + k
        keys.append(full)
        if isinstance(v, dict):
            keys.extend(_flat_keys(v, full + '.'))
    return keys


def _closest(key, candidates):
    """The candidate that looks most like ``key`` (full dotted name or its last part)."""
    leaf = key.rsplit('.', 1)[-1]
    best, best_score = None, -1.0
    for cand in candidates:
        score = difflib.SequenceMatcher(None, key, cand).ratio()
        score = max(score, difflib.SequenceMatcher(None, leaf, cand.rsplit('.', 1)[-1]).ratio() - 0.05)
        if score > best_score:
            best, best_score = cand, score
    return best


def _unknown_key(full_key, tree, prefix, source):
    candidates = [prefix + k for k in _flat_keys(tree)] if tree else []
    where = ' (%s)' % source if source else ''
    if not candidates:
        return ConfigError("unknown config key '%s'%s: '%s' takes no keys" % (full_key, where, prefix.rstrip('.')))
    return ConfigError("unknown config key '%s'%s; did you mean '%s'?"
                       % (full_key, where, _closest(full_key, candidates)))


def _type_name(v):
    return type(v).__name__


def _coerce(value, default, full_key, source):
    """Return ``value`` converted to the type of ``default`` or raise ConfigError."""
    where = ' (%s)' % source if source else ''

    def bad():
        return ConfigError("config key '%s'%s expects %s like %r, got %r"
                           % (full_key, where, _type_name(default), default, value))

    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad()
    if isinstance(default, int):
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise bad()
    if isinstance(default, float):
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad()
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        if value is None:
            return ''
        raise bad()
    if isinstance(default, (list, tuple)):
        if isinstance(value, str):
            text = value.strip()
            parsed = yaml.safe_load(text) if text.startswith('[') else [
                yaml.safe_load(p) for p in text.split(',') if p.strip() != '']
            value = parsed
        if full_key in _SIZE_KEYS:
            if isinstance(value, (list, tuple)) and len(value) == 1:
                value = value[0]
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value, value]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if default:
            proto = default[0]
            out = []
            for i, item in enumerate(value):
                if isinstance(proto, dict):
                    if not isinstance(item, dict):
                        raise bad()
                    out.append(item)
                else:
                    out.append(_coerce(item, proto, '%s[%d]' % (full_key, i), source))
            value = out
        else:
            value = list(value)
        if full_key in _SIZE_KEYS and len(value) != 2:
            raise ConfigError("config key '%s'%s must be [W, H] or a single int, got %r"
                              % (full_key, where, value))
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad()
        return value
    return value


def _merge(dst, src, prefix, source, skip=()):
    """Merge ``src`` into the typed tree ``dst``; unknown keys raise."""
    if not isinstance(src, dict):
        raise ConfigError('%s: expected a mapping of config keys at %s, got %s'
                          % (source, prefix.rstrip('.') or 'the top level', _type_name(src)))
    for key, value in src.items():
        full = prefix + str(key)
        if full in skip:
            continue
        if key not in dst:
            raise _unknown_key(full, dst, prefix, source)
        default = dst[key]
        if isinstance(default, dict) and default:
            if not isinstance(value, dict):
                raise ConfigError("config key '%s' (%s) is a section; give its keys, not %r"
                                  % (full, source, value))
            _merge(default, value, full + '.', source)
        else:
            dst[key] = _coerce(value, default, full, source)


def _set_by_path(tree, dotted, raw, source, prefix=''):
    parts = dotted.split('.')
    node = tree
    for i, part in enumerate(parts):
        full = prefix + '.'.join(parts[:i + 1])
        if not isinstance(node, dict) or part not in node:
            raise _unknown_key(prefix + dotted, node if isinstance(node, dict) else {},
                               prefix + '.'.join(parts[:i]) + ('.' if i else ''), source)
        if i == len(parts) - 1:
            default = node[part]
            if isinstance(default, dict) and default:
                value = yaml.safe_load(raw) if isinstance(raw, str) else raw
                if not isinstance(value, dict):
                    raise ConfigError("config key '%s' (%s) is a section; override one of its keys"
                                      % (full, source))
                _merge(default, value, full + '.', source)
            else:
                value = raw
                if isinstance(raw, str) and not isinstance(default, (str, list, tuple)):
                    value = yaml.safe_load(raw) if raw.strip() else raw
                node[part] = _coerce(value, default, full, source)
        else:
            node = node[part]


def _read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError('config file not found: %s' % path)
    with open(path, 'r', encoding='utf-8') as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError('config file %s is not valid yaml: %s' % (path, e)) from e
    if data is None:
        # an empty file (or comments only) would silently train the default PoseResNet on MPII
        raise ConfigError('empty config file: %s' % path)
    if not isinstance(data, dict):
        raise ConfigError('config file %s must hold a mapping of keys, not %s' % (path, _type_name(data)))
    return data


def _pairs(opts):
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError('overrides come in KEY VALUE pairs; got an odd number of words: %s' % ' '.join(opts))
    return [(opts[i], opts[i + 1]) for i in range(0, len(opts), 2)]


def load_config(cfg_file=None, opts=None):
    """Defaults <- yaml file <- ``KEY VALUE`` overrides, checked and typed. Returns an EasyDict."""
    tree = get_defaults()
    data = _read_yaml(cfg_file) if cfg_file else {}
    source = cfg_file or 'defaults'
    file_extra = None
    if isinstance(data.get('MODEL'), dict) and 'EXTRA' in data['MODEL']:
        file_extra = data['MODEL']['EXTRA']
    _merge(tree, data, '', source, skip=('MODEL.EXTRA',))

    extra_opts = []
    for key, value in _pairs(opts):
        if key.startswith('MODEL.EXTRA.') or key == 'MODEL.EXTRA':
            extra_opts.append((key, value))
        else:
            _set_by_path(tree, key, value, 'command line')

    name = tree['MODEL']['NAME']
    names = sorted(MODEL_EXTRA_DEFAULTS)
    if name not in names:
        raise ConfigError("unknown MODEL.NAME '%s' (%s); did you mean '%s'? Known models: %s"
                          % (name, source, _closest(name, names), ', '.join(names)))
    extra = copy.deepcopy(MODEL_EXTRA_DEFAULTS[name])
    if file_extra is not None:
        _merge(extra, file_extra, 'MODEL.EXTRA.', source)
    for key, value in extra_opts:
        if key == 'MODEL.EXTRA':
            raise ConfigError('override a single MODEL.EXTRA key, e.g. MODEL.EXTRA.NUM_LAYERS 101')
        _set_by_path(extra, key[len('MODEL.EXTRA.'):], value, 'command line', prefix='MODEL.EXTRA.')
    tree['MODEL']['EXTRA'] = extra

    cfg = EasyDict(tree)
    _check_values(cfg, cfg_file, data, [key for key, _ in _pairs(opts)])
    return cfg


def _check_values(cfg, cfg_file, data, override_keys):
    """Apply the rules of :mod:`posekit.config.checks`; the error names the key and where its
    value came from (the command line, the yaml file or the defaults)."""
    problem = first_problem(cfg)
    if problem is None:
        return
    key, requirement, value = problem
    if key in override_keys:
        where = 'command line'
    elif key in _flat_keys(data):
        where = cfg_file
    else:
        where = 'default'
    raise ConfigError("config key '%s' (%s) must be %s, got %r" % (key, where, requirement, value))


def config_to_dict(cfg):
    """Plain python containers (for yaml/json)."""
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    return cfg


def save_config(cfg, path):
    """Write the resolved config as yaml (loadable again with :func:`load_config`)."""
    return write_yaml(path, config_to_dict(cfg))


def cfg_name_of(cfg_file):
    """``experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml`` -> ``lpn50_256x192_gd256x2_gc``."""
    return os.path.splitext(os.path.basename(cfg_file))[0]


def add_config_arguments(parser, required=True):
    """``--cfg FILE`` and the trailing ``KEY VALUE`` overrides, for every entry point."""
    parser.add_argument('--cfg', required=required, help='experiment yaml file')
    parser.add_argument('opts', nargs=argparse.REMAINDER, default=[],
                        help='config overrides as KEY VALUE pairs, e.g. TRAIN.LR 0.0005')
    return parser


def config_from_args(args):
    return load_config(args.cfg, args.opts)


def pipeline(cfg):
    """``'topdown'`` or ``'bottomup'``: the pipeline of ``cfg.MODEL.NAME``
    (:data:`posekit.config.default.MODEL_PIPELINES`)."""
    return MODEL_PIPELINES.get(cfg.MODEL.NAME, 'topdown')


def is_bottom_up(cfg):
    return pipeline(cfg) == 'bottomup'
