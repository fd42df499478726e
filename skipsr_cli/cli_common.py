"""What every `skipsr` command shares: exit-code mapping, device and dtype choice, common options."""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import torch
import typer

from skipsr_cli.errors import ExitCode, SkipSRError, UsageError

run_state = {"debug": False}


def exit_codes(command: Callable) -> Callable:
    """Turn every failure of a command into one line on stderr and its documented exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with _terminate_like_interrupt():
                return command(*args, **kwargs)
        except KeyboardInterrupt:
            print("skipsr: interrupted; no output was left behind", file=sys.stderr)
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except Terminated:
            print("skipsr: terminated (SIGTERM); no output was left behind", file=sys.stderr)
            raise typer.Exit(ExitCode.TERMINATED) from None
        except SkipSRError as e:
            _report(e, str(e))
            raise typer.Exit(e.exit_code) from None
        except Exception as e:  # a bug: say so plainly
            _report(
                e, f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)"
            )
            raise typer.Exit(ExitCode.INTERNAL) from None

    return wrapper


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


def check_threshold(threshold: float | None) -> None:
    """tau must be a number of dB: NaN would skip every token, and infinities mean nothing."""
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"--threshold must be a finite number of dB, not {threshold}")


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
    if choice is DeviceChoice.cuda and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use --device cpu)")
    if choice is DeviceChoice.cpu or (
        choice is DeviceChoice.auto and not torch.cuda.is_available()
    ):
        return torch.device("cpu")
    return torch.device("cuda")


def pick_dtype(choice: DtypeChoice, device: torch.device) -> torch.dtype:
    if choice is DtypeChoice.auto:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[choice.value]


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1920x1080") from None
    if w < 1 or h < 1 or w > 16384 or h > 16384:
        raise UsageError(f"--size {text!r}: width and height must be between 1 and 16384")
    return w, h


# Full-resolution VAE work runs this many frames at a time (exact; bounds memory at large sizes).
FRAME_SLICE = 4

# Options shared by several commands, declared once.
DeviceOpt = Annotated[DeviceChoice, typer.Option(help="Where the model runs.")]
DtypeOpt = Annotated[
    DtypeChoice, typer.Option(help="Model precision; auto = bf16 on CUDA, fp32 on CPU.")
]
WeightsOpt = Annotated[
    Path | None, typer.Option(help="A .safetensors weights file (overrides --model).")
]
ModelOpt = Annotated[str, typer.Option("--model", help="Model preset: base, debug, seedvr2-3b.")]
RandomOpt = Annotated[
    bool,
    typer.Option("--random-weights", help="Untrained random weights, for tests and benchmarks."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
