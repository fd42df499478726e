"""What every `skipsr` command shares: exit-code mapping, device and dtype choice, common options."""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, get_args

import torch
import typer

from skipsr_cli.errors import ExitCode, SkipSRError
from skipsr_cli.media.partials import forget_placements, held_stops, left_behind_words
from skipsr_cli.run.options import resolve_device, resolve_dtype

run_state = {"debug": False}


def exit_codes(command: Callable) -> Callable:
    """Turn every failure of a command into one line on stderr and its documented exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        forget_placements()  # what this command puts in place, named if it is stopped
        try:
            with _terminate_like_interrupt():
                result = command(*args, **kwargs)
        except KeyboardInterrupt as e:
            _stopped(e, signal.SIGINT)
        except Terminated as e:
            _stopped(e, signal.SIGTERM)
        except SkipSRError as e:
            _report(e, _noted(e, str(e)))
            raise typer.Exit(e.exit_code) from None
        except Exception as e:
            if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
                # a path given that no file system can hold: a bad argument, whichever it was
                _report(e, _noted(e, f"a file name is too long for the file system: {e.filename}"))
                raise typer.Exit(ExitCode.USAGE) from None
            name = f"{type(e).__name__}: {e}"  # a bug: say so plainly
            _report(e, _noted(e, f"internal error: {name} (rerun with --debug for the traceback)"))
            raise typer.Exit(ExitCode.INTERNAL) from None
        if held_stops:  # a stop held while the output went into place (a stitch): ended as one
            _stopped(None, held_stops[0])
        return result

    return wrapper


def _stopped(error: BaseException | None, stop: int) -> NoReturn:
    """Ctrl-C (130) or SIGTERM (143): one line that names what the command wrote, if anything
    (`partials.left_behind`), whenever the stop came, and what a run in parts kept (its notes)."""
    left = left_behind_words()
    if stop == signal.SIGTERM:
        line = f"skipsr: terminated (SIGTERM); {left}"
        code = ExitCode.TERMINATED
    else:
        line = f"skipsr: interrupted; {left}"
        code = ExitCode.INTERRUPTED
        run_state["reported"] = True
    print(line if error is None else _noted(error, line), file=sys.stderr, flush=True)
    raise typer.Exit(code) from None


def _noted(error: BaseException, message: str) -> str:
    """The message with the exception's notes (what a stopped run kept: farm/parts.py) after it,
    on the same line."""
    return "; ".join([message, *getattr(error, "__notes__", [])])


class Terminated(BaseException):
    """SIGTERM, raised in the main thread: it unwinds like Ctrl-C, so every writer cleans up."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM (what `timeout`, `docker stop` and schedulers send) raises
    Terminated instead of killing the process with its partial files on disk."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report(error: BaseException, message: str) -> None:
    if run_state["debug"]:
        traceback.print_exception(error, file=sys.stderr)
    print(f"skipsr: error: {message}", file=sys.stderr, flush=True)


class DeviceChoice(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


class DtypeChoice(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


def pick_device(choice: DeviceChoice) -> torch.device:
    return resolve_device(choice.value)


def pick_dtype(choice: DtypeChoice, device: torch.device) -> torch.dtype:
    return resolve_dtype(choice.value, device)


# Options shared by several commands, declared once.
DeviceOpt = Annotated[DeviceChoice, typer.Option(help="Where the model runs.")]
DtypeOpt = Annotated[
    DtypeChoice, typer.Option(help="Model precision; auto = bf16 on CUDA, fp32 on CPU.")
]
WeightsOpt = Annotated[
    Path | None,
    # readable=False: an unreadable file is the loader's error (exit 4), not a usage error
    typer.Option(help="A .safetensors weights file (overrides --model).", readable=False),
]
ModelOpt = Annotated[str, typer.Option("--model", help="Model preset: base, debug, seedvr2-3b.")]
DenoiseOpt = Annotated[
    str,
    typer.Option(
        metavar="auto|AMOUNT",
        help="How much to treat the input as compressed, 0 to 1: blends the model towards its weights for compressed sources. 0 suits clean sources (camera files, high bitrates), 1 web and streamed video; auto (the default) takes it from the input's own H.264 quantiser: 0 for other codecs, images, and weights with nothing to blend towards.",
    ),
]
DenoiseWeightsOpt = Annotated[
    Path | None,
    typer.Option(
        help="The weights --denoise blends towards (default: the preset's own; needed with --weights).",
        readable=False,
    ),
]
RandomOpt = Annotated[
    bool,
    typer.Option("--random-weights", help="Untrained random weights, for tests and benchmarks."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


def in_panel(option: object, panel: str) -> object:
    """A shared option (an Annotated type above) shown in a help panel of one command."""
    kind, info = get_args(option)
    info = copy.copy(info)
    info.rich_help_panel = panel
    return Annotated[kind, info]
