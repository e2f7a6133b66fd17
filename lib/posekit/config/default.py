"""Default values of every configuration key.

A yaml file under ``experiments/`` (and ``KEY VALUE`` pairs on the command line) may only
override keys that exist here; anything else is an error that names the closest valid key.
``MODEL.EXTRA`` is the exception: its valid keys depend on ``MODEL.NAME`` and are declared in
``MODEL_EXTRA_DEFAULTS`` (each model module of ``posekit.models`` reads its own as ``EXTRA_DEFAULTS``).

Conventions (as in every reference config): sizes are ``[W, H]``; ``scale`` is in units of
200 px; batch sizes are per GPU (per process).
"""
import copy

_DEFAULTS = {
    'OUTPUT_DIR': 'output',
    'LOG_DIR': 'log',
    'DATA_DIR': '',
    'GPUS': [0],
    'WORKERS': 4,
    'PRINT_FREQ': 20,
    'SEED': -1,  # < 0: not seeded
    'AUTO_RESUME': False,
    'PIN_MEMORY': True,

    # Kept so that reference yamls read unchanged; Paddle picks cuDNN algorithms itself.
    'CUDNN': {
        'BENCHMARK': True,
        'DETERMINISTIC': False,
        'ENABLED': True,
    },

    'MODEL': {
        'NAME': 'pose_resnet',
        'INIT_WEIGHTS': True,
        'PRETRAINED': '',
        'NUM_JOINTS': 16,
        'IMAGE_SIZE': [256, 256],  # [W, H]
        'HEATMAP_SIZE': [64, 64],  # [W, H]
        'SIGMA': 2.0,
        'TARGET_TYPE': 'gaussian',
        # 'pytorch': the stride of a ResNet bottleneck sits on its 3x3 conv;
        # 'caffe': on its first 1x1 conv (the [MS] *_caffe.yaml experiments).
        'STYLE': 'pytorch',
        'EXTRA': {},  # model specific, see MODEL_EXTRA_DEFAULTS
    },

    'LOSS': {
        'USE_TARGET_WEIGHT': True,
        'USE_OHKM': False,
        'TOPK': 8,
        'USE_DIFFERENT_JOINTS_WEIGHT': False,
    },

    'DATASET': {
        'ROOT': '',
        'DATASET': 'mpii',
        'TRAIN_SET': 'train',
        'TEST_SET': 'valid',
        'DATA_FORMAT': 'jpg',
        'HYBRID_JOINTS_TYPE': '',
        'SELECT_DATA': False,
        'FLIP': True,
        'SCALE_FACTOR': 0.25,
        'ROT_FACTOR': 30.0,
        'PROB_HALF_BODY': 0.0,
        'NUM_JOINTS_HALF_BODY': 8,
        # Input convention (REFERENCE_SPEC 2.6). The network input is
        #   (pixel / PIXEL_SCALE - MEAN) / STD, channel by channel, in the channel order given by
        #   COLOR_RGB (False: OpenCV's BGR order is kept).
        # The Simple Baselines [MS] checkpoints were trained on BGR images normalised with the
        # RGB-ordered ImageNet statistics below; that quirk is reproduced by COLOR_RGB False.
        # HRNet checkpoints expect RGB. The Paddle port [PD] forgot the /255: PIXEL_SCALE 1.0.
        # Generated data (posekit.data.synthetic): when ENABLED, train.py and valid.py create the set
        # under ROOT on first use (MPII or COCO format after DATASET.DATASET).
        'SYNTHETIC': {
            'ENABLED': False,
            'NUM_TRAIN': 2000,
            'NUM_VALID': 200,
            'SEED': 0,
            'IMAGE_SIZE': [256, 256],  # [W, H]
            'MAX_PEOPLE': 3,
        },
        'COLOR_RGB': False,
        'PIXEL_SCALE': 255.0,
        'MEAN': [0.485, 0.456, 0.406],
        'STD': [0.229, 0.224, 0.225],
    },

    'TRAIN': {
        'OPTIMIZER': 'adam',
        'LR': 0.001,
        'LR_TYPE': 'MultiStepDecay',  # or 'PolynomialDecay' (the [PD] training log)
        'LR_FACTOR': 0.1,
        'LR_STEP': [90, 110],
        'WARMUP_EPOCHS': 0,
        'MOMENTUM': 0.9,
        'WD': 0.0001,
        'NESTEROV': False,
        'GAMMA1': 0.99,
        'GAMMA2': 0.0,
        'BEGIN_EPOCH': 0,
        'END_EPOCH': 140,
        'RESUME': False,
        'CHECKPOINT': '',
        'BATCH_SIZE_PER_GPU': 32,
        'SHUFFLE': True,
        'AMP': False,
    },

    'TEST': {
        'BATCH_SIZE_PER_GPU': 32,
        'FLIP_TEST': False,
        'POST_PROCESS': True,
        'SHIFT_HEATMAP': True,
        'USE_GT_BBOX': False,
        'OKS_THRE': 0.5,
        'IN_VIS_THRE': 0.0,
        'COCO_BBOX_FILE': '',
        'BBOX_THRE': 1.0,
        'MODEL_FILE': '',
        'IMAGE_THRE': 0.0,
        'NMS_THRE': 1.0,
        'SOFT_NMS': False,
        # Soft-argmax decoding of [LPN]/[CAV] (beta 160), then TEST.BIAS is subtracted from both
        # image coordinates (REFERENCE_SPEC 4.5).
        'SOFT_ARGMAX': False,
        'BIAS': 0.0,
        'DARK': False,
        # Bottom-up models (SimplePose): each image is resized so that its height is BOXSIZE
        # (the reference evaluate.py's boxsize 640, SIMPLEPOSE_SPEC 6.1), and validation scores
        # the first MAX_IMAGES images of TEST_SET (0: all; the reference scores val2017[:500]).
        'BOXSIZE': 640,
        'MAX_IMAGES': 0,
    },

    'DEBUG': {
        'DEBUG': False,
        'SAVE_BATCH_IMAGES_GT': False,
        'SAVE_BATCH_IMAGES_PRED': False,
        'SAVE_HEATMAPS_GT': False,
        'SAVE_HEATMAPS_PRED': False,
    },
}


# MODEL.EXTRA per MODEL.NAME: the valid keys and their defaults. The names are the models of
# posekit.models (one module each); a yaml file may override only the keys of its model.
MODEL_EXTRA_DEFAULTS = {
    'pose_resnet': {
        'NUM_LAYERS': 50,
        'DECONV_WITH_BIAS': False,
        'NUM_DECONV_LAYERS': 3,
        'NUM_DECONV_FILTERS': [256, 256, 256],
        'NUM_DECONV_KERNELS': [4, 4, 4],
        'FINAL_CONV_KERNEL': 1,
    },
    'lpn': {
        'NUM_LAYERS': 50,
        'DECONV_WITH_BIAS': False,
        'NUM_DECONV_LAYERS': 2,
        'NUM_DECONV_FILTERS': [256, 256],
        'NUM_DECONV_KERNELS': [4, 4],
        'FINAL_CONV_KERNEL': 1,
        # 'GC' (every shipped config), 'SE' (defined by [LPN], used by no config); anything else:
        # none.
        'ATTENTION': 'GC',
        # Channels per group of the two 3x3 convs of LW_BasicBlock (LPN-18/34 only). 2 is what the
        # [CAV] code builds (README rows "lpn_18h"/"lpn_34h"); 1 = fully depthwise, which reproduces
        # the README's non-h rows (inferred, REFERENCE_SPEC 4.2).
        'BASIC_GROUP_WIDTH': 2,
    },
    'pose_hrnet': {
        'PRETRAINED_LAYERS': ['*'],
        'FINAL_CONV_KERNEL': 1,
        'STEM_INPLANES': 64,
        'STAGE1': {'NUM_MODULES': 1, 'NUM_BRANCHES': 1, 'BLOCK': 'BOTTLENECK', 'NUM_BLOCKS': [4],
                   'NUM_CHANNELS': [64], 'FUSE_METHOD': 'SUM'},
        'STAGE2': {'NUM_MODULES': 1, 'NUM_BRANCHES': 2, 'BLOCK': 'BASIC', 'NUM_BLOCKS': [4, 4],
                   'NUM_CHANNELS': [32, 64], 'FUSE_METHOD': 'SUM'},
        'STAGE3': {'NUM_MODULES': 4, 'NUM_BRANCHES': 3, 'BLOCK': 'BASIC', 'NUM_BLOCKS': [4, 4, 4],
                   'NUM_CHANNELS': [32, 64, 128], 'FUSE_METHOD': 'SUM'},
        'STAGE4': {'NUM_MODULES': 3, 'NUM_BRANCHES': 4, 'BLOCK': 'BASIC', 'NUM_BLOCKS': [4, 4, 4, 4],
                   'NUM_CHANNELS': [32, 64, 128, 256], 'FUSE_METHOD': 'SUM'},
    },
    'simplenet': {
        'STEM_CHANNELS': 64,
        'STEM_STRIDE': 2,
        # One row per inverted-residual block: [hidden, out, stride]. Channels are read off the
        # checkpoint; the stride-2 positions (blocks 2, 4, 6, 11, the MobileNetV2 pattern) are
        # inferred (REFERENCE_SPEC 4.4) and give the total stride 32.
        'BLOCKS': [[64, 16, 1], [32, 24, 2], [48, 24, 1], [72, 32, 2], [96, 32, 1], [96, 64, 2],
                   [192, 64, 1], [192, 64, 1], [192, 96, 1], [288, 96, 1], [288, 160, 2],
                   [480, 160, 1], [480, 64, 1]],
        # ReLU6 is assumed (MobileNetV2 convention; plain ReLU gives practically the same outputs
        # with the released weights). The head always uses ReLU, as in Simple Baselines.
        'ACTIVATION': 'relu6',
        'NUM_DECONV_LAYERS': 3,
        'NUM_DECONV_FILTERS': [24, 24, 24],
        'NUM_DECONV_KERNELS': [4, 4, 4],
        'DECONV_WITH_BIAS': False,
        'FINAL_CONV_KERNEL': 1,
    },
    # SimplePose (bottom-up): the 4-stack improved hourglass PoseNet of [IBP] (SIMPLEPOSE_SPEC 3).
    # The defaults are the published network (128,998,760 parameters); smaller values give CPU
    # variants. The hourglass depth (4, hence 5 supervised scales and inputs in multiples of 64)
    # and the 50 output channels (posekit.codec.bottomup.layout) are fixed.
    'simplepose': {
        'NSTACK': 4,       # stacked hourglasses
        'INP_DIM': 256,    # channels between the stacks (stride-4 features); a multiple of 16
        'INCREASE': 128,   # channels added at each hourglass level (256, 384, 512, 640, 768)
    },
}


# The pipeline of each model: 'topdown' (person boxes -> one crop each -> heatmaps) unless named
# here; 'bottomup' models take the whole image and group keypoints into people themselves
# (SimplePose). Datasets, codecs, validation, export and deploy follow it (posekit.config.pipeline).
MODEL_PIPELINES = {'simplepose': 'bottomup'}
PIPELINES = ('topdown', 'bottomup')


def get_defaults():
    """A fresh deep copy of the default tree (plain dicts and lists)."""
    return copy.deepcopy(_DEFAULTS)
