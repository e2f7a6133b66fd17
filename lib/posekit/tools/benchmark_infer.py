"""CPU inference latency per person: Paddle dygraph, Paddle Inference, ONNX Runtime fp32 / int8.

    python pose_estimation/benchmark_infer.py                       # everything (slow: 40 runs)
    python pose_estimation/benchmark_infer.py --models SimpleNet,LPN-50 --runs 10
    python pose_estimation/benchmark_infer.py --quick --models SimpleNet --backends onnx,dygraph

Prints markdown tables for the README (rows: model x backend; columns: threads x flip test), in
milliseconds per person, the median of ``--runs`` timed runs after ``--warmup`` untimed ones:

* end to end: :meth:`posekit.inference.predictor.TopDownPredictor.predict` on one 640x480 synthetic image
  with one person box (crop, normalise, network, flip test, decode);
* inference only: the predictor's ``inference`` stage of those same calls, i.e. the runner call
  (two calls and the heatmap fusion with the flip test).

The weights are random (seeded): latency does not depend on their values. BatchNorm statistics
are set from a forward pass on synthetic pictures (each BN layer gets the mean/variance of its
own input), so every layer sees activations of a trained network's range - no overflow, no
denormals - and the final layer is scaled so heatmaps peak near 1. Each model is exported once
into ``--work-dir`` (ONNX opset 11 + Paddle inference model through :func:`posekit.export.exporter.
export_model`, static QDQ int8 through :func:`posekit.export.quantize.quantize_model` calibrated on
synthetic pictures) and reused by later runs.

Threads: every (model, backend, threads) configuration runs in its own subprocess (this script
with ``--single``) whose environment has ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set: Paddle
reads ``OMP_NUM_THREADS`` once, at import, for its dygraph CPU kernels (it sets it to 1 when
unset, and ``FLAGS_paddle_num_threads`` does not change dygraph), and an OpenMP pool is per
process. Paddle Inference also gets ``set_cpu_math_library_num_threads`` and ONNX Runtime
``intra_op_num_threads`` (posekit.runtime). A configuration that fails - an export, an int8
conversion, a runtime error, a crash, a timeout - is a "failed: <reason>" cell, not a crash.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MODELS = [
    # label, experiment (COCO, 256x192)
    ('SimpleNet', 'experiments/coco/mobile/256x192_d256x3_adam_lr1e-3.yaml'),
    ('LPN-50', 'experiments/coco/lpn/lpn50_256x192_gd256x2_gc.yaml'),
    ('PoseResNet-50', 'experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml'),
    ('HRNet-W32', 'experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml'),
    ('HRNet-W18-small-v2', 'experiments/coco/hrnet/w18_small_v2_256x192_adam_lr1e-3.yaml'),
]
BACKENDS = [
    # key, label in the table
    ('dygraph', 'Paddle dygraph'),
    ('paddle', 'Paddle Inference (oneDNN)'),
    ('onnx', 'ONNX Runtime fp32'),
    ('onnx-int8', 'ONNX Runtime int8'),
]
# The goals of the issue: flip test on, end to end, 1 thread, per person.
TARGETS = [('LPN-50', 50.0), ('SimpleNet', 15.0)]

SEED = 0
IMAGE_SIZE = (640, 480)      # [W, H] of the benchmark picture (one person box in it)
CALIB_IMAGES = 8             # synthetic pictures for the BN statistics and int8 calibration
CALIB_SIZE = (288, 384)      # [W, H]: one person filling a 3:4 picture, like a person box
MANIFEST = 'bench_manifest.json'
WEIGHTS = 'weights.pdparams'
CALIB_DIR = 'calib_images'
# Bump when the preparation changes (weights, export options): cached exports are then redone.
PREPARE_VERSION = 1
REASON_CHARS = 60
# an absolute path inside an error message: only its file name is kept in a table cell
_PATH = re.compile(r'(?:/[^\s/:\'"]+)+/([^\s/:\'"]+)')


# -- small helpers ------------------------------------------------------------------------------

def slug(label):
    return ''.join(c if c.isalnum() else '_' for c in label.lower())


def short_reason(error, limit=REASON_CHARS):
    """The most telling line of an error (C++ tracebacks included), cut to ``limit`` chars."""
    text = error if isinstance(error, str) else (str(error).strip() or type(error).__name__)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    pick = next((ln for ln in lines if 'Error:' in ln and not ln.startswith('In user code')),
                lines[0] if lines else 'unknown error')
    pick = _PATH.sub(r'\1', pick).replace('|', '/')  # short, and keeps markdown cells intact
    return pick if len(pick) <= limit else pick[:limit - 3] + '...'


def last_error_line(stderr):
    """The last line of a subprocess's stderr that looks like an error (for crashes)."""
    lines = [ln.strip() for ln in (stderr or '').splitlines() if ln.strip()]
    for ln in reversed(lines):
        if 'Error' in ln or 'error' in ln or 'Abort' in ln or 'fault' in ln:
            return ln
    return lines[-1] if lines else ''


def read_json(path):
    try:
        with open(path, 'r', encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path, data):
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=1)
        f.write('\n')
    os.replace(tmp, path)


def versions():
    """Library versions without importing paddle in the parent (it only orchestrates)."""
    from importlib import metadata
    out = {}
    for dist in ('paddlepaddle', 'paddle2onnx', 'onnxruntime', 'onnx', 'numpy'):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def cpu_name():
    try:
        with open('/proc/cpuinfo', 'r') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_dir(work_dir, label):
    return os.path.join(work_dir, slug(label))


def prepare_key(label, experiment):
    v = versions()
    return {'version': PREPARE_VERSION, 'model': label, 'experiment': experiment, 'seed': SEED,
            'calib_images': CALIB_IMAGES, 'paddlepaddle': v['paddlepaddle'],
            'paddle2onnx': v['paddle2onnx'], 'onnxruntime': v['onnxruntime']}


def cached_manifest(work_dir, label, experiment):
    """The manifest of a previous preparation of this model, if it is still valid."""
    m = read_json(os.path.join(model_dir(work_dir, label), MANIFEST))
    if not m or m.get('key') != prepare_key(label, experiment):
        return None
    return m


def needs_prepare(manifest, backends):
    if manifest is None or not manifest.get('weights'):
        return True
    if any(b in backends for b in ('paddle', 'onnx', 'onnx-int8')) and manifest.get('export_error'):
        return True  # retried: it may have been fixed since
    if 'onnx-int8' in backends and not manifest.get('int8'):
        return True
    return False


# -- preparation (in a subprocess): weights, export, int8 ---------------------------------------

def synthetic_pictures(count, size, seed):
    """``count`` real-looking BGR pictures with one person each, and that person's box."""
    import numpy as np
    from posekit.data.synthetic import render_scene
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image, people = render_scene(rng, image_size=size, max_people=1)
        box = people[0]['bbox'] if people and min(people[0]['bbox'][2:]) > 1 else None
        out.append((image, box))
    return out


def calibrate_batchnorm(model, batch):
    """Set every BatchNorm's running mean/variance to the statistics of its own input on
    ``batch`` (N, 3, H, W), in one eval-mode forward pass: each layer then normalises what it
    actually receives, as in a trained network."""
    import paddle
    handles = []

    def hook(layer, inputs):
        x = inputs[0]
        axes = [0] + list(range(2, x.ndim))
        layer._mean.set_value(x.mean(axis=axes))
        layer._variance.set_value(x.var(axis=axes, unbiased=False))

    for layer in model.sublayers():
        if hasattr(layer, '_mean') and hasattr(layer, '_variance'):
            handles.append(layer.register_forward_pre_hook(hook))
    model.eval()
    with paddle.no_grad():
        model(paddle.to_tensor(batch))
    for h in handles:
        h.remove()  # before export: the traced graph must not contain the hook
    return len(handles)


def scale_final_layer(model, batch):
    """Scale the last 1x1 convolution so that heatmaps peak near 1, like a trained model's."""
    import paddle
    final = getattr(model, 'final_layer', None)
    if final is None or not hasattr(final, 'weight'):
        return None
    with paddle.no_grad():
        peak = float(paddle.abs(model(paddle.to_tensor(batch))).max())
    if peak > 0:
        final.weight.set_value(final.weight.numpy() / peak)
        if getattr(final, 'bias', None) is not None:
            final.bias.set_value(final.bias.numpy() / peak)
    return peak


def prepare(label, experiment, work_dir, want_int8):
    """Make (or complete) the model folder: weights, exported models, int8; write the manifest."""
    import cv2
    import numpy as np
    import paddle
    from posekit.config import load_config
    from posekit.inference.deploy_config import DeployConfig
    from posekit.models import build_model
    from posekit.export.quantize import INT8_NAME, whole_image_input

    out = model_dir(work_dir, label)
    os.makedirs(out, exist_ok=True)
    manifest = cached_manifest(work_dir, label, experiment)
    if manifest is None:
        manifest = {'key': prepare_key(label, experiment), 'weights': None, 'export': None,
                    'export_error': None, 'notes': [], 'int8': None, 'int8_error': None}
    cfg = load_config(os.path.join(ROOT, experiment))
    dc = DeployConfig.from_cfg(cfg)
    calib_dir = os.path.join(out, CALIB_DIR)
    if not os.path.isdir(calib_dir) or len(os.listdir(calib_dir)) < CALIB_IMAGES:
        os.makedirs(calib_dir, exist_ok=True)
        for i, (image, _) in enumerate(synthetic_pictures(CALIB_IMAGES, CALIB_SIZE, SEED + 1)):
            cv2.imwrite(os.path.join(calib_dir, 'calib_%02d.png' % i), image)
    calib = np.stack([whole_image_input(cv2.imread(os.path.join(calib_dir, f)), dc)
                      for f in sorted(os.listdir(calib_dir))]).astype(np.float32)

    paddle.seed(SEED)
    model = build_model(cfg)
    weights = os.path.join(out, WEIGHTS)
    if manifest['weights'] and os.path.isfile(weights):
        model.set_state_dict(paddle.load(weights))
    else:
        n_bn = calibrate_batchnorm(model, calib)
        peak = scale_final_layer(model, calib)
        paddle.save(model.state_dict(), weights)
        manifest['weights'] = WEIGHTS
        manifest['notes'] = ['random seeded weights; %d BatchNorm layers set from synthetic '
                             'pictures; raw heatmap peak %.3g scaled to 1' % (n_bn, peak or 0)]
        manifest['export'] = manifest['int8'] = None
        write_json(os.path.join(out, MANIFEST), manifest)
    model.eval()

    if not manifest.get('export'):
        from posekit.export.exporter import ParityError, export_model
        manifest['export_error'] = None
        try:
            result = export_model(model, cfg, out, fmt='both', opset=11)
            manifest['notes'] += result.notes
            manifest['export'] = {'onnx': os.path.basename(result.onnx_file),
                                  'paddle': os.path.basename(result.paddle_file),
                                  'max_parity_diff': result.max_diff}
        except ParityError as e:
            # the files are written; latency is still meaningful, say so beside the table
            manifest['export'] = {'onnx': 'model.onnx', 'paddle': 'model.json'}
            manifest['notes'].append('parity check: ' + short_reason(e, 200))
        except Exception as e:  # noqa: BLE001  (any export failure is a table cell)
            manifest['export_error'] = 'export: ' + short_reason(e)
        write_json(os.path.join(out, MANIFEST), manifest)

    if want_int8 and manifest.get('export') and not manifest.get('int8'):
        from posekit.export.quantize import quantize_model
        manifest['int8_error'] = None
        try:
            report = quantize_model(os.path.join(out, manifest['export']['onnx']),
                                    os.path.join(out, INT8_NAME), calib_dir, dc, threads=1)
            manifest['int8'] = {'onnx': INT8_NAME, 'agreement': report.agreement}
        except Exception as e:  # noqa: BLE001
            manifest['int8_error'] = 'int8: ' + short_reason(e)
        write_json(os.path.join(out, MANIFEST), manifest)
    return manifest


# -- one timed configuration (in a subprocess) --------------------------------------------------

def build_runner_for(backend, label, experiment, work_dir, threads, manifest):
    from posekit.runtime import DygraphRunner, OnnxRunner, PaddleInferenceRunner
    out = model_dir(work_dir, label)
    if backend == 'dygraph':
        import paddle
        from posekit.checkpoint import load_checkpoint
        from posekit.config import load_config
        from posekit.models import build_model
        cfg = load_config(os.path.join(ROOT, experiment))
        model = build_model(cfg)
        load_checkpoint(model, os.path.join(out, manifest['weights']))
        paddle.set_grad_enabled(False)
        return DygraphRunner(model, input_size=cfg.MODEL.IMAGE_SIZE, name=label)
    if backend in ('paddle', 'onnx') and manifest.get('export_error'):
        raise RuntimeError(manifest['export_error'])
    if backend == 'paddle':
        return PaddleInferenceRunner(os.path.join(out, manifest['export']['paddle']),
                                     threads=threads)
    if backend == 'onnx':
        return OnnxRunner(os.path.join(out, manifest['export']['onnx']), threads=threads)
    if backend == 'onnx-int8':
        if not manifest.get('int8'):
            raise RuntimeError(manifest.get('int8_error') or manifest.get('export_error')
                               or 'int8: no quantised model')
        return OnnxRunner(os.path.join(out, manifest['int8']['onnx']), threads=threads)
    raise ValueError('unknown backend %r' % backend)


def summary(values):
    import numpy as np
    v = np.asarray(values, dtype=np.float64)
    return {'median': float(np.median(v)), 'min': float(v.min()),
            'p10': float(np.percentile(v, 10)), 'p90': float(np.percentile(v, 90)),
            'samples': [round(float(x), 4) for x in v]}


def time_predictor(deploy_config, runner, image, boxes, runs, warmup):
    """Milliseconds per ``predict`` call (one box = one person), flip off and on interleaved so
    that a load change on a shared machine hits both alike."""
    from posekit.inference.predictor import TopDownPredictor
    predictors = {'off': TopDownPredictor(deploy_config, runner, flip_test=False),
                  'on': TopDownPredictor(deploy_config, runner, flip_test=True)}
    for _ in range(warmup):
        for p in predictors.values():
            p.predict(image, boxes)
    samples = {f: {'e2e': [], 'inference': [], 'preprocess': [], 'decode': []} for f in predictors}
    for _ in range(runs):
        for flip, p in predictors.items():
            t0 = time.perf_counter()
            result = p.predict(image, boxes)
            dt = (time.perf_counter() - t0) * 1e3
            if len(result) != 1:
                raise RuntimeError('expected one person, got %d' % len(result))
            s = samples[flip]
            s['e2e'].append(dt)
            for stage in ('inference', 'preprocess', 'decode'):
                s[stage].append(result.timings[stage])
    return {flip: {k: summary(v) for k, v in s.items()} for flip, s in samples.items()}


def run_single(args):
    """Time one (model, backend, threads) configuration; writes a json result to --out."""
    label, backend, threads = args.single[0], args.single[1], int(args.single[2])
    experiment = dict(MODELS)[label]
    res = {'model': label, 'backend': backend, 'threads': threads, 'status': 'failed',
           'error': None, 'note': None, 'env_omp': os.environ.get('OMP_NUM_THREADS')}
    try:
        from posekit.config import load_config
        from posekit.inference.deploy_config import DeployConfig
        manifest = cached_manifest(args.work_dir, label, experiment)
        if manifest is None:
            raise RuntimeError('model not prepared in %s' % args.work_dir)
        runner = build_runner_for(backend, label, experiment, args.work_dir, threads, manifest)
        if getattr(runner, 'onednn_note', None):
            res['note'] = runner.onednn_note
        # from the config, not the exported deploy_config.json: dygraph needs no export
        dc = DeployConfig.from_cfg(load_config(os.path.join(ROOT, experiment)))
        image, box = synthetic_pictures(1, IMAGE_SIZE, SEED + 2)[0]
        boxes = None if box is None else [box]
        res['timings'] = time_predictor(dc, runner, image, boxes, args.runs, args.warmup)
        res['box'] = box
        res['status'] = 'ok'
    except Exception as e:  # noqa: BLE001  (reported in the table)
        res['error'] = short_reason(e)
    write_json(args.out, res)
    return 0


# -- orchestration (parent process: never imports paddle) ---------------------------------------

def subprocess_env(threads):
    env = dict(os.environ)
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        env[var] = str(threads)
    env.setdefault('GLOG_minloglevel', '2')
    env['PYTHONWARNINGS'] = 'ignore'
    return env


def run_child(argv, threads, timeout):
    """Run this script with ``argv``; returns (returncode or None on timeout, stderr)."""
    cmd = [sys.executable, os.path.abspath(__file__)] + argv
    try:
        proc = subprocess.run(cmd, env=subprocess_env(threads), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, ''
    return proc.returncode, proc.stderr


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def orchestrate(args, models, backends, threads_list):
    results = []
    manifests = {}
    total = len(models) * len(backends) * len(threads_list)
    done = 0
    for label, experiment in models:
        manifest = cached_manifest(args.work_dir, label, experiment)
        if needs_prepare(manifest, backends):
            log('preparing %s in %s (weights, export%s)...'
                % (label, model_dir(args.work_dir, label),
                   ', int8' if 'onnx-int8' in backends else ''))
            t0 = time.perf_counter()
            argv = ['--prepare', label, '--work-dir', args.work_dir]
            if 'onnx-int8' in backends:
                argv.append('--int8')
            rc, err = run_child(argv, 1, args.timeout)
            manifest = cached_manifest(args.work_dir, label, experiment)
            prep_error = None
            if rc is None:
                prep_error = 'prepare: timeout after %ds' % args.timeout
            elif rc != 0:
                prep_error = 'prepare: ' + short_reason(last_error_line(err) or 'exit %d' % rc)
            if prep_error:
                log('  ' + prep_error)
                manifest = manifest or {}
                manifest.setdefault('notes', [])
                if not manifest.get('weights'):
                    manifest['weights_error'] = prep_error
                if not manifest.get('export'):
                    manifest['export_error'] = manifest.get('export_error') or prep_error
                if 'onnx-int8' in backends and not manifest.get('int8'):
                    manifest['int8_error'] = manifest.get('int8_error') or prep_error
            log('  done in %.0f s' % (time.perf_counter() - t0))
        manifests[label] = manifest
        for backend in backends:
            for threads in threads_list:
                done += 1
                res = {'model': label, 'backend': backend, 'threads': threads,
                       'status': 'failed', 'error': None, 'note': None}
                pre = precheck_error(manifest, backend)
                if pre:
                    res['error'] = pre
                else:
                    with tempfile.NamedTemporaryFile(suffix='.json', delete=False) as f:
                        out = f.name
                    try:
                        argv = ['--single', label, backend, str(threads), '--out', out,
                                '--work-dir', args.work_dir, '--runs', str(args.runs),
                                '--warmup', str(args.warmup)]
                        rc, err = run_child(argv, threads, args.timeout)
                        got = read_json(out)
                    finally:
                        os.unlink(out)
                    if got:
                        res = got
                    elif rc is None:
                        res['error'] = 'timeout after %d s' % args.timeout
                    else:
                        res['error'] = short_reason(last_error_line(err)
                                                    or 'crashed (exit %s)' % rc)
                results.append(res)
                log('[%d/%d] %s, %s, %d thread%s: %s' % (
                    done, total, label, backend, threads, '' if threads == 1 else 's',
                    progress_text(res)))
    return results, manifests


def precheck_error(manifest, backend):
    if not manifest or manifest.get('weights_error') or not manifest.get('weights'):
        return (manifest or {}).get('weights_error') or 'not prepared'
    if backend in ('paddle', 'onnx') and manifest.get('export_error'):
        return manifest['export_error']
    if backend == 'onnx-int8' and not manifest.get('int8'):
        return manifest.get('export_error') or manifest.get('int8_error') or 'int8: not made'
    return None


def progress_text(res):
    if res.get('status') != 'ok':
        return 'failed: %s' % res.get('error')
    t = res['timings']
    return 'e2e %.1f / %.1f ms, inference %.1f / %.1f ms (flip off / on)' % (
        t['off']['e2e']['median'], t['on']['e2e']['median'],
        t['off']['inference']['median'], t['on']['inference']['median'])


# -- report -------------------------------------------------------------------------------------

def cell(res, flip, what):
    if res is None:
        return '-'
    if res.get('status') != 'ok':
        return 'failed: %s' % res.get('error')
    return '%.1f' % res['timings'][flip][what]['median']


def backend_label(key, rows):
    label = dict(BACKENDS)[key]
    if key == 'paddle' and any(r.get('note') for r in rows):
        label = 'Paddle Inference (plain CPU&ast;)'
    return label


def markdown_tables(results, models, backends, threads_list, runs, warmup):
    by_key = {(r['model'], r['backend'], r['threads']): r for r in results}
    cols = [(t, f) for t in threads_list for f in ('off', 'on')]
    head = '| model | backend | ' + ' | '.join(
        '%d thread%s, flip %s' % (t, '' if t == 1 else 's', f) for t, f in cols) + ' |'
    rule = '|---|---|' + '---:|' * len(cols)
    lines = []
    for what, title in (('e2e', 'End to end (crop, normalise, network, decode)'),
                        ('inference', 'Inference only (the runner call; two calls + heatmap '
                                      'fusion with flip test)')):
        lines += ['', '#### %s, ms per person, median of %d run%s after %d warm-up run%s'
                  % (title, runs, '' if runs == 1 else 's', warmup, '' if warmup == 1 else 's'),
                  '', head, rule]
        for label, _ in models:
            for backend in backends:
                rows = [by_key.get((label, backend, t)) for t in threads_list]
                lines.append('| %s | %s | %s |' % (
                    label, backend_label(backend, [r for r in rows if r]),
                    ' | '.join(cell(by_key.get((label, backend, t)), f, what) for t, f in cols)))
    notes = sorted({'%s: %s' % (r['model'], r['note']) for r in results if r.get('note')})
    if notes:
        lines += ['', '&ast; Paddle Inference fell back to plain CPU kernels: ' + '; '.join(notes)]
    return '\n'.join(lines)


def target_lines(results):
    lines = ['', '#### Targets (flip test on, end to end, 1 thread, per person)', '']
    for label, limit in TARGETS:
        ok = [r for r in results if r['model'] == label and r['threads'] == 1
              and r.get('status') == 'ok']
        if not ok:
            ran = any(r['model'] == label for r in results)
            lines.append('- %s under %g ms: not measured (%s)' % (
                label, limit, 'no successful 1-thread run' if ran else 'model not selected'))
            continue
        best = min(ok, key=lambda r: r['timings']['on']['e2e']['median'])
        best_ms = best['timings']['on']['e2e']['median']
        ort = next((r for r in ok if r['backend'] == 'onnx'), None)
        parts = []
        if ort is not None:
            ort_ms = ort['timings']['on']['e2e']['median']
            parts.append('ONNX Runtime fp32 %.1f ms (%s)' % (ort_ms, 'met' if ort_ms < limit
                                                             else 'not met'))
        parts.append('best backend %s %.1f ms' % (dict(BACKENDS)[best['backend']], best_ms))
        lines.append('- %s under %g ms: **%s** - %s' % (
            label, limit, 'MET' if best_ms < limit else 'NOT MET', '; '.join(parts)))
    return lines


def header_lines(args, load_start, load_end):
    v = versions()
    return ['### CPU inference latency per person (COCO, 256x192 input)', '',
            'Machine: %s, %d logical cores; load average %.2f at start, %.2f at the end '
            '(other processes inflate the numbers). paddlepaddle %s, onnxruntime %s, '
            'paddle2onnx %s. Random seeded weights (latency does not depend on them; BatchNorm '
            'statistics set from synthetic pictures). One %dx%d synthetic image with one '
            'person box; ONNX opset 11, int8 = static QDQ calibrated on %d synthetic pictures '
            '(speed only, accuracy not checked). Threads set per run: OMP_NUM_THREADS for '
            'dygraph, set_cpu_math_library_num_threads for Paddle Inference, '
            'intra_op_num_threads for ONNX Runtime.'
            % (cpu_name(), os.cpu_count() or 0, load_start, load_end, v['paddlepaddle'],
               v['onnxruntime'], v['paddle2onnx'], IMAGE_SIZE[0], IMAGE_SIZE[1], CALIB_IMAGES)]


# -- command line -------------------------------------------------------------------------------

def split_list(text, known, what):
    wanted = [s.strip() for s in text.split(',') if s.strip()]
    bad = [w for w in wanted if w not in known]
    if bad or not wanted:
        raise SystemExit('benchmark_infer: error: unknown %s %s (known: %s)'
                         % (what, ', '.join(bad) or '(none given)', ', '.join(known)))
    return wanted


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Per-person CPU latency of Paddle dygraph, Paddle Inference and ONNX Runtime '
                    '(fp32, int8), 1/2 threads, flip test off/on; markdown tables on stdout.')
    p.add_argument('--models', default=','.join(m[0] for m in MODELS),
                   help='comma-separated subset of: ' + ', '.join(m[0] for m in MODELS))
    p.add_argument('--backends', default=','.join(b[0] for b in BACKENDS),
                   help='comma-separated subset of: ' + ', '.join(b[0] for b in BACKENDS))
    p.add_argument('--threads', default='1,2', help='comma-separated thread counts (default 1,2)')
    p.add_argument('--runs', type=int, default=None,
                   help='timed runs per configuration (default 50, 3 with --quick)')
    p.add_argument('--warmup', type=int, default=None,
                   help='untimed warm-up runs (default 5, 1 with --quick)')
    p.add_argument('--quick', action='store_true', help='few runs: checks that everything works')
    p.add_argument('--work-dir', default=os.path.join(tempfile.gettempdir(),
                                                      'posekit_bench_infer'),
                   help='where models are exported and cached between runs (default %(default)s)')
    p.add_argument('--json', default='', help='also write the raw numbers to this file')
    p.add_argument('--timeout', type=int, default=1800,
                   help='seconds allowed per subprocess (default %(default)s)')
    # internal: the subprocesses
    p.add_argument('--prepare', metavar='MODEL', help=argparse.SUPPRESS)
    p.add_argument('--int8', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--single', nargs=3, metavar=('MODEL', 'BACKEND', 'THREADS'),
                   help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 3 if args.quick else 50
    if args.warmup is None:
        args.warmup = 1 if args.quick else 5
    if args.runs < 1 or args.warmup < 0:
        p.error('--runs must be >= 1 and --warmup >= 0')
    args.work_dir = os.path.abspath(args.work_dir)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.prepare:
        import logging
        logging.getLogger('posekit').setLevel(logging.WARNING)
        prepare(args.prepare, dict(MODELS)[args.prepare], args.work_dir, args.int8)
        return 0
    if args.single:
        return run_single(args)

    labels = split_list(args.models, [m[0] for m in MODELS], 'model')
    models = [m for m in MODELS if m[0] in labels]
    backends = [b for b in (b[0] for b in BACKENDS)
                if b in split_list(args.backends, [b[0] for b in BACKENDS], 'backend')]
    try:
        threads_list = [int(t) for t in args.threads.split(',') if t.strip()]
    except ValueError:
        threads_list = []
    if not threads_list or min(threads_list) < 1:
        raise SystemExit('benchmark_infer: error: --threads takes positive integers, e.g. 1,2')
    os.makedirs(args.work_dir, exist_ok=True)

    load_start = os.getloadavg()[0]
    results, manifests = orchestrate(args, models, backends, threads_list)
    load_end = os.getloadavg()[0]

    lines = header_lines(args, load_start, load_end)
    print('\n'.join(lines))
    print(markdown_tables(results, models, backends, threads_list, args.runs, args.warmup))
    print('\n'.join(target_lines(results)))
    notes = ['%s: %s' % (label, n) for label, m in manifests.items()
             for n in (m or {}).get('notes', []) if not n.startswith('random seeded')]
    if notes:
        print('\nNotes:\n' + '\n'.join('- ' + n for n in notes))
    sys.stdout.flush()
    if args.json:
        write_json(args.json, {'meta': {'cpu': cpu_name(), 'logical_cores': os.cpu_count(),
                                        'load_average_start': load_start,
                                        'load_average_end': load_end, 'versions': versions(),
                                        'runs': args.runs, 'warmup': args.warmup,
                                        'image_size': list(IMAGE_SIZE), 'work_dir': args.work_dir,
                                        'unit': 'ms per person'},
                               'prepare': manifests, 'results': results})
    return 0


if __name__ == '__main__':
    sys.exit(main())
