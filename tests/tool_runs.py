"""Helpers of the fault-injection tests (test_signals.py, test_output_lock.py): a small generated
MPII-format set, weights for it, and entry points run as processes that are stopped on purpose.
"""
import os
import signal
import subprocess
import sys

import psutil

from conftest import ROOT

CFG = os.path.join(ROOT, 'experiments', 'synthetic', 'mpii_simplenet_128x128.yaml')
RUN = os.path.join('mpii', 'simplenet', 'mpii_simplenet_128x128')
CHILD_GRACE = 5.0  # seconds within which loader workers must follow their parent


def small(data, out, *extra):
    """Overrides for a run of a few seconds on the set under ``data``, writing under ``out``."""
    return ['DATASET.ROOT', str(data), 'OUTPUT_DIR', str(out), 'LOG_DIR', str(out) + '_log',
            'DATASET.SYNTHETIC.NUM_TRAIN', '24', 'DATASET.SYNTHETIC.NUM_VALID', '24',
            'DATASET.SYNTHETIC.IMAGE_SIZE', '128,128', 'MODEL.IMAGE_SIZE', '64,64',
            'MODEL.HEATMAP_SIZE', '16,16', 'TRAIN.BATCH_SIZE_PER_GPU', '8',
            'TEST.BATCH_SIZE_PER_GPU', '16', 'SEED', '3', 'WORKERS', '0', 'PRINT_FREQ', '1',
            'TRAIN.LR_STEP', '50,60'] + list(extra)


def make_data(folder):
    """Generate the set of :func:`small` into ``folder`` (in this process, about a second)."""
    from posekit.config import load_config
    from posekit.data import prepare_synthetic
    prepare_synthetic(load_config(CFG, small(folder, os.path.join(str(folder), 'unused'))))
    return folder


def make_weights(path, data):
    """Untrained weights of the model of :func:`small` (what valid.py needs to run)."""
    import paddle
    from posekit.checkpoint import save_paddle_state_dict
    from posekit.config import load_config
    from posekit.models import build_model
    paddle.seed(0)
    cfg = load_config(CFG, small(data, os.path.dirname(str(path))))
    save_paddle_state_dict(build_model(cfg).state_dict(), str(path))
    return path


def tool(name, *args):
    return [sys.executable, os.path.join(ROOT, 'pose_estimation', name)] + [str(a) for a in args]


def run(name, *args, timeout=600, **kwargs):
    return subprocess.run(tool(name, *args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


class Started:
    """An entry point running in its own session (a signal to it reaches it alone); a thread
    reads its stdout line by line (so that children still holding the pipe never block the
    test), stderr goes to a file."""

    def __init__(self, name, *args, stderr_path, **kwargs):
        import queue
        import threading
        self.stderr_path = str(stderr_path)
        self._err = open(self.stderr_path, 'w')
        env = dict(os.environ, PYTHONUNBUFFERED='1')  # each line as soon as it is printed
        self.proc = subprocess.Popen(tool(name, *args), cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, start_new_session=True,
                                     env=env, **kwargs)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)  # end of output

    def wait_for(self, text, timeout=300):
        """Wait until a line of stdout contains ``text``; fail if the process ends first."""
        import queue
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError('%r never printed (exit %s); stdout ends:\n%s\nstderr:\n%s'
                                     % (text, self.proc.poll(), ''.join(self.lines[-15:]),
                                        self.stderr()))
            self.lines.append(line)
            if text in line:
                return line

    def children(self):
        return psutil.Process(self.proc.pid).children(recursive=True)

    def wait_for_children(self, count):
        """The process's children once there are ``count`` of them (loader workers)."""
        import time
        while self.proc.poll() is None:
            found = self.children()
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError('the process ended (exit %s) before it had %d children:\n%s'
                             % (self.proc.returncode, count, self.stderr()))

    def signal(self, signum):
        os.kill(self.proc.pid, signum)

    def finish(self, timeout=60):
        """The exit code (not waiting for the end of stdout, which children may hold open)."""
        self.proc.wait(timeout=timeout)
        self._err.close()
        return self.proc.returncode

    def stderr(self):
        if not self._err.closed:
            self._err.flush()
        with open(self.stderr_path) as f:
            return f.read()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._err.closed:
            self._err.close()


def left_alive(processes, grace=CHILD_GRACE):
    """Those of ``processes`` still running ``grace`` seconds from now (each is then killed, so
    that a failing test leaves nothing behind)."""
    gone, alive = psutil.wait_procs(processes, timeout=grace)
    alive = [p for p in alive if _running(p)]
    for p in alive:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    return alive


def _running(process):
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def weights(path):
    """A saved state dict (``.pdparams``) as numpy arrays."""
    import paddle
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


def assert_same_weights(a, b):
    """The state dicts saved at ``a`` and ``b`` have the same keys and bit-identical arrays."""
    import numpy as np
    a, b = weights(a), weights(b)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
