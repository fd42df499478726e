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

import json
import os
from pathlib import Path

from skipsr_cli.batch.records import write_record
from skipsr_cli.farm.segments import fingerprint
from skipsr_cli.media.partials import Identity
from skipsr_cli.run.options import UpscaleOptions

PLACED_NAME = "placed.json"


def network_of(opts: UpscaleOptions) -> dict[str, object]:
    """What names the network a run loads: the preset, its weights files (their fingerprints),
    random weights, and the --denoise amount (resolved for the input: `with_denoise_for`)."""
    return {
        "model": str(opts.model),
        "weights": None if opts.weights is None else fingerprint(Path(opts.weights)),
        "random_weights": opts.random_weights,
        "denoise": opts.denoise,
        "denoise_weights": (
            None if opts.denoise_weights is None else fingerprint(Path(opts.denoise_weights))
        ),
    }


def record_placed(folder: Path, ident: Identity, frames: int, made_as: dict) -> None:
    """Written (atomically) just before the output goes into place as `ident`."""
    record = {"output": list(ident), "frames": frames, "made_as": made_as}
    write_record(folder / PLACED_NAME, record)


def forget_placed(folder: Path) -> None:
    """A run takes the folder over: an earlier run's record no longer says what it holds."""
    (folder / PLACED_NAME).unlink(missing_ok=True)


def placed_record(folder: Path, output: Path, made_as: dict) -> dict | None:
    """The record in `folder` where the file at `output` is the one it placed (same inode, size
    and mtime) and it was made as `made_as`; else None (no record, another file, other options).
    """
    try:
        record = json.loads((folder / PLACED_NAME).read_text())
        path, ino, size, mtime = record["output"]
        st = os.stat(output)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    here = str(output.parent.resolve() / output.name)  # as partials.identity names it
    if (path, ino, size, mtime) != (here, st.st_ino, st.st_size, st.st_mtime_ns):
        return None
    if record.get("made_as") != made_as or not isinstance(record.get("frames"), int):
        return None
    return record
