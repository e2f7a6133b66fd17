"""Stop signals and loader workers (issue 9, Deliver 3 and 6).

* SIGTERM and SIGINT end every entry point with one line and exit code 143 / 130 (no Paddle
  "FatalError: Termination signal" dump, no KeyboardInterrupt traceback), train.py's line says
  how to resume, and the files a run had written are intact;
* loader worker processes (WORKERS 2) are gone within a few seconds of their parent's end,
  however it ended (kill -9 included), with nothing left in /dev/shm;
* an error in a worker (a missing image) reaches the parent as its own one-line message.
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tool_runs import CFG, RUN, Started, left_alive, make_data, make_weights, run, small

SHM = '/dev/shm'


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp('signals') / 'mpii')


@pytest.fixture(scope='module')
def weights(data, tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp('weights') / 'w.pdparams', data)


def _shm_files(pids):
    """Paddle's shared-memory files (``paddle_<pid>_...``) of the given processes."""
    if not os.path.isdir(SHM):
        return []
    prefixes = tuple('paddle_%d_' % p for p in pids)
    return [n for n in os.listdir(SHM) if n.startswith(prefixes)]


def _one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in err and 'FatalError' not in err, err[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------ train.py

@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGKILL])
def test_train_with_workers_stopped_mid_epoch(signum, data, tmp_path):
    out = tmp_path / 'out'
    run_ = Started('train.py', '--cfg', CFG, '--no-progress',
                   *small(data, out, 'WORKERS', '2', 'TRAIN.END_EPOCH', '50'),
                   stderr_path=tmp_path / 'err')
    try:
        run_.wait_for('Epoch: [1][1/')  # epoch 0 is saved; epoch 1 is under way
        workers = run_.wait_for_children(2)
        run_.signal(signum)
        code = run_.finish()
        assert left_alive(workers) == []
    finally:
        run_.kill()
    ckpt = os.path.join(out, RUN, 'checkpoint.pdckpt')
    from posekit.checkpoint import read_paddle_file
    assert read_paddle_file(ckpt)['epoch'] >= 1  # the last finished epoch, readable
    assert _shm_files([w.pid for w in workers]) == []
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
        return
    assert code == 143
    line = _one_line(run_.stderr())
    assert line.startswith('train: terminated (SIGTERM)') and '--resume' in line, line
    assert not os.path.exists(os.path.join(out, RUN, '.posekit.lock'))  # released


def test_missing_image_with_workers_is_one_line(data, tmp_path):
    broken = tmp_path / 'broken'
    import shutil
    shutil.copytree(data, broken)
    os.remove(broken / 'images' / '000000005.jpg')  # a training image
    proc = run('train.py', '--cfg', CFG, '--no-progress',
               *small(broken, tmp_path / 'out', 'WORKERS', '2', 'TRAIN.END_EPOCH', '1'))
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert line == 'train: error: image not found: %s' % (broken / 'images' / '000000005.jpg')
    assert 'Blocking queue' not in proc.stderr


# ------------------------------------------------------------------------------ valid.py

@pytest.mark.parametrize('signum', [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_valid_with_workers_stopped(signum, data, weights, tmp_path):
    run_ = Started('valid.py', '--cfg', CFG, '--model-file', weights, '--output', tmp_path / 'v',
                   *small(data, tmp_path / 'out', 'WORKERS', '2', 'TEST.BATCH_SIZE_PER_GPU', '1',
                          'TEST.FLIP_TEST', 'True'),
                   stderr_path=tmp_path / 'err')
    try:
        run_.wait_for('Test: [1/')  # of about 40 batches
        workers = run_.wait_for_children(2)
        run_.signal(signum)
        code = run_.finish()
        assert left_alive(workers) == []
    finally:
        run_.kill()
    assert _shm_files([w.pid for w in workers]) == []
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
        return
    assert code == 128 + signum
    expected = 'valid: interrupted' if signum == signal.SIGINT else 'valid: terminated (SIGTERM)'
    assert _one_line(run_.stderr()) == expected


def test_an_error_in_a_worker_reaches_the_parent_as_its_own_message():
    """In process: the loader raises the worker's DatasetError, and its workers are gone."""
    import psutil
    from posekit.data import DatasetError
    from posekit.data.loader import build_eval_loader
    from tool_runs import left_alive as wait_gone

    class Broken:
        is_train = False

        def __len__(self):
            return 12

        def __getitem__(self, idx):
            if idx == 7:
                raise DatasetError('image not found: /data/007.jpg')
            return (np.zeros((3, 4, 4), np.float32), np.zeros((1, 2, 2), np.float32),
                    np.zeros((1, 1), np.float32), {'image': '%03d.jpg' % idx})

    before = set(p.pid for p in psutil.Process().children())
    seen = []
    with pytest.raises(DatasetError) as info:
        for batch in build_eval_loader(Broken(), 2, workers=2):
            seen.append(list(batch[3]['image']))
            workers = [p for p in psutil.Process().children() if p.pid not in before]
    assert str(info.value) == 'image not found: /data/007.jpg'
    assert seen == [['000.jpg', '001.jpg'], ['002.jpg', '003.jpg'], ['004.jpg', '005.jpg']]
    assert len(workers) == 2 and wait_gone(workers) == []


# ------------------------------------------------------------------------------ run_tool

def _script(tmp_path, body):
    path = tmp_path / 'tool.py'
    # Paddle's import warns that ccache is missing (posekit.tools silences it for the tools)
    path.write_text("import warnings\nwarnings.filterwarnings('ignore', message='No ccache')\n"
                    + textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_sigterm_after_paddle_is_imported_is_ours(tmp_path):
    """Paddle installs a C++ SIGTERM handler when imported; ours comes back right after."""
    cmd = _script(tmp_path, '''
        import os, signal, sys, time
        from posekit.cli import run_tool

        def body(argv):
            import paddle  # noqa: F401  (installs Paddle's handler)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)

        sys.exit(run_tool('demo', body, [], interrupted_hint='resume later'))
    ''')
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == 'demo: terminated (SIGTERM); resume later'
    assert 'FatalError' not in proc.stderr and 'Traceback' not in proc.stderr


def test_sigterm_while_stuck_in_paddle_still_stops(tmp_path):
    """The main thread waits in C++ for a batch a hung worker never sends: the signal cannot run
    Python there, and the watching thread ends the process after cli.GRACE seconds."""
    cmd = _script(tmp_path, '''
        import sys, time
        import numpy as np
        from posekit.cli import run_tool

        class Hung:
            is_train = False
            def __len__(self):
                return 8
            def __getitem__(self, idx):
                if idx == 0:
                    print('hanging', flush=True)
                    time.sleep(3600)
                return (np.zeros((3, 4, 4), np.float32), np.zeros((1, 2, 2), np.float32),
                        np.zeros((1, 1), np.float32), {'image': 'x'})

        def body(argv):
            from posekit.data.loader import build_eval_loader
            for _ in build_eval_loader(Hung(), 1, workers=2):
                pass

        sys.exit(run_tool('demo', body, []))
    ''')
    import psutil
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == 'hanging'
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert len(workers) == 2
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert _one_line(err) == 'demo: terminated (SIGTERM)'
        assert left_alive(workers) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_tool_restores_the_handlers(tmp_path):
    from posekit.cli import run_tool
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def body(argv):
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)
        import time
        time.sleep(30)  # the handler interrupts this

    assert run_tool('demo', body, []) == 143
    assert {s: signal.getsignal(s) for s in before} == before


# ------------------------------------------------------------------------ export, infer, deploy

@pytest.fixture(scope='module')
def exported(data, weights, tmp_path_factory):
    out = tmp_path_factory.mktemp('export') / 'model'
    proc = run('export.py', '--cfg', CFG, '--model-file', weights, '--output', out,
               'MODEL.IMAGE_SIZE', '64,64', 'MODEL.HEATMAP_SIZE', '16,16')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _images(folder, count=300):
    import cv2
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / ('%03d.jpg' % i)), rng.integers(0, 255, (48, 40, 3), np.uint8))
    return folder


def _files(folder):
    return {n: open(os.path.join(folder, n), 'rb').read() for n in sorted(os.listdir(folder))}


def test_export_stopped_while_building_keeps_the_previous_export(exported, weights, tmp_path):
    before = _files(exported)
    parent, name = os.path.split(str(exported))
    run_ = Started('export.py', '--cfg', CFG, '--model-file', weights, '--output', exported,
                   'MODEL.IMAGE_SIZE', '64,64', 'MODEL.HEATMAP_SIZE', '16,16',
                   stderr_path=tmp_path / 'err')
    try:
        import time
        # the new export is being built in a sibling folder ".<name>.new-..."
        while not any(n.startswith('.%s.new-' % name) for n in os.listdir(parent)):
            assert run_.proc.poll() is None, run_.stderr()
            time.sleep(0.02)
        run_.signal(signal.SIGTERM)
        code = run_.finish()
    finally:
        run_.kill()
    assert code == 143
    assert _one_line(run_.stderr()) == 'export: terminated (SIGTERM)'
    assert _files(exported) == before
    assert sorted(os.listdir(parent)) == [name]


@pytest.mark.parametrize('tool, signum', [('infer.py', signal.SIGTERM),
                                          ('deploy.py', signal.SIGINT),
                                          ('deploy.py', signal.SIGTERM)])
def test_infer_and_deploy_stopped(tool, signum, exported, weights, tmp_path):
    images = _images(tmp_path / 'images')
    if tool == 'infer.py':
        args = ['--cfg', CFG, '--model-file', weights, '--img-dir', images, '--output',
                tmp_path / 'out', 'MODEL.IMAGE_SIZE', '64,64', 'MODEL.HEATMAP_SIZE', '16,16']
    else:
        args = ['--model', os.path.join(exported, 'model.onnx'), '--img-dir', images,
                '--output', tmp_path / 'out']
    run_ = Started(tool, *args, stderr_path=tmp_path / 'err')
    try:
        run_.wait_for('003.jpg')  # a few images done, most of them to go
        run_.signal(signum)
        code = run_.finish()
    finally:
        run_.kill()
    prog = tool[:-3]
    assert code == 128 + signum
    expected = 'interrupted' if signum == signal.SIGINT else 'terminated (SIGTERM)'
    assert _one_line(run_.stderr()) == '%s: %s' % (prog, expected)
    written = os.listdir(tmp_path / 'out')
    assert written and not [n for n in written if n.startswith('.')]  # no temporary file


def test_a_swallowed_stop_still_stops_the_tool_and_installs_nothing(tmp_path):
    """A library that catches the KeyboardInterrupt of a stop signal and carries on must not
    make the tool finish its work: the atomic folder is not installed and the exit code is the
    signal's."""
    from posekit.cli import run_tool
    from posekit.io import atomic_folder
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'old.txt').write_text('old')

    def body(argv):
        with atomic_folder(str(out), owned=('new.txt', 'old.txt')) as build:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(100):  # the handler runs between bytecodes
                    pass
            except KeyboardInterrupt:
                pass  # what a careless library does
            with open(os.path.join(build, 'new.txt'), 'w') as f:
                f.write('new')
        return 0
    assert run_tool('demo', body, []) == 143
    assert sorted(os.listdir(out)) == ['old.txt']
    assert sorted(os.listdir(tmp_path)) == ['out']
