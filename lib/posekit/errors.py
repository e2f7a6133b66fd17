"""The one family of posekit errors.

Every error the library raises on purpose (bad input, a file that cannot be used, a model that
does not fit its config) is a :class:`PosekitError`; the entry points turn it into one line on
stderr and a non-zero exit code (:func:`posekit.cli.run_tool`). Each class also derives from
the built-in exception that describes it (``ValueError`` for bad values and files), so code
that catches the built-in keeps working.
"""

__all__ = ['PosekitError', 'PosekitInputError', 'PosekitRuntimeError', 'note_stop_signal',
           'stop_signal']


class PosekitError(Exception):
    """Base of every posekit error: its message is a complete one-line explanation."""

    exit_code = 1


class PosekitInputError(PosekitError, ValueError):
    """Something given to posekit (a file, a value, an option) cannot be used."""


class PosekitRuntimeError(PosekitError, RuntimeError):
    """A run that started well cannot go on (diverged loss, a runtime that fails)."""


# The stop signal (SIGINT/SIGTERM) this process received, if any. posekit.cli's handler records
# it here, at the bottom of the package, so that code which must not finish after a stop (the
# one-step install of an atomic folder, posekit.io) can check it even when a library between
# them caught the KeyboardInterrupt the handler raised.
_stop_signal = [None]


def note_stop_signal(signum):
    _stop_signal[0] = signum


def stop_signal():
    """The stop signal received by this process (None when there was none)."""
    return _stop_signal[0]
