"""The one error type a user mistake becomes: the CLI prints its message as one sentence."""

from __future__ import annotations


class StereokitError(Exception):
    """A problem the user can fix (bad file, bad flag, missing stage); never a bug.

    exit_code follows the Unix convention the CLI keeps: 2 for bad input or usage,
    1 for a run that could not complete.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(StereokitError):
    """A config file or override that does not fit the schema."""


class DataError(StereokitError):
    """A data file (image, PFM, list, LMDB) that cannot be used as it is."""


class StageError(StereokitError):
    """A run-directory stage that is missing, unfinished or does not match its record."""
