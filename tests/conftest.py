"""Test set-up: the shared reference fixtures (``posekit`` itself is installed, see README).

The reference fixtures live outside the project, in ``../shared/fixtures`` (set
``POSEKIT_FIXTURES`` to use another folder). Tests that need them use the ``fixtures_dir``
fixture (or ``require_fixtures``) and are skipped cleanly when the folder is absent, except
under ``CI=true``, where a missing fixture is a failure: CI must run every parity check.
"""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIXTURES = os.environ.get('POSEKIT_FIXTURES', os.path.join(ROOT, '..', 'shared', 'fixtures'))


def require_fixtures(*parts):
    """Path inside the shared fixtures folder; skips the calling test if it is absent."""
    path = os.path.join(FIXTURES, *parts)
    if not os.path.exists(path):
        if os.environ.get('CI', '').lower() == 'true':
            pytest.fail('reference fixtures not found under CI=true: %s' % path)
        pytest.skip('reference fixtures not found: %s' % path)
    return path


@pytest.fixture
def fixtures_dir():
    return require_fixtures()


@pytest.fixture(scope='session')
def repo_root():
    return ROOT


def real_coco_root(root, detections=False):
    """The real COCO fixture photos and annotations laid out as ``DATASET.ROOT`` under ``root``
    (val2017), with the fixture detection file as ``det.json`` when ``detections``."""
    import shutil
    src = require_fixtures('real', 'coco')
    os.makedirs(os.path.join(root, 'annotations'))
    os.makedirs(os.path.join(root, 'images', 'val2017'))
    for name in os.listdir(src):
        if name.endswith('.jpg'):
            shutil.copy(os.path.join(src, name), os.path.join(root, 'images', 'val2017', name))
    shutil.copy(os.path.join(src, 'test_coco.json'),
                os.path.join(root, 'annotations', 'person_keypoints_val2017.json'))
    if detections:
        shutil.copy(os.path.join(src, 'test_coco_det_AP_H_56.json'), os.path.join(root, 'det.json'))
    return root


def simplepose_encode_fixture(name):
    """``simplepose/encode_<name>.npz`` as a dict of arrays, with its ``_meta.json``."""
    import json
    import numpy as np
    folder = require_fixtures('simplepose')
    data = dict(np.load(os.path.join(folder, 'encode_%s.npz' % name)))
    with open(os.path.join(folder, 'encode_%s_meta.json' % name)) as f:
        meta = json.load(f)
    return data, meta
