"""User-facing errors: the CLI prints their message as one line, never a traceback."""

from __future__ import annotations


class OodBenchError(Exception):
    """An error caused by input or environment that the user can fix; the message says how."""

    exit_code = 1


class UsageError(OodBenchError):
    """A name or option that does not exist (unknown dataset, model, strategy, head...)."""

    exit_code = 2


class DataMissingError(OodBenchError):
    """Data files are absent: the message says where we looked and how to get them."""


class CorruptFileError(OodBenchError):
    """A file exists but is unreadable, fails its checksum or has the wrong content."""


class RunFailedError(OodBenchError):
    """An external program (deepmd) failed; the message names the run and shows its log tail."""
