"""An export replaces its folder in one step (issue 9, Deliver 2 and 6), checked by faults.

posekit.io.atomic_folder is tested on plain files (no Paddle); export.py is then killed (-9) at
several moments, made to fail its parity check and made to hit a file-size limit (a full disk)
over a folder that holds a good export: each time that export stays, byte for byte, loadable,
with no stray file beside it. Also: ``--tol`` must be > 0, and deploy.py has no --width/--height
(export.py makes no free-size model).
"""
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from posekit import io as pio
from posekit.export.exporter import EXPORT_FILES, ParityError, export_model
from test_export import FAMILIES, SMALL, save_weights, seeded_model

CFG = os.path.join(ROOT, FAMILIES['simplenet'][0])
EXPORT = os.path.join(ROOT, 'pose_estimation', 'export.py')


def snapshot(folder):
    """{relative path: sha256} of every file under ``folder``."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


def siblings(folder):
    """The temporary siblings of ``folder`` (``.<name>.new-*`` / ``.<name>.old-*``)."""
    parent, name = os.path.split(os.path.abspath(folder))
    return sorted(n for n in os.listdir(parent) if n.startswith('.%s.' % name))


def dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


# ---- posekit.io.atomic_folder on plain files ---------------------------------------------------

def fill(folder, files):
    os.makedirs(folder, exist_ok=True)
    for name, text in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)


def test_atomic_folder_replaces_owned_files_and_keeps_the_others(tmp_path):
    out = str(tmp_path / 'out')
    with pio.atomic_folder(out, owned=('a', 'b')) as build:  # a new folder
        assert os.path.dirname(build) == str(tmp_path) and os.listdir(build) == []
        fill(build, {'a': 'a1', 'b': 'b1'})
    assert sorted(os.listdir(out)) == ['a', 'b'] and siblings(out) == []
    fill(out, {'notes.txt': 'mine', 'sub/x.txt': 'x', '.a.tmp-k2j3h4g5': 'stray of a'})
    inode = os.stat(os.path.join(out, 'notes.txt')).st_ino
    with pio.atomic_folder(out, owned=('a', 'b')) as build:
        fill(build, {'a': 'a2'})  # no 'b' this time
        assert open(os.path.join(out, 'a')).read() == 'a1'  # nothing changes before the end
    assert sorted(os.listdir(out)) == ['a', 'notes.txt', 'sub']
    assert open(os.path.join(out, 'a')).read() == 'a2'
    assert open(os.path.join(out, 'sub', 'x.txt')).read() == 'x'
    assert os.stat(os.path.join(out, 'notes.txt')).st_ino == inode  # linked, not copied
    assert siblings(out) == []


def test_atomic_folder_leaves_the_folder_when_the_block_fails(tmp_path):
    out = str(tmp_path / 'out')
    fill(out, {'a': 'old', 'keep': 'k'})
    before = snapshot(out)
    for error in (ValueError('check failed'), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with pio.atomic_folder(out, owned=('a',)) as build:
                fill(build, {'a': 'new'})
                raise error
        assert snapshot(out) == before and siblings(out) == []
    with pytest.raises(pio.InputFileError, match='not a folder'):
        with pio.atomic_folder(os.path.join(out, 'a')):
            pass


def test_atomic_folder_without_exchange_and_through_a_symlink(tmp_path, monkeypatch):
    monkeypatch.setattr(pio, '_exchange', lambda a, b: False)  # the two-rename fallback
    real = str(tmp_path / 'real')
    fill(real, {'a': 'old', 'keep': 'k'})
    link = tmp_path / 'link'
    link.symlink_to(real)
    with pio.atomic_folder(str(link), owned=('a',)) as build:
        fill(build, {'a': 'new'})
    assert link.is_symlink() and snapshot(real) == {'a': hashlib.sha256(b'new').hexdigest(),
                                                   'keep': hashlib.sha256(b'k').hexdigest()}
    assert siblings(real) == []


def test_atomic_folder_swaps_in_one_step_on_linux(tmp_path, monkeypatch):
    if not sys.platform.startswith('linux'):
        pytest.skip('renameat2(RENAME_EXCHANGE) is Linux only')
    renames = []
    monkeypatch.setattr(pio.os, 'rename', lambda *a: renames.append(a))
    out = str(tmp_path / 'out')
    fill(out, {'a': 'old'})
    with pio.atomic_folder(out, owned=('a',)) as build:
        fill(build, {'a': 'new'})
    assert renames == []  # exchanged, not renamed aside
    assert open(os.path.join(out, 'a')).read() == 'new'


def test_atomic_folder_run_from_inside_the_folder(tmp_path, monkeypatch):
    """``--output .``: this process ends up in the new folder, not in the deleted old one."""
    out = tmp_path / 'out'
    fill(str(out / 'sub'), {'x': '1'})
    monkeypatch.chdir(out / 'sub')
    with pio.atomic_folder('..', owned=('a',)) as build:
        fill(build, {'a': 'new'})
    assert os.getcwd() == str(out / 'sub') and os.listdir('.') == ['x']
    assert open(os.path.join('..', 'a')).read() == 'new'


def test_leftovers_of_killed_runs_are_cleaned_or_restored(tmp_path):
    out = str(tmp_path / 'out')
    fill(out, {'a': 'old'})
    tag, pid = pio._host_tag(), dead_pid()
    stale = tmp_path / ('.out.new-%s-%d-xyz' % (tag, pid))
    running = tmp_path / ('.out.new-%s-%d-abc' % (tag, os.getpid()))
    other_host = tmp_path / ('.out.new-%s-%d-def' % ('0' * 8 if tag != '0' * 8 else '1' * 8, pid))
    for folder in (stale, running, other_host):
        fill(str(folder), {'a': 'half'})
    with pio.atomic_folder(out, owned=('a',)) as build:
        fill(build, {'a': 'new'})
    # a killed run's folder is deleted; a running one's, or another machine's, is left alone
    assert siblings(out) == sorted([running.name, other_host.name])

    # killed between the two renames of the fallback swap: the folder is missing, its previous
    # content complete in the '.old-' sibling; the next call puts it back before anything else
    shutil.rmtree(running)
    shutil.rmtree(other_host)
    aside = tmp_path / ('.out.old-%s-%d-q1' % (tag, pid))
    os.rename(out, aside)
    fill(str(tmp_path / ('.out.new-%s-%d-q2' % (tag, pid))), {'a': 'newer'})
    with pytest.raises(RuntimeError):
        with pio.atomic_folder(out, owned=('a',)):
            assert open(os.path.join(out, 'a')).read() == 'new'
            raise RuntimeError('stop')
    assert open(os.path.join(out, 'a')).read() == 'new' and siblings(out) == []


KILL_BETWEEN_RENAMES = '''
import os, signal, sys
from posekit import io as pio
pio._exchange = lambda a, b: False
rename = os.rename
def rename_then_die(src, dst):
    rename(src, dst)
    if os.path.basename(dst).startswith('.out.old-'):
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename_then_die
with pio.atomic_folder(sys.argv[1], owned=('a',)) as build:
    open(os.path.join(build, 'a'), 'w').write('new')
'''


def test_kill_between_the_fallback_renames(tmp_path):
    out = str(tmp_path / 'out')
    fill(out, {'a': 'old', 'keep': 'k'})
    before = snapshot(out)
    proc = subprocess.run([sys.executable, '-c', KILL_BETWEEN_RENAMES, out], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(out) and any('.old-' in n for n in siblings(out))
    with pio.atomic_folder(out, owned=('a',)) as build:
        assert snapshot(out) == before  # put back first
        fill(build, {'a': 'again'})
    assert open(os.path.join(out, 'a')).read() == 'again' and siblings(out) == []


# ---- export.py over a good export ---------------------------------------------------------------

@pytest.fixture(scope='module')
def good(tmp_path_factory):
    """A good export (seed 0) with a user's file beside it, and other weights (seed 1)."""
    root = tmp_path_factory.mktemp('good')
    cfg, model = seeded_model('simplenet', seed=0)
    folder = str(root / 'export')
    export_model(model, cfg, folder, fmt='both', threads=1)
    fill(folder, {'notes.txt': 'my notes'})
    cfg1, model1 = seeded_model('simplenet', seed=1)
    weights = save_weights(model1, root / 'other.pdparams')
    return {'folder': folder, 'files': snapshot(folder), 'weights': weights,
            'model': model1, 'cfg': cfg1}


@pytest.fixture
def out(good, tmp_path):
    folder = str(tmp_path / 'out')
    shutil.copytree(good['folder'], folder)
    assert snapshot(folder) == good['files']
    return folder


def export_args(good, out, *extra):
    return [sys.executable, EXPORT, '--cfg', CFG, '--model-file', good['weights'],
            '--output', out, '--threads', '1', *extra, *SMALL]


def assert_old_export_intact(good, out):
    """The same files, the same bytes, no stray file; ONNX Runtime and Paddle Inference load
    it the way deploy.py does."""
    from posekit.inference.loading import open_exported
    assert snapshot(out) == good['files']
    for model_file, kind in (('model.onnx', 'onnx'), ('model.json', 'paddle')):
        runner, dc, _ = open_exported(os.path.join(out, model_file), kind=kind, threads=1)
        heatmaps = runner(np.zeros((1, 3) + tuple(dc.input_size[::-1]), np.float32))
        assert heatmaps.shape == (1, 17, 32, 24) and np.isfinite(heatmaps).all()


def one_line_error(proc):
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1, proc.stderr
    assert err[0].startswith('export: error: ') and 'Traceback' not in proc.stderr
    return err[0]


def wait_for(condition, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert proc.poll() is None, 'export.py ended before the moment to kill it'
        time.sleep(0.01)
    raise AssertionError('the moment to kill export.py never came')


def build_folder_with(out, name):
    """A condition: the path of ``name`` in a temporary sibling being built (or the sibling
    itself for name None)."""
    def condition():
        for sib in siblings(out):
            path = os.path.join(os.path.dirname(out), sib)
            if '.new-' in sib and (name is None or os.path.exists(os.path.join(path, name))):
                return path
        return None
    return condition


# the moments: the build folder was just made (the Paddle model is being traced), the Paddle
# weights are being written (paddle2onnx follows), model.onnx is written (the parity check runs)
@pytest.mark.parametrize('moment', [None, 'model.pdiparams', 'model.onnx'])
def test_kill_9_leaves_the_previous_export(good, out, moment):
    proc = subprocess.Popen(export_args(good, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        build = wait_for(build_folder_with(out, moment), proc)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert_old_export_intact(good, out)
    assert os.path.isdir(build)  # the killed run's sibling: outside the output folder
    if moment == 'model.onnx':
        # the next export deletes the leftover and replaces the folder
        result = export_model(good['model'], good['cfg'], out, fmt='onnx', threads=1)
        assert siblings(out) == [] and not os.path.exists(build)
        assert sorted(os.listdir(out)) == ['config.yaml', 'deploy_config.json', 'model.onnx',
                                           'notes.txt']
        assert result.notes == ['removed the files of an earlier export: model.json, '
                                'model.pdiparams']
        assert snapshot(out)['model.onnx'] != good['files']['model.onnx']


def test_failed_parity_check_leaves_the_previous_export(good, out):
    proc = subprocess.run(export_args(good, out, '--tol', '1e-12'), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    err = one_line_error(proc)
    assert 'exported heatmaps differ from the dygraph model' in err
    assert err.endswith('the previous export in %s is unchanged' % out)
    assert_old_export_intact(good, out)
    assert siblings(out) == []


def test_file_size_limit_leaves_the_previous_export(good, out):
    """A full disk while model.onnx is written: the limit lies between the sizes of the Paddle
    weights (written) and of the ONNX model (too large)."""
    params = os.path.getsize(os.path.join(out, 'model.pdiparams'))
    onnx_size = os.path.getsize(os.path.join(out, 'model.onnx'))
    assert onnx_size > params  # the same weights plus the graph
    limit = (params + onnx_size) // 2

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(export_args(good, out), cwd=ROOT, capture_output=True, text=True,
                          timeout=600, preexec_fn=limited)
    err = one_line_error(proc)
    assert 'cannot write model.onnx: File too large' in err
    assert err.endswith('the previous export in %s is unchanged' % out)
    assert_old_export_intact(good, out)
    assert siblings(out) == []


def test_failed_int8_step_leaves_the_previous_export(good, out, tmp_path):
    """The int8 copy is made in the build folder too: its failure changes nothing."""
    from posekit.export.quantize import QuantizeError
    calib = tmp_path / 'calib'
    fill(str(calib), {'broken.jpg': 'not a jpeg'})
    with pytest.raises(QuantizeError, match='could be read .*; the previous export in .* is '
                                            'unchanged$'):
        export_model(good['model'], good['cfg'], out, fmt='onnx', threads=1, quantize='int8',
                     calib_dir=str(calib))
    assert_old_export_intact(good, out)
    assert siblings(out) == []


def test_in_process_parity_failure_on_an_empty_folder(good, tmp_path):
    out = str(tmp_path / 'new')
    with pytest.raises(ParityError, match='; nothing was written to %s$' % re.escape(out)):
        export_model(good['model'], good['cfg'], out, fmt='onnx', threads=1, tol=1e-12)
    assert not os.path.exists(out) and siblings(out) == []
    # for latency measurements a failed check can be a note instead
    result = export_model(good['model'], good['cfg'], out, fmt='onnx', threads=1, tol=1e-12,
                          require_parity=False)
    assert result.failures() and result.notes[0].startswith('parity check failed, exported '
                                                            'anyway: exported heatmaps differ')
    assert sorted(os.listdir(out)) == ['config.yaml', 'deploy_config.json', 'model.onnx']


@pytest.mark.parametrize('tol', ['0', '-1', '-1e-4', 'nan', 'inf'])
def test_tol_must_be_positive(tol, tmp_path, capsys):
    from posekit.tools import export
    # checked before anything slow: the weights file does not even exist
    code = export.main(['--cfg', CFG, '--model-file', str(tmp_path / 'missing.pdparams'),
                        '--output', str(tmp_path / 'o'), '--tol=' + tol])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith('export: error: the parity tolerance (--tol) must be a finite '
                             'number > 0')
    assert not (tmp_path / 'o').exists()


def test_export_files_cover_every_model_file():
    assert set(EXPORT_FILES) >= {'model.onnx', 'model_int8.onnx', 'model.json', 'model.pdmodel',
                                 'model.pdiparams', 'deploy_config.json', 'config.yaml'}


# ---- deploy.py: no --width/--height ------------------------------------------------------------

def test_deploy_has_no_width_height(capsys):
    """export.py makes fixed-size models only, so deploy.py offers no size option."""
    import inspect
    from posekit.inference.loading import open_exported
    from posekit.tools import deploy
    with pytest.raises(SystemExit) as info:
        deploy.parse_args(['--model', 'm.onnx', '--img', 'a.jpg', '--width', '288',
                           '--height', '384'])
    assert info.value.code == 2
    assert 'unrecognized arguments: --width 288 --height 384' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        deploy.parse_args(['--help'])
    assert '--width' not in capsys.readouterr().out
    assert 'input_size' not in inspect.signature(open_exported).parameters
