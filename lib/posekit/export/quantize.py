"""Static int8 quantisation of an exported ONNX pose model, calibrated on real crops.

    report = quantize_model('out/model.onnx', 'out/model_int8.onnx', 'calib_images/', deploy_config)
    print(report.describe())

ONNX Runtime's static QDQ quantisation (LANDSCAPE 5.2: static, not dynamic, for CNNs; per-channel
weights; uint8 activations / int8 weights; ``quant_pre_process`` first so that BatchNorm is
folded into the convolutions the quantiser sees). Every calibration image is read as deploy
reads it (:func:`posekit.io.read_image`) and fed exactly as deploy feeds a person box: the whole
image is the box (:func:`posekit.codec.transforms.box_to_center_scale`), cropped to the input size and normalised as
the :class:`~posekit.inference.deploy_config.DeployConfig` says. Afterwards the int8 heatmaps are compared
with the fp32 ones on the same crops (argmax distance in heatmap pixels) - a sanity check, not an
accuracy figure: evaluate AP before deploying int8.
"""
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from posekit.codec.heatmap import get_max_preds
from posekit.errors import PosekitInputError
from posekit.io import (IMAGE_EXTENSIONS, ImageReadError, InputFileError, atomic_path, list_images,
                        read_image)

__all__ = ['QuantizeError', 'IMAGE_EXTENSIONS', 'calibration_images',
           'load_calibration_inputs', 'quantize_int8', 'heatmap_agreement', 'int8_advice', 'time_runner',
           'quantize_model', 'QuantizeReport', 'INT8_NAME']

INT8_NAME = 'model_int8.onnx'
# Per-channel weight scales need DequantizeLinear's 'axis' (opset 13): an opset-11 export is
# converted to opset 13 for its int8 copy.
PER_CHANNEL_OPSET = 13
# Joints whose fp32 heatmap maximum reaches this are "confident" in the agreement report
# (the default TEST.IN_VIS_THRE of the COCO evaluation).
CONFIDENT = 0.2
# Timed calls of each model (one crop) behind the int8 advice.
SPEED_RUNS = 10


class QuantizeError(PosekitInputError):
    """No usable calibration images, or a model the quantiser cannot handle."""


def calibration_images(calib_dir, num=None):
    """Sorted image files directly in ``calib_dir`` (the first ``num`` if given)."""
    if not calib_dir:
        raise QuantizeError('int8 quantisation needs calibration images: give --calib-dir DIR')
    if num is not None and int(num) <= 0:
        raise QuantizeError('the number of calibration images must be positive, got %s' % num)
    try:
        files = list_images(calib_dir, what='calibration folder')
    except InputFileError as e:
        raise QuantizeError(str(e)) from e
    return files[:int(num)] if num else files


def load_calibration_inputs(paths, deploy_config):
    """Inputs (N, 3, H, W) for the readable images of ``paths``; returns (inputs, used, skipped).

    Images are read as deploy reads them (:func:`posekit.io.read_image`, EXIF orientation
    ignored), so the quantiser is calibrated on what the model will be fed."""
    inputs, used, skipped = [], [], []
    for path in paths:
        try:
            image = read_image(path)
        except ImageReadError:
            skipped.append(path)
            continue
        # the whole image as the person box, through the deploy config's input spec
        inputs.append(deploy_config.input_spec.prepare(image)[0][0])
        used.append(path)
    if not inputs:
        raise QuantizeError('none of the %d calibration images could be read (first: %s)'
                            % (len(paths), paths[0] if paths else '-'))
    return np.stack(inputs).astype(np.float32), used, skipped


def _import_quantization():
    try:
        from onnxruntime import quantization
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        # onnxruntime.quantization imports ml_dtypes, which onnxruntime does not install.
        raise QuantizeError('int8 quantisation needs onnxruntime.quantization, which failed to '
                            'import (%s); pip install ml_dtypes' % e) from e
    return quantization, quant_pre_process


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _opset(model):
    return max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default=0)


def _reader(input_name, inputs):
    quantization, _ = _import_quantization()

    class CropReader(quantization.CalibrationDataReader):
        """Feeds the calibration crops one at a time (the exported batch may be fixed at 1)."""

        def __init__(self):
            self._i = 0

        def get_next(self):
            if self._i >= len(inputs):
                return None
            self._i += 1
            return {input_name: inputs[self._i - 1:self._i]}

        def rewind(self):
            self._i = 0

    return CropReader()


def quantize_int8(fp32_path, int8_path, inputs, per_channel=True, reduce_range=False,
                  preprocess=True):
    """Static QDQ int8 model of ``fp32_path`` calibrated (min/max) on ``inputs`` (N, 3, H, W).

    ``reduce_range`` (7-bit weights) is ORT's documented option for CPUs without VNNI. With
    ``per_channel`` the int8 model has opset 13 at least (see ``PER_CHANNEL_OPSET``).
    """
    quantization, quant_pre_process = _import_quantization()
    import onnx
    import onnx.version_converter
    model = onnx.load(fp32_path)
    input_name = model.graph.input[0].name
    folder = os.path.dirname(os.path.abspath(int8_path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='posekit_quant_') as tmp:
        source = fp32_path
        if preprocess:
            # shape inference + graph optimisation (Conv+BN folding) before quantising
            source = os.path.join(tmp, 'preprocessed.onnx')
            try:
                quant_pre_process(fp32_path, source, skip_symbolic_shape=True)
            except Exception as e:
                raise QuantizeError('quantisation pre-processing failed on %s: %s'
                                    % (fp32_path, _first_line(e))) from e
        if per_channel and _opset(onnx.load(source)) < PER_CHANNEL_OPSET:
            # per-channel DequantizeLinear needs its 'axis' attribute, which exists from opset 13
            upgraded = os.path.join(tmp, 'opset%d.onnx' % PER_CHANNEL_OPSET)
            try:
                onnx.save(onnx.version_converter.convert_version(onnx.load(source),
                                                                 PER_CHANNEL_OPSET), upgraded)
            except Exception as e:
                raise QuantizeError('cannot convert %s to opset %d for per-channel int8: %s'
                                    % (fp32_path, PER_CHANNEL_OPSET,
                                       _first_line(e))) from e
            source = upgraded
        tmp_out = os.path.join(tmp, 'int8.onnx')
        try:
            quantization.quantize_static(
                source, tmp_out, _reader(input_name, inputs),
                quant_format=quantization.QuantFormat.QDQ, per_channel=per_channel,
                reduce_range=reduce_range, activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax)
        except Exception as e:
            raise QuantizeError('int8 quantisation of %s failed: %s'
                                % (fp32_path, _first_line(e))) from e
        # the temporary folder may be on another device: copy beside the target, then rename
        with atomic_path(int8_path) as dst:
            shutil.copyfile(tmp_out, dst)
    return int8_path


def heatmap_agreement(reference, other, confidence=CONFIDENT):
    """Argmax agreement of two heatmap batches (B, K, h, w), in heatmap pixels.

    Returns ``mean_px``, ``max_px`` (Euclidean distance of the argmax locations), ``moved_share``
    (share of joints whose argmax moved by >= 1 px), ``num_joints`` (B*K compared),
    ``max_abs_diff`` of the raw heatmaps, and the same distances restricted to the joints the
    reference is confident about (maximum >= ``confidence``): ``confident_joints``,
    ``confident_mean_px``, ``confident_max_px``. Joints that are not in the picture have flat
    maps whose argmax wanders, so the confident figures are the ones that matter for accuracy.
    """
    reference = np.asarray(reference, np.float32)
    other = np.asarray(other, np.float32)
    if reference.shape != other.shape:
        raise ValueError('heatmap shapes differ: %s vs %s' % (reference.shape, other.shape))
    a, maxvals = get_max_preds(reference)
    b, _ = get_max_preds(other)
    dist = np.sqrt(((a - b) ** 2).sum(-1)).ravel()
    sure = dist[maxvals.ravel() >= confidence]

    def stat(values, fn):
        return float(fn(values)) if values.size else 0.0

    return {'mean_px': stat(dist, np.mean), 'max_px': stat(dist, np.max),
            'moved_share': stat(dist >= 1.0, np.mean), 'num_joints': int(dist.size),
            'max_abs_diff': float(np.abs(reference - other).max()) if reference.size else 0.0,
            'confidence': float(confidence), 'confident_joints': int(sure.size),
            'confident_mean_px': stat(sure, np.mean), 'confident_max_px': stat(sure, np.max)}


def time_runner(runner, batch, runs=SPEED_RUNS, warmup=2):
    """Median milliseconds of ``runner(batch)`` over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        runner(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(batch)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def int8_advice(fp32_ms, int8_ms):
    """Advice from a measurement on this machine: is the int8 model worth deploying here?

    Whether int8 is faster depends on the backbone and the CPU (depthwise and grouped
    convolutions often gain nothing), so the answer comes from timing both models, never from
    the model's name. Accuracy is a separate question that only ``valid.py --model-file
    model_int8.onnx`` on trained weights answers.
    """
    ratio = fp32_ms / int8_ms if int8_ms > 0 else float('inf')
    measured = 'fp32 %.2f ms, int8 %.2f ms per crop on this machine' % (fp32_ms, int8_ms)
    if ratio >= 1.1:
        verdict = 'int8 is %.1fx faster (%s)' % (ratio, measured)
    elif ratio > 1 / 1.1:
        verdict = 'int8 is not faster (%s): keep fp32' % measured
    else:
        verdict = 'int8 is %.1fx slower (%s): keep fp32' % (1 / ratio, measured)
    return verdict + '; measure its accuracy with valid.py --model-file model_int8.onnx'


@dataclass
class QuantizeReport:
    int8_path: str
    images: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    agreement: dict = field(default_factory=dict)
    speed: dict = field(default_factory=dict)

    def describe(self):
        a = self.agreement
        lines = ['int8   : %s (static QDQ, per-channel int8 weights, uint8 activations, '
                 'calibrated on %d image%s)' % (self.int8_path, len(self.images),
                                                '' if len(self.images) == 1 else 's')]
        if self.skipped:
            lines.append('         %d unreadable image%s skipped (first: %s)'
                         % (len(self.skipped), '' if len(self.skipped) == 1 else 's',
                            self.skipped[0]))
        if a:
            lines.append('         int8 vs fp32 on the calibration crops: argmax moved %.2f px on '
                         'average, %.2f px at most; %.1f%% of %d joints moved >= 1 px '
                         '(heatmap pixels)' % (a['mean_px'], a['max_px'], 100.0 * a['moved_share'],
                                               a['num_joints']))
            if a.get('confident_joints'):
                lines.append('         on the %d joints with fp32 confidence >= %.2g: %.2f px on '
                             'average, %.2f px at most' % (a['confident_joints'], a['confidence'],
                                                           a['confident_mean_px'],
                                                           a['confident_max_px']))
        if self.speed:
            lines.append('speed  : ' + int8_advice(self.speed['fp32_ms'], self.speed['int8_ms']))
        return '\n'.join(lines)


def quantize_model(fp32_path, int8_path, calib_dir, deploy_config, num=None, threads=None,
                   per_channel=True, reduce_range=False):
    """Quantise ``fp32_path`` on the images of ``calib_dir`` and compare int8 with fp32."""
    from posekit.runtime import OnnxRunner
    paths = calibration_images(calib_dir, num)
    inputs, used, skipped = load_calibration_inputs(paths, deploy_config)
    quantize_int8(fp32_path, int8_path, inputs, per_channel=per_channel, reduce_range=reduce_range)
    fp32 = OnnxRunner(fp32_path, threads=threads)
    int8 = OnnxRunner(int8_path, threads=threads)
    agreement = heatmap_agreement(fp32(inputs), int8(inputs))
    crop = inputs[:1]
    speed = {'fp32_ms': time_runner(fp32, crop), 'int8_ms': time_runner(int8, crop)}
    return QuantizeReport(int8_path=int8_path, images=used, skipped=skipped, agreement=agreement,
                          speed=speed)
