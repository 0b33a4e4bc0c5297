"""The errors a user sees as one line (``error: <Type>: <message>``), in one leaf module every layer
may import. Each message names the key, value or file and what to do; ``src/train.py`` and
``src/eval.py`` print it without a traceback.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A config value is not allowed (names the key, the value and what is allowed)."""


class DataFileError(ValueError):
    """A dataset file is missing or malformed (names the file and what is wrong)."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used for this config (names the file and the reason)."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the previous one at that path is untouched)."""


class Diverged(RuntimeError):
    """Training produced a non-finite loss or gradient."""


class RunDirBusy(ConfigError):
    """Another job is running in this output dir."""


class ResumeRefused(ConfigError):
    """resume=true with a config that differs from the run's in keys that must not change."""


class ReportInputError(ValueError):
    """A report option that does not fit the jobs."""


# one line, no traceback: what the entry points print as ``error: <Type>: <message>``
USER_ERRORS = (ConfigError, DataFileError, FileNotFoundError, CheckpointError, CheckpointWriteError, Diverged,
               ReportInputError)
