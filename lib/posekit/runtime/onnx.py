"""ONNX Runtime on CPU behind the runner contract (:mod:`posekit.runtime.base`).

No Paddle here, at import or at run time: a CPU or edge user runs an exported ``model.onnx`` (or
``model_int8.onnx``) with numpy and onnxruntime only. Session options follow LANDSCAPE 5.1:
``ORT_ENABLE_ALL``, sequential execution, intra-op threads = physical cores unless ``threads``
is given.
"""
import os

from posekit.runtime.base import ModelLoadError, Runner, dims, first_line, physical_cores, \
    require_file

__all__ = ['OnnxRunner', 'onnx_model_file', 'ort_session_options', 'ONNX_NAME']

ONNX_NAME = 'model.onnx'


def onnx_model_file(model_path):
    """``model_path`` itself, or the ONNX model inside a folder (``model.onnx`` or the only one)."""
    require_file(model_path, 'ONNX model')
    if os.path.isdir(model_path):
        default = os.path.join(model_path, ONNX_NAME)
        if os.path.isfile(default):
            return default
        found = sorted(f for f in os.listdir(model_path) if f.endswith('.onnx'))
        if len(found) == 1:
            return os.path.join(model_path, found[0])
        raise ModelLoadError('%s holds %s; pass the .onnx file itself'
                             % (model_path, 'no .onnx file' if not found else
                                '%d .onnx files (%s)' % (len(found), ', '.join(found))))
    return model_path


def ort_session_options(threads=None):
    """ONNX Runtime options of LANDSCAPE 5.1: all graph optimisations, sequential execution,
    ``intra_op_num_threads`` = ``threads`` (0 = ORT's default, one thread per physical core)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads) if threads else 0
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: no per-initializer clean-up warnings
    return so


class OnnxRunner(Runner):
    """ONNX Runtime on CPU; ``model_path`` is a ``.onnx`` file or a folder holding one."""

    def __init__(self, model_path, threads=None):
        import onnxruntime as ort
        path = onnx_model_file(model_path)
        self.model_path = path
        self.name = os.path.basename(path)
        # ORT's own default (0) is one thread per physical core: report that number
        self.threads = int(threads) if threads else physical_cores()
        try:
            self.session = ort.InferenceSession(path, sess_options=ort_session_options(threads),
                                                providers=['CPUExecutionProvider'])
        except Exception as e:  # InvalidProtobuf, Fail, NotImplemented... all pybind types
            raise ModelLoadError('cannot load ONNX model %s: %s' % (path, first_line(e))) from e
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError('%s has %d inputs and %d outputs; a pose model has one image '
                                 'input and a heatmap output' % (path, len(inputs), len(outputs)))
        if len(inputs[0].shape) != 4 or len(outputs[0].shape) != 4:
            raise ModelLoadError('%s maps a %d-D input to a %d-D output; expected NCHW image -> '
                                 'NCHW heatmaps'
                                 % (path, len(inputs[0].shape), len(outputs[0].shape)))
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self.input_shape = dims(inputs[0].shape)
        self.output_shape = dims(outputs[0].shape)
        if self.dynamic_batch:
            self.output_shape[0] = None
        self._probe_output_shape()

    def _run(self, batch):
        return self.session.run([self.output_name], {self.input_name: batch})[0]
