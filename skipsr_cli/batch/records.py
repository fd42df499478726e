"""What a batch remembers in OUT_DIR/.skipsr-batch/: one record per finished output, and a lock.

A record says an output is finished and what made it: a fingerprint of the input (size, mtime_ns
and a SHA-256 of its first and last MiB, or of the whole file when it is small), the options that
change the output, and the weights' identity (the SHA-256 of the weights file, or the preset name
and seed of random weights). It is written atomically (a temp file, then os.replace) after the
output is in place, so a record never names an output that is not there. A rerun skips an output
whose record matches and which still has the recorded size.

While a file runs, a claim sits beside its record (`NAME.claim.json`): what is making the file's
outputs (the video, and a mask video if asked for) and where they go. Just before the outputs are
put in place (`Placing`), the claim takes down the identity each will have there (inode, size,
modification time), which a rename keeps. The claim goes once the record is written; the
record of an earlier output stays untouched until the new one is in place. A run killed (SIGKILL,
a lost node) after an output was put in place but before the record was written leaves the claim,
and an output at its path with the claimed identity is the batch's own: the rerun replaces it, as
any with a record, instead of refusing it as somebody else's file. A file at that path with another
identity (put there by somebody else) is never taken for the batch's. Claims that hold no output in
place (a run that failed, was stopped, or was killed before) are removed when a batch takes the lock
and when it lets go of it.

The lock (fcntl, on `.skipsr-batch/.lock`) is held for the whole batch. Whoever takes it knows no
live batch writes into OUT_DIR, so a partial file there (`.NAME.RANDOM-PID@HOST.skipsr-partial.EXT`,
or such a folder of PNG frames) whose writer on this host has ended is left over from a killed run:
removed, as the batch takes the lock and as it lets go of it. A live run's (a single upscale
writing beside the batch) and another host's are left alone.
The lock file is there only while a batch holds it (`exclusive_hold`), and a batch stopped before
it finished any file leaves no `.skipsr-batch/` behind (nor the folders it made for outputs it
never wrote: batch/run.py); the done-records of the files it finished stay, for the rerun.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import IO

from skipsr_cli import weights
from skipsr_cli.errors import ModelError, OutputError
from skipsr_cli.media import partials, quantiser
from skipsr_cli.run.options import AUTO, UpscaleOptions, effective_denoise

STATE_DIR = ".skipsr-batch"
CLAIM = ".claim.json"  # beside NAME.json while NAME is being made
# the batch's lock in STATE_DIR: hidden, as no input's path is, so that no record's folder (an
# input's subfolder, mirrored) can take its name
LOCK = ".lock"
FORMAT = 1
MIB = 1 << 20
# Options that never change the output's bytes: where it runs and how clashes are handled.
NOT_IN_KEY = frozenset({"device", "overwrite", "mask_out", "weights", "denoise_weights"})
# Options added after records of format 1 were first written, each with the value that stands for
# what runs did before it (no blend; chunks not split at scene cuts): at that value the option is
# left out of the key, so records written before it still match.
ADDED_SINCE = {"denoise": (0.0,), "scene_cuts": (False,)}


def fingerprint(path: Path) -> dict:
    """Size, mtime_ns and a SHA-256 of the first and last MiB (all of it when it is <= 2 MiB)."""
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if st.st_size <= 2 * MIB:
            digest.update(f.read())
        else:
            digest.update(f.read(MIB))
            f.seek(-MIB, os.SEEK_END)
            digest.update(f.read(MIB))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest.hexdigest()}


def weights_identity(options: UpscaleOptions) -> str:
    """The weights that make the outputs: a file's SHA-256 (and, blended by --denoise, the other
    file's), or a random preset and its seed."""
    if options.random_weights:
        return f"random:{options.model}:seed={options.seed}"
    path = options.weights or weights.shipped_path(options.model)
    identity = _file_identity(path, options.weights is not None, options.model)
    if effective_denoise(options) == 0:
        return identity
    other = options.denoise_weights or weights.denoise_path(options.model)
    blended = _file_identity(other, options.denoise_weights is not None, options.model)
    return f"{identity}+denoise:{blended}"


def _file_identity(path: Path, named: bool, preset: str) -> str:
    if named and not path.is_file():
        raise ModelError(f"weights not found: {path}")
    if not path.is_file():
        return f"preset:{preset}"  # no file: loading will fail and say why
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 * MIB), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def options_key(options: UpscaleOptions) -> dict:
    """The options that change an output, as JSON values. How many workers run the batch, on
    which devices or on Ray, changes none: all are None in every record (as records have always
    held them), so a rerun with other workers skips what is done. Options added since the first
    records are left out at their defaults, so records written before them still match."""
    denoise = effective_denoise(options)
    if denoise == AUTO:  # the mapping belongs to the key: recalibrated, it makes other outputs
        denoise = (
            f"auto (QP {weights.QP_CLEAN:g}-{weights.QP_WEB:g} over {quantiser.FRAMES} frames)"
        )
    values = asdict(replace(options, workers=None, devices=None, ray=None, denoise=denoise))
    return {
        f.name: _plain(values[f.name])
        for f in fields(UpscaleOptions)
        if f.name not in NOT_IN_KEY and ADDED_SINCE.get(f.name, ()) != (values[f.name],)
    }


def _plain(value: object) -> object:
    return value if isinstance(value, bool | int | float | str | type(None)) else str(value)


# what a record's name adds to its output's at the longest: ".NAME.claim.json.0123abcd.tmp"
RECORD_ROOM = len(f".{CLAIM}.{'0' * 8}.tmp")


def record_path(out_dir: Path, output: Path) -> Path:
    return _state_path(out_dir, output, ".json")


def _state_path(out_dir: Path, output: Path, suffix: str) -> Path:
    """Where OUT_DIR's state keeps `output`'s record or claim (`suffix`): its path under OUT_DIR,
    its name cut to fit with a hash of it where the output's own uses most of NAME_MAX."""
    rel = output.relative_to(out_dir)
    name = partials.fitted(rel.name, RECORD_ROOM)
    return out_dir / STATE_DIR / rel.parent / f"{name}{suffix}"


def make_record(input: Path, outputs: list[Path], options: dict, weights_id: str) -> dict:
    """The record of a finished file: its input (fingerprint and path), what made it, and the
    sizes of its `outputs` (the output, then its mask where there is one)."""
    return {
        "format": FORMAT,
        "input": fingerprint(input),
        "input_path": str(input.resolve()),
        "options": options,
        "weights": weights_id,
        "outputs": _sizes(outputs),
    }


def _sizes(outputs: list[Path]) -> dict[str, int | None]:
    """Each output's size (None: not there) by its name, the mask's as `mask:NAME`: the two
    have the same name in their folders."""
    return {
        ("mask:" if i else "") + p.name: (p.stat().st_size if p.is_file() else None)
        for i, p in enumerate(outputs)
    }


def made_from(path: Path, input: Path) -> bool:
    """Whether the record at `path` is of a file made from `input` (the same path, or the same
    content: a folder moved or copied; a record older than input paths says yes), not another
    input's (a second folder of the same names sent to this OUT_DIR), which is not ours."""
    try:
        record = json.loads(path.read_text())
        if "input_path" not in record or record["input_path"] == str(input.resolve()):
            return True
        then, now = record["input"], fingerprint(input)
        return (then["size"], then["sha256"]) == (now["size"], now["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def claim_path(out_dir: Path, output: Path) -> Path:
    return _state_path(out_dir, output, CLAIM)


def claim_record(input: Path, options: dict, weights_id: str, held: list[list]) -> dict:
    """The claim of a file's outputs about to be written: what will make them, and the outputs
    an earlier claim put in place that are still there (`held`), which stay the batch's own
    until the new ones take their place. The input is named by its whole path, not
    fingerprinted: `claimed_for` reads it back."""
    return {
        "format": FORMAT,
        "input": str(input.resolve()),
        "options": options,
        "weights": weights_id,
        "placed": held,
    }


def place_claim(claim: Path, placed: tuple[tuple[str, int, int, int], ...]) -> None:
    """Take down, in the claim, the identity each output will have in place (partials.identity)."""
    record = json.loads(claim.read_text())
    write_record(claim, {**record, "placed": [list(p) for p in placed]})


def held_outputs(claim: Path) -> list[list]:
    """The outputs a claim put in place that are still there, the same files (their identity):
    the batch made them, and may replace them."""
    try:
        placed = json.loads(claim.read_text()).get("placed", [])
    except (OSError, ValueError, AttributeError):
        return []
    held = []
    for entry in placed:
        try:
            path, *claimed = entry
            st = os.stat(path)
        except (OSError, ValueError, TypeError):
            continue
        if [st.st_ino, st.st_size, st.st_mtime_ns] == claimed:
            held.append(entry)
    return held


def claim_holds(claim: Path) -> bool:
    return bool(held_outputs(claim))


def claimed_for(claim: Path, input: Path) -> bool:
    """Whether the claim holds an output in place that a run of `input` put there."""
    try:
        named = json.loads(claim.read_text())["input"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return Path(named).resolve() == input.resolve() and claim_holds(claim)


def remove_stale_claims(out_dir: Path) -> list[Path]:
    """Remove the claims that hold no output in place (`claim_holds`): their runs were stopped
    before putting one there, or somebody else's file is there now (call only while holding
    OUT_DIR's lock). An unreadable claim goes too."""
    state = out_dir / STATE_DIR
    removed = []
    for claim in sorted(state.rglob(f"*{CLAIM}")):
        if not claim_holds(claim):
            claim.unlink(missing_ok=True)
            removed.append(claim)
    return removed


def write_record(path: Path, record: dict) -> None:
    """Atomically: a temp file beside it, then os.replace. An error or a stop (Ctrl-C, SIGTERM)
    before the rename removes the temp file (a kill leaves it to `remove_partials`). Its mode is
    the umask's, as the outputs' are (mkstemp's 0600 kept a farm's stitch, run as another user,
    from reading the manifests of the parts it could read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp: str | None = None
    renamed = False
    try:  # the temp file made inside: a stop right after it is made still removes it
        name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")  # as long as mkstemp's
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        temp = name  # ours: only now is it removed on the way out
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        renamed = True
    finally:
        if temp is not None and not renamed:
            with contextlib.suppress(OSError):
                Path(temp).unlink(missing_ok=True)


def is_done(path: Path, input: Path, outputs: list[Path], options: dict, weights_id: str) -> bool:
    """Whether the record at `path` says these outputs are finished from this very input, with
    these options and weights, and every output is still there at its recorded size."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    sizes = _sizes(outputs)
    return (
        record.get("format") == FORMAT
        and record.get("options") == options
        and record.get("weights") == weights_id
        and record.get("outputs") == sizes
        and record.get("input") == fingerprint(input)
    )


@contextlib.contextmanager
def batch_lock(out_dir: Path, *others: Path, made: Iterable[Path] = ()) -> Iterator[None]:
    """Hold OUT_DIR's lock for the batch, then clear the partial files of killed runs there (and
    in `others`, e.g. the folder of mask videos). As it lets go, the batch's state folder keeps
    only what a rerun needs: the done-records, and the claims that hold an output in place; the
    lock file goes with the hold, and `.skipsr-batch/` too where nothing is left in it. `made`:
    the folders the batch made (`missing_folders`, asked before): those it leaves empty go,
    OUT_DIR and the folders above it once the lock is let go of."""
    busy = f"another skipsr batch is writing into {out_dir}"
    state, made = out_dir / STATE_DIR, list(made)
    above = {out_dir, *out_dir.parents}
    ours = False  # a batch refused takes nothing back: the batch that holds it may write there
    try:
        with exclusive_hold(state / LOCK, busy) as held:
            if not held:  # clearing partials is safe only where no other batch can be writing
                raise OutputError(f"cannot lock {out_dir}: its file system has no file locks")
            ours = True
            for folder in (out_dir, *others):
                remove_partials(folder)
            remove_stale_claims(out_dir)
            try:
                yield
            finally:  # claims of files that failed, were stopped, or whose worker died mid-file
                remove_stale_claims(out_dir)
                for folder in (out_dir, *others):  # and the partials of workers that died
                    remove_partials(folder)
                claims = [p for p in state.rglob("*") if p.is_dir()]  # their subfolders
                remove_empty([*claims, *(f for f in made if f not in above)])
    finally:  # once let go of: the lock file is gone, so the state folder is empty or it is kept
        remove_empty([state, *made] if ours else [state])


_GONE = {errno.ESTALE, errno.ENOENT}  # a lock on a removed file's handle; other errors: no locks


@contextlib.contextmanager
def exclusive_hold(lock: Path, busy: str) -> Iterator[bool]:
    """One process's hold on the file `lock` (fcntl), let go when the block ends or the process
    dies; another holder is refused with `busy` (an OutputError). Yields False, not holding it,
    where the file system has no locks (Lustre mounted noflock, NFS without lockd): the caller
    says whether it may go on without.

    The file is there only while a run holds it: the holder removes it as the block ends (also
    on an error, Ctrl-C or SIGTERM), before letting go, and one that finds, once it holds a
    file, that the path names another file now (its holder removed it meanwhile) takes that one
    instead; so two runs never hold two files of one path. A holder killed outright (SIGKILL, a
    power cut) leaves the file but not its hold, which ends with the process: the next run
    takes it and removes it. Without locks, the file goes when the run that made it ends."""
    for _ in range(100):
        handle, made = _open_lock(lock)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            handle.close()
            raise OutputError(busy) from None
        except OSError as e:
            if e.errno in _GONE:  # a file its holder removed as we opened it (NFS): the path again
                handle.close()
                continue
            held = False
        if not held or _is_at(handle, lock):
            break
        handle.close()  # its holder let go and removed it meanwhile: take the file there now
    else:
        raise OutputError(busy)
    with handle:
        try:
            if held:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()}\n")
                handle.flush()
            yield held
        finally:
            if _is_at(handle, lock) and (held or made):  # held: nobody else can hold it now
                lock.unlink(missing_ok=True)


RACE_TRIES = 100  # a folder removed by other runs as soon as it is made: tries before giving up


def _yield_to_others(attempt: int) -> None:
    """After the first ten tries lost to other runs removing a folder, a wait that grows by a
    millisecond a try (4 s over all 100), so that a busy host's runs take turns: four processes
    taking and letting go of one hold on two cores once lost all 100 tries in a row."""
    if attempt >= 10:
        time.sleep(0.001 * (attempt - 9))


def _open_lock(lock: Path) -> tuple[IO[str], bool]:
    """The file `lock`, open to read and write, and whether this call made it; its folder and
    itself are made where missing, also where a holder letting go removed them meanwhile."""
    for attempt in range(RACE_TRIES):
        make_folders(lock.parent)
        try:
            try:
                return open(lock, "x+"), True  # noqa: SIM115 (held for the whole block)
            except FileExistsError:
                return open(lock, "r+"), False  # noqa: SIM115
        except FileNotFoundError:
            _yield_to_others(attempt)  # its folder removed between the two steps: make it again
        except OSError as e:
            raise OutputError(f"cannot write {lock}: {e.strerror or e}") from e
    raise OutputError(f"cannot write {lock}: it is removed as soon as it is made")


def _in_the_way(path: Path) -> bool:
    """Whether something other than a folder is at `path` (one look: a folder that another run
    removes meanwhile is not in the way, where `exists()` then `is_dir()` would say so)."""
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _is_at(handle: IO[str], path: Path) -> bool:
    """Whether the open file `handle` is the file at `path` now. The path is opened, not only
    looked up: on NFS an open asks the server, where a lookup may answer from the client's
    cache."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        there = os.fstat(fd)
    finally:
        os.close(fd)
    own = os.fstat(handle.fileno())
    return (there.st_dev, there.st_ino) == (own.st_dev, own.st_ino)


def make_folders(folder: Path) -> list[Path]:
    """Make `folder` and those of its parents that are missing; returns the ones this call made
    (not another process at the same moment), for `remove_empty` to take back if nothing is put
    in them. One that another run removes meanwhile (taking back its own) is made again. An
    OutputError where it cannot be made (a file in the way, no permission)."""
    made: list[Path] = []
    try:
        for attempt in range(RACE_TRIES):
            for path in (*reversed(folder.parents), folder):
                if path.is_dir():
                    continue
                try:
                    path.mkdir()
                    made.append(path)
                except FileExistsError:
                    if _in_the_way(path):
                        raise NotADirectoryError(errno.ENOTDIR, "Not a directory") from None
                except FileNotFoundError:
                    break  # a folder above was removed meanwhile: from the top again
            if folder.is_dir():
                return made
            _yield_to_others(attempt)
    except OSError as e:
        remove_empty(made)
        raise OutputError(f"cannot write {folder}: {e.strerror or e}") from e
    remove_empty(made)
    raise OutputError(f"cannot write {folder}: it is removed as soon as it is made")


def missing_folders(folders: Iterable[Path]) -> list[Path]:
    """Those of `folders` and of their parents that are not there now: what a run that makes
    them may take back (`remove_empty`)."""
    missing: set[Path] = set()
    for folder in folders:
        for path in (folder, *folder.parents):
            if path in missing or path.is_dir():
                break
            missing.add(path)
    return sorted(missing)


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove those of `folders` that are empty, the deepest first (so that one emptied of its
    subfolders goes too); one that holds anything stays. An NFS client's `.nfs*` file (an open
    file removed, such as a lock file let go of just now) vanishes in a moment: waited for."""
    for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
        for _ in range(20):
            try:
                folder.rmdir()
            except FileNotFoundError:
                break
            except OSError:
                with contextlib.suppress(OSError):
                    left = [p.name for p in folder.iterdir()]
                    if left and all(name.startswith(".nfs") for name in left):
                        time.sleep(0.05)
                        continue
            break


def remove_partials(out_dir: Path) -> list[Path]:
    """Remove what killed runs left in `out_dir` (call only while holding its lock): partials
    whose writer on this host is gone (a live run's, say a single upscale writing beside the
    batch, and another host's stay), and the batch's own records half written."""
    removed = []
    partial = (
        p for p in out_dir.rglob(f".*{partials.SUFFIX}*") if partials.left_by_the_gone(p.name)
    )
    stale = [*partial, *(out_dir / STATE_DIR).rglob(".*.json.*.tmp")]
    for path in sorted(stale):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
