"""CPU inference latency per person: Paddle dygraph, Paddle Inference, ONNX Runtime fp32 / int8.

    python pose_estimation/benchmark_infer.py                       # everything (slow: 40 runs)
    python pose_estimation/benchmark_infer.py --models SimpleNet,LPN-50 --runs 10
    python pose_estimation/benchmark_infer.py --quick --models SimpleNet --backends onnx,dygraph
    python pose_estimation/benchmark_infer.py --only grouping       # bottom-up post-processing

Prints markdown tables for the README (rows: model x backend; columns: threads x flip test), in
milliseconds per person, the median of ``--runs`` timed runs after ``--warmup`` untimed ones:

* end to end: :meth:`posekit.inference.predictor.TopDownPredictor.predict` on one 640x480 synthetic image
  with one person box (crop, normalise, network, flip test, decode);
* inference only: the predictor's ``inference`` stage of those same calls, i.e. the runner call
  (two calls and the heatmap fusion with the flip test).

The weights are random (seeded): latency does not depend on their values. They are conditioned
to run like a trained network's (:mod:`posekit.benchmark.models`: BatchNorm statistics from
synthetic pictures, heatmaps peaking near 1). Each model is exported once into ``--work-dir``
(ONNX opset 11 + Paddle inference model, static QDQ int8 calibrated on synthetic pictures) and
reused by later runs while its config and weights fingerprints match
(:mod:`posekit.benchmark.export_cache`); the timing is :func:`posekit.benchmark.time_predictor`.

Threads: every (model, backend, threads) configuration runs in its own subprocess (this script
with ``--single``) whose environment has ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set: Paddle
reads ``OMP_NUM_THREADS`` once, at import, for its dygraph CPU kernels (it sets it to 1 when
unset, and ``FLAGS_paddle_num_threads`` does not change dygraph), and an OpenMP pool is per
process. Paddle Inference also gets ``set_cpu_math_library_num_threads`` and ONNX Runtime
``intra_op_num_threads`` (posekit.runtime). A configuration that fails - an export, an int8
conversion, a runtime error, a crash, a timeout - is a "failed: <reason>" cell, not a crash.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from posekit.benchmark.export_cache import (CALIB_IMAGES, SEED, cache_key, cached_manifest,
                                            model_dir, needs_prepare, precheck_error)
from posekit.benchmark.failures import last_error_line, short_reason
from posekit.benchmark.machine import cpu_name, versions

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
# Backends that give the Paddle model's heatmaps (checked by export.py's parity test).
EXACT_BACKENDS = ('dygraph', 'paddle', 'onnx')
# The goals of the issue: flip test on, end to end, 1 thread, per person.
TARGETS = [('LPN-50', 50.0), ('SimpleNet', 15.0)]

IMAGE_SIZE = (640, 480)      # [W, H] of the benchmark picture (one person box in it)


def model_config(experiment):
    from posekit.config import load_config
    return load_config(os.path.join(ROOT, experiment))


def read_result(path):
    """A json file a subprocess wrote, or None (it crashed before writing it)."""
    from posekit.io import InputFileError, read_json
    try:
        return read_json(path)
    except InputFileError:
        return None


def write_result(path, data):
    from posekit.io import write_json
    write_json(path, data, indent=1)


# -- the subprocesses: prepare a model folder, time one configuration -----------------------------

def prepare_model(label, work_dir, want_int8):
    """Make (or complete) the model folder: weights, exported models, int8; see export_cache."""
    from posekit.benchmark.export_cache import prepare
    cfg = model_config(dict(MODELS)[label])
    return prepare(model_dir(work_dir, label), cfg, cache_key(label, cfg), want_int8)


def run_single(args):
    """Time one (model, backend, threads) configuration; writes a json result to --out."""
    label, backend, threads = args.single[0], args.single[1], int(args.single[2])
    experiment = dict(MODELS)[label]
    res = {'model': label, 'backend': backend, 'threads': threads, 'status': 'failed',
           'error': None, 'note': None, 'env_omp': os.environ.get('OMP_NUM_THREADS')}
    try:
        from posekit.benchmark import time_predictor
        from posekit.benchmark.export_cache import benchmark_runner
        from posekit.benchmark.models import synthetic_pictures
        from posekit.inference.deploy_config import DeployConfig
        cfg = model_config(experiment)
        folder = model_dir(args.work_dir, label)
        manifest = cached_manifest(folder, cache_key(label, cfg))
        if manifest is None:
            raise RuntimeError('model not prepared in %s' % args.work_dir)
        runner = benchmark_runner(backend, folder, cfg, manifest, threads, name=label)
        if getattr(runner, 'onednn_note', None):
            res['note'] = runner.onednn_note
        # from the config, not the exported deploy_config.json: dygraph needs no export
        dc = DeployConfig.from_cfg(cfg)
        image, box = synthetic_pictures(1, IMAGE_SIZE, SEED + 2)[0]
        boxes = None if box is None else [box]
        res['timings'] = time_predictor(dc, runner, image, boxes, args.runs, args.warmup)
        res['box'] = box
        res['status'] = 'ok'
    except Exception as e:  # noqa: BLE001  (reported in the table)
        res['error'] = short_reason(e)
    write_result(args.out, res)
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
        folder = model_dir(args.work_dir, label)
        key = cache_key(label, model_config(experiment))
        manifest = cached_manifest(folder, key)
        if needs_prepare(folder, manifest, backends):
            log('preparing %s in %s (weights, export%s)...'
                % (label, folder, ', int8' if 'onnx-int8' in backends else ''))
            t0 = time.perf_counter()
            argv = ['--prepare', label, '--work-dir', args.work_dir]
            if 'onnx-int8' in backends:
                argv.append('--int8')
            rc, err = run_child(argv, 1, args.timeout)
            manifest = cached_manifest(folder, key)
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
                        got = read_result(out)
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
    """The target verdicts. Only backends whose heatmaps equal the Paddle model's (export.py's
    parity check, 1e-4) count: int8 changes the heatmaps, and its accuracy cannot be measured on
    the random weights used here (``valid.py --model-file model_int8.onnx`` measures it on
    trained weights), so its time is shown but never meets a target."""
    lines = ['', '#### Targets (flip test on, end to end, 1 thread, per person)', '']
    for label, limit in TARGETS:
        ok = [r for r in results if r['model'] == label and r['threads'] == 1
              and r.get('status') == 'ok']
        exact = [r for r in ok if r['backend'] in EXACT_BACKENDS]
        if not exact:
            ran = any(r['model'] == label for r in results)
            lines.append('- %s under %g ms: not measured (%s)' % (
                label, limit, 'no successful 1-thread run of an exact (fp32) backend' if ran
                else 'model not selected'))
            continue

        def ms(r):
            return r['timings']['on']['e2e']['median']
        best = min(exact, key=ms)
        parts = []
        ort = next((r for r in exact if r['backend'] == 'onnx'), None)
        if ort is not None:
            parts.append('ONNX Runtime fp32 %.1f ms (%s)' % (ms(ort), 'met' if ms(ort) < limit
                                                             else 'not met'))
        parts.append('best backend %s %.1f ms' % (dict(BACKENDS)[best['backend']], ms(best)))
        for r in ok:
            if r['backend'] not in EXACT_BACKENDS:
                parts.append('%s %.1f ms, not counted (accuracy not measured)'
                             % (dict(BACKENDS)[r['backend']], ms(r)))
        lines.append('- %s under %g ms: **%s** - %s' % (
            label, limit, 'MET' if ms(best) < limit else 'NOT MET', '; '.join(parts)))
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
    p.add_argument('--only', choices=['grouping'], default=None,
                   help='grouping: only the bottom-up (SimplePose) map post-processing and '
                        'grouping times, in this process (default runs 20, warm-up 2)')
    p.add_argument('--fixtures', default=os.environ.get(
                       'POSEKIT_FIXTURES', os.path.join(ROOT, '..', 'shared', 'fixtures')),
                   help='reference fixtures folder for --only grouping (default %(default)s)')
    # internal: the subprocesses
    p.add_argument('--prepare', metavar='MODEL', help=argparse.SUPPRESS)
    p.add_argument('--int8', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--single', nargs=3, metavar=('MODEL', 'BACKEND', 'THREADS'),
                   help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 3 if args.quick else 20 if args.only else 50
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2 if args.only else 5
    if args.runs < 1 or args.warmup < 0:
        p.error('--runs must be >= 1 and --warmup >= 0')
    args.work_dir = os.path.abspath(args.work_dir)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.prepare:
        import logging
        logging.getLogger('posekit').setLevel(logging.WARNING)
        prepare_model(args.prepare, args.work_dir, args.int8)
        return 0
    if args.single:
        return run_single(args)
    if args.only == 'grouping':
        from posekit.benchmark.grouping import grouping_cases, grouping_table, time_grouping
        rows = time_grouping(grouping_cases(args.fixtures), args.runs, args.warmup)
        print('Machine: %s, %d logical cores, load average %.2f.\n'
              % (cpu_name(), os.cpu_count() or 0, os.getloadavg()[0]))
        print(grouping_table(rows, args.runs, args.warmup))
        if args.json:
            write_result(args.json, {'meta': {'cpu': cpu_name(), 'runs': args.runs,
                                              'warmup': args.warmup, 'unit': 'ms per image'},
                                     'grouping': rows})
        return 0

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
        write_result(args.json, {'meta': {'cpu': cpu_name(), 'logical_cores': os.cpu_count(),
                                          'load_average_start': load_start,
                                          'load_average_end': load_end, 'versions': versions(),
                                          'runs': args.runs, 'warmup': args.warmup,
                                          'image_size': list(IMAGE_SIZE),
                                          'work_dir': args.work_dir, 'unit': 'ms per person'},
                                 'prepare': manifests, 'results': results})
    return 0


if __name__ == '__main__':
    sys.exit(main())
