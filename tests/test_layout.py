"""The package reads as the pipeline: imports go one way only, entry points stay thin.

Stages, lowest first; a module may import its own stage or an earlier one (issue 8, item 5).
Every ``posekit.*`` import counts, including the ones inside functions (lazy imports still couple
the code, they only move the cost to run time).
"""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'lib', 'posekit')

# Each inner tuple is one rank: names in it do not depend on each other's order.
STAGES = [
    ('errors', 'io', 'cli', 'distributed'),
    ('config',),
    ('codec',),
    ('data',),
    ('checkpoint',),
    ('models',),
    ('outputs',),
    ('runtime',),
    ('evaluation',),
    ('inference',),
    ('export',),
    ('training',),
    ('benchmark',),
    ('tools',),
]
RANK = {name: i for i, names in enumerate(STAGES) for name in names}

SHIM_MAX_LINES = 15


def _modules():
    """``(dotted name, path)`` of every module under lib/posekit."""
    out = []
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '__pycache__')))
        for f in sorted(files):
            if f.endswith('.py'):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].split(os.sep)
                if rel[-1] == '__init__':
                    rel = rel[:-1]
                out.append(('.'.join(rel), path))
    return out


def _stage(dotted):
    """Stage name of ``posekit.<stage>...`` (None for ``posekit`` itself)."""
    parts = dotted.split('.')
    return parts[1] if len(parts) > 1 else None


def _imports(module, path):
    """Every absolute ``posekit...`` module a file imports: ``[(lineno, dotted name)]``."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    is_package = os.path.basename(path) == '__init__.py'
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                # relative import: resolve against this module's package
                pkg = module.split('.') if is_package else module.split('.')[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = '.'.join(pkg + ([base] if base else []))
            if base == 'posekit':
                # ``from posekit import data`` imports the stage ``posekit.data``
                found += [(node.lineno, 'posekit.' + a.name) for a in node.names]
            else:
                found.append((node.lineno, base))
    return [(n, m) for n, m in found if m == 'posekit' or m.startswith('posekit.')]


def test_every_stage_is_ranked():
    """A new top-level module or package must be given its place in STAGES."""
    names = {os.path.splitext(n)[0] for n in os.listdir(PACKAGE)
             if not n.startswith(('_', '.')) and (n.endswith('.py') or
                                                  os.path.isfile(os.path.join(PACKAGE, n, '__init__.py')))}
    assert not names - set(RANK), 'not placed in tests/test_layout.py STAGES: %s' % sorted(names - set(RANK))


def test_imports_go_one_way():
    bad = []
    for module, path in _modules():
        own = _stage(module)
        if own is None:
            continue  # posekit/__init__.py: checked by test_import_posekit_needs_no_paddle
        for lineno, target in _imports(module, path):
            stage = _stage(target)
            if stage is None or stage == own:
                continue
            if stage not in RANK:
                bad.append('%s:%d imports %s (unknown stage %r)' % (module, lineno, target, stage))
            elif RANK[stage] > RANK[own]:
                bad.append('%s:%d imports %s (stage %s comes after %s)'
                           % (module, lineno, target, stage, own))
    assert not bad, 'imports against the pipeline order:\n  ' + '\n  '.join(bad)


def test_the_checker_sees_upward_imports(tmp_path):
    """The checker itself: a lazy upward import inside a function is found."""
    src = tmp_path / 'mod.py'
    src.write_text('import os\n\ndef f():\n    from posekit.training.trainer import Trainer\n'
                   '    from posekit import models\n    import posekit.codec.heatmap\n')
    found = [m for _, m in _imports('posekit.data.mod', str(src))]
    assert found == ['posekit.training.trainer', 'posekit.models', 'posekit.codec.heatmap']
    assert RANK['training'] > RANK['data'] > RANK['codec']


def test_only_tools_define_main():
    bad = []
    for module, path in _modules():
        if module == 'posekit.tools' or module.startswith('posekit.tools.'):
            continue
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
        bad += ['%s:%d' % (module, n.lineno) for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == 'main']
    assert not bad, 'def main( outside posekit.tools: %s' % ', '.join(bad)


def test_entry_points_are_shims():
    folder = os.path.join(ROOT, 'pose_estimation')
    scripts = sorted(f for f in os.listdir(folder) if f.endswith('.py'))
    assert scripts
    long_ones = []
    for f in scripts:
        with open(os.path.join(folder, f), encoding='utf-8') as fh:
            n = len(fh.read().splitlines())
        if n >= SHIM_MAX_LINES:
            long_ones.append('%s (%d lines)' % (f, n))
    assert not long_ones, 'pose_estimation scripts must stay shims over posekit.tools: %s' % long_ones


def test_import_posekit_needs_no_paddle():
    code = "import posekit, sys; assert 'paddle' not in sys.modules, 'import posekit imported paddle'"
    res = subprocess.run([sys.executable, '-c', code], cwd=os.path.dirname(ROOT),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.parametrize('code', [
    'import posekit.data.descriptors', 'import posekit.codec',
    # the MODEL.EXTRA schema lives in the config stage: resolving a config builds no network
    "from posekit.config import load_config; load_config(None, ['MODEL.NAME', 'pose_hrnet'])"])
def test_low_stages_need_no_paddle(code):
    """Dataset facts, codec and config are read by the ONNX deploy path and by valid.py on an
    exported model."""
    code += "; import sys; assert 'paddle' not in sys.modules, 'imports paddle'"
    res = subprocess.run([sys.executable, '-c', code], cwd=os.path.dirname(ROOT),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
