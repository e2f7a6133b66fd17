"""valid.py on exported models (issue 8's "done when"): the released SimpleNet, converted and
exported with a fixed batch of 1, gives on the real COCO fixtures the same AP through ONNX
Runtime and Paddle Inference as its .pdparams in dygraph; the int8 copy is evaluated by the
same command. The AP is recomputed at full precision from each run's results json."""
import os

import pytest

from test_valid_real import COCO_CFG, coco_root, run, simplenet_weights, table  # noqa: F401


@pytest.fixture(scope='module')
def exported(coco_root, simplenet_weights, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp('exported')
    calib = str(coco_root / 'images' / 'val2017')
    proc = run('export.py', '--cfg', COCO_CFG, '--model-file', simplenet_weights, '--output',
               str(out), '--quantize', 'int8', '--calib-dir', calib, '--threads', '1')
    assert proc.returncode == 0, proc.stderr
    return out


def valid(coco_root, model, output, *extra):  # noqa: F811
    proc = run('valid.py', '--cfg', COCO_CFG, '--model-file', str(model), '--flip-test',
               '--use-gt-bbox', '--output', str(output), *extra, 'DATASET.ROOT', str(coco_root),
               'DATASET.TEST_SET', 'val2017', 'WORKERS', '0', 'TEST.BATCH_SIZE_PER_GPU', '3')
    assert proc.returncode == 0, proc.stderr
    return proc


def full_stats(coco_root, output):  # noqa: F811
    from posekit.evaluation.coco_eval import coco_keypoint_stats
    return coco_keypoint_stats(str(coco_root / 'annotations' / 'person_keypoints_val2017.json'),
                               str(output / 'results' / 'keypoints_val2017_results.json'))


def test_exported_models_give_the_checkpoints_ap(coco_root, simplenet_weights, exported,  # noqa: F811
                                                  tmp_path):
    ref = valid(coco_root, simplenet_weights, tmp_path / 'pdparams')
    assert 'paddle dygraph' in ref.stdout
    ref_stats = full_stats(coco_root, tmp_path / 'pdparams')
    assert 0.05 < ref_stats['AP'] < 1.0
    # batch 3 through a graph of batch 1: the runner runs it in chunks
    for name, runtime, extra in (('model.onnx', 'onnxruntime', ()),
                                 ('model.json', 'paddle inference', ('--threads', '1')),
                                 ('.', 'paddle inference', ('--type', 'paddle'))):
        out = tmp_path / name.replace('.', 'dir')
        proc = valid(coco_root, exported / name, out, *extra)
        assert runtime in proc.stdout, name
        assert table(proc.stdout) == table(ref.stdout), name
        stats = full_stats(coco_root, out)
        assert list(stats) == list(ref_stats)
        for key, value in ref_stats.items():
            assert abs(stats[key] - value) <= 1e-9, (name, key, stats[key], value)


def test_int8_model_is_evaluated_by_the_same_command(coco_root, exported, tmp_path):  # noqa: F811
    proc = valid(coco_root, exported / 'model_int8.onnx', tmp_path)
    stats = table(proc.stdout)
    assert 'onnxruntime' in proc.stdout and 0.0 <= stats['AP'] <= 1.0


def test_exported_model_with_the_wrong_cfg_is_one_line(exported, tmp_path):
    mpii_cfg = 'experiments/mpii/mobile/256x256_d256x3_adam_lr1e-3.yaml'
    proc = run('valid.py', '--cfg', mpii_cfg, '--model-file', str(exported / 'model.onnx'),
               '--output', str(tmp_path), 'DATASET.ROOT', str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith('valid: error: model.onnx expects 1x3x256x192 input but the '
                               'config %s says 256x256 [W,H]' % mpii_cfg), lines[0]
    assert 'is --cfg the config the model was exported from?' in lines[0]
    proc = run('valid.py', '--cfg', COCO_CFG, '--model-file', str(tmp_path / 'notes.txt'),
               '--type', 'onnx')
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert 'model file not found' in proc.stderr
