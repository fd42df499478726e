"""Resume for everyone: a long video is upscaled in segments inside a hidden work folder beside
the output, so a run that dies (a crash, Ctrl-C, SIGKILL, a lost node) is continued by the same
command from its finished segments, and the output is the file an uninterrupted run makes.

The segments are those of `--segment I/N` (farm/parts.py): each is written atomically with its
manifest, and a rerun keeps every part whose manifest matches the input, the options and the
weights. The work folder is removed once the stitched output is in place. Inputs shorter than
RESUME_FRAMES run in one piece: they lose little to a crash and need not pay for the stitch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from models import SkipSR
from skipsr_cli.batch.records import exclusive_hold, remove_empty
from skipsr_cli.errors import OutputError
from skipsr_cli.farm import parts as farm
from skipsr_cli.farm.placed import PLACED_NAME, placed_record
from skipsr_cli.farm.progress import WholeRun
from skipsr_cli.farm.segments import MANIFEST_SUFFIX, model_hash, work_folder
from skipsr_cli.media.damage import DecodeDamage
from skipsr_cli.media.image_io import is_image_output
from skipsr_cli.media.joiner import source_timestamps
from skipsr_cli.media.partials import note_placing, stops_held
from skipsr_cli.media.video_io import VideoInfo, probe
from skipsr_cli.run.options import UpscaleOptions
from skipsr_cli.run.pipeline import frames_lost
from skipsr_cli.run.progress import Event, Summary

# frames a part: what a crash can cost a worker. One of four workers on one H200 rendered parts
# of 1,000 frames at 720p -> 1440p in 80-89 s (BENCHMARKS.md, 2026-12-03), so about 100 s here
FRAMES_PER_PART = 1200
RESUME_FRAMES = 3 * FRAMES_PER_PART  # shorter inputs run in one piece
RESUMABLE = frozenset({".mp4", ".mkv", ".mov", ".webm"})


def splittable(input: Path, output: Path, opts: UpscaleOptions) -> bool:
    """A whole video into a video container, with nothing a segment cannot carry (a mask video,
    a frame range of its own): what can be rendered in parts and stitched."""
    return (
        output.suffix.lower() in RESUMABLE
        and not is_image_output(output)
        and opts.mask_out is None
        and opts.frames is None
        and input.is_file()
    )


def resumable(input: Path, output: Path, opts: UpscaleOptions, frames: int | None) -> bool:
    """A long video that can be split (`splittable`): it runs in parts, and resumes."""
    return frames is not None and frames >= RESUME_FRAMES and splittable(input, output, opts)


def split_frames(input: Path, info: VideoInfo) -> int | None:
    """The frames a split of the input counts (its video packets), or None where it holds fewer
    than it announces (a count estimated from the duration may be two frames off): a file cut
    short runs in one piece, where the frames it lost are counted and said (with --strict, exit
    3), not split into parts its tail cannot fill."""
    stamps, time_base = source_timestamps(input)
    clean = DecodeDamage.of_timestamps(stamps, time_base)
    return len(stamps) if frames_lost(info, len(stamps), clean) == 0 else None


def part_count(total: int, workers: int = 1) -> int:
    """The parts of a long run of `total` frames by `workers` at once, where a stopped run left
    none to resume from (`parts.finished_split`): a part per FRAMES_PER_PART frames, rounded to
    the nearest multiple of the workers and at least one each, so that no worker renders a last
    part alone while the others idle (at 720p on one H200, in two calls: 4,800 frames as 4 parts
    by 3 workers made 35.3 fps, as 6 parts 44.3 fps; BENCHMARKS.md, 2026-12-02)."""
    workers = max(1, workers)
    rounds = max(1, (2 * -(-total // FRAMES_PER_PART) + workers) // (2 * workers))
    return max(1, min(total, workers * rounds))


def upscale_resumably(
    input: Path,
    output: Path,
    opts: UpscaleOptions,
    load: Callable[[], SkipSR],
    device: torch.device,
    dtype: torch.dtype,
    progress: Callable[[Event], None],
    total: int | None = None,
    parts: int | None = None,
) -> Summary:
    """The segments not yet done, then the stitch, then the work folder removed. `total` is the
    input's frame count where the caller counted it already; `parts` the number of segments
    (--segments; at most one a frame), else the split of the parts a stopped run finished, or
    `part_count`'s for one worker."""
    began = time.perf_counter()
    total = len(source_timestamps(input)[0]) if total is None else total
    count = min(
        total, parts or farm.finished_split(input, output, opts, total) or part_count(total)
    )
    model = load()
    weights = model_hash(model.state_dict())
    with farm.parts_of_run(output, opts, count) as opts:
        todo, done = farm.parts_left(input, output, opts, count, weights)
        run = WholeRun(progress, input, output, total - done, began=began)
        for index in todo:
            part = replace(opts, segment=f"{index}/{count}", segments=None)
            farm.render_segment(
                input, output, part, lambda: model, device, dtype, run.part(index), total
            )
        frames, warnings = farm.stitch_run(output, input, opts, count)
    return run.finish(frames, warnings)


def _drop_if_only_lock(folder: Path) -> None:
    """Remove a work folder that holds nothing but the lock file of a run killed as it removed
    the folder, its output in place: there is nothing in it to resume. Held by a live run, it
    stays."""
    with contextlib.suppress(OSError, OutputError):
        if [entry.name for entry in folder.iterdir()] != [farm.LOCK_NAME]:
            return
        with exclusive_hold(folder / farm.LOCK_NAME, f"{folder} is in use"):
            pass  # the lock file goes with the hold
        remove_empty([folder])


def finished_before(input: Path, output: Path, opts: UpscaleOptions) -> Summary | None:
    """The summary of OUTPUT as an earlier run in parts of this very job put it in place, where
    that run was killed before it removed its work folder (farm/placed.py): the folder is removed
    now and the run is not made again (a "kept" summary, with a warning that says so). None where
    no such run left one: no folder, no record, or the output or the job differs."""
    folder = work_folder(output)
    if opts.overwrite or opts.segment is not None or not splittable(input, output, opts):
        return None  # with -y the run stitches its parts again; the rest never runs in parts
    if not (folder / PLACED_NAME).is_file():
        _drop_if_only_lock(folder)
        return None
    made_as = lambda: farm.placed_as(input, output, opts)  # noqa: E731 - read only if need be
    if placed_record(folder, output, made_as) is None:
        return None
    busy = f"another skipsr run is writing {output}: its work folder {folder} is in use"
    with exclusive_hold(folder / farm.LOCK_NAME, busy), stops_held():
        # read again while held: a run that took the folder over meanwhile removed the record
        record = placed_record(folder, output, made_as)
        if record is None:
            return None
        note_placing([tuple(record["output"])], [output])  # a stop now names it as written
        farm.empty_work_folder(folder, last=PLACED_NAME)
    remove_empty([folder])
    info = probe(output)
    said = (
        f"{output} was put in place by an earlier run of this command, stopped before it removed "
        f"its work folder: removed {folder} now"
    )
    return Summary(
        input=str(input),
        output=str(output),
        frames=record["frames"],
        wall_seconds=0.0,
        fps=0.0,
        skip_ratio=0.0,
        peak_gpu_bytes=None,
        peak_host_bytes=0,
        device="",
        out_width=info.width,
        out_height=info.height,
        status="kept",
        warnings=(said,),
        cpu_seconds=0.0,
    )


def unused_parts(output: Path) -> str | None:
    """Before a run of OUTPUT in one piece: refused (OutputError) while a run in parts of OUTPUT
    holds its work folder, as a second run in parts is; else what to say of the finished parts an
    earlier run in parts left there, stopped before its stitch. They are kept, never swept: the
    earlier command, run again, resumes from them."""
    folder = work_folder(output)
    if not folder.is_dir():
        return None
    busy = f"another skipsr run is writing {output}: its work folder {folder} is in use"
    with exclusive_hold(folder / farm.LOCK_NAME, busy):
        pass  # only asked: a run that holds it refuses this one
    done = list(folder.glob(f"part-*{MANIFEST_SUFFIX}"))
    if not done:
        remove_empty([folder])  # nothing to resume in it (an older version's, left empty)
        return None
    return (
        f"{folder} holds {len(done)} finished part(s) of an earlier run of {output.name} in "
        "parts, which this run did not use: that command run again (with -y, as the output now "
        "exists) resumes from them; or remove the folder"
    )
