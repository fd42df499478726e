"""Worker processes on this host: how they start, and their tie to the process that started them.

The `skipsr` command line, when it will start workers for one long video (its segment workers,
farm/devices.py), first starts a fork server (`start_early`), before its own imports, so that the
server's import of torch, the models and the run goes on beside the main process's own. Each
worker then forks from it in milliseconds instead of importing torch again in a fresh interpreter
(3-5 s, four copies at once). The server is a fresh interpreter that never touches CUDA, so no
CUDA state is forked. It guesses from the arguments alone; a wrong guess costs one idle import on
a spare core. Elsewhere (the Python API in a caller's program, whose own fork server is left
alone; Python 3.10; not Linux) workers are spawned. This module imports no torch.

A worker dies with its parent, even when that is killed by SIGKILL, so no orphan keeps writing:
by the kernel's parent-death signal, for a fork server's worker through the server, which has
the same tie to the main process.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from multiprocessing.context import BaseContext
from pathlib import Path

# What a worker needs: this module first (it sets the server up: `_in_server`), then both
# workers' modules, which import torch, the models and the run
PRELOAD = ["skipsr_cli.processes", "skipsr_cli.farm.devices", "skipsr_cli.batch.workers"]
SERVER_ENV = (
    "SKIPSR_FORK_SERVER"  # the starting process's pid, in the fork server's environment alone
)
STOPS = {signal.SIGINT, signal.SIGTERM}
PR_SET_PDEATHSIG = 1  # Linux prctl: a signal for this process when its parent dies
# An input at least this long runs in segments, on several workers where the host has a GPU
# and CORES_PER_WORKER cores for each (farm/resume.py's RESUME_FRAMES and RESUMABLE, and
# farm/devices.py's CORES_PER_WORKER: tests/test_processes.py keeps them equal)
LONG_FRAMES = 3600
SPLIT_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".webm"})
# `upscale`'s options that take a value, where the command line's own parser is not yet imported
# (tests/test_processes.py keeps them the command's): what follows one is not INPUT or OUTPUT
VALUED = frozenset({
    "--audio-bitrate", "--chunk-frames", "--codec", "--crf", "--denoise", "--denoise-weights",
    "--device", "--devices", "--dtype", "--ext", "--frames", "--glob", "--mask-out", "--model",
    "--overlap", "--parts", "--pix-fmt", "--preset", "--ray", "--scale", "--seed", "--segment",
    "--segments", "--size", "--steps", "--threshold", "--tile", "--weights", "--workers", "-s",
})  # fmt: skip
CORES_PER_WORKER = 4
# the folder, in the temporary folder, that holds the fork server's socket folder
SOCKETS = "skipsr-server"
SOCKET_PATH_MAX = 107  # bytes of a Unix socket's path (sun_path, less its NUL)
SOCKET_TAIL = len("/pymp-12345678/listener-12345678")  # what multiprocessing adds to the folder


_armed = False  # the fork server was started here, for this process's workers (`start_early`)


def context() -> BaseContext:
    """The start method for workers: the preloaded fork server where `start_early` started it and
    it still runs, else spawn (the Python API in a caller's program: its own fork server is left
    alone). One that died (killed, out of memory) is not started again by multiprocessing, which
    would start it without the settings `_start_server` gives it."""
    global _armed
    if _armed and not _server_runs():
        _armed = False
    return mp.get_context("forkserver" if _armed else "spawn")


def _server_runs() -> bool:
    """Whether the fork server `start_early` started has not ended (its exit left for
    multiprocessing to collect)."""
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid
    try:
        return (
            pid is not None
            and os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        )
    except ChildProcessError:
        return False


def start_early(argv: list[str]) -> bool:
    """Start the fork server now if `argv` (the command line after `skipsr`) will want workers;
    call it first thing, before any other process or thread starts. True when it was started.
    Never raises: the guess only saves time."""
    global _armed
    try:
        if _armed or not _can_serve() or not _wants_workers(argv):
            return _armed
        _start_server()
        _armed = True
    except Exception:  # noqa: BLE001 - a hint: the workers are spawned all the same
        return False
    return True


def _can_serve() -> bool:
    """Linux with a fork server not yet started, and Python 3.11 or later reading the
    environment (PYTHONSAFEPATH, PYTHONPATH: not under -E or -I)."""
    if sys.platform != "linux" or sys.version_info < (3, 11) or sys.flags.ignore_environment:
        return False
    if "forkserver" not in mp.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None) is None


def _start_server() -> None:
    """The server imports PRELOAD with this process's own `sys.path` and never the current
    folder (PYTHONSAFEPATH: a `models/` or `torch.py` where the command runs must not stand in
    for ours, nor an installed copy for the one this process runs). The server ignores Ctrl-C
    and SIGTERM (a terminal's or a scheduler's reaches the whole group): its workers unwind on
    their own signals (`_in_server`), and it ends when this process does. One that comes while
    it starts waits for this process instead of being lost."""
    from multiprocessing import forkserver, resource_tracker

    mp.set_forkserver_preload(PRELOAD)
    resource_tracker.ensure_running()  # first: its own start unblocks SIGINT and SIGTERM
    given = {k: os.environ.get(k) for k in (SERVER_ENV, "PYTHONSAFEPATH", "PYTHONPATH")}
    os.environ.update(
        {
            SERVER_ENV: str(os.getpid()),
            "PYTHONSAFEPATH": "1",
            "PYTHONPATH": server_path(),
        }
    )
    # blocked here, one that comes meanwhile waits (Linux keeps a blocked signal pending even
    # while it is ignored); ignored, the server inherits that through its exec
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    handlers = {s: signal.signal(s, signal.SIG_IGN) for s in STOPS}
    try:
        with _socket_folder():
            forkserver.ensure_running()
    finally:
        for key, value in given.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)


@contextlib.contextmanager
def _socket_folder() -> Iterator[None]:
    """multiprocessing puts the server's socket in a pymp-* folder of the temporary folder, which
    a SIGKILL leaves there for good: it is made inside a folder named for this process and host,
    which goes at exit, after multiprocessing's own, or else at the next run on this host once
    this process is gone. Not where the socket's path would grow past what a socket may have."""
    from multiprocessing import util

    base = Path(tempfile.gettempdir())
    _remove_stale_sockets(base)
    folder = base / f".{SOCKETS}-{os.getpid()}-{_host_tag()}"
    try:
        if len(os.fsencode(folder)) + SOCKET_TAIL > SOCKET_PATH_MAX:
            raise OSError("too long a path for a socket")
        folder.mkdir(mode=0o700)
    except OSError:  # multiprocessing's own folder, as before
        yield
        return
    # multiprocessing's own folder goes at priority -100 (util.get_temp_dir); this one after it
    util.Finalize(None, shutil.rmtree, (folder,), {"ignore_errors": True}, exitpriority=-101)
    given, tempfile.tempdir = tempfile.tempdir, str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = given


def _remove_stale_sockets(base: Path) -> None:
    """The socket folders of this host's processes that are gone (a SIGKILL's)."""
    from skipsr_cli.media.partials import gone

    named = re.compile(rf"\.{SOCKETS}-(\d+)-{_host_tag()}")
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        found = named.fullmatch(entry.name)
        if found and gone(int(found[1])):
            shutil.rmtree(entry.path, ignore_errors=True)


def _host_tag() -> str:
    """This host, in six characters: a temporary folder on a shared disk has other hosts' pids."""
    return hashlib.blake2s(socket.gethostname().encode(), digest_size=3).hexdigest()


def server_path() -> str:
    """This process's `sys.path` for the server's PYTHONPATH, with the current folder that
    `python -c` or a bare `python` puts first as "" named by its path: under PYTHONSAFEPATH the
    server adds no current folder of its own, so the "" alone would lose the code that this
    process imported from where it runs (an uninstalled checkout), and every worker with it."""
    return os.pathsep.join(os.getcwd() if entry == "" else entry for entry in sys.path)


def _in_server(parent: int) -> None:
    """In the fork server, as it imports this module first: it dies with `parent`, the process
    that started it (even by SIGKILL, and not lingering through its imports), and its workers
    with it (their own parent-death signal, `begin_worker`); and each worker it forks
    takes SIGTERM back at once, before it unpickles its task, so that `terminate()` stops it
    even then; Ctrl-C stays ignored, as `begin_worker` keeps it."""
    _set_death_signal()
    if os.getppid() != parent:  # it ended before the request took effect
        os._exit(1)
    # no collections while the server imports torch and the run, nor after: its workers fork
    # from it, and collections would write into the pages they share (`begin_worker` freezes
    # what they inherit and turns collection on in each)
    gc.disable()
    # blocked too, a SIGTERM sent to a worker between its fork and its hook below is kept, not
    # dropped as ignored (a blocked signal stays pending on Linux; the mask is forked)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def child() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    os.register_at_fork(after_in_child=child)


def _wants_workers(argv: list[str]) -> bool:
    """Whether the command line will start workers for one long video: an `upscale` of a video
    file of LONG_FRAMES or more into a video, in segments on several workers (`--workers N`,
    several `--devices`, or the default on a host with an NVIDIA GPU and cores for two)."""
    if not argv or argv[0] != "upscale" or "--help" in argv:
        return False
    if any(a.split("=")[0] in ("--segment", "--mask-out", "--frames", "--ray") for a in argv):
        return False  # one farm task, or a run in one process
    workers, devices, device = (
        _value(argv, name) for name in ("--workers", "--devices", "--device")
    )
    if workers is not None:
        if not workers.isdigit() or int(workers) < 2:
            return False
    elif devices is not None:
        if devices != "all" and len(devices.split(",")) < 2:
            return False
    elif (device or "").startswith("cpu") or not _has_gpu():
        return False
    elif os.environ.get("SKIPSR_WORKER_THREADS", "").strip() or _cores() < 2 * CORES_PER_WORKER:
        return False  # one worker by default
    words = _arguments(argv[1:])
    return len(words) == 2 and _long_video(words[0]) and _video_name(words[1])


def _arguments(argv: list[str]) -> list[str]:
    """The command's arguments (INPUT and OUTPUT) among its options and their values."""
    words: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":  # all that follows is arguments
            return words + argv[i + 1 :]
        if i > 0 and _takes_next(argv[i - 1]):
            continue  # that option's value
        if arg == "-" or not arg.startswith("-"):
            words.append(arg)
    return words


def _takes_next(arg: str) -> bool:
    """Whether the word after `arg` is its value: an option that takes one (`--scale`, `-s`), or
    short flags grouped with one last (`-qs`; in `-qs4` the value is inside)."""
    if arg in VALUED:
        return True
    if arg.startswith("--") or not arg.startswith("-"):
        return False
    for place, letter in enumerate(arg[1:], 1):
        if f"-{letter}" in VALUED:
            return place == len(arg) - 1
    return False


def _value(argv: list[str], name: str) -> str | None:
    """The value of option `name` in `argv` (`--name V` or `--name=V`), the last one given."""
    found = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def _cores() -> int:
    """media/cpu_share.host_cores, which this module cannot import (it imports torch)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _video_name(output: str) -> bool:
    """An output a run in segments can write: a video file (not PNG frames, nor a folder)."""
    return os.path.splitext(output)[1].lower() in SPLIT_SUFFIXES and not os.path.isdir(output)


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
    it started this worker (a fork server's children inherit the server's, from its own start).
    SIGTERM ends it (the caller sets its own handler next), and Ctrl-C is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _set_death_signal()  # a fork server's worker ends as the server does, which ends with parent
    if not gc.isenabled():  # forked from the server, whose imports stay shared and uncollected
        gc.freeze()
        gc.enable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    if not parent_alive(parent):  # it died before the request took effect
        os._exit(1)
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)


def _set_death_signal() -> None:
    """SIGKILL this process when its parent ends (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


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
        return False  # no /proc (not Linux): no fork server, and a spawned worker's parent is gone


if os.environ.get(SERVER_ENV, "").isdigit() and mp.parent_process() is None:
    _in_server(int(os.environ[SERVER_ENV]))
