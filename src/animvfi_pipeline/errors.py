"""Errors users see. Each message starts with the path that is wrong, then what is wrong."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Input data is missing, corrupt or malformed."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: not ours, corrupt, or mismatched with its config."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
