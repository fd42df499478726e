"""Worker processes on this host: how they start, and their tie to the process that started them.

A worker (one of a long video's segment workers, or a batch's) starts from a fork server that has
already imported torch, the models and the run: each worker forks from it in milliseconds instead
of importing torch again in a fresh interpreter (3-5 s, four copies at once). The server itself is
a fresh interpreter that never touches CUDA, so no CUDA state is forked. Where there is no fork
server (not Linux), workers are spawned as before.

`start_early` starts that server at the very beginning of a command line that will need it, so its
imports run beside the main process's own instead of after them. It guesses from the arguments
alone (an `upscale` of a long video file on a host with an NVIDIA GPU, or with `--workers` or
`--devices`); a wrong guess costs one idle import on a spare core. This module imports no torch.

A worker dies with its parent, even when that is killed by SIGKILL, so no orphan keeps writing: a
spawned worker by the kernel's parent-death signal, a fork server's worker (the server's child) by
a thread that waits for the main process to end.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Mapping
from multiprocessing.context import BaseContext

# What a worker needs: both workers' modules, which import torch, the models and the run
PRELOAD = ["skipsr_cli.farm.devices", "skipsr_cli.batch.workers"]
PR_SET_PDEATHSIG = 1  # Linux prctl: a signal for this process when its parent dies
# An input at least this long runs in segments, on several workers where the host has a GPU
# (farm/resume.py's RESUME_FRAMES, which checks that the two agree)
LONG_FRAMES = 3600
SPLIT_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".webm"})


def context() -> BaseContext:
    """The start method for workers: the preloaded fork server where there is one, else spawn."""
    if sys.platform != "linux" or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # no effect once the server runs: it has them already
    return ctx


def start_early(argv: list[str]) -> bool:
    """Start the fork server now if `argv` (the command line after `skipsr`) will want workers.
    True when it was started (or already ran). Never raises: the guess only saves time."""
    try:
        if not _wants_workers(argv):
            return False
        ctx = context()
        if ctx.get_start_method() != "forkserver":
            return False
        from multiprocessing import forkserver

        forkserver.ensure_running()
        return True
    except Exception:  # noqa: BLE001 - a hint: the workers start later all the same
        return False


def _wants_workers(argv: list[str]) -> bool:
    if not argv or argv[0] != "upscale" or {"--help", "--ray"} & set(argv):
        return False
    if any(a == "--segment" or a.startswith("--segment=") for a in argv):
        return False  # one farm task: one process
    if "--device" in argv and argv[argv.index("--device") + 1 :][:1] == ["cpu"]:
        return False
    named = "--workers" in argv or "--devices" in argv
    if not named and not _has_gpu():
        return False
    return any(_long_video(a) for a in argv[1:] if not a.startswith("-"))


def _has_gpu() -> bool:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl")


def _long_video(arg: str) -> bool:
    """A video file of at least LONG_FRAMES frames, by its header (a fraction of a second)."""
    if os.path.splitext(arg)[1].lower() not in SPLIT_SUFFIXES or not os.path.isfile(arg):
        return False
    import av

    try:
        with av.open(arg) as container:
            stream = container.streams.video[0]
            frames = stream.frames
            if not frames and stream.average_rate:
                seconds = container.duration / av.time_base if container.duration else 0
                frames = int(seconds * stream.average_rate)
            return frames >= LONG_FRAMES
    except (av.FFmpegError, IndexError, OSError):
        return False


def begin_worker(parent: int, environ: Mapping[str, str]) -> None:
    """First thing in a worker: die with the parent, and take the environment the parent had when
    it started this worker (a fork server's children inherit the server's, from its own start)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a spawned worker: the kernel's guard
    except (OSError, AttributeError):
        pass
    if not parent_alive(parent):  # it died before the request took effect
        os._exit(1)
    if os.getppid() != parent:  # a fork server's: the server outlives `parent` while we run
        threading.Thread(
            target=_die_with, args=(parent,), name="skipsr-parent", daemon=True
        ).start()
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)


def _die_with(parent: int) -> None:
    """Wait for `parent` to end, then end this process at once, as the kernel's signal would. A
    fork server stays up while any of its children may still ask it for processes, so its death
    cannot be the signal."""
    try:
        handle = os.pidfd_open(parent)
    except (AttributeError, OSError):  # no pidfd (Linux before 5.3): look four times a second
        while parent_alive(parent):
            time.sleep(0.25)
    else:
        if parent_alive(parent):  # `parent` may have ended just before the handle was made
            select.select([handle], [], [])  # readable once it has ended
    os.kill(os.getpid(), signal.SIGKILL)


def parent_alive(parent: int) -> bool:
    """Whether the process `parent` that started this worker still runs. A spawned worker is its
    child; a fork server's worker is the server's, whose parent is `parent`."""
    if os.getppid() == parent:
        return True
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user took the number: not ours
        return False
    return _server_of(parent)


def _server_of(parent: int) -> bool:
    """Whether this process's parent is a child of `parent` (its fork server)."""
    try:
        with open(f"/proc/{os.getppid()}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[1]) == parent
    except (OSError, IndexError, ValueError):
        return True  # no /proc: the kernel's signal is the guard
