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
* ``config.yaml`` - the resolved training config the model was built from;
* ``model_int8.onnx`` - with ``quantize='int8'``: the static QDQ int8 copy of ``model.onnx``
  (:mod:`.quantize`), calibrated on the images of ``calib_dir``.

A bottom-up model (SimplePose; ``deploy_config.json`` says ``"pipeline": "bottomup"``) takes
every image at its own padded size: its graph has a free batch, height and width (ONNX input
``image`` ``batch x 3 x height x width``, output ``maps`` ``batch x 50 x map_height x
map_width``; Paddle ``InputSpec [None, 3, None, None]``), the parity check runs two sizes (noise
at ``MODEL.IMAGE_SIZE``, a picture with its mirror at another width, :func:`.parity.
bottomup_parity_inputs`), and ``quantize='int8'`` is refused: its calibration and its check
feed fixed-size person crops and compare heatmap argmaxes, which mean nothing for these maps.

The graph ends at the heatmaps: flip test and decoding (argmax + quarter offset, DARK,
soft-argmax) stay in numpy (``posekit.codec.heatmap``), so every runtime decodes identically and no
runtime needs ArgMax (LANDSCAPE 5.3).

After building, the same inputs (Gaussian noise, and a synthetic picture cropped and normalised by
the library pre-processing) go through the dygraph model, ONNX Runtime and Paddle Inference;
any heatmap difference above ``tol`` (1e-4; relative to the heatmap maximum when that exceeds 1)
raises :class:`ParityError` with the numbers. ``tol`` must be a finite number > 0: 0 would ask
different runtimes for bit-identical heatmaps, which they do not give.

Atomic: every file (and ``model_int8.onnx`` when asked) is built and checked in a sibling folder
of the output folder, which then replaces the output folder in one step
(:func:`posekit.io.atomic_folder`: one ``renameat2(RENAME_EXCHANGE)`` call on Linux). A kill, a
full disk, a failed check or Ctrl-C at any moment leaves the previous export complete - its
model files and the ``deploy_config.json`` that describes them, the same bytes - or the new one
complete, never a mixture, and no temporary file in the output folder (a sibling left by a
killed run is deleted by the next export into that folder). Other files in the output folder
are kept; model files of an earlier export that this one does not make (``model_int8.onnx``,
the Paddle model of an ONNX-only export) are gone afterwards.

The stages live beside this module: :mod:`.paddle_model` (``paddle.jit.save`` and the
export-friendly tracing), :mod:`.onnx_model` (paddle2onnx and the graph tidy-up), :mod:`.parity`
(inputs and the runner comparison); every model is run through the runner contract of
:mod:`posekit.runtime`.
"""
import math
import os
from dataclasses import dataclass, field

from posekit.cli import one_line
from posekit.errors import PosekitError
from posekit.inference.deploy_config import DEPLOY_CONFIG_NAME, DeployConfig
from posekit.io import atomic_folder
from posekit.export.errors import ExportError
from posekit.export.onnx_model import DEFAULT_OPSET, MAX_OPSET, paddle_to_onnx
from posekit.export.paddle_model import save_paddle_model
from posekit.export.parity import (PARITY_TOL, ParityError, allowed_difference, compare_runners,
                                   parity_inputs)
from posekit.export.quantize import INT8_NAME
from posekit.runtime.onnx import ONNX_NAME
from posekit.runtime.paddle_inference import PADDLE_PREFIX

__all__ = ['ExportError', 'ParityError', 'FORMATS', 'DEFAULT_OPSET', 'MAX_OPSET', 'PARITY_TOL',
           'ONNX_NAME', 'PADDLE_PREFIX', 'CONFIG_NAME', 'EXPORT_FILES', 'default_output_dir',
           'check_export_options', 'check_bottomup_export', 'export_model', 'ExportResult']

FORMATS = ('onnx', 'paddle', 'both')
CONFIG_NAME = 'config.yaml'
# The model files an export makes (a previous export's are replaced or removed) ...
MODEL_FILES = (ONNX_NAME, INT8_NAME, PADDLE_PREFIX + '.json', PADDLE_PREFIX + '.pdmodel',
               PADDLE_PREFIX + '.pdiparams')
# ... and every name an export owns in its folder: anything else there is kept. The '.raw' file
# is what an interrupted export of earlier posekit versions left beside model.onnx.
EXPORT_FILES = MODEL_FILES + (DEPLOY_CONFIG_NAME, CONFIG_NAME, ONNX_NAME + '.raw')


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
    int8: object = None  # the QuantizeReport of model_int8.onnx, when asked for

    @property
    def onnx_file(self):
        return next((f for f in self.files if os.path.basename(f) == ONNX_NAME), None)

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
        if dc.input_size is None:
            stride = dc.codec.stride
            lines = ['model  : %s (bottom-up), input image %sx3xHxW (any H, W multiple of %d) '
                     '-> %s %sx%dx(H/%d)x(W/%d), opset %d'
                     % (dc.model, batch, dc.input_spec.multiple, dc.output_name, batch,
                        dc.output_channels, stride, stride, self.opset)]
        else:
            lines = ['model  : %s, input image %sx3x%dx%d -> heatmaps %sx%dx%dx%d, opset %d'
                     % (dc.model, batch, dc.input_size[1], dc.input_size[0], batch,
                        dc.num_joints, dc.heatmap_size[1], dc.heatmap_size[0], self.opset)]
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
        if self.int8 is not None:
            lines.append(self.int8.describe())
        return '\n'.join(lines)


def check_export_options(fmt='both', opset=DEFAULT_OPSET, tol=PARITY_TOL, quantize=None):
    """Validate the options of :func:`export_model` (cheap: callers check before loading a
    model); returns ``(fmt, opset, tol)`` normalised or raises a one-line :class:`ExportError`."""
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
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        tol = float('nan')
    if not (math.isfinite(tol) and tol > 0):
        # 0 would mean bit-identical heatmaps, which different runtimes (kernels, summation
        # order) do not give: the check could never pass
        raise ExportError('the parity tolerance (--tol) must be a finite number > 0, e.g. the '
                          'default %g; 0 would ask the runtimes for bit-identical heatmaps; '
                          'got %s' % (PARITY_TOL, tol))
    if quantize not in (None, 'int8'):
        raise ExportError('unknown quantisation %r; the one available is int8' % (quantize,))
    if quantize and fmt == 'paddle':
        raise ExportError('--quantize int8 quantises the ONNX model: use --format onnx or both')
    return fmt, opset, tol


def check_bottomup_export(quantize=None):
    """Raise a one-line :class:`ExportError` for an option a bottom-up model cannot take."""
    if quantize:
        raise ExportError('--quantize int8 is for top-down models: its calibration and check feed '
                          'fixed-size person crops and compare heatmap peaks; a bottom-up model '
                          'takes whole images of any size - export it without --quantize')


def _kept_note(output_dir):
    """What a failed export leaves, for its one-line error."""
    if any(os.path.isfile(os.path.join(output_dir, name)) for name in MODEL_FILES):
        return 'the previous export in %s is unchanged' % output_dir
    return 'nothing was written to %s' % output_dir


def _build(model, cfg, dc, build, fmt, opset, dynamic_batch, tol, check, require_parity,
           threads, quantize, calib_dir, calib_num, result):
    """Make and check every file of the export in the folder ``build``; returns their names.

    Order: the Paddle model, the ONNX model, the parity check (the slow part), then the small
    files and the int8 copy; the caller puts the folder in place only after all of it."""
    from posekit.config import save_config
    from posekit.runtime import DygraphRunner, check_io, open_runner
    inputs = (parity_inputs(dc, batch=3 if dynamic_batch else 1, size=cfg.MODEL.IMAGE_SIZE)
              if check else {})
    reference = {}
    if check:
        # dygraph first: the reference is the model as trained, before any conversion
        dygraph = DygraphRunner(model, input_size=dc.input_size)
        reference = {k: dygraph(v) for k, v in inputs.items()}

    prefix = os.path.join(build, PADDLE_PREFIX)
    model_file, params_file = save_paddle_model(model, prefix, dc.input_size,
                                                dynamic_batch=dynamic_batch,
                                                input_name=dc.input_name)
    # the Paddle model is always made: it is the source of the ONNX conversion
    names = [os.path.basename(model_file), os.path.basename(params_file)]
    runners = {}
    if fmt in ('onnx', 'both'):
        onnx_file = paddle_to_onnx(model_file, params_file, os.path.join(build, ONNX_NAME),
                                   opset=opset, input_name=dc.input_name,
                                   output_name=dc.output_name, dynamic_batch=dynamic_batch,
                                   dynamic_size=dc.input_size is None)
        names.append(ONNX_NAME)
        runners['onnxruntime'] = open_runner(onnx_file, 'onnx', threads=threads)
    runners['paddle inference'] = open_runner(model_file, 'paddle', threads=threads)
    for runner in runners.values():
        check_io(runner, dc)
    if runners['paddle inference'].onednn_note:
        result.notes.append('Paddle Inference runs this model with plain CPU kernels: %s'
                            % runners['paddle inference'].onednn_note)
    if check:
        result.parity = compare_runners(reference, runners, inputs)
        failed = result.failures()
        if failed:
            worst = max(failed, key=lambda r: r[3] / allowed_difference(tol, r[4]))
            error = ParityError('exported heatmaps differ from the dygraph model: max abs '
                                'difference %.3g > %.2g (%s on the %s input, heatmap max %.3g)'
                                % (worst[3], allowed_difference(tol, worst[4]), worst[0],
                                   worst[1], worst[4]))
            if require_parity:
                raise error
            result.notes.append('parity check failed, exported anyway: %s' % error)
    del runners  # release the sessions before their files may be removed
    if fmt == 'onnx':
        for name in names[:2]:
            os.remove(os.path.join(build, name))
        names = names[2:]
    names.append(os.path.basename(dc.save(os.path.join(build, DEPLOY_CONFIG_NAME))))
    names.append(os.path.basename(save_config(cfg, os.path.join(build, CONFIG_NAME))))
    if quantize:
        from posekit.export.quantize import quantize_model
        result.int8 = quantize_model(os.path.join(build, ONNX_NAME),
                                     os.path.join(build, INT8_NAME), calib_dir, dc,
                                     num=calib_num, threads=threads)
        names.append(INT8_NAME)
    return names


def export_model(model, cfg, output_dir, fmt='both', opset=DEFAULT_OPSET, dynamic_batch=False,
                 tol=PARITY_TOL, check=True, threads=None, quantize=None, calib_dir='',
                 calib_num=None, require_parity=True):
    """Export ``model`` (weights loaded) built from ``cfg`` into ``output_dir``; see the module doc.

    ``fmt`` is 'onnx', 'paddle' or 'both' (the Paddle model is always made, as the source of
    the ONNX conversion, but kept only for 'paddle'/'both'). With ``check``, ONNX Runtime and
    Paddle Inference are compared with the dygraph model (:class:`ParityError` above ``tol``;
    with ``require_parity=False`` - for latency measurements, where the numbers matter less than
    the graph - the failure is a note of the result and the files are installed anyway).
    ``quantize='int8'`` adds ``model_int8.onnx`` calibrated on the images of ``calib_dir`` (at
    most ``calib_num``). Nothing in ``output_dir`` changes unless every step succeeds; every
    error says so.
    """
    fmt, opset, tol = check_export_options(fmt, opset, tol, quantize)
    dc = DeployConfig.from_cfg(cfg)
    if dc.is_bottom_up:
        check_bottomup_export(quantize)
        dynamic_batch = True   # [image, mirror] for the flip test, any size
    model.eval()
    result = ExportResult(output_dir=output_dir, tol=tol, opset=opset, dynamic_batch=dynamic_batch,
                          deploy_config=dc)
    kept = _kept_note(output_dir)
    build = None
    try:
        with atomic_folder(output_dir, owned=EXPORT_FILES) as build:
            names = _build(model, cfg, dc, build, fmt, opset, dynamic_batch, tol, check,
                           require_parity, threads, quantize, calib_dir, calib_num, result)
            replaced = [n for n in MODEL_FILES
                        if n not in names and os.path.isfile(os.path.join(output_dir, n))]
    except (PosekitError, OSError) as e:
        # One line that names the file by its name in the export (the folder it was built in
        # is gone) and says what the output folder holds now.
        if isinstance(e, OSError) and e.strerror:
            text = 'cannot write %s: %s' % (e.filename or 'the export', e.strerror)
        else:
            text = one_line(e)
        if build:
            text = text.replace(build + os.sep, '')
        text = '%s; %s' % (text.rstrip('.'), kept)
        if isinstance(e, PosekitError):
            e.args = (text,)
            raise
        raise ExportError(text) from e
    if replaced:
        # model files of an earlier export that would no longer match deploy_config.json
        result.notes.append('removed the files of an earlier export: %s' % ', '.join(replaced))
    result.files = [os.path.join(output_dir, name) for name in names]
    if result.int8 is not None:
        result.int8.int8_path = os.path.join(output_dir, INT8_NAME)
    return result
