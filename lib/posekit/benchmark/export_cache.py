"""Export once, reuse while nothing changed: one benchmark model folder per model.

``<work dir>/<model slug>/`` holds ``weights.pdparams`` (seeded, conditioned random weights, see
:mod:`posekit.benchmark.models`), the exported models of :func:`posekit.export.exporter.
export_model` (ONNX + Paddle inference model), ``model_int8.onnx`` (static QDQ int8 from
:func:`posekit.export.quantize.quantize_model`), the synthetic ``calib_images/`` and
``bench_manifest.json``, written after every step.

What makes a folder reusable is fingerprinted:

* the manifest's ``key``: the model label, the sha256 of the fully resolved config, the seed,
  the number of calibration pictures and the versions of paddlepaddle, paddle2onnx and
  onnxruntime. A different key rebuilds everything (weights, export, int8);
* the export and the int8 model record the sha256 of the weights file they were made from;
  when the weights file changes they are made again from it.

A step that fails is recorded in the manifest (``export_error``, ``int8_error``) so that the
benchmark reports it as a table cell; a failed export is retried on the next run. Nothing here
imports Paddle at import time: an orchestrating process reads manifests without it.
"""
import hashlib
import json
import os

from posekit.benchmark.failures import short_reason
from posekit.benchmark.machine import versions

__all__ = ['MANIFEST', 'WEIGHTS', 'CALIB_DIR', 'PREPARE_VERSION', 'SEED', 'CALIB_IMAGES',
           'CALIB_SIZE', 'slug', 'model_dir', 'config_fingerprint', 'file_sha256',
           'cache_key', 'read_manifest', 'cached_manifest', 'export_is_current', 'needs_prepare',
           'prepare', 'benchmark_runner', 'precheck_error']

MANIFEST = 'bench_manifest.json'
WEIGHTS = 'weights.pdparams'
CALIB_DIR = 'calib_images'
# Bump when the preparation changes (conditioning, export options): cached folders are redone.
PREPARE_VERSION = 2
SEED = 0
CALIB_IMAGES = 8             # synthetic pictures for the BN statistics and int8 calibration
CALIB_SIZE = (288, 384)      # [W, H]: one person filling a 3:4 picture, like a person box
EXPORT_OPSET = 11
# the backends that run the exported models (the dygraph one needs only the weights)
_EXPORTED = ('paddle', 'onnx', 'onnx-int8')


def slug(label):
    return ''.join(c if c.isalnum() else '_' for c in label.lower())


def model_dir(work_dir, label):
    return os.path.join(work_dir, slug(label))


def config_fingerprint(cfg):
    """sha256 of the resolved config (every key, defaults included, in a canonical order)."""
    from posekit.config import config_to_dict
    text = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(',', ':'), default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def file_sha256(path):
    """sha256 of a file's bytes, or None when it does not exist."""
    h = hashlib.sha256()
    try:
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def cache_key(label, cfg, seed=SEED, calib_images=CALIB_IMAGES):
    """What a prepared folder is made from (see the module doc); compared as a whole."""
    v = versions()
    return {'version': PREPARE_VERSION, 'model': label, 'config': config_fingerprint(cfg),
            'seed': int(seed), 'calib_images': int(calib_images),
            'paddlepaddle': v['paddlepaddle'], 'paddle2onnx': v['paddle2onnx'],
            'onnxruntime': v['onnxruntime']}


def read_manifest(folder):
    """The manifest of ``folder``, or None (missing or unreadable: the folder is redone)."""
    try:
        with open(os.path.join(folder, MANIFEST), 'r', encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cached_manifest(folder, key):
    """The manifest of an earlier preparation of ``folder`` if it was made from ``key``."""
    m = read_manifest(folder)
    if not m or m.get('key') != key:
        return None
    return m


def _write_manifest(folder, manifest):
    from posekit.io import write_json
    write_json(os.path.join(folder, MANIFEST), manifest, indent=1)


def _weights_current(folder, manifest):
    return bool(manifest.get('weights')) and manifest.get('weights_sha256') is not None \
        and file_sha256(os.path.join(folder, manifest['weights'])) == manifest['weights_sha256']


def export_is_current(folder, manifest, part='export'):
    """Whether the manifest's ``part`` ('export' or 'int8') was made from the weights file that
    is in ``folder`` now."""
    made = (manifest or {}).get(part)
    if not made or not manifest.get('weights'):
        return False
    return made.get('weights_sha256') == file_sha256(os.path.join(folder, manifest['weights']))


def needs_prepare(folder, manifest, backends):
    """Whether :func:`prepare` has something to do for ``backends`` (a cheap check)."""
    if manifest is None or not manifest.get('weights') \
            or not os.path.isfile(os.path.join(folder, manifest['weights'])):
        return True
    if any(b in backends for b in _EXPORTED):
        if manifest.get('export_error'):
            return True  # retried: it may have been fixed since
        if not export_is_current(folder, manifest):
            return True
    if 'onnx-int8' in backends and not export_is_current(folder, manifest, 'int8'):
        return True
    return False


def _new_manifest(key):
    return {'key': key, 'weights': None, 'weights_sha256': None, 'export': None,
            'export_error': None, 'notes': [], 'int8': None, 'int8_error': None}


def prepare(folder, cfg, key, want_int8=False, calib_size=CALIB_SIZE):
    """Make (or complete) the model folder of ``cfg`` for ``key`` (:func:`cache_key`): weights,
    exported models and, with ``want_int8``, the int8 model. Steps whose result is still current
    are skipped. Returns the manifest (also written to the folder)."""
    from posekit.checkpoint import load_checkpoint, save_paddle_state_dict
    from posekit.export.quantize import INT8_NAME, load_calibration_inputs
    from posekit.inference.deploy_config import DeployConfig
    from posekit.benchmark.models import condition_model, seeded_model, write_calibration_pictures

    os.makedirs(folder, exist_ok=True)
    manifest = cached_manifest(folder, key) or _new_manifest(key)
    dc = DeployConfig.from_cfg(cfg)
    calib_dir = os.path.join(folder, CALIB_DIR)
    paths = write_calibration_pictures(calib_dir, key['calib_images'], calib_size, key['seed'] + 1)
    calib = load_calibration_inputs(paths, dc)[0]

    model = seeded_model(cfg, key['seed'])
    weights = os.path.join(folder, WEIGHTS)
    if manifest['weights'] and os.path.isfile(weights):
        load_checkpoint(model, weights)
        model.eval()
        if not _weights_current(folder, manifest):  # changed since: exports follow the file
            manifest['weights_sha256'] = file_sha256(weights)
            _write_manifest(folder, manifest)
    else:
        note = condition_model(model, calib)
        save_paddle_state_dict(model, weights)
        manifest.update(weights=WEIGHTS, weights_sha256=file_sha256(weights), notes=[note],
                        export=None, int8=None)
        _write_manifest(folder, manifest)

    if not export_is_current(folder, manifest):  # also retries an export that failed
        from posekit.export.exporter import export_model
        manifest.update(export=None, export_error=None, int8=None)
        manifest['notes'] = manifest['notes'][:1]  # the weights note; export notes are redone
        try:
            # a failed parity check still installs the files (latency is meaningful), and the
            # exporter's note says so beside the table
            result = export_model(model, cfg, folder, fmt='both', opset=EXPORT_OPSET,
                                  require_parity=False)
            manifest['notes'] += result.notes
            manifest['export'] = {'onnx': os.path.basename(result.onnx_file),
                                  'paddle': os.path.basename(result.paddle_file),
                                  'max_parity_diff': result.max_diff}
        except Exception as e:  # noqa: BLE001  (any export failure is a table cell)
            manifest['export_error'] = 'export: ' + short_reason(e)
        if manifest['export']:
            manifest['export']['weights_sha256'] = manifest['weights_sha256']
        _write_manifest(folder, manifest)

    if want_int8 and manifest.get('export') and not export_is_current(folder, manifest, 'int8'):
        from posekit.export.quantize import quantize_model
        manifest.update(int8=None, int8_error=None)
        try:
            report = quantize_model(os.path.join(folder, manifest['export']['onnx']),
                                    os.path.join(folder, INT8_NAME), calib_dir, dc, threads=1)
            manifest['int8'] = {'onnx': INT8_NAME, 'agreement': report.agreement,
                                'weights_sha256': manifest['weights_sha256']}
        except Exception as e:  # noqa: BLE001
            manifest['int8_error'] = 'int8: ' + short_reason(e)
        _write_manifest(folder, manifest)
    return manifest


def precheck_error(manifest, backend):
    """Why ``backend`` cannot run from this manifest (a table cell), or None."""
    if not manifest or manifest.get('weights_error') or not manifest.get('weights'):
        return (manifest or {}).get('weights_error') or 'not prepared'
    if backend in ('paddle', 'onnx') and manifest.get('export_error'):
        return manifest['export_error']
    if backend == 'onnx-int8' and not manifest.get('int8'):
        return manifest.get('export_error') or manifest.get('int8_error') or 'int8: not made'
    return None


def benchmark_runner(backend, folder, cfg, manifest, threads, name=None):
    """The runner of ``backend`` for a prepared folder: the dygraph model with the folder's
    weights, or the exported model in Paddle Inference / ONNX Runtime (fp32 or int8)."""
    from posekit.runtime import build_runner
    if backend == 'dygraph':
        import paddle
        from posekit.checkpoint import load_checkpoint
        from posekit.models import build_model
        from posekit.runtime import DygraphRunner
        model = build_model(cfg)
        load_checkpoint(model, os.path.join(folder, manifest['weights']))
        paddle.set_grad_enabled(False)
        return DygraphRunner(model, input_size=cfg.MODEL.IMAGE_SIZE, name=name)
    if backend in ('paddle', 'onnx') and manifest.get('export_error'):
        raise RuntimeError(manifest['export_error'])
    if backend == 'paddle':
        return build_runner('paddle', os.path.join(folder, manifest['export']['paddle']),
                            threads=threads)
    if backend == 'onnx':
        return build_runner('onnx', os.path.join(folder, manifest['export']['onnx']),
                            threads=threads)
    if backend == 'onnx-int8':
        if not manifest.get('int8'):
            raise RuntimeError(manifest.get('int8_error') or manifest.get('export_error')
                               or 'int8: no quantised model')
        return build_runner('onnx', os.path.join(folder, manifest['int8']['onnx']),
                            threads=threads)
    raise ValueError('unknown backend %r' % backend)
