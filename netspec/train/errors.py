"""The error type of run directories, kept free of torch so the CLI can import it cheaply."""

from __future__ import annotations

__all__ = ["RunError"]


class RunError(Exception):
    """A run directory that cannot be used as asked (missing, damaged, unfinished)."""
