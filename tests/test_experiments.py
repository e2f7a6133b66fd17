"""The experiment files under ``experiments/``: every yaml loads, builds the network the reference
describes (exact parameter count, heatmaps at input / 4) and carries the hyper-parameters that
REFERENCE_SPEC 5.2 lists for it.

Every model is built once per distinct architecture (name, style, EXTRA, joints) at a reduced
input size, so the whole file stays well under two minutes on two CPU cores.
"""
import gc
import glob
import json
import os

import pytest

from conftest import ROOT, require_fixtures

EXPERIMENTS = os.path.join(ROOT, 'experiments')
# the reference configurations (experiments/synthetic/ holds our own quick-start recipes)
YAMLS = sorted(os.path.relpath(p, ROOT).replace(os.sep, '/')
               for p in glob.glob(os.path.join(EXPERIMENTS, '**', '*.yaml'), recursive=True)
               if '/synthetic/' not in p.replace(os.sep, '/'))

# ------------------------------------------------------------------------------------------------
# Trainable parameters of every experiment (REFERENCE_SPEC 4.6 / fixtures models.json).
# COCO (17 joints) and MPII (16 joints) differ by one output channel of the final 1x1 conv, i.e.
# C_final + 1 parameters: 257 for PoseResNet and LPN (256 -> K), C1 + 1 for HRNet (33 for W32, 49
# for W48), 25 for SimpleNet (24 -> K). The caffe-style and 384x288 variants have the same counts.
# ------------------------------------------------------------------------------------------------
R18, R34, R50, R101, R152 = 15376721, 25484881, 33999697, 52991825, 68635473
LPN18, LPN34, LPN50, LPN100, LPN101, LPN152 = 508473, 662641, 2911153, 6710914, 5353458, 7377459
W32, W48, W18V1, W18V2 = 28536113, 63595745, 1602273, 3757475
SIMPLENET = 578097
SIMPLEPOSE = 128998760  # SIMPLEPOSE_SPEC 1 (bottom-up, 50 output maps whatever NUM_JOINTS)

EXPECTED_PARAMS = {
    # [MS] Simple Baselines
    'experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml': 33999697,
    'experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3_caffe.yaml': 33999697,
    'experiments/coco/resnet50/384x288_d256x3_adam_lr1e-3.yaml': 33999697,
    'experiments/coco/resnet101/256x192_d256x3_adam_lr1e-3.yaml': 52991825,
    'experiments/coco/resnet101/256x192_d256x3_adam_lr1e-3_caffe.yaml': 52991825,
    'experiments/coco/resnet101/384x288_d256x3_adam_lr1e-3.yaml': 52991825,
    'experiments/coco/resnet152/256x192_d256x3_adam_lr1e-3.yaml': 68635473,
    'experiments/coco/resnet152/256x192_d256x3_adam_lr1e-3_caffe.yaml': 68635473,
    'experiments/coco/resnet152/384x288_d256x3_adam_lr1e-3.yaml': 68635473,
    'experiments/mpii/resnet50/256x256_d256x3_adam_lr1e-3.yaml': 33999440,
    'experiments/mpii/resnet50/384x384_d256x3_adam_lr1e-3.yaml': 33999440,
    'experiments/mpii/resnet101/256x256_d256x3_adam_lr1e-3.yaml': 52991568,
    'experiments/mpii/resnet101/384x384_d256x3_adam_lr1e-3.yaml': 52991568,
    'experiments/mpii/resnet152/256x256_d256x3_adam_lr1e-3.yaml': 68635216,
    'experiments/mpii/resnet152/384x384_d256x3_adam_lr1e-3.yaml': 68635216,
    # PoseResNet-18/34 with the [MS] recipe
    'experiments/coco/resnet18/256x192_d256x3_adam_lr1e-3.yaml': 15376721,
    'experiments/coco/resnet34/256x192_d256x3_adam_lr1e-3.yaml': 25484881,
    # [PD] Paddle port (training-log name)
    'experiments/mpii/resnet50/256x256_d256x3_adam_plr1e-3.yaml': 33999440,
    # [LPN] / [CAV]: PoseResNet in the HRNet code base
    'experiments/coco/resnet/res50_256x192_d256x3_adam_lr1e-3.yaml': 33999697,
    'experiments/coco/resnet/res101_256x192_d256x3_adam_lr1e-3.yaml': 52991825,
    'experiments/coco/resnet/res152_256x192_d256x3_adam_lr1e-3.yaml': 68635473,
    'experiments/coco/resnet/res50_384x288_d256x3_adam_lr1e-3.yaml': 33999697,
    'experiments/coco/resnet/res101_384x288_d256x3_adam_lr1e-3.yaml': 52991825,
    'experiments/coco/resnet/res152_384x288_d256x3_adam_lr1e-3.yaml': 68635473,
    'experiments/mpii/resnet/res50_256x256_d256x3_adam_lr1e-3.yaml': 33999440,
    'experiments/mpii/resnet/res101_256x256_d256x3_adam_lr1e-3.yaml': 52991568,
    'experiments/mpii/resnet/res152_256x256_d256x3_adam_lr1e-3.yaml': 68635216,
    # HRNet
    'experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml': 28536113,
    'experiments/coco/hrnet/w32_384x288_adam_lr1e-3.yaml': 28536113,
    'experiments/coco/hrnet/w48_256x192_adam_lr1e-3.yaml': 63595745,
    'experiments/coco/hrnet/w48_384x288_adam_lr1e-3.yaml': 63595745,
    'experiments/coco/hrnet/w18_small_v1_256x192_adam_lr1e-3.yaml': 1602273,
    'experiments/coco/hrnet/w18_small_v2_256x192_adam_lr1e-3.yaml': 3757475,
    'experiments/coco/hrnet/w18_small_v2_256x192_adam_lr1e-3_softargmax.yaml': 3757475,
    'experiments/mpii/hrnet/w32_256x256_adam_lr1e-3.yaml': 28536080,
    'experiments/mpii/hrnet/w48_256x256_adam_lr1e-3.yaml': 63595696,
    # LPN ([LPN] official at the canonical paths, [CAV] beside them / under humanpose/)
    'experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml': 2911153,
    'experiments/coco/lpn/lpn101_256x192_gd256x2_gc.yaml': 5353458,
    'experiments/coco/lpn/lpn152_256x192_gd256x2_gc.yaml': 7377459,
    'experiments/mpii/lpn/lpn50_256x256_gd256x2_gc.yaml': 2910896,
    'experiments/coco/lpn/lpn18_256x192_gd256x2_gc.yaml': 508473,
    'experiments/coco/lpn/lpn18h_256x192_gd256x2_gc.yaml': 508473,
    'experiments/coco/lpn/lpn34_256x192_gd256x2_gc.yaml': 662641,
    'experiments/coco/lpn/lpn34h_256x192_gd256x2_gc.yaml': 662641,
    'experiments/coco/lpn/lpn100_256x192_gd256x2_gc.yaml': 6710914,
    'experiments/coco/lpn/humanpose/lpn50_256x192_gd256x2_gc.yaml': 2911153,
    'experiments/coco/lpn/humanpose/lpn101_256x192_gd256x2_gc.yaml': 5353458,
    'experiments/coco/lpn/humanpose/lpn152_256x192_gd256x2_gc.yaml': 7377459,
    # SimpleNet ([SN] architecture, [MS] recipe)
    'experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml': 578097,
    'experiments/mpii/mobile/256x256_d256x3_adam_lr1e-3.yaml': 578072,
    # SimplePose ([IBP], bottom-up)
    'experiments/coco/simplepose/simplepose_512x512.yaml': 128998760,
}

SOURCE_TAGS = ('[MS]', '[PD]', '[LPN]', '[CAV]', '[SN]', '[IBP]')


def _load(rel, opts=None):
    """load_config of an experiment; skips if the model module is not written yet."""
    from posekit.config import load_config
    from posekit.models import model_module
    import yaml
    with open(os.path.join(ROOT, rel), 'r', encoding='utf-8') as f:
        name = (yaml.safe_load(f).get('MODEL') or {}).get('NAME', 'pose_resnet')
    try:
        model_module(name)
    except ImportError as e:  # another model file still being written
        pytest.skip('model module for %s not importable: %s' % (name, e))
    return load_config(os.path.join(ROOT, rel), opts)


_CFGS = {}


def _cfg(rel):
    """The loaded experiment (cached; tests only read it)."""
    if rel not in _CFGS:
        _CFGS[rel] = _load(rel)
    return _CFGS[rel]


def _reduced(n):
    """A quarter of the input side rounded to a multiple of 32 (keeps every stride-32 path exact)."""
    return max(32, int(n / 4.0 / 32 + 0.5) * 32)


_BUILT = {}


def _arch_key(cfg):
    return json.dumps([cfg.MODEL.NAME, cfg.MODEL.STYLE, cfg.MODEL.NUM_JOINTS, cfg.MODEL.EXTRA],
                      sort_keys=True)


def _reduced_size(cfg):
    w, h = cfg.MODEL.IMAGE_SIZE
    return (_reduced(w), _reduced(h))


def _build_and_run(rel):
    """(params, {reduced input (W, H): output shape}) of the experiment's network.

    Each distinct network (name, style, EXTRA, joints) is built once, and run at the reduced input
    of every experiment that shares it (e.g. 256x192 and 384x288), then freed."""
    cfg = _cfg(rel)
    key = _arch_key(cfg)
    if key not in _BUILT:
        import paddle
        from posekit.models import build_model
        from posekit.models.layers import count_parameters
        sizes = sorted({_reduced_size(c) for c in (_cfg(r) for r in YAMLS) if _arch_key(c) == key})
        model = build_model(cfg, is_train=False)
        model.eval()
        shapes = {}
        with paddle.no_grad():
            for w, h in sizes:
                shapes[(w, h)] = list(model(paddle.zeros([1, 3, h, w], dtype='float32')).shape)
        _BUILT[key] = (count_parameters(model), shapes)
        del model
        gc.collect()
    return _BUILT[key]


# ------------------------------------------------------------------------------------------------
# (a) every yaml loads; it names its source on the first line
# ------------------------------------------------------------------------------------------------
def test_experiments_found():
    assert len(YAMLS) >= 50, YAMLS


@pytest.mark.parametrize('rel', YAMLS)
def test_yaml_loads(rel):
    cfg = _cfg(rel)
    assert cfg.MODEL.NAME in ('pose_resnet', 'lpn', 'pose_hrnet', 'simplenet', 'simplepose')
    with open(os.path.join(ROOT, rel), 'r', encoding='utf-8') as f:
        first = f.readline()
    assert first.startswith('# ') and any(t in first for t in SOURCE_TAGS), first


# ------------------------------------------------------------------------------------------------
# (b) parameter counts, output shapes, heatmap size and sigma
# ------------------------------------------------------------------------------------------------
def test_expected_params_cover_every_yaml():
    assert sorted(EXPECTED_PARAMS) == YAMLS


# (file-name fragment, COCO count, parameters per joint of the final 1x1 conv = C_final + 1)
FAMILIES = [
    ('/resnet18/', R18, 257), ('/resnet34/', R34, 257),
    ('/resnet50/', R50, 257), ('/res50_', R50, 257),
    ('/resnet101/', R101, 257), ('/res101_', R101, 257),
    ('/resnet152/', R152, 257), ('/res152_', R152, 257),
    ('/lpn18', LPN18, 257), ('/lpn34', LPN34, 257), ('/lpn50_', LPN50, 257),
    ('/lpn100_', LPN100, 257), ('/lpn101_', LPN101, 257), ('/lpn152_', LPN152, 257),
    ('/w32_', W32, 33), ('/w48_', W48, 49), ('/w18_small_v1_', W18V1, 17), ('/w18_small_v2_', W18V2, 19),
    ('/mobile/', SIMPLENET, 25), ('/simplepose/', SIMPLEPOSE, None),
]


def test_expected_params_table_is_consistent():
    """Every entry is its family's COCO count, minus one joint's head (C_final + 1) for MPII."""
    for rel, n in EXPECTED_PARAMS.items():
        match = [(coco, per_joint) for frag, coco, per_joint in FAMILIES if frag in rel]
        assert len(match) == 1, rel
        coco, per_joint = match[0]
        assert n == (coco - per_joint if '/mpii/' in rel else coco), rel


@pytest.mark.parametrize('rel', YAMLS)
def test_heatmap_is_quarter_input_and_sigma(rel):
    cfg = _cfg(rel)
    w, h = cfg.MODEL.IMAGE_SIZE
    assert list(cfg.MODEL.HEATMAP_SIZE) == [w // 4, h // 4]
    assert w % 4 == 0 and h % 4 == 0
    big = (w, h) in ((288, 384), (384, 384))
    assert cfg.MODEL.SIGMA == (3.0 if big else 2.0)
    assert cfg.MODEL.TARGET_TYPE == 'gaussian'
    assert cfg.MODEL.NUM_JOINTS == (17 if cfg.DATASET.DATASET == 'coco' else 16)
    assert ('/coco/' in rel) == (cfg.DATASET.DATASET == 'coco')


@pytest.mark.parametrize('rel', YAMLS)
def test_model_params_and_output_shape(rel):
    params, shapes = _build_and_run(rel)
    cfg = _cfg(rel)
    assert params == EXPECTED_PARAMS[rel]
    w, h = _reduced_size(cfg)
    if cfg.MODEL.NAME == 'simplepose':  # eval output: the last stack's stride-4 maps
        from posekit.codec.bottomup.layout import NUM_CHANNELS
        assert shapes[(w, h)] == [1, NUM_CHANNELS, h // 4, w // 4]
        return
    assert shapes[(w, h)] == [1, cfg.MODEL.NUM_JOINTS, h // 4, w // 4]


# ------------------------------------------------------------------------------------------------
# (c) hyper-parameters singled out by REFERENCE_SPEC 2.1, 2.6, 2.7, 4.3, 5.2
# ------------------------------------------------------------------------------------------------
MS_COCO = ['experiments/coco/resnet%d/%s_d256x3_adam_lr1e-3%s.yaml' % (d, s, c)
           for d in (50, 101, 152) for s, c in (('256x192', ''), ('256x192', '_caffe'), ('384x288', ''))]
MS_COCO_RECIPE = MS_COCO + ['experiments/coco/resnet18/256x192_d256x3_adam_lr1e-3.yaml',
                            'experiments/coco/resnet34/256x192_d256x3_adam_lr1e-3.yaml',
                            'experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml']
MS_MPII = ['experiments/mpii/resnet%d/%s_d256x3_adam_lr1e-3.yaml' % (d, s)
           for d in (50, 101, 152) for s in ('256x256', '384x384')]
HRNET_COCO = [r for r in YAMLS if r.startswith('experiments/coco/hrnet/')]
HRNET_MPII = [r for r in YAMLS if r.startswith('experiments/mpii/hrnet/')]
LPN_COCO_OFFICIAL = ['experiments/coco/lpn/lpn%d_256x192_gd256x2_gc.yaml' % d for d in (50, 101, 152)]
CAV_LPN_HALFBODY = (['experiments/coco/lpn/lpn%s_256x192_gd256x2_gc.yaml' % d
                     for d in ('18', '18h', '34', '34h', '100')]
                    + ['experiments/coco/lpn/humanpose/lpn50_256x192_gd256x2_gc.yaml'])
CAV_LPN_PLAIN = ['experiments/coco/lpn/humanpose/lpn%d_256x192_gd256x2_gc.yaml' % d for d in (101, 152)]
HR_RESNET = [r for r in YAMLS if '/resnet/res' in r]
PD = 'experiments/mpii/resnet50/256x256_d256x3_adam_plr1e-3.yaml'


@pytest.mark.parametrize('rel', YAMLS)
def test_common_to_every_experiment(rel):
    cfg = _cfg(rel)
    ds = cfg.DATASET.DATASET
    assert cfg.DATASET.ROOT == 'data/%s/' % ds
    assert (cfg.DATASET.TRAIN_SET, cfg.DATASET.TEST_SET) == (
        ('train2017', 'val2017') if ds == 'coco' else ('train', 'valid'))
    assert cfg.DATASET.FLIP
    assert (cfg.OUTPUT_DIR, cfg.LOG_DIR, cfg.DATA_DIR) == ('output', 'log', '')
    assert cfg.PRINT_FREQ == (50 if rel == PD else 100)
    assert cfg.DATASET.PIXEL_SCALE == (1.0 if rel == PD else 255.0)
    assert cfg.MODEL.PRETRAINED == '' or cfg.MODEL.PRETRAINED.startswith('data/pretrained/')
    if cfg.MODEL.NAME == 'simplepose':  # bottom-up, no boxes: its own recipe (test_simplepose_recipe)
        return
    assert cfg.TRAIN.OPTIMIZER == 'adam' and cfg.TRAIN.LR == 0.001 and cfg.TRAIN.LR_FACTOR == 0.1
    assert cfg.TEST.BATCH_SIZE_PER_GPU == 32
    assert cfg.LOSS.USE_TARGET_WEIGHT
    if ds == 'coco':
        assert cfg.TEST.COCO_BBOX_FILE == ('data/coco/person_detection_results/'
                                           'COCO_val2017_detections_AP_H_56_person.json')
        assert (cfg.TEST.OKS_THRE, cfg.TEST.IN_VIS_THRE, cfg.TEST.IMAGE_THRE) == (0.9, 0.2, 0.0)
        assert (cfg.TEST.NMS_THRE, cfg.TEST.BBOX_THRE) == (1.0, 1.0)
    else:
        assert (cfg.DATASET.SCALE_FACTOR, cfg.DATASET.ROT_FACTOR) == (0.25, 30.0)
        assert cfg.DATASET.PROB_HALF_BODY <= 0.0


@pytest.mark.parametrize('rel', MS_COCO_RECIPE)
def test_ms_coco(rel):
    cfg = _cfg(rel)
    assert cfg.TEST.USE_GT_BBOX is True  # published numbers: --use-detect-bbox
    assert (cfg.TEST.OKS_THRE, cfg.TEST.IN_VIS_THRE, cfg.TEST.IMAGE_THRE) == (0.9, 0.2, 0.0)
    assert (cfg.TEST.FLIP_TEST, cfg.TEST.POST_PROCESS, cfg.TEST.SHIFT_HEATMAP) == (False, True, True)
    assert (cfg.DATASET.SCALE_FACTOR, cfg.DATASET.ROT_FACTOR, cfg.DATASET.PROB_HALF_BODY) == (0.3, 40.0, 0.0)
    assert cfg.DATASET.COLOR_RGB is False
    assert (cfg.TRAIN.END_EPOCH, cfg.TRAIN.LR_STEP, cfg.TRAIN.LR_TYPE) == (140, [90, 120], 'MultiStepDecay')
    assert cfg.TRAIN.BATCH_SIZE_PER_GPU == 32 and cfg.GPUS == [0] and cfg.WORKERS == 4
    assert cfg.DEBUG.DEBUG and cfg.DEBUG.SAVE_HEATMAPS_PRED
    assert not cfg.AUTO_RESUME and not cfg.TEST.SOFT_ARGMAX


@pytest.mark.parametrize('rel', MS_MPII)
def test_ms_mpii(rel):
    cfg = _cfg(rel)
    assert (cfg.TEST.FLIP_TEST, cfg.TEST.POST_PROCESS, cfg.TEST.SHIFT_HEATMAP) == (False, True, True)
    assert cfg.DATASET.COLOR_RGB is False and cfg.DEBUG.DEBUG is False
    assert cfg.TRAIN.BATCH_SIZE_PER_GPU == (24 if rel.endswith('resnet152/384x384_d256x3_adam_lr1e-3.yaml') else 32)
    assert cfg.MODEL.INIT_WEIGHTS and cfg.MODEL.PRETRAINED.startswith('data/pretrained/resnet')


def test_ms_pretrained_files_and_style():
    files = {50: 'resnet50-19c8e357.pth', 101: 'resnet101-5d3b4d8f.pth', 152: 'resnet152-b121ed2d.pth',
             18: 'resnet18-5c106cde.pth', 34: 'resnet34-333f7ec4.pth'}
    for rel in MS_COCO_RECIPE[:-1] + MS_MPII + HR_RESNET:
        cfg = _cfg(rel)
        depth = cfg.MODEL.EXTRA.NUM_LAYERS
        if rel.endswith('_caffe.yaml'):
            assert cfg.MODEL.STYLE == 'caffe'
            assert cfg.MODEL.PRETRAINED == 'data/pretrained/resnet%d-caffe.pth.tar' % depth
        else:
            assert cfg.MODEL.STYLE == 'pytorch'
            assert cfg.MODEL.PRETRAINED == 'data/pretrained/' + files[depth]
        assert list(cfg.MODEL.EXTRA.NUM_DECONV_FILTERS) == [256, 256, 256]


def test_ms_resnet152_384_batch24():
    cfg = _cfg('experiments/mpii/resnet152/384x384_d256x3_adam_lr1e-3.yaml')
    assert cfg.TRAIN.BATCH_SIZE_PER_GPU == 24
    assert list(cfg.MODEL.IMAGE_SIZE) == [384, 384] and cfg.MODEL.SIGMA == 3.0


def test_pd_training_log_config():
    cfg = _cfg(PD)
    assert cfg.TRAIN.LR_TYPE == 'PolynomialDecay'
    assert cfg.TRAIN.BATCH_SIZE_PER_GPU == 128 and cfg.GPUS == [0]
    assert cfg.TEST.FLIP_TEST and cfg.TEST.POST_PROCESS and cfg.TEST.SHIFT_HEATMAP
    assert cfg.DATASET.PIXEL_SCALE == 1.0 and cfg.DATASET.COLOR_RGB is False
    assert (cfg.TRAIN.END_EPOCH, cfg.MODEL.EXTRA.NUM_LAYERS) == (140, 50)
    assert list(cfg.MODEL.IMAGE_SIZE) == [256, 256]


@pytest.mark.parametrize('rel', HRNET_COCO)
def test_hrnet_coco(rel):
    cfg = _cfg(rel)
    assert (cfg.DATASET.PROB_HALF_BODY, cfg.DATASET.NUM_JOINTS_HALF_BODY) == (0.3, 8)
    assert (cfg.DATASET.SCALE_FACTOR, cfg.DATASET.ROT_FACTOR) == (0.35, 45.0)
    assert cfg.DATASET.COLOR_RGB is True
    assert (cfg.TRAIN.END_EPOCH, cfg.TRAIN.LR_STEP) == (210, [170, 200])
    assert (cfg.TEST.FLIP_TEST, cfg.TEST.POST_PROCESS, cfg.TEST.SHIFT_HEATMAP) == (True, True, True)
    assert cfg.TEST.USE_GT_BBOX is True
    assert cfg.AUTO_RESUME is True and cfg.GPUS == [0, 1, 2, 3]
    assert cfg.TEST.SOFT_ARGMAX == rel.endswith('_softargmax.yaml')
    assert cfg.TRAIN.BATCH_SIZE_PER_GPU == (24 if 'w48_384x288' in rel else 32)
    assert cfg.MODEL.INIT_WEIGHTS and cfg.MODEL.PRETRAINED.startswith('data/pretrained/hrnet_w')


@pytest.mark.parametrize('rel', HRNET_MPII)
def test_hrnet_mpii(rel):
    cfg = _cfg(rel)
    assert cfg.DATASET.PROB_HALF_BODY == -1.0 and cfg.DATASET.COLOR_RGB is True
    assert (cfg.TRAIN.END_EPOCH, cfg.TRAIN.LR_STEP) == (210, [170, 200])
    assert cfg.TEST.FLIP_TEST is True


def test_hrnet_stage_layouts():
    """REFERENCE_SPEC 4.3: modules 1/4/3 x 4 blocks (W32, W48); 1/1/1 and 1/3/2 x 2 blocks (small)."""
    expect = {'w32_': (32, (1, 4, 3), 4), 'w48_': (48, (1, 4, 3), 4),
              'small_v1': (16, (1, 1, 1), 2), 'small_v2': (18, (1, 3, 2), 2)}
    for rel in HRNET_COCO + HRNET_MPII:
        (c, modules, blocks), = [v for k, v in expect.items() if k in rel]
        extra = _cfg(rel).MODEL.EXTRA
        assert list(extra.STAGE1.NUM_BLOCKS) == [4] and list(extra.STAGE1.NUM_CHANNELS) == [64]
        for i, s in enumerate(('STAGE2', 'STAGE3', 'STAGE4')):
            n = i + 2
            assert extra[s].NUM_MODULES == modules[i], (rel, s)
            assert extra[s].NUM_BRANCHES == n
            assert list(extra[s].NUM_BLOCKS) == [blocks] * n
            assert list(extra[s].NUM_CHANNELS) == [c * 2 ** k for k in range(n)]


def test_lpn_mpii_official():
    cfg = _cfg('experiments/mpii/lpn/lpn50_256x256_gd256x2_gc.yaml')
    assert cfg.DATASET.COLOR_RGB is True
    assert cfg.TEST.SOFT_ARGMAX is True and cfg.TEST.BIAS == 1.0
    assert cfg.MODEL.INIT_WEIGHTS is False and cfg.MODEL.PRETRAINED == ''
    assert cfg.DATASET.PROB_HALF_BODY == -1.0
    assert (cfg.TRAIN.END_EPOCH, cfg.TRAIN.LR_STEP) == (150, [90, 120])
    assert cfg.TEST.FLIP_TEST and cfg.TEST.POST_PROCESS and cfg.TEST.SHIFT_HEATMAP
    assert cfg.TEST.MODEL_FILE.endswith('lpn_50_256x256.pth')
    assert (cfg.WORKERS, cfg.GPUS) == (10, [0])


@pytest.mark.parametrize('rel', LPN_COCO_OFFICIAL)
def test_lpn_coco_official(rel):
    cfg = _cfg(rel)
    assert cfg.DATASET.COLOR_RGB is False  # BGR, as the official checkpoints were trained
    assert cfg.TEST.SOFT_ARGMAX is True and cfg.TEST.BIAS == 0.0
    assert cfg.TEST.USE_GT_BBOX is False
    assert (cfg.DATASET.SCALE_FACTOR, cfg.DATASET.ROT_FACTOR, cfg.DATASET.PROB_HALF_BODY) == (0.3, 40.0, 0.0)
    assert (cfg.TRAIN.END_EPOCH, cfg.TRAIN.LR_STEP) == (150, [90, 120])
    assert cfg.MODEL.PRETRAINED == '' and cfg.MODEL.INIT_WEIGHTS is True
    assert cfg.TEST.MODEL_FILE.endswith('lpn_%d_256x192.pth' % cfg.MODEL.EXTRA.NUM_LAYERS)
    assert (cfg.WORKERS, cfg.GPUS) == (10, [0])
    assert cfg.MODEL.EXTRA.ATTENTION == 'GC' and list(cfg.MODEL.EXTRA.NUM_DECONV_FILTERS) == [256, 256]


@pytest.mark.parametrize('rel', CAV_LPN_HALFBODY + CAV_LPN_PLAIN)
def test_lpn_coco_cav(rel):
    cfg = _cfg(rel)
    assert cfg.DATASET.COLOR_RGB is True and cfg.TEST.SOFT_ARGMAX is True
    assert cfg.GPUS == [0, 1, 2, 3] and cfg.MODEL.PRETRAINED == ''
    assert (cfg.TRAIN.END_EPOCH, cfg.TRAIN.LR_STEP) == (150, [90, 120])
    if rel in CAV_LPN_HALFBODY:
        assert (cfg.DATASET.SCALE_FACTOR, cfg.DATASET.ROT_FACTOR, cfg.DATASET.PROB_HALF_BODY) == (0.35, 45.0, 0.3)
        assert cfg.TEST.USE_GT_BBOX is True
    else:  # LPN-101/152 keep the PoseResNet-style augmentation and omit USE_GT_BBOX
        assert (cfg.DATASET.SCALE_FACTOR, cfg.DATASET.ROT_FACTOR, cfg.DATASET.PROB_HALF_BODY) == (0.3, 40.0, 0.0)
        assert cfg.TEST.USE_GT_BBOX is False


def test_lpn_h_variants_are_identical():
    """[CAV] ships byte-identical lpn18/lpn18h (and 34/34h) yamls: same resolved config."""
    from posekit.config import config_to_dict
    for d in (18, 34):
        a = config_to_dict(_cfg('experiments/coco/lpn/lpn%d_256x192_gd256x2_gc.yaml' % d))
        b = config_to_dict(_cfg('experiments/coco/lpn/lpn%dh_256x192_gd256x2_gc.yaml' % d))
        assert a == b and a['MODEL']['EXTRA']['NUM_LAYERS'] == d


def test_softargmax_variant_differs_only_in_decoding():
    from posekit.config import config_to_dict
    a = config_to_dict(_cfg('experiments/coco/hrnet/w18_small_v2_256x192_adam_lr1e-3.yaml'))
    b = config_to_dict(_cfg('experiments/coco/hrnet/w18_small_v2_256x192_adam_lr1e-3_softargmax.yaml'))
    assert b['TEST'].pop('SOFT_ARGMAX') is True and a['TEST'].pop('SOFT_ARGMAX') is False
    assert a == b


@pytest.mark.parametrize('rel', HR_RESNET)
def test_resnet_hrnet_codebase(rel):
    cfg = _cfg(rel)
    assert cfg.DATASET.COLOR_RGB is False
    assert (cfg.TEST.FLIP_TEST, cfg.TEST.POST_PROCESS, cfg.TEST.SHIFT_HEATMAP) == (True, True, True)
    assert (cfg.TRAIN.END_EPOCH, cfg.TRAIN.LR_STEP) == (140, [90, 120])
    assert cfg.AUTO_RESUME is True and cfg.WORKERS == 24 and cfg.GPUS == [0, 1, 2, 3]
    if cfg.DATASET.DATASET == 'coco':
        assert (cfg.DATASET.SCALE_FACTOR, cfg.DATASET.ROT_FACTOR, cfg.DATASET.PROB_HALF_BODY) == (0.3, 40.0, 0.0)
        assert cfg.TEST.USE_GT_BBOX is True
    else:
        assert cfg.DATASET.PROB_HALF_BODY == -1.0


def test_simplenet_recipe():
    for rel in ('experiments/mpii/mobile/256x256_d256x3_adam_lr1e-3.yaml',
                'experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml'):
        cfg = _cfg(rel)
        assert cfg.MODEL.NAME == 'simplenet' and cfg.MODEL.PRETRAINED == ''
        assert cfg.DATASET.COLOR_RGB is False
        assert (cfg.TRAIN.END_EPOCH, cfg.TRAIN.LR_STEP) == (140, [90, 120])


def test_simplepose_recipe():
    """SIMPLEPOSE_SPEC 1, 4.2, 7: the published network at 512x512, BGR/255 input, SGD."""
    cfg = _cfg('experiments/coco/simplepose/simplepose_512x512.yaml')
    assert cfg.MODEL.NAME == 'simplepose' and dict(cfg.MODEL.EXTRA) == {
        'NSTACK': 4, 'INP_DIM': 256, 'INCREASE': 128}
    assert list(cfg.MODEL.IMAGE_SIZE) == [512, 512] and list(cfg.MODEL.HEATMAP_SIZE) == [128, 128]
    assert cfg.DATASET.COLOR_RGB is False and cfg.DATASET.PIXEL_SCALE == 255.0
    assert list(cfg.DATASET.MEAN) == [0, 0, 0] and list(cfg.DATASET.STD) == [1, 1, 1]
    assert (cfg.DATASET.SCALE_FACTOR, cfg.DATASET.ROT_FACTOR) == (0.3, 40.0)
    assert (cfg.TRAIN.OPTIMIZER, cfg.TRAIN.LR, cfg.TRAIN.MOMENTUM, cfg.TRAIN.WD) == ('sgd', 1e-4, 0.9, 5e-4)
    assert (cfg.TRAIN.BATCH_SIZE_PER_GPU, len(cfg.GPUS)) == (4, 4)
    assert (cfg.TRAIN.LR_FACTOR, cfg.TRAIN.LR_STEP, cfg.TRAIN.WARMUP_EPOCHS) == (0.2, [15, 30, 45, 60, 75], 3)
    assert cfg.MODEL.INIT_WEIGHTS and cfg.MODEL.PRETRAINED == ''


# ------------------------------------------------------------------------------------------------
# (d) the reference fixtures' configs exist in our tree (with the same parameter counts)
# ------------------------------------------------------------------------------------------------
def test_models_json_configs_exist():
    path = require_fixtures('models.json')
    with open(path, 'r', encoding='utf-8') as f:
        rows = json.load(f)['models']
    assert rows
    for row in rows:
        rel = row['config']
        assert os.path.isfile(os.path.join(ROOT, rel)), '%s (%s) has no experiment' % (rel, row['name'])
        assert EXPECTED_PARAMS[rel] == row['params_trainable'], row['name']
