"""Training across machines: two ``paddle.distributed.launch`` launchers on this machine act as
two nodes (``--nnodes 2 --master 127.0.0.1:PORT``, one CPU process each, gloo).

* their run equals the single-node run with two processes (``--nproc_per_node 2``): the same
  final weights and the same in-training validation;
* each node has its own data and output folders (machines share no disk): the second node
  generates its own copy of the synthetic set, and only global rank 0 writes outputs;
* a node killed mid-run (kill -9 of its launcher and its worker, as when a machine dies) stops the
  other node within a bounded time with one line, not a traceback or a hang; both nodes started
  again with ``--resume`` end with the weights of the uninterrupted run.

Sizes as in test_train_e2e.py (SimpleNet at 64x64, 24 generated images); each launcher run takes
10-20 s on 2 cores, the module about a minute.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from scipy.io import loadmat

from conftest import ROOT
from tool_runs import assert_same_weights

CFG = os.path.join(ROOT, 'experiments', 'synthetic', 'mpii_simplenet_128x128.yaml')
TRAIN = os.path.join(ROOT, 'pose_estimation', 'train.py')
RUN = os.path.join('mpii', 'simplenet', 'mpii_simplenet_128x128')
LAUNCH_TIMEOUT = 300   # a safety net for a hung launcher; runs take 10-20 s
STOP_WITHIN = 60       # seconds the surviving node may take to stop after the other died


def options(data, out, *extra):
    return ['--cfg', CFG, '--no-progress',
            'DATASET.ROOT', str(data), 'OUTPUT_DIR', str(out), 'LOG_DIR', str(out) + '_log',
            'DATASET.SYNTHETIC.NUM_TRAIN', '24', 'DATASET.SYNTHETIC.NUM_VALID', '6',
            'DATASET.SYNTHETIC.IMAGE_SIZE', '128,128', 'MODEL.IMAGE_SIZE', '64,64',
            'MODEL.HEATMAP_SIZE', '16,16', 'TRAIN.BATCH_SIZE_PER_GPU', '4',
            'TEST.BATCH_SIZE_PER_GPU', '16', 'SEED', '3', 'WORKERS', '0', 'PRINT_FREQ', '1',
            'TRAIN.LR_STEP', '50,60'] + list(extra)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launcher(log_dir, *launch_args):
    return [sys.executable, '-m', 'paddle.distributed.launch', '--log_dir', str(log_dir)] + \
        list(launch_args) + [TRAIN]


def start_nodes(tmp, name, node_options, port=None):
    """One launcher per node (``node_options[i]`` are node i's train.py options); returns the
    Popen objects and their log folders. Each launcher gets its own session so that the test
    can kill a node (launcher and worker) without touching the other."""
    port = port or free_port()
    procs, logs = [], []
    for node, opts in enumerate(node_options):
        log_dir = tmp / ('%s_node%d' % (name, node))
        cmd = launcher(log_dir, '--nnodes', '2', '--master', '127.0.0.1:%d' % port,
                       '--rank', str(node), '--nproc_per_node', '1') + opts
        out = open(tmp / ('%s_node%d.out' % (name, node)), 'w')
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        logs.append(log_dir)
    return procs, logs


def wait_all(procs, timeout=LAUNCH_TIMEOUT):
    end = time.time() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(end - time.time(), 1))
    finally:
        for p in procs:
            kill_node(p)
    return [p.returncode for p in procs]


def children(pid):
    """Child process ids of ``pid`` (Linux /proc)."""
    out = []
    task_dir = '/proc/%d/task' % pid
    try:
        for tid in os.listdir(task_dir):
            with open(os.path.join(task_dir, tid, 'children')) as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def kill_node(proc):
    """kill -9 a launcher and everything under it (its worker runs in a session of its own)."""
    if proc.poll() is not None:
        return
    pids = [proc.pid]
    i = 0
    while i < len(pids):
        pids += children(pids[i])
        i += 1
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def worker_log(log_dir):
    with open(os.path.join(log_dir, 'workerlog.0')) as f:
        return f.read()



@pytest.fixture(scope='module')
def single_node(tmp_path_factory):
    """The reference: one node, two processes, two epochs (generates the data set)."""
    tmp = tmp_path_factory.mktemp('single_node')
    data, out = tmp / 'data', tmp / 'out'
    cmd = launcher(tmp / 'launch', '--nproc_per_node', '2') + options(data, out, 'TRAIN.END_EPOCH', '2')
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert proc.returncode == 0, worker_log(tmp / 'launch')[-3000:]
    return data, out


@pytest.fixture(scope='module')
def two_nodes(single_node, tmp_path_factory):
    """The same run on two nodes. Node 0 has the reference's data folder; node 1 has folders of
    its own (an empty data folder, where it generates its copy, and an output folder)."""
    data, _ = single_node
    tmp = tmp_path_factory.mktemp('two_nodes')
    out0, out1 = tmp / 'out0', tmp / 'out1'
    procs, logs = start_nodes(tmp, 'run', [
        options(data, out0, 'TRAIN.END_EPOCH', '2'),
        options(tmp / 'data1', out1, 'TRAIN.END_EPOCH', '2')])
    codes = wait_all(procs)
    assert codes == [0, 0], [worker_log(d)[-2000:] for d in logs]
    return tmp, out0, out1, data, logs


def test_two_nodes_equal_one_node_with_two_processes(single_node, two_nodes):
    _, ref_out = single_node
    tmp, out0, out1, data, logs = two_nodes
    log0 = worker_log(logs[0])
    assert '2 process(es) x batch 4 = 8 per step' in log0
    for name in ('final_state.pdparams', 'model_best.pdparams'):
        assert_same_weights(os.path.join(ref_out, RUN, name), os.path.join(out0, RUN, name))
    # in-training validation: the same predictions and the same indicator at every epoch
    np.testing.assert_array_equal(loadmat(os.path.join(ref_out, RUN, 'pred.mat'))['preds'],
                                  loadmat(os.path.join(out0, RUN, 'pred.mat'))['preds'])
    ref_ckpt = paddle.load(os.path.join(ref_out, RUN, 'checkpoint.pdckpt'))
    ckpt = paddle.load(os.path.join(out0, RUN, 'checkpoint.pdckpt'))
    assert [h['perf'] for h in ckpt['history']] == [h['perf'] for h in ref_ckpt['history']]
    assert [h['valid_loss'] for h in ckpt['history']] == [h['valid_loss'] for h in ref_ckpt['history']]


def test_each_node_has_its_data_and_only_rank_0_writes(two_nodes):
    tmp, out0, out1, data, logs = two_nodes
    # node 1 generated its own copy of the set (machines share no disk): the same files
    for rel in (os.path.join('annot', 'train.json'), os.path.join('annot', 'valid.json')):
        with open(os.path.join(data, rel), 'rb') as a, open(tmp / 'data1' / rel, 'rb') as b:
            assert a.read() == b.read(), rel
    # global rank 0 (node 0) wrote the run; node 1's output and VisualDL folders stay empty
    assert os.path.isfile(os.path.join(out0, RUN, 'final_state.pdparams'))
    for folder in (out1, str(out1) + '_log'):
        assert not os.path.exists(folder) or not any(files for _, _, files in os.walk(folder)), \
            sorted(os.walk(folder))
    assert 'Epoch: [' not in worker_log(logs[1])


def test_a_dead_node_stops_the_other_with_one_line_and_resume_finishes_the_run(single_node,
                                                                                 two_nodes,
                                                                                 tmp_path):
    tmp, ref0, _, data, _ = two_nodes
    out0, out1, data1 = tmp_path / 'out0', tmp_path / 'out1', tmp / 'data1'
    # a long run, so that the kill lands in epoch 1, whatever the machine's speed
    procs, logs = start_nodes(tmp_path, 'killed', [
        options(data, out0, 'TRAIN.END_EPOCH', '30'),
        options(data1, out1, 'TRAIN.END_EPOCH', '30')])
    try:
        end = time.time() + LAUNCH_TIMEOUT
        while 'Epoch: [1][1/' not in (worker_log(logs[0]) if os.path.isfile(
                os.path.join(logs[0], 'workerlog.0')) else ''):
            assert time.time() < end and all(p.poll() is None for p in procs), \
                'the run did not reach epoch 1'
            time.sleep(0.05)
        # node 0 (the master and global rank 0) dies as a machine would
        kill_node(procs[0])
        killed_at = time.time()
        procs[1].wait(timeout=STOP_WITHIN)
        stopped_after = time.time() - killed_at
    finally:
        for p in procs:
            kill_node(p)
    assert procs[1].returncode != 0
    assert stopped_after < STOP_WITHIN
    log1 = worker_log(logs[1])
    assert 'Traceback' not in log1 and 'FatalError' not in log1, log1[-3000:]
    last = log1.strip().splitlines()[-1]
    assert last.startswith('train: error: lost contact with the other processes'), log1[-3000:]
    assert 'rank 1 of 2' in last and '--resume' in last
    assert sum(line.startswith('train: ') for line in log1.splitlines()) == 1, log1[-3000:]
    # rank 0's checkpoint is that of a finished epoch (1, or 2 if epoch 1 ended first)
    ckpt = paddle.load(os.path.join(out0, RUN, 'checkpoint.pdckpt'))
    assert ckpt['epoch'] in (1, 2)
    assert not os.path.exists(os.path.join(out0, RUN, 'final_state.pdparams'))

    # both nodes start again with --resume: the run ends as the uninterrupted one
    procs, logs = start_nodes(tmp_path, 'resumed', [
        ['--resume'] + options(data, out0, 'TRAIN.END_EPOCH', '2'),
        ['--resume'] + options(data1, out1, 'TRAIN.END_EPOCH', '2')])
    codes = wait_all(procs)
    assert codes == [0, 0], [worker_log(d)[-2000:] for d in logs]
    assert 'resumed from' in worker_log(logs[0])
    assert_same_weights(os.path.join(ref0, RUN, 'final_state.pdparams'),
                        os.path.join(out0, RUN, 'final_state.pdparams'))


def test_killing_only_the_launcher_stops_its_worker(tmp_path):
    """``paddle.distributed.launch`` puts its workers in sessions of their own; kill -9 of the
    launcher alone (its worker untouched) must not leave the worker training."""
    data, out = tmp_path / 'data', tmp_path / 'out'
    log_dir = tmp_path / 'log'
    cmd = launcher(log_dir, '--nproc_per_node', '1') + options(data, out, 'TRAIN.END_EPOCH', '30')
    with open(tmp_path / 'launcher.out', 'w') as stream:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT,
                                start_new_session=True)
    workers = []
    try:
        end = time.time() + LAUNCH_TIMEOUT
        while 'Epoch: [0][1/' not in (worker_log(log_dir) if os.path.isfile(
                os.path.join(log_dir, 'workerlog.0')) else ''):
            assert time.time() < end and proc.poll() is None, 'the run did not start training'
            time.sleep(0.05)
        workers = children(proc.pid)
        assert workers, 'the launcher has no worker process'
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        end = time.time() + 5
        while time.time() < end and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        left = [pid for pid in workers if _alive(pid)]
    finally:
        kill_node(proc)
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not left, 'worker(s) %s still running 5 s after the launcher was killed' % left
    log = worker_log(log_dir)
    assert 'Traceback' not in log and 'FatalError' not in log, log[-3000:]
    assert log.strip().splitlines()[-1].startswith('train: '), log[-2000:]


def _alive(pid):
    """``pid`` runs (not a zombie awaiting its parent's wait)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False
