"""Output folders (issue 9, Deliver 4, 5 and 6).

* one run per output folder: a second train.py / valid.py on a folder in use stops with one line
  naming the other process; a lock left by a killed run is taken over with a warning;
* an OUTPUT_DIR / LOG_DIR / --output that is a file or lies under one: one line naming the key;
* a full disk (a file-size limit) or a read-only folder during train.py / valid.py: one line,
  and the files written before are intact.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest

from tool_runs import CFG, RUN, Started, make_data, make_weights, run, small
from posekit.outputs import (LOCK_NAME, OutputFolderError, OutputFolderInUse, OutputLock,
                             StaleLockWarning, check_output_folder)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp('locks') / 'mpii')


@pytest.fixture(scope='module')
def weights(data, tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp('weights') / 'w.pdparams', data)


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
    """OUTPUT_DIR of a finished one-epoch run (copy it before changing it)."""
    out = tmp_path_factory.mktemp('trained') / 'out'
    proc = run('train.py', '--cfg', CFG, '--no-progress', *small(data, out, 'TRAIN.END_EPOCH', '1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _holder(folder, release=True):
    """A process that takes ``folder``'s lock, says so, and ends when its stdin closes (releasing
    the lock, or, with ``release`` False, leaving the lock file behind as a killed run does)."""
    code = textwrap.dedent('''
        import os, sys
        from posekit.outputs import OutputLock
        lock = OutputLock(sys.argv[1]).acquire()
        print('held', flush=True)
        sys.stdin.read()
        if sys.argv[2] == 'release':
            lock.release()
        else:
            os._exit(0)  # no clean-up, like kill -9
    ''')
    proc = subprocess.Popen([sys.executable, '-c', code, str(folder),
                             'release' if release else 'leave'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'held'
    return proc


def _end(proc):
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


# ------------------------------------------------------------------------------ the lock itself

def test_a_held_folder_is_refused_naming_the_holder(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(OutputFolderInUse) as info:
            OutputLock(tmp_path, 'use another folder').acquire()
        message = str(info.value)
        assert 'in use by process %d' % holder.pid in message
        assert str(tmp_path) in message and message.endswith('; use another folder')
        assert '-c' in message  # the holder's command line
    finally:
        _end(holder)
    assert not os.path.exists(tmp_path / LOCK_NAME)  # released, file removed
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a released lock is taken without a warning
        with OutputLock(tmp_path) as lock:
            assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
        assert lock.fd is None and not os.path.exists(tmp_path / LOCK_NAME)


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    holder = _holder(tmp_path, release=False)
    _end(holder)
    assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == holder.pid  # left behind
    with pytest.warns(StaleLockWarning, match='taking it over from process %d' % holder.pid):
        lock = OutputLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
    lock.release()


def test_a_stale_lock_file_written_by_hand(tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps({'pid': dead.pid, 'command': 'train.py x'}))
    with pytest.warns(StaleLockWarning, match=r'process %d.*train\.py x' % dead.pid):
        with OutputLock(tmp_path):
            pass


# ------------------------------------------------------------------------------ two runs

def test_a_second_run_on_a_folder_in_use_stops(data, tmp_path):
    out = tmp_path / 'out'
    opts = small(data, out, 'TRAIN.END_EPOCH', '50')
    first = Started('train.py', '--cfg', CFG, '--no-progress', *opts, stderr_path=tmp_path / 'e1')
    try:
        first.wait_for('Epoch: [0][1/')
        second = run('train.py', '--cfg', CFG, '--no-progress', *opts)
        valid = run('valid.py', '--cfg', CFG, *opts)  # writes into the same run folder
        first.signal(signal.SIGKILL)
        assert first.finish() == -signal.SIGKILL
    finally:
        first.kill()
    folder = os.path.join(out, RUN)
    for proc, prog, hint in ((second, 'train', 'use another OUTPUT_DIR'),
                             (valid, 'valid', 'give another --output')):
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr[-3000:]
        assert lines[0].startswith('%s: error: output folder %s is in use by process %d'
                                   % (prog, folder, first.proc.pid)), lines[0]
        assert 'train.py' in lines[0] and lines[0].endswith(hint)
    # the killed run left its lock file: the next run takes the folder over with a warning
    assert os.path.exists(os.path.join(folder, LOCK_NAME))
    again = run('train.py', '--cfg', CFG, '--no-progress', '--resume',
                *small(data, out, 'TRAIN.END_EPOCH', '1'))
    assert again.returncode == 0, again.stderr[-3000:]
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        'train: warning: output folder %s: taking it over from process %d' % (folder,
                                                                             first.proc.pid))
    assert lines[0].endswith('which ended without releasing it'), lines
    assert not os.path.exists(os.path.join(folder, LOCK_NAME))


# ------------------------------------------------------------------------------ bad folders

def test_check_output_folder(tmp_path):
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    assert check_output_folder(tmp_path / 'new' / 'deeper', 'X') == str(tmp_path / 'new' / 'deeper')
    with pytest.raises(OutputFolderError,
                       match=r'^OUTPUT_DIR %s is a file, not a folder$' % a_file):
        check_output_folder(a_file, 'OUTPUT_DIR')
    with pytest.raises(OutputFolderError,
                       match=r'^--output %s/sub: %s is a file, not a folder$' % (a_file, a_file)):
        check_output_folder(a_file / 'sub', '--output', str(a_file / 'sub'))


def _main(tool):
    import importlib
    return importlib.import_module('posekit.tools.' + tool).main


@pytest.mark.parametrize('case', ['OUTPUT_DIR file', 'OUTPUT_DIR under', 'LOG_DIR file',
                                  'LOG_DIR under'])
def test_train_output_and_log_dir_that_are_files(case, data, tmp_path, capsys):
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    key, where = case.split()
    bad = str(a_file if where == 'file' else a_file / 'sub')
    opts = small(data, tmp_path / 'out') + [key, bad]
    assert _main('train')(['--cfg', CFG] + opts) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('train: error: %s %s' % (key, bad)), err
    assert ('%s is a file, not a folder' % a_file) in err[0]


@pytest.mark.parametrize('tool', ['valid', 'infer', 'export', 'deploy'])
def test_output_option_under_a_file(tool, data, weights, tmp_path, capsys):
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    bad = str(a_file / 'sub')
    args = {'valid': ['--cfg', CFG, '--model-file', str(weights)] + small(data, tmp_path / 'o'),
            'infer': ['--cfg', CFG, '--model-file', str(weights), '--img', str(weights)],
            'export': ['--cfg', CFG, '--model-file', str(weights)],
            'deploy': ['--model', str(weights), '--img', str(weights)]}[tool]
    # options before the KEY VALUE overrides
    cut = args.index('DATASET.ROOT') if 'DATASET.ROOT' in args else len(args)
    assert _main(tool)(args[:cut] + ['--output', bad] + args[cut:]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['%s: error: --output %s: %s is a file, not a folder' % (tool, bad, a_file)]


# ------------------------------------------------------------------------------ full or read-only

def _limited(limit):
    """preexec_fn: files may not grow beyond ``limit`` bytes; a write past it fails with EFBIG
    (SIGXFSZ, which would kill the process, is ignored), as on a full disk."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _contents(folder):
    """The checkpoint and weights files of a run folder (pred.mat and config.yaml are rewritten
    by every run, on purpose)."""
    return {n: open(os.path.join(folder, n), 'rb').read() for n in sorted(os.listdir(folder))
            if n.endswith(('.pdckpt', '.pdparams'))}


def test_train_on_a_full_disk_keeps_the_checkpoint(data, trained, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(trained, out)
    folder = os.path.join(out, RUN)
    before = _contents(folder)
    assert len(before) == 3  # checkpoint, model_best, final_state
    # the log and config fit; the first weights file (model_best, ~2 MB) does not
    proc = run('train.py', '--cfg', CFG, '--no-progress', '--resume',
               *small(data, out, 'TRAIN.END_EPOCH', '2'), preexec_fn=_limited(1 << 20))
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.strip().splitlines() if ': error: ' in ln]
    assert 'Traceback' not in proc.stderr and len(errors) == 1, proc.stderr[-3000:]
    assert errors[0] == ('train: error: File too large: %s; the last finished epoch is in '
                         'checkpoint.pdckpt (continue with --resume)'
                         % os.path.join(folder, 'model_best.pdparams'))
    assert _contents(folder) == before
    assert not [n for n in os.listdir(folder) if '.tmp-' in n]


def test_valid_on_a_full_disk_is_one_line(data, weights, tmp_path):
    out = tmp_path / 'v'
    proc = run('valid.py', '--cfg', CFG, '--model-file', weights, '--output', out,
               *small(data, tmp_path / 'o'), preexec_fn=_limited(1500))  # pred.mat is larger
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        'valid: error: File too large: %s' % os.path.join(out, 'pred.mat')], proc.stderr[-3000:]
    assert not [n for n in os.listdir(out) if n.endswith('.mat') or '.tmp-' in n]


@pytest.mark.skipif(hasattr(os, 'geteuid') and os.geteuid() == 0,
                    reason='running as root: permission bits do not stop root from writing, so '
                           'a read-only folder cannot be made with chmod (the full-disk tests '
                           'cover the failed write)')
def test_train_in_a_read_only_folder(data, trained, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(trained, out)
    folder = os.path.join(out, RUN)
    before = _contents(folder)
    os.chmod(folder, 0o555)
    try:
        proc = run('train.py', '--cfg', CFG, '--no-progress', '--resume',
                   *small(data, out, 'TRAIN.END_EPOCH', '2'))
    finally:
        os.chmod(folder, 0o755)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('train: error: OUTPUT_DIR %s: cannot write in '
                                                   '%s' % (out, folder)), proc.stderr[-3000:]
    assert _contents(folder) == before
