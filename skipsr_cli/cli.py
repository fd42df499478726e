"""The `skipsr` console script. The commands live in `skipsr_cli/commands/`, one module per group.

Exit codes (README, "Exit codes"): 0 ok, 1 internal error, 2 bad usage, 3 unreadable input,
4 model or weights error, 5 output or encode error, 130 interrupted, 143 terminated.

Every way a run ends is an exit code and at most one `skipsr: error:` line: the command line's own
usage errors (an unknown option, a value out of range) included, and Ctrl-C or SIGTERM while the
commands and torch are still being imported. So this module imports nothing heavy before `main` is
running; only a stop during the interpreter's own start-up, before any line of skipsr runs, escapes
this.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading

from skipsr_cli import processes

__all__ = ["main"]  # and `app`, the Typer application, imported on first use

INTERRUPTED = 130
TERMINATED = 143


_interrupted = []  # a Ctrl-C or SIGTERM was seen, even one that C code (torch's start-up) swallowed


class _Terminated(BaseException):
    """SIGTERM before a command took over (imports, parsing): it unwinds as Ctrl-C does."""


def _on_interrupt(signum: int, frame: object) -> None:
    _interrupted.append(signum)
    raise KeyboardInterrupt


def _on_terminate(signum: int, frame: object) -> None:
    _interrupted.append(signum)
    raise _Terminated


def _defer_interrupt(signum: int, frame: object) -> None:
    """While torch imports, Ctrl-C and SIGTERM are only noted: an exception raised inside its
    initialisation can abort the process (SIGABRT) or leave a half-imported module behind."""
    _interrupted.append(signum)


def _stop_of_start_up() -> BaseException:
    """The exception for the stop noted while the commands imported: SIGTERM's, else Ctrl-C's."""
    return _Terminated() if signal.SIGTERM in _interrupted else KeyboardInterrupt()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    previous = previous_term = None
    _interrupted.clear()
    placed = sys.modules.get("skipsr_cli.media.partials")  # loaded by an earlier call's command
    if placed is not None:
        placed.forget_placements()  # its outputs are not this call's to name
    if threading.current_thread() is threading.main_thread():
        # first: before torch and the commands load (the fork server, started next, ignores both
        # by its own choice, and a Python handler does not pass through its exec anyway)
        previous = signal.signal(signal.SIGINT, _defer_interrupt)
        previous_term = signal.signal(signal.SIGTERM, _defer_interrupt)
    try:
        if argv is None:  # the command itself, not a call from a program with its own processes
            # a long video's workers: their fork server imports torch beside this process's
            processes.start_early(sys.argv[1:])
            # no collections while torch and the commands import (about 0.3 s of them); `_run`
            # freezes what they made and turns collection back on
            gc.disable()
        code = _run(argv)
    except (KeyboardInterrupt, _Terminated) as e:  # before a command took over, or after it
        if previous is not None:  # a second stop while this one is said is only noted
            signal.signal(signal.SIGINT, _defer_interrupt)
            signal.signal(signal.SIGTERM, _defer_interrupt)
        from skipsr_cli.media.partials import left_behind_words

        left = left_behind_words()  # ended: what it put in place, if anything
        if isinstance(e, _Terminated):  # as the commands say it (commands/common.py)
            print(f"skipsr: terminated (SIGTERM); {left}", file=sys.stderr, flush=True)
            code = TERMINATED
        else:
            print(f"skipsr: interrupted; {left}", file=sys.stderr, flush=True)
            code = INTERRUPTED
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if previous is not None:
            # the console script exits now, and its exit runs library clean-ups (torch's atexit):
            # a Ctrl-C there (a second press, or one as the run ends) is only noted, not a
            # traceback. Called from Python, the caller's handler comes back.
            signal.signal(signal.SIGINT, _defer_interrupt if argv is None else previous)
    # Under `python -m`, CPython ends the process by SIGINT (not our exit code) once any string
    # `exec` (dataclasses and namedtuples build their methods so, as modules import) ended in a
    # KeyboardInterrupt, even one caught since; each string eval clears that note first.
    exec("")
    if argv is None:
        # The process ends now, its outputs closed and in place: what is left of its objects
        # needs no last collection, which over torch's many took 0.4-0.5 s of the exit
        # (BENCHMARKS.md). Refcounts, atexit and the flush of stdout and stderr still run.
        gc.freeze()
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    try:
        from typer import Abort
        from typer._click import exceptions as click_errors

        from skipsr_cli.commands.app import app
        from skipsr_cli.commands.common import run_state
    except Exception:  # a Ctrl-C that a library swallowed can leave a half-imported module
        if _interrupted:
            raise _stop_of_start_up() from None
        raise
    finally:
        if not gc.isenabled():  # main turned it off for the imports: what they made stays
            gc.freeze()
            gc.enable()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_interrupt)  # from here on Ctrl-C interrupts at once
        if signal.getsignal(signal.SIGTERM) is _defer_interrupt:  # and SIGTERM
            signal.signal(signal.SIGTERM, _on_terminate)
    if _interrupted:  # a stop while importing: acted on now that the imports are whole
        raise _stop_of_start_up()
    try:
        result = app(args=argv, standalone_mode=False)
    except click_errors.NoArgsIsHelpError as e:  # bare `skipsr`, `skipsr bench`: the help, once
        # Rich prints it as the error is made (its message is then empty); the plain formatter
        # only returns it. Asked for again, Rich printed it a second time.
        if e.format_message().strip():
            print(e.format_message(), file=sys.stderr)
        return 2
    except click_errors.ClickException as e:
        print(f"skipsr: error: {usage_line(e, argv)}", file=sys.stderr, flush=True)
        return 2
    except Abort:  # end of input at a prompt
        raise KeyboardInterrupt from None
    if result == INTERRUPTED and not run_state.get("reported"):  # Ctrl-C while parsing
        raise KeyboardInterrupt
    return result if isinstance(result, int) else 0


def usage_line(error: Exception, argv: list[str] | None = None) -> str:
    """One line for a usage error of the command line, with where to look for help."""
    from typer._click import exceptions as click_errors

    message = " ".join(error.format_message().split())
    ctx = getattr(error, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    if isinstance(error, click_errors.NoSuchOption):
        dashed = [a for a in (sys.argv[1:] if argv is None else argv) if _looks_like_a_file(a)]
        if dashed:
            hint = f" (a file name that starts with a dash goes after --: -- {dashed[0]})"
    return message + hint


def _looks_like_a_file(arg: str) -> bool:
    return arg.startswith("-") and arg != "--" and ("." in arg or "/" in arg or os.path.exists(arg))


def __getattr__(name: str) -> object:
    if name == "app":  # the Typer application, imported on first use
        from skipsr_cli.commands.app import app

        return app
    raise AttributeError(f"module 'skipsr_cli.cli' has no attribute {name!r}")


if __name__ == "__main__":
    main()
