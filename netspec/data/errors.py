"""The one error type of the dataset layer."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(Exception):
    """A dataset could not be read, fetched or verified.

    The message names the file (or URL) and says what was expected and what was
    found, so the CLI can print it as is, without a traceback.
    """
