import os
import subprocess
import sys

import pytest
import yaml

from posekit.config import ConfigError, cfg_name_of, load_config, save_config


def write_yaml(tmp_path, data, name='exp.yaml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_defaults_load():
    cfg = load_config()
    assert cfg.MODEL.NAME == 'pose_resnet'
    assert cfg.MODEL.EXTRA.NUM_LAYERS == 50
    assert cfg.MODEL.IMAGE_SIZE == [256, 256]
    assert cfg.TEST.POST_PROCESS is True


def test_yaml_and_overrides_are_typed(tmp_path):
    path = write_yaml(tmp_path, {
        'MODEL': {'NAME': 'pose_resnet', 'NUM_JOINTS': 17, 'IMAGE_SIZE': [192, 256],
                  'EXTRA': {'NUM_LAYERS': 101}},
        'TRAIN': {'LR': 1, 'LR_STEP': [90, 120]},
    })
    cfg = load_config(path, ['TRAIN.LR', '0.0005', 'TRAIN.LR_STEP', '[10,20,30]',
                             'TEST.FLIP_TEST', 'true', 'TRAIN.END_EPOCH', '3',
                             'MODEL.EXTRA.NUM_LAYERS', '18', 'DATASET.ROOT', '123',
                             'MODEL.HEATMAP_SIZE', '32', 'DATASET.MEAN', '0.5,0.5,0.5'])
    assert cfg.TRAIN.LR == 0.0005 and isinstance(cfg.TRAIN.LR, float)
    assert cfg.TRAIN.LR_STEP == [10, 20, 30]
    assert cfg.TEST.FLIP_TEST is True
    assert cfg.TRAIN.END_EPOCH == 3 and isinstance(cfg.TRAIN.END_EPOCH, int)
    assert cfg.MODEL.EXTRA.NUM_LAYERS == 18
    assert cfg.DATASET.ROOT == '123'  # a string key keeps the text as written
    assert cfg.MODEL.HEATMAP_SIZE == [32, 32]  # a single int is a square [W, H]
    assert cfg.DATASET.MEAN == [0.5, 0.5, 0.5]
    # the int in the yaml became a float, as the default is one
    assert isinstance(load_config(path).TRAIN.LR, float)


def test_unknown_key_in_file_names_closest(tmp_path):
    path = write_yaml(tmp_path, {'TRAIN': {'LRR': 0.1}})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "'TRAIN.LRR'" in msg and "did you mean 'TRAIN.LR'" in msg and path in msg


def test_unknown_top_level_section(tmp_path):
    path = write_yaml(tmp_path, {'DATASETS': {'ROOT': 'x'}})
    with pytest.raises(ConfigError, match="did you mean 'DATASET'"):
        load_config(path)


def test_unknown_key_on_command_line():
    with pytest.raises(ConfigError, match="did you mean 'TEST.FLIP_TEST'"):
        load_config(None, ['TEST.FLIPTEST', 'true'])


def test_unknown_extra_key_is_checked_against_the_model(tmp_path):
    path = write_yaml(tmp_path, {'MODEL': {'EXTRA': {'NUM_LAYER': 50}}})
    with pytest.raises(ConfigError, match="did you mean 'MODEL.EXTRA.NUM_LAYERS'"):
        load_config(path)
    with pytest.raises(ConfigError, match="MODEL.EXTRA.NUM_DECONV_FILTERS"):
        load_config(None, ['MODEL.EXTRA.NUM_DECONV_FILTER', '[256]'])


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="did you mean 'pose_resnet'"):
        load_config(None, ['MODEL.NAME', 'pose_resnett'])


@pytest.mark.parametrize('opts, words', [
    (['TRAIN.END_EPOCH', 'ten'], 'expects int'),
    (['TRAIN.LR', 'fast'], 'expects float'),
    (['TEST.FLIP_TEST', 'maybe'], 'expects bool'),
    (['MODEL.IMAGE_SIZE', '[1,2,3]'], '[W, H]'),
    (['TRAIN.LR'], 'KEY VALUE pairs'),
    (['TRAIN', '1'], 'section'),
])
def test_bad_values(opts, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, opts)
    assert words in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match='not found'):
        load_config(str(tmp_path / 'missing.yaml'))
    bad = tmp_path / 'bad.yaml'
    bad.write_text('MODEL: [unclosed\n')
    with pytest.raises(ConfigError, match='not valid yaml'):
        load_config(str(bad))
    listy = tmp_path / 'list.yaml'
    listy.write_text('- 1\n- 2\n')
    with pytest.raises(ConfigError, match='mapping'):
        load_config(str(listy))


def test_extra_block_replaced_per_model(tmp_path):
    # The EXTRA defaults come from the model chosen in the same file.
    path = write_yaml(tmp_path, {'MODEL': {'NAME': 'pose_resnet', 'EXTRA': {'NUM_LAYERS': 34}}})
    cfg = load_config(path)
    assert cfg.MODEL.EXTRA.NUM_LAYERS == 34
    assert cfg.MODEL.EXTRA.NUM_DECONV_FILTERS == [256, 256, 256]


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ['TRAIN.LR', '0.01', 'MODEL.EXTRA.NUM_LAYERS', '18'])
    out = save_config(cfg, str(tmp_path / 'run' / 'config.yaml'))
    again = load_config(out)
    assert again == cfg
    assert cfg_name_of('experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml') == 'lpn50_256x192_gd256x2_gc'


def test_entry_point_reports_config_errors_without_traceback(repo_root, tmp_path):
    script = os.path.join(repo_root, 'pose_estimation', 'model_info.py')
    if not os.path.exists(script):
        pytest.skip('model_info.py not present')
    path = write_yaml(tmp_path, {'TRAIN': {'LRR': 0.1}})
    proc = subprocess.run([sys.executable, script, '--cfg', path], capture_output=True, text=True,
                          cwd=repo_root)
    assert proc.returncode != 0
    assert 'TRAIN.LR' in proc.stderr + proc.stdout
    assert 'Traceback' not in proc.stderr
