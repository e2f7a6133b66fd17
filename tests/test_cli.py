"""One-line errors and warnings of the entry points."""
import warnings

from posekit.cli import one_line, one_line_warnings


def test_one_line_keeps_the_summary_and_the_first_entry_of_a_report():
    report = ValueError('checkpoint w.pdparams does not fit the model: 2 missing keys\n'
                        'missing (in the model, not in the checkpoint):\n'
                        '  conv1.weight\n  bn1.weight\n')
    assert one_line(report) == ('checkpoint w.pdparams does not fit the model: 2 missing keys '
                                '(first missing: conv1.weight)')
    assert one_line(FileNotFoundError('image not found: a.jpg')) == 'image not found: a.jpg'
    assert one_line(ValueError('')) == 'ValueError'


def test_warnings_become_one_prefixed_line(capsys):
    saved = warnings.showwarning
    try:
        one_line_warnings('deploy')
        with warnings.catch_warnings():
            warnings.simplefilter('always')
            warnings.warn('box 2 is outside the image; skipped')
    finally:
        warnings.showwarning = saved
    assert capsys.readouterr().err == 'deploy: warning: box 2 is outside the image; skipped\n'
