"""The one exception type for bad input data.

Every problem the loader finds in a dataset folder becomes a :class:`DataError` that names the file and, where
there is one, the 1-based line. ``str(error)`` is a single line (``<path>:<line>: <message>`` or
``<path>: <message>``), so the CLI can print it to stderr and exit 2 without a traceback.
"""
from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """A dataset file is missing, malformed or inconsistent.

    Attributes:
        path: the offending file or folder (as given, not resolved).
        line: 1-based line number, or None when the problem is not tied to one line.
        message: what is wrong, in one line.
    """

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        # Keep the rendered error on one line whatever the message holds.
        self.message = " ".join(str(message).split())
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"

    def __reduce__(self):  # keeps the exception picklable (multiprocessing, pytest-xdist)
        return (DataError, (self.path, self.line, self.message))
