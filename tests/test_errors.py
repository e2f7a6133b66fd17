"""One error family (posekit.errors) and one entry-point wrapper (posekit.cli.run_tool)."""
import importlib
import os
import pkgutil

import pytest

import posekit
from posekit.cli import run_tool
from posekit.errors import PosekitError, PosekitInputError, PosekitRuntimeError


def _library_exception_classes():
    """Every exception class defined in a posekit module (warnings aside)."""
    found = {}
    for mod in pkgutil.walk_packages(posekit.__path__, 'posekit.'):
        module = importlib.import_module(mod.name)
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, BaseException)
                    and not issubclass(obj, Warning) and obj.__module__ == module.__name__):
                found['%s.%s' % (obj.__module__, obj.__qualname__)] = obj
    return found


def test_every_library_error_is_a_posekit_error():
    classes = _library_exception_classes()
    names = {name.rsplit('.', 1)[1] for name in classes}
    # the classes the issue lists must still exist under their names
    assert {'ConfigError', 'DatasetError', 'SyntheticError', 'CheckpointError', 'ModelLoadError',
            'DeployConfigError', 'BoxError', 'DetectionFileError', 'DetectorError', 'ExportError',
            'ParityError', 'QuantizeError', 'PredictionsError', 'TrainingDiverged',
            'ImageReadError'} <= names
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, PosekitError))
    assert outside == []
    for name, cls in classes.items():
        # bad input stays a ValueError for callers that catch the built-in
        assert issubclass(cls, (PosekitInputError, PosekitRuntimeError)) or cls is PosekitError, name
    from posekit.training.trainer import TrainingDiverged
    assert issubclass(TrainingDiverged, RuntimeError)


def _raise(error):
    def body(argv):
        raise error
    return body


def test_run_tool_turns_our_errors_into_one_line(capsys):
    assert run_tool('demo', lambda argv: None) == 0
    assert run_tool('demo', lambda argv: 3) == 3
    report = PosekitInputError('checkpoint w.pdparams does not fit the model: 2 missing keys\n'
                               'missing (in the model, not in the checkpoint):\n  conv1.weight\n')
    assert run_tool('demo', _raise(report)) == 1
    assert capsys.readouterr().err == ('demo: error: checkpoint w.pdparams does not fit the '
                                       'model: 2 missing keys (first missing: conv1.weight)\n')
    usage = PosekitInputError('bad --cfg')
    usage.exit_code = 2  # model_info's documented code for a config it cannot build
    assert run_tool('demo', _raise(usage)) == 2
    assert run_tool('demo', _raise(FileNotFoundError(2, 'No such file or directory', 'x.yaml'))) == 1
    assert capsys.readouterr().err.splitlines() == [
        'demo: error: bad --cfg', 'demo: error: No such file or directory: x.yaml']


def test_run_tool_interrupt_and_bugs(capsys):
    assert run_tool('train', _raise(KeyboardInterrupt()), interrupted_hint='resume with --resume') == 130
    assert capsys.readouterr().err == 'train: interrupted; resume with --resume\n'
    with pytest.raises(ValueError):  # a plain ValueError is a bug: it keeps its traceback
        run_tool('demo', _raise(ValueError('bug')))


@pytest.mark.parametrize('tool, extra, code', [
    ('train', [], 1), ('valid', [], 1), ('export', [], 1), ('model_info', [], 2),
    ('convert', ['--src', 'a.pth', '--dst', 'b.pdparams'], 1)])
def test_tools_report_a_missing_config_in_one_line(tool, extra, code, tmp_path, capsys):
    main = importlib.import_module('posekit.tools.' + tool).main
    missing = str(tmp_path / 'nope.yaml')
    assert main(['--cfg', missing] + extra) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['%s: error: config file not found: %s' % (tool, missing)]


def test_make_synthetic_reports_a_foreign_folder_in_one_line(tmp_path, capsys):
    from posekit.tools.make_synthetic import main
    os.makedirs(tmp_path / 'other')
    (tmp_path / 'other' / 'file').write_text('x')
    assert main(['--root', str(tmp_path / 'other'), '--num-train', '1', '--quiet']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('make_synthetic: error: ')
    assert 'not a synthetic dataset' in err[0]
