"""Export a pose model for deployment: Paddle inference model, ONNX, deploy config, parity check.

    result = export_model(model, cfg, 'output/export/coco/simplenet/256x192_d256x3_adam_lr1e-3')
    print(result.describe())

What is written into the output folder (REFERENCE_SPEC 7.5 / 10.13 fixed: input size read as
[W, H], opset 11 by default, named input, optional dynamic batch):

* ``model.json`` + ``model.pdiparams`` - the Paddle 3 (PIR) inference model, made with the
  documented API ``paddle.jit.to_static`` (one ``InputSpec`` named ``image``, shape
  ``[1 or None, 3, H, W]``) and ``paddle.jit.save``; run it with Paddle Inference;
* ``model.onnx`` - converted from that model by ``paddle2onnx.export`` at the requested opset,
  then tidied (weights stored as initializers, identities and dead constants removed, the output
  renamed ``heatmaps``); input ``image`` float32 NCHW, output ``heatmaps`` (B, K, H/4, W/4);
* ``deploy_config.json`` - :class:`posekit.inference.deploy_config.DeployConfig` (input size, normalisation,
  joints, flip pairs, decoding), which ``deploy.py`` reads;
* ``config.yaml`` - the resolved training config the model was built from.

The graph ends at the heatmaps: flip test and decoding (argmax + quarter offset, DARK,
soft-argmax) stay in numpy (``posekit.codec.heatmap``), so every runtime decodes identically and no
runtime needs ArgMax (LANDSCAPE 5.3).

After writing, the same inputs (Gaussian noise, and a synthetic picture cropped and normalised by
the library pre-processing) go through the dygraph model, ONNX Runtime and Paddle Inference;
any heatmap difference above ``tol`` (1e-4; relative to the heatmap maximum when that exceeds 1)
raises :class:`ParityError` with the numbers.

The stages live beside this module: :mod:`.paddle_model` (``paddle.jit.save`` and the
export-friendly tracing), :mod:`.onnx_model` (paddle2onnx and the graph tidy-up), :mod:`.parity`
(inputs and the runner comparison); every model is run through the runner contract of
:mod:`posekit.runtime`.
"""
import os
import shutil
import tempfile
from dataclasses import dataclass, field

from posekit.inference.deploy_config import DEPLOY_CONFIG_NAME, DeployConfig
from posekit.export.errors import ExportError
from posekit.export.onnx_model import DEFAULT_OPSET, MAX_OPSET, paddle_to_onnx
from posekit.export.paddle_model import save_paddle_model
from posekit.export.parity import (PARITY_TOL, ParityError, allowed_difference, compare_runners,
                                   parity_inputs)
from posekit.export.quantize import INT8_NAME
from posekit.runtime.onnx import ONNX_NAME
from posekit.runtime.paddle_inference import PADDLE_PREFIX

__all__ = ['ExportError', 'ParityError', 'FORMATS', 'DEFAULT_OPSET', 'MAX_OPSET', 'PARITY_TOL',
           'ONNX_NAME', 'PADDLE_PREFIX', 'CONFIG_NAME', 'default_output_dir', 'export_model',
           'ExportResult']

FORMATS = ('onnx', 'paddle', 'both')
CONFIG_NAME = 'config.yaml'


def default_output_dir(cfg, cfg_file, root='output'):
    """``<root>/export/<dataset>/<model tag>/<cfg name>[_<W>x<H>]``.

    Mirrors the training layout ``output/<dataset>/<model>/<cfg name>``; the ``_<W>x<H>`` suffix
    is added only when the input size differs from the one of the yaml file itself (an override
    on the command line), so two sizes of one experiment do not overwrite each other.
    """
    from posekit.config import cfg_name_of, load_config
    from posekit.models import model_tag
    name = cfg_name_of(cfg_file) if cfg_file else model_tag(cfg)
    if cfg_file:
        try:
            file_size = list(load_config(cfg_file).MODEL.IMAGE_SIZE)
        except ValueError:
            file_size = None
        if file_size != list(cfg.MODEL.IMAGE_SIZE):
            name += '_%dx%d' % tuple(cfg.MODEL.IMAGE_SIZE)
    dataset = cfg.DATASET.DATASET or 'model'
    return os.path.join(root, 'export', dataset, model_tag(cfg), name)


@dataclass
class ExportResult:
    output_dir: str
    files: list = field(default_factory=list)
    parity: list = field(default_factory=list)
    tol: float = PARITY_TOL
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = False
    deploy_config: object = None
    notes: list = field(default_factory=list)

    @property
    def onnx_file(self):
        return next((f for f in self.files if f.endswith('.onnx')), None)

    @property
    def paddle_file(self):
        return next((f for f in self.files if f.endswith(('.json', '.pdmodel'))
                     and os.path.basename(f) != DEPLOY_CONFIG_NAME), None)

    @property
    def max_diff(self):
        return max((r[3] for r in self.parity), default=0.0)

    def failures(self):
        return [r for r in self.parity if not r[3] <= allowed_difference(self.tol, r[4])]

    def describe(self):
        dc = self.deploy_config
        batch = 'N' if self.dynamic_batch else '1'
        lines = ['model  : %s, input image %sx3x%dx%d -> heatmaps %sx%dx%dx%d, opset %d'
                 % (dc.model, batch, dc.input_size[1], dc.input_size[0], batch, dc.num_joints,
                    dc.heatmap_size[1], dc.heatmap_size[0], self.opset)]
        lines.append('written: %s' % self.output_dir)
        for f in self.files:
            lines.append('         %s' % os.path.basename(f))
        if self.parity:
            lines.append('parity : max |heatmap difference| vs the dygraph model (tolerance %.0e%s)'
                         % (self.tol, ' x heatmap max' if any(r[4] > 1 for r in self.parity)
                            else ''))
            for label, key, shape, diff, scale in self.parity:
                lines.append('         %-16s %-6s %-14s %.2e  (heatmap max %.3g)'
                             % (label, key, 'x'.join(map(str, shape)), diff, scale))
        lines.extend('note   : %s' % n for n in self.notes)
        return '\n'.join(lines)


def export_model(model, cfg, output_dir, fmt='both', opset=DEFAULT_OPSET, dynamic_batch=False,
                 tol=PARITY_TOL, check=True, threads=None):
    """Export ``model`` (weights loaded) built from ``cfg`` into ``output_dir``; see the module doc.

    ``fmt`` is 'onnx', 'paddle' or 'both' (the Paddle model is always made, as the source of
    the ONNX conversion, but kept only for 'paddle'/'both'). With ``check``, ONNX Runtime and
    Paddle Inference are compared with the dygraph model (:class:`ParityError` above ``tol``).
    """
    from posekit.config import save_config
    from posekit.runtime import DygraphRunner, check_io, open_runner
    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise ExportError('unknown export format %r; use one of: %s' % (fmt, ', '.join(FORMATS)))
    opset = int(opset)
    if opset < 11:
        # the opset of LANDSCAPE 5.3's recommendation and of every check here
        raise ExportError('opset %d is too old: posekit exports at opset 11 or newer' % opset)
    if opset > MAX_OPSET and fmt != 'paddle':
        raise ExportError('opset %d is newer than paddle2onnx supports (11..%d)'
                          % (opset, MAX_OPSET))
    dc = DeployConfig.from_cfg(cfg)
    model.eval()
    os.makedirs(output_dir, exist_ok=True)
    result = ExportResult(output_dir=output_dir, tol=tol, opset=opset, dynamic_batch=dynamic_batch,
                          deploy_config=dc)
    # Model files of an earlier export into this folder would no longer match deploy_config.json
    # (a stale model.json beside a new model.onnx, an int8 copy of the old weights): remove them.
    stale = [ONNX_NAME, INT8_NAME, PADDLE_PREFIX + '.json', PADDLE_PREFIX + '.pdmodel',
             PADDLE_PREFIX + '.pdiparams']
    removed = [name for name in stale if os.path.isfile(os.path.join(output_dir, name))]
    for name in removed:
        os.remove(os.path.join(output_dir, name))
    if removed:
        result.notes.append('removed the files of an earlier export: %s' % ', '.join(removed))

    inputs = parity_inputs(dc, batch=3 if dynamic_batch else 1) if check else {}
    reference = {}
    if check:
        # dygraph first: the reference is the model as trained, before any conversion
        dygraph = DygraphRunner(model, input_size=dc.input_size)
        reference = {k: dygraph(v) for k, v in inputs.items()}

    keep_paddle = fmt in ('paddle', 'both')
    tmp = None if keep_paddle else tempfile.mkdtemp(prefix='posekit_export_')
    try:
        prefix = os.path.join(output_dir if keep_paddle else tmp, PADDLE_PREFIX)
        model_file, params_file = save_paddle_model(model, prefix, dc.input_size,
                                                    dynamic_batch=dynamic_batch,
                                                    input_name=dc.input_name)
        runners = {}
        if keep_paddle:
            result.files += [model_file, params_file]
        if fmt in ('onnx', 'both'):
            onnx_file = paddle_to_onnx(model_file, params_file, os.path.join(output_dir, ONNX_NAME),
                                       opset=opset, input_name=dc.input_name,
                                       output_name=dc.output_name, dynamic_batch=dynamic_batch)
            result.files.append(onnx_file)
            runners['onnxruntime'] = open_runner(onnx_file, 'onnx', threads=threads)
        runners['paddle inference'] = open_runner(model_file, 'paddle', threads=threads)
        for runner in runners.values():
            check_io(runner, dc)
        if runners['paddle inference'].onednn_note:
            result.notes.append('Paddle Inference runs this model with plain CPU kernels: %s'
                                % runners['paddle inference'].onednn_note)
        if check:
            result.parity = compare_runners(reference, runners, inputs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    result.files.append(dc.save(os.path.join(output_dir, DEPLOY_CONFIG_NAME)))
    result.files.append(save_config(cfg, os.path.join(output_dir, CONFIG_NAME)))
    failed = result.failures()
    if check and failed:
        worst = max(failed, key=lambda r: r[3] / allowed_difference(tol, r[4]))
        raise ParityError('exported heatmaps differ from the dygraph model: max abs difference '
                          '%.3g > %.2g (%s on the %s input, heatmap max %.3g); the files are left '
                          'in %s for inspection'
                          % (worst[3], allowed_difference(tol, worst[4]), worst[0], worst[1],
                             worst[4], output_dir))
    return result
