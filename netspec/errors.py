"""The one error type: every mistake a person can make ends in a `NetspecError`.

Each subclass says which exit code it means (1: a mistake in a spec or an input
file; 2: a mistake in how netspec was called), and may carry a hint. The command
line catches `NetspecError` once and prints it; nothing here imports anything, so
every layer can raise these.

>>> e = UsageError("--batch 0: expected a positive number", hint="e.g. --batch 64")
>>> isinstance(e, NetspecError), e.exit_code, e.hint
(True, 2, 'e.g. --batch 64')
>>> DataError("t10k-images: truncated").exit_code
1
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "ExportError",
    "InputError",
    "MetadataError",
    "ModelError",
    "NetspecError",
    "OutputError",
    "ProviderError",
    "RunError",
    "UsageError",
    "WeightsError",
]


class NetspecError(Exception):
    """A mistake in a spec, a flag or an input, with the exit code and hint the CLI prints."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(NetspecError):
    """A mistake in how netspec was called (a flag, a name on the command line): exit 2."""

    exit_code = 2


class ProviderError(UsageError):
    """The requested execution provider is not in this ONNX Runtime build (exit 2)."""


class DataError(NetspecError):
    """A dataset could not be read, fetched or verified.

    The message names the file (or URL) and says what was expected and what was found.
    """


class RunError(NetspecError):
    """A run directory that cannot be used as asked (missing, damaged, unfinished)."""


class WeightsError(NetspecError):
    """A weights file that cannot be read, or does not fit the network."""


class ExportError(NetspecError):
    """An export that failed a check or could not be built; nothing was written."""


class ModelError(NetspecError):
    """A file that is not a runnable ONNX model, or one netspec cannot feed."""


class MetadataError(ModelError):
    """The file's netspec metadata is missing or unreadable."""


class InputError(NetspecError):
    """An input file the model cannot take; the message names the file and what was expected."""


class OutputError(NetspecError):
    """A file or directory netspec was asked to write could not be written (read-only, full,
    a file where a directory should be); the message names the path and the system's reason.
    Whatever was there before is left as it was."""
