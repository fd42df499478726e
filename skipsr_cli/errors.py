"""Typed errors raised at the edges; the command line maps each one to an exit code.

Every error carries a one-line, human-readable message that names what is wrong; the underlying
exception (from PyAV, torch, safetensors, the OS) is chained as ``__cause__`` for ``--debug``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (README, "Exit codes")."""

    OK = 0
    INTERNAL = 1  # a bug: please report it with --debug output
    USAGE = 2  # bad options or arguments (also what Typer uses for its own usage errors)
    INPUT = 3  # the input is missing, unreadable, or has no video stream
    MODEL = 4  # weights missing, corrupt or incompatible; a model failure (e.g. out of memory)
    OUTPUT = 5  # the output cannot be written or encoded (exists, bad encoder option, disk full)
    PARTIAL = 6  # a folder batch finished, but some of its files failed (the others are done)
    INTERRUPTED = 130  # Ctrl-C / SIGINT, as shells report it
    TERMINATED = 143  # SIGTERM (timeout, docker stop, a farm's scheduler), as shells report it


class SkipSRError(Exception):
    """Base class: an expected failure with a one-line message."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UsageError(SkipSRError):
    exit_code = ExitCode.USAGE


class InputError(SkipSRError):
    exit_code = ExitCode.INPUT


class ModelError(SkipSRError):
    exit_code = ExitCode.MODEL


class OutputError(SkipSRError):
    exit_code = ExitCode.OUTPUT


class PartialFailure(SkipSRError):
    """A folder batch ran to its end, but some of its files failed (each named before this)."""

    exit_code = ExitCode.PARTIAL
