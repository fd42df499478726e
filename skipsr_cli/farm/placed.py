"""The record a run in parts leaves in its work folder as its stitched output goes into place.

Once the output is in place the run empties and removes its work folder. A kill between the two
(SIGKILL, a power cut) leaves the folder with every part, and the same command run again would
only be told that the output exists. So just before the rename the run writes `placed.json`
beside its parts: the output's identity once renamed (path, inode, size, mtime: a rename keeps
them all), its frames, and what made it (the input's fingerprint, the options that shape the
frames and the encoder, the network). A rerun that finds the output with that very identity and
is asked for the same thing knows the output is its own, finished: it removes the folder and
says so, rather than refusing or rendering it again. Any run that takes the folder over removes
an earlier record first, so a record never vouches for parts that came after it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from skipsr_cli.batch.records import options_key, weights_identity, write_record
from skipsr_cli.errors import SkipSRError
from skipsr_cli.media.partials import Identity
from skipsr_cli.run.options import UpscaleOptions

PLACED_NAME = "placed.json"


def job_of_placed(opts: UpscaleOptions) -> dict[str, object]:
    """What the record says of the job beyond its parts' manifests (whose weights' hash is of a
    loaded network): every option that changes an output, as a batch's done-record keeps them
    (`records.options_key`: the streams copied, the dtype, --denoise resolved for the input...),
    the device as asked (a dtype of auto follows it), and the weights by their SHA-256 or as
    random with their seed. The run's own parts folder is not among them: the rerun that reads
    the record has not taken it yet."""
    return {
        "options": options_key(replace(opts, parts=None)),
        "device": str(opts.device),
        "weights": weights_identity(opts),
    }


def record_placed(folder: Path, ident: Identity, frames: int, made_as: Callable[[], dict]) -> None:
    """Written (atomically) just before the output goes into place as `ident`. Only a help to a
    rerun: where it cannot be written (the disk filled up with the joined output, a weights file
    gone since it was loaded), the output goes into place all the same, and a rerun after a kill
    is told that the output exists."""
    with contextlib.suppress(OSError, SkipSRError):
        record = {"output": list(ident), "frames": frames, "made_as": made_as()}
        write_record(folder / PLACED_NAME, record)


def forget_placed(folder: Path) -> None:
    """A run takes the folder over: an earlier run's record no longer says what it holds."""
    (folder / PLACED_NAME).unlink(missing_ok=True)


def placed_record(folder: Path, output: Path, made_as: Callable[[], dict]) -> dict | None:
    """The record in `folder` where the file at `output` is the one it placed (same inode, size
    and mtime), checked first, and it was made as `made_as()` says this job is; else None (no
    record, another file, another job, or an input that cannot be read)."""
    try:
        record = json.loads((folder / PLACED_NAME).read_text())
        path, ino, size, mtime = record["output"]
        st = os.stat(output)
        here = str(output.parent.resolve() / output.name)  # as partials.identity names it
        if (path, ino, size, mtime) != (here, st.st_ino, st.st_size, st.st_mtime_ns):
            return None
        if record.get("made_as") != made_as() or not isinstance(record.get("frames"), int):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record
