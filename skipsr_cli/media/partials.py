"""The hidden partial files and folders an output is written to until it is complete.

Each is named after the process that writes it, `.NAME.RANDOM-PID@HOST.skipsr-partial.EXT`, so a
later run to the same output can tell what a dead run left (after SIGKILL or a power cut, when no
clean-up could run) from what a live run is still writing, and remove only the former. A partial
of another host (a shared disk), of a process that is alive, or of unknown origin is left alone.
The outputs of one run (a video and its mask video) are put in place together (`publish_together`),
a Ctrl-C or SIGTERM waiting until every rename is done (`stops_deferred`). A stop that comes once
an output is in place, while its run tidies up, waits (`stops_held`). What this process put in
place is kept (`placements`), so that a stopped command names what it wrote (`left_behind`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from skipsr_cli.errors import OutputError

SUFFIX = ".skipsr-partial"
NAME_MAX = 255  # bytes in one file name, on Linux's and macOS's file systems alike
Identity = tuple[str, int, int, int]  # a file in place: path, st_ino, size, mtime_ns
# The outputs this process put in place, or was about to, each as its user named it and its
# identity there: `left_behind` tells which are there now. Cleared as a command starts.
placements: list[tuple[str, Identity]] = []
# The stops a `stops_held` block took in, for its command to report once it is done.
held_stops: list[int] = []


class Publishable(Protocol):
    """An output written under a partial name (VideoWriter, ImageWriter)."""

    def finish(self) -> None: ...
    def clash(self) -> Path | None: ...
    def publish(self) -> None: ...
    def unpublish(self) -> None: ...
    def commit(self) -> None: ...
    def identity(self) -> Identity: ...


@contextlib.contextmanager
def stops_held() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM recorded, not raised, while the block runs: entered as a finished output
    goes into place, so that the run's tidying after it (its work folder emptied, its lock let go)
    is not cut off halfway, which would leave files and say that no output was left behind. The
    signals that came are listed; the caller decides (a run whose output is in place is done),
    and they are kept in `held_stops`, for the command line to end as stopped once the command
    is done (130 or 143, naming what was written). In the main thread only, where Python runs
    signal handlers; elsewhere none is raised anyway."""
    came: list[int] = []
    try:
        with _recording() as came:
            yield came
    finally:
        held_stops.extend(came)


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done, then act as they would have (the handler
    from before the block runs: KeyboardInterrupt, the command line's SIGTERM, or a hold's
    record): an output set is put in place whole or not at all, never cut off halfway."""
    came: list[int] = []
    try:
        with _recording() as came:
            yield
    finally:
        if came:  # also after an error in the block: the stop is what the user asked for
            signal.raise_signal(came[0])  # the handler runs here, in this thread


@contextlib.contextmanager
def _recording() -> Iterator[list[int]]:
    """SIGINT and SIGTERM listed, not acted on, while the block runs; the handlers from before
    it come back after it. In the main thread only, where Python runs signal handlers. A stop
    already due can run at any call between two swaps: each recorder, once the block is over,
    acts as the handler it replaced, so one that a stop kept from being put back swallows none."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return
    active = [True]
    before: dict[int, object] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            before[sig] = signal.getsignal(sig)
            signal.signal(sig, _recorder(came, active, before[sig]))
        yield came
    finally:
        active[0] = False
        for sig, handler in before.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _recorder(came: list[int], active: list[bool], previous: object) -> Callable:
    def record(number: int, frame: object) -> None:
        if active[0]:
            came.append(number)
        elif callable(previous):
            previous(number, frame)
        elif previous != signal.SIG_IGN:  # the default (or none set from Python): as the OS does
            signal.signal(number, signal.SIG_DFL)
            signal.raise_signal(number)

    return record


def note_placing(ids: Sequence[Identity], shown: Sequence[object] | None = None) -> None:
    """Keep the outputs about to go into place (`placements`): `shown` names them as the user
    did (default: their identities' paths). Kept before the renames, so a stop at any point
    finds each one that made it; `left_behind` checks that it did."""
    names = shown if shown is not None else [None] * len(ids)
    for name, ident in zip(names, ids, strict=True):
        placements.append((str(ident[0] if name is None else name), ident))


def forget_placements() -> None:
    """A fresh start for a command: nothing placed, no stop held."""
    placements.clear()
    held_stops.clear()


def left_behind() -> list[str]:
    """The outputs of `placements` that are in place now, each named once, in order: a file at
    the identity's path with its inode, size and mtime (not one put back by a rollback)."""
    found: list[str] = []
    for name, (path, ino, size, mtime) in placements:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_ino, st.st_size, st.st_mtime_ns) == (ino, size, mtime) and name not in found:
            found.append(name)
    return found


def left_behind_words(most: int = 3) -> str:
    """What a stopped command left, in words: "no output was left behind", "out.mp4 was
    written", "out.mp4 and mask.mp4 were written", or the first `most` and how many more."""
    names = left_behind()
    if not names:
        return "no output was left behind"
    if len(names) == 1:
        return f"{names[0]} was written"
    if len(names) <= most:
        return f"{', '.join(names[:-1])} and {names[-1]} were written"
    return f"{', '.join(names[:most])} and {len(names) - most} more were written"


def publish_together(
    outputs: Sequence[Publishable],
    placing: Callable[[tuple[Identity, ...]], None] | None = None,
    *,
    listed: bool = True,
) -> None:
    """Finish every output, then put them all in place: an output that cannot be finished, or
    whose path was taken during the run, leaves none in place (never a mask video without its
    video), and one that fails to move takes back those moved before it, putting back what they
    replaced (--overwrite). Only then are the replaced files let go. `placing` hears each
    output's identity once there (`identity`) before the first one moves. A stop waits until
    every output is in place and its replaced file let go (`stops_deferred`); with `listed`
    (a run's own outputs, not the parts it joins later) they go into `placements`."""
    for output in outputs:
        output.finish()
    for output in outputs:
        clash = output.clash()
        if clash is not None:
            raise OutputError(f"output exists: {clash} (pass --overwrite to replace it)")
    ids = tuple(output.identity() for output in outputs)
    if placing is not None:
        placing(ids)
    with stops_deferred():
        if listed:
            note_placing(ids, [getattr(output, "path", None) for output in outputs])
        placed: list[Publishable] = []
        try:
            for output in outputs:
                placed.append(output)  # before: one stopped halfway is taken back too
                output.publish()
        except BaseException:
            for output in placed:
                with contextlib.suppress(OSError):  # one that cannot be taken back stops no other
                    output.unpublish()
            raise
        for output in outputs:
            output.commit()


def flush_to_disk(path: Path) -> None:
    """The finished file's data on the disk before it is renamed into place (fsync): after a
    power cut the output is whole or not there, never a file of the right name with a hole, and a
    network disk's late write error (a quota, a full server) is raised here, as an OSError, not
    lost after the command said done."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def identity(final: Path, partial: Path) -> Identity:
    """(path, st_ino, size, mtime_ns) that the finished file at `partial` will have at `final`
    once renamed: a rename keeps them all, and a file put there by anyone else all but surely
    differs in one (an inode number freed and given again comes with another size or time). No
    device number: a shared disk's differs from node to node. `final` is resolved up to its
    folder only, as the rename replaces a link there rather than what it points to."""
    st = os.stat(partial)
    return str(final.parent.resolve() / final.name), st.st_ino, st.st_size, st.st_mtime_ns


def keep_old(path: Path, backup: Path) -> Path | None:
    """A second name (`backup`, beside it) for the file at `path` that an output is about to
    replace, so that it can be put back; None where nothing is there, or where the file system
    has no hard links (the file is then replaced for good)."""
    try:
        os.link(path, backup)
    except OSError:
        return None
    return backup


_NAME = re.compile(
    r"\.(?P<stem>.*)\.[0-9a-f]{8}-(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)"
    + re.escape(SUFFIX)
    + r"(?P<ext>.*)"
)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]


def fitted(stem: str, reserve: int) -> str:
    """`stem` as a hidden name that adds `reserve` bytes to it can hold it: itself where the whole
    fits in NAME_MAX, else its start and a hash of all of it (the same for the same stem, so a
    later run finds what an earlier one left). An output's own name may use all 255 bytes."""
    raw = stem.encode()
    if len(raw) + reserve <= NAME_MAX:
        return stem
    digest = hashlib.blake2s(raw, digest_size=6).hexdigest()
    return f"{raw[: max(0, NAME_MAX - reserve - 13)].decode(errors='ignore')}~{digest}"


def _stem_room(ext: str) -> int:
    """The bytes a partial's name adds to its output's stem, at the longest (a 10-digit pid)."""
    return len(f"..{'0' * 8}-{'0' * 10}@{_host()}{SUFFIX}{ext}".encode())


def partial_name(stem: str, ext: str = "") -> str:
    """A fresh name for the partial of output `stem` + `ext`, naming this process."""
    stem = fitted(stem, _stem_room(ext))
    return f".{stem}.{secrets.token_hex(4)}-{os.getpid()}@{_host()}{SUFFIX}{ext}"


def gone(pid: int) -> bool:
    """Whether process `pid` of this host has ended: never this process, and another user's,
    which may not be signalled (EPERM), is alive."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def left_by_the_gone(name: str) -> bool:
    """Whether `name` is a partial whose writer, a process of this host, has ended: never a live
    run's, nor another host's (whose processes cannot be asked)."""
    match = _NAME.fullmatch(name)
    return match is not None and match["host"] == _host() and gone(int(match["pid"]))


def remove_stale(folder: Path, stem: str, ext: str = "") -> list[Path]:
    """Remove the partials of output `stem` + `ext` in `folder` whose writer, a process of this
    host, is gone; returns what was removed."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed, stem = [], fitted(stem, _stem_room(ext))
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None or (match["stem"], match["ext"]) != (stem, ext):
            continue
        if not left_by_the_gone(entry.name):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed
