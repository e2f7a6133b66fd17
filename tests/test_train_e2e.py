"""train.py / valid.py end to end on small generated sets (SimpleNet at 64x64 input).

* a few epochs lower the training loss;
* a run killed during an epoch and resumed gives the same weights as an uninterrupted run;
* a non-finite loss stops the run with a one-line error and keeps the last checkpoint;
* two CPU processes under ``paddle.distributed.launch`` (gloo) train and validate, and the
  validation of two processes equals that of one;
* valid.py on the generated MPII and COCO sets: ground-truth predictions give 100 / 1.0.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import ROOT
from tool_runs import assert_same_weights

CFG = os.path.join(ROOT, 'experiments', 'synthetic', 'mpii_simplenet_128x128.yaml')
COCO_CFG = os.path.join(ROOT, 'experiments', 'coco', 'mobile', '256x192_d256x3_adam_lr1e-3.yaml')
RUN = os.path.join('mpii', 'simplenet', 'mpii_simplenet_128x128')


def small(data, out, *extra):
    return ['DATASET.ROOT', str(data), 'OUTPUT_DIR', str(out), 'LOG_DIR', str(out) + '_log',
            'DATASET.SYNTHETIC.NUM_TRAIN', '24', 'DATASET.SYNTHETIC.NUM_VALID', '6',
            'DATASET.SYNTHETIC.IMAGE_SIZE', '128,128', 'MODEL.IMAGE_SIZE', '64,64',
            'MODEL.HEATMAP_SIZE', '16,16', 'TRAIN.BATCH_SIZE_PER_GPU', '8',
            'TEST.BATCH_SIZE_PER_GPU', '16', 'SEED', '3', 'WORKERS', '0', 'PRINT_FREQ', '1',
            'TRAIN.LR_STEP', '50,60'] + list(extra)


def script(name):
    return [sys.executable, os.path.join(ROOT, 'pose_estimation', name)]


def run(name, *args, timeout=600):
    return subprocess.run(script(name) + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)



@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """The small MPII-format set, generated once through train.py's first-use path."""
    return tmp_path_factory.mktemp('synthetic') / 'mpii'


@pytest.fixture(scope='module')
def reference_run(data, tmp_path_factory):
    """Three uninterrupted epochs."""
    out = tmp_path_factory.mktemp('uninterrupted')
    proc = run('train.py', '--cfg', CFG, '--no-progress', *small(data, out, 'TRAIN.END_EPOCH', '3'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_training_lowers_the_loss_and_writes_the_run(reference_run):
    out, log = reference_run
    run_dir = os.path.join(out, RUN)
    for name in ('checkpoint.pdckpt', 'model_best.pdparams', 'final_state.pdparams', 'config.yaml'):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert any(n.endswith('_train.log') for n in os.listdir(run_dir))
    assert os.path.isfile(os.path.join(run_dir, 'pred.mat'))
    # average loss of each epoch (the last "Epoch: [e][i/n] ... Loss v (avg)" line of the epoch)
    avg = {}
    for line in log.splitlines():
        if 'Epoch: [' in line:
            epoch = int(line.split('Epoch: [')[1].split(']')[0])
            avg[epoch] = float(line.split('Loss ')[1].split('(')[1].split(')')[0])
    assert sorted(avg) == [0, 1, 2]
    assert avg[2] < 0.8 * avg[0], avg
    assert '| Arch | Head | Shoulder | Elbow | Wrist | Hip | Knee | Ankle | Mean | Mean@0.1' in log
    assert 'Speed' in log and 'Lr 0.002000' in log and 'eta:' in log
    # VisualDL scalars under LOG_DIR
    vdl = os.path.join(str(out) + '_log', 'mpii', 'simplenet')
    assert os.listdir(vdl) and any(os.listdir(os.path.join(vdl, d)) for d in os.listdir(vdl))


def test_kill_and_resume_equals_the_uninterrupted_run(data, reference_run, tmp_path):
    ref_out, _ = reference_run
    out = tmp_path / 'killed'
    ckpt = os.path.join(out, RUN, 'checkpoint.pdckpt')
    proc = subprocess.Popen(script('train.py') + ['--cfg', CFG, '--no-progress']
                            + small(data, out, 'TRAIN.END_EPOCH', '3'),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # wait until epoch 1 has started (so epoch 0's checkpoint exists), then kill -9 mid-epoch
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if 'Epoch: [1][1/' in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, ''.join(lines[-20:])
    assert paddle.load(ckpt)['epoch'] == 1
    assert not os.path.exists(os.path.join(out, RUN, 'final_state.pdparams'))

    resumed = run('train.py', '--cfg', CFG, '--no-progress', '--resume',
                  *small(data, out, 'TRAIN.END_EPOCH', '3'))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed from' in resumed.stdout and 'Epoch: [0]' not in resumed.stdout
    assert_same_weights(os.path.join(ref_out, RUN, 'final_state.pdparams'),
                        os.path.join(out, RUN, 'final_state.pdparams'))
    # the best-model bookkeeping survived the restart too
    ca = paddle.load(os.path.join(ref_out, RUN, 'checkpoint.pdckpt'))
    cb = paddle.load(ckpt)
    assert (ca['best_perf'], ca['best_epoch']) == (cb['best_perf'], cb['best_epoch'])
    assert [h['perf'] for h in ca['history']] == [h['perf'] for h in cb['history']]


def test_resume_without_a_checkpoint_is_an_error(data, tmp_path):
    proc = run('train.py', '--cfg', CFG, '--resume', *small(data, tmp_path / 'none'))
    assert proc.returncode == 1
    assert 'no checkpoint' in proc.stderr and 'Traceback' not in proc.stderr


def test_nan_loss_stops_and_keeps_the_last_checkpoint(data, tmp_path):
    # epoch 0 trains normally; from epoch 1 the rate is multiplied by 1e30
    out = tmp_path / 'nan'
    proc = run('train.py', '--cfg', CFG, '--no-progress',
               *small(data, out, 'TRAIN.END_EPOCH', '3', 'TRAIN.LR_STEP', '1',
                      'TRAIN.LR_FACTOR', '1e30', 'TRAIN.OPTIMIZER', 'sgd'))
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert 'loss is' in err[0] and 'epoch 1' in err[0] and 'checkpoint' in err[0]
    ckpt = paddle.load(os.path.join(out, RUN, 'checkpoint.pdckpt'))
    assert ckpt['epoch'] == 1
    assert all(np.isfinite(v.numpy()).all() for v in ckpt['state_dict'].values())


def test_two_processes_train_and_validate_like_one(data, reference_run, tmp_path):
    out = tmp_path / 'dist'
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
           '--log_dir', str(tmp_path / 'launch'), os.path.join(ROOT, 'pose_estimation', 'train.py'),
           '--cfg', CFG, '--no-progress'] + small(data, out, 'TRAIN.END_EPOCH', '1',
                                                    'TRAIN.BATCH_SIZE_PER_GPU', '4')
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    log0 = open(tmp_path / 'launch' / 'workerlog.0').read()
    assert proc.returncode == 0, log0[-3000:]
    assert '2 process(es) x batch 4 = 8 per step' in log0
    assert '| Arch | Head' in log0
    assert os.path.isfile(os.path.join(out, RUN, 'final_state.pdparams'))
    # rank 1 writes no log lines of its own
    assert 'Epoch: [' not in open(tmp_path / 'launch' / 'workerlog.1').read()
    # the validation of the two processes is that of the saved model, recomputed by one process
    final = os.path.join(out, RUN, 'final_state.pdparams')
    again = run('valid.py', '--cfg', CFG, '--model-file', final, '--output', str(tmp_path / 'v0'),
                *small(data, out))
    assert again.returncode == 0, again.stderr[-2000:]
    from scipy.io import loadmat
    in_training = loadmat(os.path.join(out, RUN, 'pred.mat'))['preds']
    recomputed = loadmat(tmp_path / 'v0' / 'pred.mat')['preds']
    np.testing.assert_allclose(in_training, recomputed, atol=1e-4)

    # validation: two processes give exactly the predictions of one
    model = os.path.join(reference_run[0], RUN, 'final_state.pdparams')
    one = run('valid.py', '--cfg', CFG, '--model-file', model, '--output', str(tmp_path / 'v1'),
              *small(data, out))
    assert one.returncode == 0, one.stderr[-2000:]
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
           '--log_dir', str(tmp_path / 'launch_v'), os.path.join(ROOT, 'pose_estimation', 'valid.py'),
           '--cfg', CFG, '--model-file', model, '--output', str(tmp_path / 'v2')] + small(data, out)
    two = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, open(tmp_path / 'launch_v' / 'workerlog.0').read()[-3000:]
    from scipy.io import loadmat
    p1 = loadmat(tmp_path / 'v1' / 'pred.mat')['preds']
    p2 = loadmat(tmp_path / 'v2' / 'pred.mat')['preds']
    np.testing.assert_allclose(p1, p2, atol=1e-4)
    table = [line for line in one.stdout.splitlines() if '| ' in line][-1].split(' ', 2)[-1]
    assert table in open(tmp_path / 'launch_v' / 'workerlog.0').read()


def test_valid_ground_truth_on_generated_mpii_gives_100(data, reference_run, tmp_path):
    anno = json.load(open(os.path.join(data, 'annot', 'valid.json')))
    np.save(tmp_path / 'gt.npy', np.array([a['joints'] for a in anno]) - 1.0)
    proc = run('valid.py', '--cfg', CFG, '--predictions', str(tmp_path / 'gt.npy'),
               '--output', str(tmp_path), *small(data, tmp_path / 'o'))
    assert proc.returncode == 0, proc.stderr
    row = [line for line in proc.stdout.splitlines() if '| ' in line][-1]
    values = [float(v) for v in row.split('|')[2:-1]]
    assert values[:9] == [100.0] * 9


def test_valid_on_generated_coco_set(tmp_path):
    """The COCO-format set (generated on first use) with ground-truth and detection boxes."""
    root = tmp_path / 'coco'
    opts = ['DATASET.ROOT', str(root), 'DATASET.SYNTHETIC.ENABLED', 'True',
            'DATASET.SYNTHETIC.NUM_TRAIN', '2', 'DATASET.SYNTHETIC.NUM_VALID', '6',
            'DATASET.SYNTHETIC.IMAGE_SIZE', '128,128', 'DATASET.TRAIN_SET', 'train2017',
            'DATASET.TEST_SET', 'val2017', 'MODEL.IMAGE_SIZE', '96,128',
            'MODEL.HEATMAP_SIZE', '24,32', 'WORKERS', '0', 'OUTPUT_DIR', str(tmp_path / 'out')]
    sys.path.insert(0, os.path.join(ROOT, 'lib'))
    from posekit.config import load_config
    from posekit.data import build_dataset, prepare_synthetic
    cfg = load_config(COCO_CFG, opts + ['TEST.USE_GT_BBOX', 'True'])
    prepare_synthetic(cfg)
    gt = np.stack([r['joints_3d'][:, :2] for r in build_dataset(cfg).db])
    np.save(tmp_path / 'gt.npy', gt)
    proc = run('valid.py', '--cfg', COCO_CFG, '--use-gt-bbox', '--predictions',
               str(tmp_path / 'gt.npy'), *opts)
    assert proc.returncode == 0, proc.stderr
    row = [line for line in proc.stdout.splitlines() if '| ' in line][-1]
    stats = [float(v) for v in row.split('|')[2:-1]]
    # AP (L) / AR (L) are -1 (no large people in 128x128 images), all others perfect
    assert stats[0] == 1.0 and set(stats) <= {1.0, -1.0} and stats.count(1.0) >= 6, stats

    # a model run with the generated detection boxes goes through rescoring and OKS-NMS
    from posekit.checkpoint import save_paddle_state_dict
    from posekit.models import build_model
    paddle.seed(0)
    save_paddle_state_dict(build_model(cfg), str(tmp_path / 'w.pdparams'))
    det = os.path.join(root, 'annotations', 'person_detection_val2017.json')
    proc = run('valid.py', '--cfg', COCO_CFG, '--use-detect-bbox', '--coco-bbox-file', det,
               '--model-file', str(tmp_path / 'w.pdparams'), '--flip-test', *opts)
    assert proc.returncode == 0, proc.stderr
    results = json.load(open(os.path.join(tmp_path, 'out', 'coco', 'simplenet',
                                          '256x192_d256x3_adam_lr1e-3', 'results',
                                          'keypoints_val2017_results.json')))
    assert results and all(len(r['keypoints']) == 51 for r in results)
