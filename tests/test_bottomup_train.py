"""train.py / valid.py for a bottom-up model (SimplePose) end to end, on a small generated COCO set
with the tiny config (experiments/synthetic/coco_simplepose_tiny.yaml: 2 stacks, 32 channels):

* two epochs lower the loss; the run writes its files, the COCO table and VisualDL scalars (no
  top-down accuracy: a bottom-up model has none);
* a run killed (-9) during epoch 1 and resumed gives the uninterrupted run's weights bit for bit;
* valid.py on the saved weights gives the in-training validation of that epoch (the same results
  json and stats), and ``--predictions`` on that json gives them again; ground-truth results
  give AP 1;
* the validation loop with a runner whose maps are drawn from the ground truth: AP 1 with and
  without flip test, and two processes' shares gather into the one-process result;
* two processes (paddle.distributed.launch) train, and validate like one;
* top-down switches and a non-json ``--predictions`` are one-line errors for a bottom-up model.

A model trained for two epochs finds nobody yet (its BatchNorm statistics are far from settled),
so the non-trivial AP checks use ground-truth maps or results.
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

CFG = os.path.join(ROOT, 'experiments', 'synthetic', 'coco_simplepose_tiny.yaml')
RUN = os.path.join('coco', 'simplepose', 'coco_simplepose_tiny')
RESULTS = os.path.join('results', 'keypoints_val2017_results.json')


def small(data, out, *extra):
    return ['DATASET.ROOT', str(data), 'OUTPUT_DIR', str(out), 'LOG_DIR', str(out) + '_log',
            'DATASET.SYNTHETIC.NUM_TRAIN', '32', 'DATASET.SYNTHETIC.NUM_VALID', '8',
            'WORKERS', '0', 'PRINT_FREQ', '1', 'SEED', '3', 'TRAIN.END_EPOCH', '2'] + list(extra)


def script(name):
    return [sys.executable, os.path.join(ROOT, 'pose_estimation', name)]


def run(name, *args, timeout=600):
    return subprocess.run(script(name) + [str(a) for a in args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def launch(name, log_dir, *args):
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
           '--log_dir', str(log_dir), os.path.join(ROOT, 'pose_estimation', name)]
    return subprocess.run(cmd + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)



def table_row(text):
    """The values of the last COCO table row printed."""
    rows = [line for line in text.splitlines() if '| 128x128_simplepose |' in line]
    assert rows, text[-3000:]
    return [float(v) for v in rows[-1].split('|')[2:-1]]


def load_cfg(data, *extra):
    from posekit.config import load_config
    return load_config(CFG, small(data, os.path.join(str(data), 'unused'), *extra))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """The small COCO-format set (32 training, 8 validation images of 128 x 128)."""
    from posekit.data import prepare_synthetic
    root = tmp_path_factory.mktemp('synthetic') / 'coco'
    prepare_synthetic(load_cfg(root))
    return root


@pytest.fixture(scope='module')
def reference_run(data, tmp_path_factory):
    """Two uninterrupted epochs."""
    out = tmp_path_factory.mktemp('uninterrupted')
    proc = run('train.py', '--cfg', CFG, '--no-progress', *small(data, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


# ---------------------------------------------------------------------------------------------
# training

def test_training_lowers_the_loss_and_writes_the_run(reference_run):
    out, log = reference_run
    run_dir = os.path.join(out, RUN)
    for name in ('checkpoint.pdckpt', 'model_best.pdparams', 'final_state.pdparams', 'config.yaml',
                 RESULTS):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert '8 validation images' in log
    avg = {}
    for line in log.splitlines():
        if 'Epoch: [' in line:
            epoch = int(line.split('Epoch: [')[1].split(']')[0])
            avg[epoch] = float(line.split('Loss ')[1].split('(')[1].split(')')[0])
            assert 'Accuracy' not in line and 'eta:' in line  # no top-down PCK for bottom-up
    assert sorted(avg) == [0, 1]
    assert avg[1] < 0.85 * avg[0], avg
    assert ('| Arch | AP | Ap .5 | AP .75 | AP (M) | AP (L) | AR | AR .5 | AR .75 | AR (M) '
            '| AR (L) |') in log
    assert 'epoch 1: AP' in log
    ckpt = paddle.load(os.path.join(run_dir, 'checkpoint.pdckpt'))
    assert ckpt['epoch'] == 2 and [h['epoch'] for h in ckpt['history']] == [0, 1]
    assert list(ckpt['history'][-1]['metrics'])[:2] == ['AP', 'Ap .5']

    from visualdl import LogReader
    import glob
    records = glob.glob(os.path.join(str(out) + '_log', RUN + '_*', 'vdlrecords.*.log'))
    assert len(records) == 1, records
    reader = LogReader(file_path=records[0])
    tags = reader.get_tags()['scalar']
    from posekit.evaluation.coco_eval import STATS_NAMES
    # no train_acc, valid_loss or valid_acc: a bottom-up model has none of them
    assert sorted(tags) == sorted(['train_loss', 'lr'] + ['valid/' + m for m in STATS_NAMES])
    assert [p.id for p in reader.get_data('scalar', 'valid/AP')] == [0, 1]


def test_kill_and_resume_equals_the_uninterrupted_run(data, reference_run, tmp_path):
    ref_out, _ = reference_run
    out = tmp_path / 'killed'
    ckpt = os.path.join(out, RUN, 'checkpoint.pdckpt')
    proc = subprocess.Popen(script('train.py') + ['--cfg', CFG, '--no-progress'] + small(data, out),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # kill -9 in the middle of epoch 1 (epoch 0's checkpoint is there)
        lines.append(line)
        if 'Epoch: [1][2/' in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, ''.join(lines[-20:])
    assert paddle.load(ckpt)['epoch'] == 1
    assert not os.path.exists(os.path.join(out, RUN, 'final_state.pdparams'))

    resumed = run('train.py', '--cfg', CFG, '--no-progress', '--resume', *small(data, out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed from' in resumed.stdout and 'Epoch: [0]' not in resumed.stdout
    assert_same_weights(os.path.join(ref_out, RUN, 'final_state.pdparams'),
                        os.path.join(out, RUN, 'final_state.pdparams'))
    ca = paddle.load(os.path.join(ref_out, RUN, 'checkpoint.pdckpt'))
    cb = paddle.load(ckpt)
    assert (ca['best_perf'], ca['best_epoch']) == (cb['best_perf'], cb['best_epoch'])
    assert [h['metrics'] for h in ca['history']] == [h['metrics'] for h in cb['history']]


# ---------------------------------------------------------------------------------------------
# valid.py

def test_valid_equals_the_in_training_validation(data, reference_run, tmp_path):
    out, log = reference_run
    run_dir = os.path.join(out, RUN)
    final = os.path.join(run_dir, 'final_state.pdparams')
    proc = run('valid.py', '--cfg', CFG, '--model-file', final, '--output', tmp_path / 'v',
               *small(data, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '8 images at height 128' in proc.stdout and 'flip test on' in proc.stdout
    # the last epoch's validation in training was that of final_state
    stats = table_row(proc.stdout)
    assert len(stats) == 10 and stats == table_row(log)
    history = paddle.load(os.path.join(run_dir, 'checkpoint.pdckpt'))['history'][-1]['metrics']
    assert stats == pytest.approx(list(history.values()), abs=5e-4)
    with open(os.path.join(run_dir, RESULTS)) as f:
        in_training = json.load(f)
    with open(tmp_path / 'v' / RESULTS) as f:
        assert json.load(f) == in_training

    again = run('valid.py', '--cfg', CFG, '--predictions', os.path.join(run_dir, RESULTS),
                '--output', tmp_path / 'p', *small(data, out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert table_row(again.stdout) == stats


def test_valid_predictions_of_the_ground_truth_give_ap_1(data, tmp_path):
    with open(os.path.join(data, 'annotations', 'person_keypoints_val2017.json')) as f:
        gt = json.load(f)
    records = [{'image_id': a['image_id'], 'category_id': 1, 'keypoints': a['keypoints'],
                'score': 1.0} for a in gt['annotations']]
    path = tmp_path / 'gt_results.json'
    path.write_text(json.dumps(records))
    proc = run('valid.py', '--cfg', CFG, '--predictions', path, '--output', tmp_path / 'o',
               *small(data, tmp_path / 'o'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = table_row(proc.stdout)
    # AP (L) / AR (L) are -1: nobody is large in 128 x 128 images
    assert stats[0] == 1.0 and set(stats) <= {1.0, -1.0}, stats
    # the first 3 images only: the others' people are left out, said in one warning line
    proc = run('valid.py', '--cfg', CFG, '--predictions', path, '--output', tmp_path / 'o',
               *small(data, tmp_path / 'o', 'TEST.MAX_IMAGES', '3'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'on 3 images' in proc.stdout and 'not evaluated' in proc.stdout
    assert table_row(proc.stdout)[0] == 1.0


def test_topdown_switches_and_other_files_are_one_line_errors(data, tmp_path):
    for extra in (['--use-detect-bbox'], ['--coco-bbox-file', 'det.json'], ['--no-post-process']):
        proc = run('valid.py', '--cfg', CFG, *extra, *small(data, tmp_path / 'o'))
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(err) == 1, proc.stderr[-2000:]
        assert 'does not apply to simplepose, a bottom-up model' in err[0]
    np.save(tmp_path / 'p.npy', np.zeros((8, 17, 3)))
    proc = run('valid.py', '--cfg', CFG, '--predictions', tmp_path / 'p.npy',
               *small(data, tmp_path / 'o'))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1 and 'results .json' in err[0], proc.stderr


def test_two_processes_train_and_validate_like_one(data, tmp_path):
    out = tmp_path / 'dist'
    proc = launch('train.py', tmp_path / 'launch', '--cfg', CFG, '--no-progress',
                  *small(data, out, 'TRAIN.END_EPOCH', '1', 'TRAIN.BATCH_SIZE_PER_GPU', '4'))
    log0 = open(tmp_path / 'launch' / 'workerlog.0').read()
    assert proc.returncode == 0, log0[-3000:]
    assert '2 process(es) x batch 4 = 8 per step' in log0 and 'epoch 0: AP' in log0
    assert 'Epoch: [' not in open(tmp_path / 'launch' / 'workerlog.1').read()
    # the validation of the two processes is that of the saved model, recomputed by one
    again = run('valid.py', '--cfg', CFG, '--model-file',
                os.path.join(out, RUN, 'final_state.pdparams'), '--output', tmp_path / 'v',
                *small(data, out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert table_row(again.stdout) == table_row(log0)
    with open(os.path.join(out, RUN, RESULTS)) as f1, open(tmp_path / 'v' / RESULTS) as f2:
        assert json.load(f1) == json.load(f2)


def test_two_processes_validate_like_one(data, reference_run, tmp_path):
    out, _ = reference_run
    model = os.path.join(out, RUN, 'final_state.pdparams')
    one = run('valid.py', '--cfg', CFG, '--model-file', model, '--output', tmp_path / 'v1',
              *small(data, out))
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch('valid.py', tmp_path / 'launch', '--cfg', CFG, '--model-file', model,
                 '--output', tmp_path / 'v2', *small(data, out))
    log0 = open(tmp_path / 'launch' / 'workerlog.0').read()
    assert two.returncode == 0, log0[-3000:]
    assert '2 process(es)' in log0 and table_row(log0) == table_row(one.stdout)
    with open(tmp_path / 'v1' / RESULTS) as f1, open(tmp_path / 'v2' / RESULTS) as f2:
        assert json.load(f1) == json.load(f2)


# ---------------------------------------------------------------------------------------------
# the validation loop on ground-truth maps

class GroundTruthMaps:
    """A runner whose maps are the encoder's targets for the people of each image, in the
    order the images are run (the mirror's maps mirrored, with left and right swapped)."""

    def __init__(self, cfg, images):
        from posekit.codec import input_spec_from_cfg
        from posekit.codec.bottomup.encode import BottomUpEncoder
        from posekit.data.bottomup import coco_to_ours, load_coco_images, remap_visibility
        from posekit.io import read_image
        anns = {im['id']: a for im, a in load_coco_images(
            os.path.join(cfg.DATASET.ROOT, 'annotations', 'person_keypoints_val2017.json'))}
        spec = input_spec_from_cfg(cfg)
        self.maps = {}
        for e in images:
            _, meta = spec.prepare(read_image(e.path))
            joints = np.array([a['keypoints'] for a in anns[e.image_id]],
                              dtype=np.float64).reshape(-1, 17, 3)
            joints[:, :, 2] = remap_visibility(joints[:, :, 2])
            ours = coco_to_ours(joints)
            ours[:, :, :2] *= meta['factor']
            self.maps[e.path] = BottomUpEncoder(tuple(meta['padded_size'])).encode(ours)
        self.order = [e.path for e in images]
        self.calls = []

    def __call__(self, batch):
        from posekit.codec.bottomup.layout import FLIP_HEAT_ORDER, FLIP_PAF_ORDER, HEAT_START
        m = self.maps[self.order.pop(0)]
        self.calls.append(batch.shape)
        if len(batch) == 1:
            return m[None]
        mirror = np.concatenate([m[:HEAT_START][list(FLIP_PAF_ORDER)],
                                 m[HEAT_START:][list(FLIP_HEAT_ORDER)]])[:, :, ::-1]
        return np.stack([m, mirror])


@pytest.mark.parametrize('flip', [False, True])
def test_validation_of_ground_truth_maps_gives_ap_1(data, tmp_path, flip):
    from posekit.data import build_dataset
    from posekit.evaluation.bottomup_validate import evaluation_images
    from posekit.evaluation.validate import validate
    cfg = load_cfg(data, 'TEST.FLIP_TEST', str(flip), 'TEST.BOXSIZE', '160')
    dataset = build_dataset(cfg)
    images = evaluation_images(cfg, dataset)
    assert len(images) == 8
    runner = GroundTruthMaps(cfg, images)
    name_values, perf, result = validate(cfg, runner, dataset, str(tmp_path))
    # each image resized to 160 x 160 and padded to 192 x 192; with flip, with its mirror
    assert runner.calls == [(2 if flip else 1, 3, 192, 192)] * 8
    assert perf == 1.0 and name_values['AR'] == 1.0
    with open(tmp_path / RESULTS) as f:
        records = json.load(f)
    assert len(records) == result['people'] > 8
    assert [r['image_id'] for r in records] == sorted(r['image_id'] for r in records)


def test_two_shares_gather_into_the_one_process_result(data, monkeypatch):
    """The split across processes, run here as rank 1 then rank 0 of two."""
    from posekit import distributed as dist
    from posekit.data import build_dataset
    from posekit.evaluation.bottomup_validate import evaluation_images, predict_images
    cfg = load_cfg(data, 'TEST.FLIP_TEST', 'False')
    images = evaluation_images(cfg, build_dataset(cfg))
    one = predict_images(cfg, GroundTruthMaps(cfg, images), images)

    shares = {}

    class Gathered(Exception):
        pass

    def gather_as(rank):
        def gather(part):
            shares[rank] = part
            if rank == 1:
                raise Gathered()  # rank 1's share is all this pass needs
            return [shares[0], shares[1]]
        return gather

    for rank in (1, 0):
        runner = GroundTruthMaps(cfg, images[rank::2])
        monkeypatch.setattr(dist, 'rank', lambda r=rank: r)
        monkeypatch.setattr(dist, 'world_size', lambda: 2)
        monkeypatch.setattr(dist, 'all_gather_object', gather_as(rank))
        if rank == 1:
            with pytest.raises(Gathered):
                predict_images(cfg, runner, images)
        else:
            two = predict_images(cfg, runner, images)
    assert [row[0] for row in shares[1]] == [1, 3, 5, 7]
    assert two['image_ids'] == one['image_ids'] and two['people'] == one['people'] > 8
    for a, b in zip(one['keypoints'] + one['scores'], two['keypoints'] + two['scores']):
        np.testing.assert_array_equal(a, b)


def test_amp_cast_keeps_the_stacks_and_scales():
    """Under AMP (GPU) the loss takes the float32 cast of every stack x scale output."""
    from posekit.training.trainer import _float32
    out = [[paddle.ones([1, 50, 8 >> s, 8 >> s], dtype='float16') for s in range(4)]
           for _ in range(2)]
    cast = _float32(out)
    assert [len(stack) for stack in cast] == [4, 4]
    assert all(t.dtype == paddle.float32 and t.shape == [1, 50, 8 >> s, 8 >> s]
               for stack in cast for s, t in enumerate(stack))
    assert _float32(out[0][0]).dtype == paddle.float32
