"""pose_estimation/benchmark_infer.py: the table structure, the json, a failing backend.

Runs the real script (SimpleNet exported into a tmp work dir, ONNX Runtime and dygraph, 2 timed
runs). Nothing here asserts a speed: only that the numbers are there and well formed.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = os.path.join(ROOT, 'pose_estimation', 'benchmark_infer.py')
NUMBER = re.compile(r'^\d+\.\d$')


def run(*argv):
    proc = subprocess.run([sys.executable, SCRIPT] + list(argv), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def tables(stdout):
    """{section title: [row cells]} for every markdown table of the output."""
    out, title, rows = {}, None, None
    for line in stdout.splitlines():
        if line.startswith('#### '):
            title, rows = line[5:], []
            out[title] = rows
        elif line.startswith('|') and rows is not None:
            rows.append([c.strip() for c in line.strip().strip('|').split('|')])
    return {t: r for t, r in out.items() if r}


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('bench_infer')
    raw = work / 'raw.json'
    stdout = run('--quick', '--models', 'SimpleNet', '--backends', 'onnx,dygraph', '--threads', '1',
                 '--runs', '2', '--work-dir', str(work / 'cache'), '--json', str(raw))
    return work, stdout, json.loads(raw.read_text())


def test_tables_have_one_row_per_model_and_backend(quick_run):
    _, stdout, _ = quick_run
    found = tables(stdout)
    titles = list(found)
    assert len(titles) == 2
    assert titles[0].startswith('End to end') and titles[1].startswith('Inference only')
    for title, rows in found.items():
        assert 'ms per person, median of 2 runs' in title
        assert rows[0] == ['model', 'backend', '1 thread, flip off', '1 thread, flip on']
        assert set(rows[1][2:]) == {'---:'}
        body = rows[2:]
        # rows follow the backend order of the script, whatever order --backends gives
        assert [r[:2] for r in body] == [['SimpleNet', 'Paddle dygraph'],
                                         ['SimpleNet', 'ONNX Runtime fp32']]
        for r in body:
            assert all(NUMBER.match(c) for c in r[2:]), r
    assert 'random seeded weights' in stdout.lower()


def test_targets_and_json(quick_run):
    _, stdout, raw = quick_run
    assert re.search(r'^- SimpleNet under 15 ms: \*\*(MET|NOT MET)\*\* - ONNX Runtime fp32 '
                     r'\d+\.\d ms \((met|not met)\); best backend ', stdout, re.M)
    assert re.search(r'^- LPN-50 under 50 ms: not measured', stdout, re.M)
    results = raw['results']
    assert sorted((r['model'], r['backend'], r['threads']) for r in results) == [
        ('SimpleNet', 'dygraph', 1), ('SimpleNet', 'onnx', 1)]
    for r in results:
        assert r['status'] == 'ok'
        assert r['env_omp'] == '1'  # the subprocess really ran with one OpenMP thread
        for flip in ('off', 'on'):
            for stage in ('e2e', 'inference', 'preprocess', 'decode'):
                assert len(r['timings'][flip][stage]['samples']) == 2
            e2e = r['timings'][flip]['e2e']
            assert e2e['min'] <= e2e['median']
    assert raw['meta']['runs'] == 2 and raw['meta']['unit'] == 'ms per person'
    assert raw['prepare']['SimpleNet']['export']['onnx'] == 'model.onnx'


def test_a_failing_backend_is_a_table_cell(quick_run):
    work, _, _ = quick_run
    onnx = work / 'cache' / 'simplenet' / 'model.onnx'
    onnx.write_bytes(b'not an onnx model')  # the cached export is reused, and now unreadable
    stdout = run('--quick', '--models', 'SimpleNet', '--backends', 'onnx', '--threads', '1',
                 '--runs', '1', '--work-dir', str(work / 'cache'))
    found = tables(stdout)
    assert len(found) == 2
    for rows in found.values():
        assert rows[2][:2] == ['SimpleNet', 'ONNX Runtime fp32']
        assert all(c.startswith('failed: ') and 'ONNX' in c for c in rows[2][2:]), rows[2]
    assert re.search(r'^- SimpleNet under 15 ms: not measured', stdout, re.M)


def test_int8_time_is_shown_but_never_meets_a_target():
    """int8 changes the heatmaps and its accuracy is not measured on random weights: a fast int8
    run must not turn a target into MET."""
    from posekit.tools.benchmark_infer import target_lines

    def run(backend, ms):
        return {'model': 'LPN-50', 'backend': backend, 'threads': 1, 'status': 'ok',
                'timings': {'on': {'e2e': {'median': ms}}}}
    lines = target_lines([run('onnx', 67.6), run('onnx-int8', 42.3), run('paddle', 80.0)])
    lpn = next(ln for ln in lines if ln.startswith('- LPN-50'))
    assert lpn.startswith('- LPN-50 under 50 ms: **NOT MET** - ONNX Runtime fp32 67.6 ms (not met)')
    assert 'best backend ONNX Runtime fp32 67.6 ms' in lpn
    assert 'ONNX Runtime int8 42.3 ms, not counted (accuracy not measured)' in lpn
    only_int8 = target_lines([run('onnx-int8', 10.0)])
    assert any(ln.startswith('- LPN-50 under 50 ms: not measured') for ln in only_int8)
