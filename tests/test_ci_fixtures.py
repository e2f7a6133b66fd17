"""A missing ``../shared/fixtures`` folder skips the parity tests on a developer machine, but
fails them under ``CI=true`` (CI must run every parity check); pytest prints the skip reasons.

Each case runs pytest in a subprocess on a one-test file that asks for the fixtures through
tests/conftest.py's ``require_fixtures``, with ``POSEKIT_FIXTURES`` naming a missing folder.
"""
import os
import subprocess
import sys

import pytest

from conftest import ROOT

TESTS = os.path.join(ROOT, 'tests')

NEEDS_FIXTURES = '''
import sys
sys.path.insert(0, %r)
from conftest import require_fixtures


def test_needs_the_fixtures():
    require_fixtures('real', 'coco', 'test_coco.json')
''' % TESTS


def run_pytest(tmp_path, ci):
    (tmp_path / 'test_needs_fixtures.py').write_text(NEEDS_FIXTURES)
    env = {k: v for k, v in os.environ.items() if k not in ('CI', 'PYTEST_ADDOPTS')}
    env['POSEKIT_FIXTURES'] = str(tmp_path / 'no_such_folder')
    if ci is not None:
        env['CI'] = ci
    return subprocess.run([sys.executable, '-m', 'pytest', '-c', os.path.join(ROOT, 'pytest.ini'),
                           '--rootdir', str(tmp_path), str(tmp_path / 'test_needs_fixtures.py')],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('ci', [None, 'false'])
def test_missing_fixtures_skip_with_the_reason_printed(tmp_path, ci):
    proc = run_pytest(tmp_path, ci)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert '1 skipped' in proc.stdout
    # -rs in pytest.ini: the reason is in the summary, naming the missing path
    skip_lines = [line for line in proc.stdout.splitlines() if line.startswith('SKIPPED')]
    assert len(skip_lines) == 1, proc.stdout[-3000:]
    assert 'reference fixtures not found' in skip_lines[0]
    assert 'no_such_folder' in skip_lines[0]


@pytest.mark.parametrize('ci', ['true', 'TRUE'])
def test_missing_fixtures_fail_under_ci(tmp_path, ci):
    proc = run_pytest(tmp_path, ci)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert '1 failed' in proc.stdout and 'skipped' not in proc.stdout
    assert 'reference fixtures not found under CI=true' in proc.stdout
