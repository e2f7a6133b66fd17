"""Test set-up: ``lib/`` on the import path and the shared reference fixtures.

The reference fixtures live outside the project, in ``../shared/fixtures`` (set
``POSEKIT_FIXTURES`` to use another folder). Tests that need them use the ``fixtures_dir``
fixture (or ``require_fixtures``) and are skipped cleanly when the folder is absent.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, 'lib')
if LIB not in sys.path:
    sys.path.insert(0, LIB)

FIXTURES = os.environ.get('POSEKIT_FIXTURES', os.path.join(ROOT, '..', 'shared', 'fixtures'))


def require_fixtures(*parts):
    """Path inside the shared fixtures folder; skips the calling test if it is absent."""
    path = os.path.join(FIXTURES, *parts)
    if not os.path.exists(path):
        pytest.skip('reference fixtures not found: %s' % path)
    return path


@pytest.fixture
def fixtures_dir():
    return require_fixtures()


@pytest.fixture(scope='session')
def repo_root():
    return ROOT
