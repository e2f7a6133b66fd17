"""Generate-once: :func:`ensure_synthetic` reuses a folder whose ``synthetic.json`` manifest
records the same generator version, format and parameters, and otherwise builds the set in a
temporary sibling folder that is renamed into place, so an interrupted run never leaves a set
that looks complete.
"""
import json
import os

from posekit.io import atomic_folder
from posekit.data.synthetic.scene import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PEOPLE
from posekit.data.synthetic.writers import (DEFAULT_COCO_SETS, FORMATS, GENERATOR_VERSION,
                                            MANIFEST_NAME, SyntheticError, _check_params,
                                            generate_coco, generate_mpii)

_GENERATORS = {'mpii': generate_mpii, 'coco': generate_coco}


def _expected_files(fmt, params):
    if fmt == 'mpii':
        return [os.path.join('annot', n) for n in ('train.json', 'valid.json', 'gt_valid.mat')]
    return [os.path.join('annotations', '%s_%s.json' % (kind, params[key]))
            for key in ('train_set', 'val_set') for kind in ('person_keypoints', 'person_detection')]


def read_manifest(root):
    """The ``synthetic.json`` manifest of ``root``, or None if there is none (or it is unreadable)."""
    try:
        with open(os.path.join(root, MANIFEST_NAME), 'r', encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _resolve_params(fmt, kw):
    if fmt not in FORMATS:
        raise SyntheticError('unknown synthetic format %r (known: %s)' % (fmt, ', '.join(FORMATS)))
    kw = dict(kw)
    allowed = {'num_train', 'num_valid', 'seed', 'image_size', 'max_people'}
    if fmt == 'coco':
        allowed |= {'train_set', 'val_set'}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise SyntheticError('unknown parameter(s) for the %s generator: %s (known: %s)'
                             % (fmt, ', '.join(unknown), ', '.join(sorted(allowed))))
    if 'num_train' not in kw or 'num_valid' not in kw:
        raise SyntheticError('num_train and num_valid are required')
    params = _check_params(kw['num_train'], kw['num_valid'], kw.get('seed', 0),
                           kw.get('image_size', DEFAULT_IMAGE_SIZE),
                           kw.get('max_people', DEFAULT_MAX_PEOPLE))
    if fmt == 'coco':
        params['train_set'] = kw.get('train_set', DEFAULT_COCO_SETS[0])
        params['val_set'] = kw.get('val_set', DEFAULT_COCO_SETS[1])
    return params


def _is_complete(root, fmt, params):
    m = read_manifest(root)
    return (m is not None and m.get('generator') == 'posekit.data.synthetic'
            and m.get('version') == GENERATOR_VERSION and m.get('format') == fmt
            and m.get('params') == params
            and all(os.path.isfile(os.path.join(root, p)) for p in _expected_files(fmt, params)))


def ensure_synthetic(root, fmt='mpii', progress=None, force=False, **params):
    """Make sure ``root`` holds the synthetic ``fmt`` set with these parameters; build it if not.

    ``params`` are those of :func:`generate_mpii` / :func:`generate_coco` (``num_train`` and
    ``num_valid`` required). An existing folder is reused when its manifest records the same
    generator version, format and parameters. Otherwise the set is generated into a temporary
    sibling folder and renamed into place, replacing an older synthetic set; a non-empty folder
    without a manifest is never touched (:class:`SyntheticError`). ``force`` regenerates even a
    matching set.

    Returns ``(manifest, created)``.
    """
    params = _resolve_params(fmt, params)
    root = os.path.abspath(os.fspath(root))
    if not force and _is_complete(root, fmt, params):
        return read_manifest(root), False
    if os.path.isdir(root) and os.listdir(root) and read_manifest(root) is None:
        raise SyntheticError('%s exists and is not a synthetic dataset (no %s); refusing to '
                             'overwrite it, choose another folder' % (root, MANIFEST_NAME))
    if os.path.exists(root) and not os.path.isdir(root):
        raise SyntheticError('%s exists and is not a folder' % root)
    # The whole folder is generated: every name in an older synthetic set is replaced (the
    # check above refused any folder that is not one).
    owned = set(os.listdir(root)) if os.path.isdir(root) else set()
    with atomic_folder(root, owned=owned) as tmp:
        manifest = _GENERATORS[fmt](tmp, progress=progress, **params)
    return manifest, True
