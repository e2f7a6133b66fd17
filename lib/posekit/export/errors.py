"""The errors of the export stage (all one-line, bad-input errors: exit code 1 at the CLI)."""
from posekit.errors import PosekitInputError

__all__ = ['ExportError']


class ExportError(PosekitInputError):
    """The model could not be exported, or the export cannot be run."""
