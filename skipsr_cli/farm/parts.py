"""Render one segment of a video into its parts folder, and stitch the parts into the output."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path

import torch

from models import SkipSR
from skipsr_cli.batch.records import exclusive_hold, make_folders, remove_empty, write_record
from skipsr_cli.errors import InputError, OutputError, UsageError
from skipsr_cli.farm.placed import PLACED_NAME, forget_placed, job_of_placed, record_placed
from skipsr_cli.farm.segments import (
    MANIFEST_SUFFIX,
    PART_SUFFIX,
    check_holds_parts,
    drop_other_splits,
    file_hash,
    fingerprint,
    model_hash,
    parse_segment,
    parts_folder,
    read_manifests,
    work_folder,
)
from skipsr_cli.media.damage import DecodeDamage
from skipsr_cli.media.encoding import EncodeOptions, check_container
from skipsr_cli.media.image_io import is_image_output
from skipsr_cli.media.joiner import join_videos, source_timestamps
from skipsr_cli.media.partials import Identity, stops_held
from skipsr_cli.media.video_io import probe
from skipsr_cli.media.video_writer import same_file
from skipsr_cli.run import pipeline
from skipsr_cli.run.host_memory import check_host_memory
from skipsr_cli.run.options import UpscaleOptions, encode_options_of, job_of
from skipsr_cli.run.progress import Event, Summary
from skipsr_cli.run.ranges import VIDEO_ONLY

# in a parts folder while the one run that renders all its parts holds it, and only then
LOCK_NAME = ".skipsr-lock"
# the run in parts (`parts_of_run`) whose tidying a stop waits for once its output is in place
_FINISHING: ContextVar[contextlib.ExitStack | None] = ContextVar("finishing", default=None)

# What shapes a part's frames and its encoding: parts that differ in any of these cannot join.
# The codec is recorded as the output's encoder resolves it (encoder_of): `--codec libx264` given
# for one part and left to the default for the others is the same encoder.
SHAPING = (
    "scale", "size", "threshold", "skip", "steps", "seed", "chunk_frames", "overlap",
    "scene_cuts", "crf", "preset", "pix_fmt", "lossless",
)  # fmt: skip


def render_segment(
    input: Path,
    output: Path,
    opts: UpscaleOptions,
    load: Callable[[], SkipSR],
    device: torch.device,
    dtype: torch.dtype,
    progress: Callable[[Event], None],
    total: int | None = None,
) -> Summary:
    """Part I of N (opts.segment) into OUTPUT's parts folder, then its manifest, both atomically.
    `total` is the input's frame count where the caller counted it already (one pass over the file
    for every part of a run, not one per part)."""
    segment = parse_segment(opts.segment, opts.segments)
    if opts.frames is not None or opts.mask_out is not None:
        raise UsageError(
            "--segment renders its own range into a part: not with --frames or --mask-out"
        )
    info = probe(input)
    if not is_image_output(output):
        # the stitch copies the parts' video into OUTPUT as it is: a container that cannot hold
        # their encoder is refused by every task now, not by the stitch after all of them
        codec = encode_options_of(opts, output).codec
        check_container(output, codec, "output", info.time_base, info.rate)
    if total is None:  # a farm's task: it counts, and refuses what --segments refuses
        stamps, time_base = source_timestamps(input)
        total = len(stamps)
        if pipeline.frames_lost(info, total, DecodeDamage.of_timestamps(stamps, time_base)):
            raise InputError(
                f"{input} holds {total} frames, fewer than the {info.frame_count} it announces "
                "(cut short or damaged), so it cannot be split into parts: upscale it without "
                "--segment"
            )
    start, stop = segment.frames(total)
    if segment.count > total:  # refused in every task, not only in those left with no frames
        raise UsageError(
            f"--segment {segment.index}/{segment.count}: the input has {total} frames, fewer "
            f"than {segment.count} parts; split it into at most {total}"
        )
    folder = parts_folder(output, opts.parts)
    with _made(folder) as made:  # taken back where this task puts nothing in it
        part = folder / (segment.name + PART_SUFFIX)
        manifest = folder / (segment.name + MANIFEST_SUFFIX)
        part_opts = replace(opts, frames=(start, stop), overwrite=True, mask_out=None)
        # the encoder OUTPUT's container takes (VP9 for webm, x264 4:4:4 for a lossless mp4), not
        # the Matroska part's own default: the stitch copies the parts' video into OUTPUT as it is
        encode = encode_options_of(part_opts, output)
        job = replace(job_of(input, part, part_opts), encode=replace(encode, stitchable=True))
        plan = pipeline.prepare(job)
        check_host_memory(plan.out_size, device.type == "cpu", opts.chunk_frames)
        # the stitch copies the source's audio and subtitles into OUTPUT: no note that a part
        # lacks them
        plan = replace(plan, notes=tuple(n for n in plan.notes if n != VIDEO_ONLY))
        net = load()
        weights = model_hash(net.state_dict())
        # a task run again (a requeued array) keeps its part when it is done with the same input,
        # options and weights; --overwrite renders it again
        done = None if opts.overwrite else finished_part(input, output, opts, weights)
        if done is not None:
            summary = _kept(input, part, done, plan.out_size, device, opts.denoise)
            progress(summary)
            return summary
        manifest.unlink(missing_ok=True)  # until the new part is complete, this part is not done
        summary = _rendered(
            folder, made, lambda: pipeline.upscale(net, plan, device, dtype, progress)
        )
        record = {
            "index": segment.index,
            "count": segment.count,
            "part": part.name,
            "frames": [start, stop],
            "frames_written": summary.frames,
            # the stitch refuses a part cut short or replaced since, also by one of the same size
            "bytes": part.stat().st_size,
            "sha256": file_hash(part),
            "total_frames": total,
            "input": str(input.resolve()),
            "fingerprint": fingerprint(input),
            "input_modified_ns": input.stat().st_mtime_ns,
            "settings": {k: _plain(getattr(opts, k)) for k in SHAPING},
            "encoder": encoder_of(encode),
            "weights": weights,
        }
        write_record(manifest, record)
        return summary


def _rendered(folder: Path, made: list[Path], render: Callable[[], Summary]) -> Summary:
    """`render()` into `folder`, made again where another task took it back meanwhile, stopped
    before its own part (`_made`): also in the moment before this one's partial file is in it,
    when its writer finds no folder (nothing is written yet then: it starts again)."""
    attempts = 0
    while True:
        made += make_folders(folder)
        try:
            return render()
        except OutputError:
            attempts += 1
            if folder.is_dir() or attempts == 3:
                raise


@contextlib.contextmanager
def _made(folder: Path) -> Iterator[list[Path]]:
    """A task's parts folder, made where missing; the folders it made (the list grows where the
    task makes them again) are removed where it stops before putting anything in them: a folder
    that held nothing before and holds nothing now. One that holds another task's part (or the
    partial file it is writing) stays, as does one that was there before the task, named by
    --parts or not."""
    made = make_folders(folder)
    try:
        yield made
    except BaseException:
        remove_empty(made)
        raise


def _kept(input: Path, part: Path, frames: int, size: tuple[int, int], device, denoise) -> Summary:
    """The summary of a part that an earlier run finished: kept, not rendered again; its
    --denoise amount is this run's (the weights' hash, of the blended network, matched)."""
    return Summary(
        input=str(input),
        output=str(part),
        frames=frames,
        wall_seconds=0.0,
        fps=0.0,
        skip_ratio=0.0,
        peak_gpu_bytes=None,
        peak_host_bytes=0,
        device=str(device),
        out_width=size[0],
        out_height=size[1],
        status="kept",
        denoise=float(denoise) if isinstance(denoise, int | float) else None,
        cpu_seconds=0.0,  # nothing rendered now
    )


def finished_part(input: Path, output: Path, opts: UpscaleOptions, weights: str) -> int | None:
    """The frames of opts.segment's part when it is already done, with this input, these options
    and these weights (a resumed run keeps it); None when it must be rendered."""
    segment = parse_segment(opts.segment, opts.segments)
    folder = parts_folder(output, opts.parts)
    manifest = folder / (segment.name + MANIFEST_SUFFIX)
    try:
        record = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    same = (
        _matches(record, _made_as(input, output, opts))
        and record.get("weights") == weights
        and record.get("count") == segment.count
        and _intact(folder / record.get("part", ""), record.get("bytes"), record.get("sha256"))
    )
    return record.get("frames_written") if same else None


def placed_as(input: Path, output: Path, opts: UpscaleOptions) -> dict[str, object]:
    """What a run's record of its placed output says made it: its parts' `_made_as`, and the
    rest of the job (farm/placed.py)."""
    return {**_made_as(input, output, opts), "job": job_of_placed(opts)}


def _made_as(input: Path, output: Path, opts: UpscaleOptions) -> dict[str, object]:
    """What a part's manifest records of how it was made: the input's fingerprint and its
    modification time, the options that shape the frames, and OUTPUT's encoder. The time is for
    keeping a part only: an input rewritten since with the same size, head and tail (frames of a
    fixed size, changed in the middle) renders again; the stitch checks the fingerprint alone,
    as the nodes of a farm may hold copies of the input made at other times."""
    return {
        "fingerprint": fingerprint(input),
        "input_modified_ns": input.stat().st_mtime_ns,
        "settings": {k: _plain(getattr(opts, k)) for k in SHAPING},
        "encoder": encoder_of(encode_options_of(opts, output)),
    }


def _matches(record: dict, made_as: dict[str, object]) -> bool:
    return all(record.get(k) == v for k, v in made_as.items())


def finished_split(input: Path, output: Path, opts: UpscaleOptions, total: int) -> int | None:
    """The number of parts of the split whose finished parts a stopped run of OUTPUT left in its
    own work folder, of this input with these options (the weights are checked later, once a
    model is loaded): the split with the most frames finished where there are several; None where
    there are none. A folder named by --parts is not looked in: it may hold a farm's parts of
    another split, which a run there passes over."""
    if opts.parts is not None:
        return None
    folder, made_as = work_folder(output), _made_as(input, output, opts)
    frames: dict[int, int] = {}
    for manifest in folder.glob(f"part-*{MANIFEST_SUFFIX}"):
        try:
            record = json.loads(manifest.read_text())
            count, written = int(record["count"]), int(record["frames_written"])
            part = folder / str(record["part"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if (
            0 < count <= total
            and record.get("total_frames") == total
            and _matches(record, made_as)
            and _intact(part, record.get("bytes"), record.get("sha256"), hashed=False)  # later
        ):
            frames[count] = frames.get(count, 0) + written
    return max(frames, key=lambda c: (frames[c], c)) if frames else None


def encoder_of(encode: EncodeOptions) -> dict[str, object]:
    """What a manifest records of a part's encoder (its output container's): parts of an mp4 and
    of a webm made with the same options differ in it, and parts made before it was recorded
    match no run."""
    return {"codec": encode.codec, "pix_fmt": encode.pix_fmt, "lossless": encode.lossless}


def _intact(part: Path, size: object, sha256: object, hashed: bool = True) -> bool:
    """The part's file is there, with the size and content (where `hashed`) its manifest says it
    was written with; a manifest that does not say (an older version's, or one changed by hand)
    keeps no part. Its size first, which costs nothing; the hash reads the part once (0.85 s a
    GiB from memory on 2 cores: BENCHMARKS.md)."""
    if not isinstance(size, int) or not isinstance(sha256, str):
        return False
    try:
        return (
            part.is_file()
            and part.stat().st_size == size
            and (not hashed or file_hash(part) == sha256)
        )
    except OSError:
        return False


def parts_left(
    input: Path, output: Path, opts: UpscaleOptions, count: int, weights: str
) -> tuple[list[int], int]:
    """The parts of a run of `count` parts still to render, and the frames of those an earlier run
    finished with these options and weights."""
    todo, done = [], 0
    for index in range(1, count + 1):
        part = replace(opts, segment=f"{index}/{count}", segments=None)
        frames = finished_part(input, output, part, weights)
        if frames is None:
            todo.append(index)
        else:
            done += frames
    return todo, done


def _plain(value: object) -> object:
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)


def stitch(
    output: Path,
    parts: Path | None = None,
    source: Path | None = None,
    *,
    overwrite: bool = False,
    copy_audio: bool = True,
    copy_subtitles: bool = True,
    audio_kbps: int | None = None,
    count: int | None = None,
    hashes: bool = True,
    placing: Callable[[Identity, int], object] | None = None,
) -> tuple[int, list[str]]:
    """Join every part of OUTPUT into it; returns (frames, warnings). Refuses a missing part, a
    part of another input or other options, or one whose frame count or content is off, naming
    it. `count`: the split (N) to join where the folder may hold another's parts (a run's own
    split); `hashes=False` leaves out the parts' hashes (a run that has just checked them);
    `placing(identity, frames)` is called just before OUTPUT goes into place."""
    folder = parts_folder(output, parts)
    manifests = read_manifests(folder, output, count, hashes)
    first = manifests[0]
    if source is not None and not source.is_file():
        raise InputError(f"the source given, {source}, is not a file")
    source = Path(first["input"]) if source is None else source
    if not source.is_file():
        raise InputError(f"the source {source} of the parts is not here: give it with --input")
    if fingerprint(source) != first["fingerprint"]:
        raise InputError(f"{source} is not the file the parts were made from")
    pieces = [(folder / m["part"], m["frames"][0]) for m in manifests]
    for m in manifests:  # -y over a part would destroy what the join reads
        for own in (folder / m["part"], (folder / m["part"]).with_suffix(MANIFEST_SUFFIX)):
            if same_file(output, own):
                raise UsageError(
                    f"the output {output} is {own.name} of the parts it joins: choose another path"
                )
    info = probe(source)
    check_holds_parts(output, (first.get("encoder") or {}).get("codec"), info)
    frames, warnings = join_videos(
        pieces,
        output,
        source,
        info.rate,
        overwrite=overwrite,
        copy_audio=copy_audio,
        copy_subtitles=copy_subtitles,
        audio_kbps=audio_kbps,
        expected=first["total_frames"],
        placing=placing,
    )
    return frames, warnings


def stitch_run(
    output: Path, input: Path, opts: UpscaleOptions, count: int
) -> tuple[int, list[str]]:
    """`stitch` with a run's own options and split: its parts folder, overwrite and streams. The
    run has hashed every part already, the ones it kept when it found them and the ones it
    rendered when it wrote them, so the stitch checks their sizes but reads them only to join.
    Within `parts_of_run`, stops are held from the moment OUTPUT goes into place; in the run's
    own work folder, a record says first what goes into place (farm/placed.py), so a rerun after a
    kill before the folder is removed knows the output for its own."""
    finishing = _FINISHING.get()
    own = opts.parts is not None and opts.parts == work_folder(output)

    def placing(ident: Identity, frames: int) -> None:
        if finishing is not None:
            finishing.enter_context(stops_held())
        if own:
            record_placed(opts.parts, ident, frames, lambda: placed_as(input, output, opts))

    return stitch(
        output,
        opts.parts,
        input,
        overwrite=opts.overwrite,
        copy_audio=opts.copy_audio,
        copy_subtitles=opts.copy_subtitles,
        audio_kbps=opts.audio_bitrate,
        count=count,
        hashes=False,
        placing=placing,
    )


@contextlib.contextmanager
def parts_of_run(output: Path, opts: UpscaleOptions, count: int) -> Iterator[UpscaleOptions]:
    """`opts` with the parts folder of a run that renders its own `count` parts and stitches them
    (`stitch_run`), the folder as `_folder_of_run` keeps it. A Ctrl-C or SIGTERM that comes once
    the stitch puts OUTPUT in place waits until the folder is tidied (cut off halfway, it left parts
    and said that no output was left behind); it is kept in `held_stops`, and the command line
    then ends as stopped (130 or 143), naming OUTPUT as written; the API acts on it once the
    run is done (`api._held_stops_acted_on`)."""
    with contextlib.ExitStack() as finishing:  # left last, after the folder's tidying
        token = _FINISHING.set(finishing)
        try:
            with _folder_of_run(output, opts, count) as opts:
                yield opts
        finally:
            _FINISHING.reset(token)


@contextlib.contextmanager
def _folder_of_run(output: Path, opts: UpscaleOptions, count: int) -> Iterator[UpscaleOptions]:
    """The parts folder of a run in parts (a long input, local workers, Ray): `--parts DIR` as
    named, kept and never swept (it may hold a farm's parts), but removed where this run made it
    and stops before putting a part in it; else the hidden work folder beside the output, swept
    of the parts of another split first, and removed once the block ends without an error, or
    with one before any part of this split was finished (`_swept`). A run that stops before its stitch says what it kept (`_said_kept`).
    The hold on the folder, and its lock file, go with the block (`_held`)."""
    if opts.parts is not None:
        made = make_folders(opts.parts)
        try:
            with _held(opts.parts, output), _said_kept(opts.parts, count):
                yield opts
        finally:
            remove_empty(made)
        return
    folder = work_folder(output)
    try:
        with _held(folder, output):
            drop_other_splits(folder, count)
            forget_placed(folder)
            with _said_kept(folder, count), _swept(folder, count):
                yield replace(opts, parts=folder)
    finally:  # let go first: the lock file is gone with the hold (and NFS keeps a file open)
        remove_empty([folder])  # one that holds another run's lock, or parts to resume, stays


def _done(folder: Path, count: int) -> int:
    """How many parts of a split of `count` parts are finished in `folder` (their manifests)."""
    return len(list(folder.glob(f"part-*-of-{count:05d}{MANIFEST_SUFFIX}")))


@contextlib.contextmanager
def _swept(folder: Path, count: int) -> Iterator[None]:
    """The work folder emptied, but for the lock still held, as the run ends: after its stitch,
    and when it stops before any part of its split was finished, as there is then nothing to
    resume (a part without its manifest is not finished, nor a partial file); a run that stops
    with finished parts keeps the folder as it is, for the rerun."""
    try:
        yield
    except BaseException:
        if not _done(folder, count):
            empty_work_folder(folder)
        raise
    empty_work_folder(folder)


def empty_work_folder(folder: Path, last: str = PLACED_NAME) -> None:
    """Remove what `folder` holds but its lock file (held: removed as the hold ends); the entry
    named `last` goes after all the others: the record of a placed output, by which a run killed
    meanwhile knows that output for its own when run again (resume.finished_before)."""
    with contextlib.suppress(OSError):
        entries = sorted(folder.iterdir(), key=lambda entry: entry.name == last)
        for entry in entries:
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():  # a partial folder of PNG frames
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()


@contextlib.contextmanager
def _said_kept(folder: Path, count: int) -> Iterator[None]:
    """A run in parts that stops before its stitch (an error, Ctrl-C, SIGTERM) keeps the parts
    it finished; its exception gets a note that says how many and where, for the command's
    one-line error: the same command resumes from them, or the folder can be removed."""
    try:
        yield
    except BaseException as e:
        done = _done(folder, count)
        if done:
            note = f"{done} of {count} parts done, kept in {folder}: the same command resumes"
            e.__notes__ = [*getattr(e, "__notes__", []), note]  # add_note, before Python 3.11
        raise


@contextlib.contextmanager
def _held(folder: Path, output: Path) -> Iterator[None]:
    """This run's hold on its parts folder: a second run of the same output (or into the same
    --parts folder) is refused at once, rather than the two taking and sweeping each other's
    parts. Where the file system has no locks the run goes on without the hold, as before there
    was one. A farm's --segment tasks share a folder and take no hold. The lock file is there only
    while the hold is (records.exclusive_hold): however the run ends, it goes; a run killed
    outright leaves it, holding nothing, and the next run takes it and removes it."""
    busy = f"another skipsr run is writing {output}: its parts folder {folder} is in use"
    with exclusive_hold(folder / LOCK_NAME, busy):
        yield
