"""Segments for farms: part I of N of a video renders into a work folder; `stitch` joins them.

Part I of N owns frames [total * (I-1) // N, total * I // N): a frame range (run/ranges.py), so
the parts are exactly the frames of a whole run. Each is a video-only file of its own encoder run
(it starts on a keyframe; x264 and x265 write headers that do not depend on the content), written
atomically, then its manifest: the input's fingerprint, the options that shape the frames, the
weights' hash and the frame range. `stitch` checks every part against the others before it joins
them without re-encoding and copies the source's other streams once (media/joiner.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from skipsr_cli.errors import InputError, UsageError
from skipsr_cli.media.encoding import check_container
from skipsr_cli.media.image_io import is_image_output
from skipsr_cli.media.partials import fitted
from skipsr_cli.media.video_io import VideoInfo

PART_SUFFIX = ".mkv"  # Matroska holds every codec a part may be encoded with
MANIFEST_SUFFIX = ".json"
_SAMPLE = 1 << 20  # bytes of the input's head and tail in its fingerprint


@dataclass(frozen=True)
class Segment:
    index: int  # 1-based
    count: int

    def frames(self, total: int) -> tuple[int, int]:
        """The frame range this part owns in a video of `total` frames."""
        return total * (self.index - 1) // self.count, total * self.index // self.count

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}-of-{self.count:05d}"


def parse_segment(
    text: str, count: int | None = None, env: Mapping[str, str] = os.environ
) -> Segment:
    """`I/N`, or `auto`: I (and N where the scheduler says it) from a farm's array variables.

    SLURM: SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_MIN and _MAX or _COUNT; Kubernetes Indexed
    Jobs: JOB_COMPLETION_INDEX (0-based); AWS Batch: AWS_BATCH_JOB_ARRAY_INDEX (0-based). N comes
    from `count` (--segments) where the scheduler does not give it.
    """
    if text != "auto":
        head, _, tail = text.partition("/")
        try:
            segment = Segment(int(head), int(tail))
        except ValueError:
            raise UsageError(f"--segment {text!r}: expected I/N (e.g. 3/8) or auto") from None
    else:
        segment = _from_environment(count, env)
    if not 1 <= segment.index <= segment.count:
        raise UsageError(
            f"--segment {segment.index}/{segment.count}: I must be between 1 and N (1-based)"
        )
    if count is not None and count != segment.count:
        raise UsageError(f"--segments {count} disagrees with --segment {text} ({segment.count})")
    return segment


def _from_environment(count: int | None, env: Mapping[str, str]) -> Segment:
    def number(name: str) -> int | None:
        value = env.get(name)
        try:
            return None if value is None else int(value)
        except ValueError:
            raise UsageError(f"--segment auto: {name}={value!r} is not a number") from None

    slurm = number("SLURM_ARRAY_TASK_ID")
    if slurm is not None:
        return _from_slurm(slurm, count, number)
    for name in ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"):
        index = number(name)
        if index is not None:
            return _indexed(index, count, name)
    raise UsageError(
        "--segment auto: no array index in the environment (SLURM_ARRAY_TASK_ID, "
        "JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX); give --segment I/N"
    )


def _from_slurm(task: int, count: int | None, number: Callable[[str], int | None]) -> Segment:
    """Part I of N from a SLURM array `--array=A-B[:S]`: the task's place in the array. An array
    that is a list (1,5,9) or a single task (a part sent again as --array=7) does not say which
    part a task is, and is refused rather than guessed."""
    low, high = number("SLURM_ARRAY_TASK_MIN"), number("SLURM_ARRAY_TASK_MAX")
    step, tasks = number("SLURM_ARRAY_TASK_STEP") or 1, number("SLURM_ARRAY_TASK_COUNT")
    if low is None or (high is None and tasks is None):
        raise UsageError(
            "--segment auto: SLURM_ARRAY_TASK_ID without SLURM_ARRAY_TASK_MIN and _MAX or _COUNT; "
            "give --segment I/N"
        )
    span = (high - low) // step + 1 if high is not None else tasks
    ask = "give the part as --segment I/N, or requeue the task in its array (scontrol requeue)"
    if (task - low) % step or (tasks is not None and tasks != span):
        said = [f"min {low}", f"max {high}" if high is not None else "", f"step {step}"]
        said.append(f"{tasks} tasks" if tasks is not None else "")
        raise UsageError(
            f"--segment auto: task {task} is not on a SLURM array range A-B[:S] "
            f"({', '.join(s for s in said if s)}); {ask}"
        )
    if span == 1 and count != 1:  # N = 1 only when --segments 1 says so
        raise UsageError(
            f"--segment auto: SLURM's array holds one task ({task}), so which part it renders "
            f"is not known; {ask}"
        )
    if count is not None and count != span:  # tasks past N would fail, and the stitch never run
        raise UsageError(f"--segments {count} disagrees with SLURM's array of {span} tasks")
    array = f"{low}-{low + (span - 1) * step}" + (f":{step}" if step != 1 else "")
    said = f"SLURM_ARRAY_TASK_ID={task} is outside its array {array} ({span} tasks)"
    return _indexed((task - low) // step, span, "SLURM_ARRAY_TASK_ID", said)


def _indexed(zero_based: int, count: int | None, name: str, slurm: str | None = None) -> Segment:
    """Part `zero_based` + 1 of `count`, from `name`; `slurm` is the task and its array in words,
    where the index is the task's place in it."""
    if count is None:
        raise UsageError(f"--segment auto: {name} gives the part, --segments N must give N")
    if not 0 <= zero_based < count:  # named as the scheduler set it, not as part I of N
        where = (
            slurm or f"{name}={zero_based} is outside the array of {count} parts (0 to {count - 1})"
        )
        raise UsageError(f"--segment auto: {where}")
    return Segment(zero_based + 1, count)


# what README and the error name; other containers of H.264 or VP9 (.m4v, .ts) join too
STITCH_CONTAINERS = ".mp4, .mkv, .mov or .webm"


def check_stitchable(output: Path, doing: str) -> None:
    """Refuse, as `doing` (what the command was asked to do), an OUTPUT that parts cannot join
    into: the parts are video streams joined without re-encoding, so OUTPUT is a video container,
    not PNG frames, a GIF (its own encoder), AVI (its muxer refuses the joined parts' timestamps;
    a whole run writes it) or a name without an extension."""
    if is_image_output(output):
        what = "PNG frames"
    elif output.suffix.lower() == ".gif":
        what = "a GIF"
    elif output.suffix.lower() == ".avi":  # its muxer refuses the joined parts' timestamps
        what = "AVI (a whole run writes it)"
    elif not output.suffix:
        what = "a name without an extension"
    else:
        return
    raise UsageError(
        f"{doing}: the parts join into a video container such as {STITCH_CONTAINERS}, not {what}"
    )


def check_holds_parts(output: Path, codec: object, source: VideoInfo) -> None:
    """OUTPUT's container takes the parts' video (encoded with `codec`) as it is, at the source's
    time base and rate: a usage error before anything is read where it cannot (x264 parts into a
    .webm), not FFmpeg's complaint once the join writes."""
    if not isinstance(codec, str):
        return
    try:
        check_container(output, codec, "output", source.time_base, source.rate)
    except UsageError:
        raise UsageError(
            f"cannot stitch into {output}: its container cannot hold the parts' video ({codec}, "
            f"as they were rendered for another container); stitch them into a .mkv, or render "
            f"the parts for {output.name}"
        ) from None


def work_folder(output: Path) -> Path:
    """The hidden folder of a run's own parts beside its output (resume, local workers, Ray),
    removed once the stitched output is in place; `--parts DIR` names a folder that is kept."""
    output = Path(os.path.abspath(output))  # `.` or `dir/..` (PNG frames into a folder) named
    return output.parent / f".{fitted(output.name or 'root', len('..skipsr-work'))}.skipsr-work"


def drop_other_splits(folder: Path, count: int) -> None:
    """Remove the parts of a run split into another number of parts (another length, or another
    number of workers): they cannot join this run's and would stop its stitch."""
    for stale in folder.glob("part-*"):
        if f"-of-{count:05d}." not in stale.name:
            stale.unlink(missing_ok=True)


def parts_folder(output: Path, parts: Path | None = None) -> Path:
    """The work folder of OUTPUT's parts: OUTPUT.parts beside it unless named."""
    return parts if parts is not None else output.with_name(output.name + ".parts")


def fingerprint(path: Path) -> dict[str, object]:
    """Size and a hash of the head and tail: the same file on every node of a farm, cheaply."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_SAMPLE))
        f.seek(max(0, size - _SAMPLE))
        digest.update(f.read(_SAMPLE))
    return {"size": size, "sha256_head_tail": digest.hexdigest()}


def file_hash(path: Path) -> str:
    """SHA-256 of the whole file: a part's manifest records it, and the stitch checks it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _difference(key: str, theirs: object, ours: object) -> str:
    """`key`, and for the options the ones that differ: "settings (overlap 4, not 0)"."""
    if key == "weights":  # a hash of the tensors as they ran: cast to the dtype too
        return "weights (the network's tensors as they ran: other weights, or another --dtype)"
    if not (isinstance(theirs, dict) and isinstance(ours, dict)):
        return key
    names = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
    return f"{key} ({'; '.join(f'{k} {theirs.get(k)}, not {ours.get(k)}' for k in names)})"


def read_manifests(
    folder: Path, output: Path, count: int | None = None, hashes: bool = True
) -> list[dict]:
    """Every part's manifest, checked: one count, one input, one set of options and weights, all
    parts present, each file the size and (with `hashes`) the content it was written with, each
    with the frames its range holds. Errors name the part. With `count` (a run's own split) parts
    of another split (another N) are passed over; without it, a folder that holds several splits
    is refused, naming them."""
    if not folder.is_dir():
        raise InputError(f"no parts to stitch for {output}: {folder} does not exist")
    records = [(path, _read(path)) for path in sorted(folder.glob(f"part-*{MANIFEST_SUFFIX}"))]
    if not records:
        raise InputError(f"no finished parts in {folder}")
    if count is not None:  # another split's manifests are passed over, whatever they hold
        records = [(p, r) for p, r in records if isinstance(r, dict) and r.get("count") == count]
    manifests = _one_split(folder, [_checked(path, record) for path, record in records], count)
    first = manifests[0]
    # the input by its fingerprint, not its path: nodes may mount the storage apart
    for key in ("count", "fingerprint", "settings", "encoder", "weights", "total_frames"):
        values = [json.dumps(m.get(key), sort_keys=True) for m in manifests]
        usual = max(values, key=values.count)  # the odd part is named, not the first
        if values.count(usual) < len(values):
            odd = manifests[next(i for i, v in enumerate(values) if v != usual)]
            like = manifests[values.index(usual)]
            raise InputError(
                f"part {odd['index']} of {folder} differs from part {like['index']} in "
                f"{_difference(key, odd.get(key), like.get(key))}: it was made from another "
                "input, with other options, or by another version of skipsr"
            )
    have = {m["index"]: m for m in manifests}
    missing = [i for i in range(1, first["count"] + 1) if i not in have]
    if missing:
        names = ", ".join(Segment(i, first["count"]).name for i in missing[:5])
        raise InputError(f"{len(missing)} part(s) missing in {folder}: {names}")
    for m in manifests:
        part = folder / m["part"]
        if not part.is_file():
            raise InputError(f"part {m['index']} is listed but its file {part} is missing")
        size = part.stat().st_size
        if size != m["bytes"]:
            raise InputError(
                f"part {m['index']} ({part.name}) is {size} bytes, not the {m['bytes']} it was "
                "written with: cut short or replaced; render it again"
            )
        if hashes and file_hash(part) != m["sha256"]:
            raise InputError(
                f"part {m['index']} ({part.name}) is not the file it was written as (its "
                "SHA-256 differs): replaced or damaged since; render it again"
            )
        start, stop = m["frames"]
        owned = Segment(m["index"], m["count"]).frames(m["total_frames"])
        if (start, stop) != owned:
            raise InputError(
                f"part {m['index']} ({part.name}) says it holds frames {start}:{stop}, but part "
                f"{m['index']} of {m['count']} owns {owned[0]}:{owned[1]}: its manifest was "
                "changed since; render it again"
            )
        if m["frames_written"] != stop - start:
            raise InputError(
                f"part {m['index']} ({part.name}) holds {m['frames_written']} frames, "
                f"its range {start}:{stop} has {stop - start}"
            )
    return [have[i] for i in range(1, first["count"] + 1)]


# what every manifest holds, and of what kind: the stitch reads these before it trusts a part
_REQUIRED = {
    "index": int, "count": int, "part": str, "frames_written": int, "total_frames": int,
    "bytes": int, "sha256": str,  # a part is joined only as it was written, checked
}  # fmt: skip


def _read(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the manifest {path}: {e}") from e


def _checked(path: Path, record: object) -> dict:
    """A part's manifest, checked for the keys the stitch relies on (InputError naming it)."""
    frames = record.get("frames") if isinstance(record, dict) else None
    if not (
        isinstance(record, dict)
        and all(isinstance(record.get(k), kind) for k, kind in _REQUIRED.items())
        and isinstance(frames, list)
        and len(frames) == 2
        and all(isinstance(f, int) for f in frames)
        and 1 <= record["index"] <= record["count"] <= record["total_frames"]
        and record["part"] == Path(record["part"]).name  # a file of the folder, nowhere else
    ):
        raise InputError(
            f"the manifest {path} is not one skipsr wrote (a key it needs is missing or of the "
            "wrong kind: changed by hand, or written by an older skipsr): render that part again"
        )
    return record


def _one_split(folder: Path, manifests: list[dict], count: int | None) -> list[dict]:
    """The manifests of split `count`, or of the one split the folder holds."""
    if count is not None:
        mine = [m for m in manifests if m.get("count") == count]
        if not mine:
            raise InputError(f"no finished parts of a split into {count} in {folder}")
        return mine
    counts = sorted({m.get("count") for m in manifests}, key=lambda n: (str(type(n)), n))
    if len(counts) > 1:  # which one the user means is not known: an older split may be complete
        raise InputError(
            f"{folder} holds parts of splits into {' and '.join(map(str, counts))} parts: keep "
            "the files of one (part-*-of-NNNNN.*) and remove the others"
        )
    return manifests


def model_hash(state: Mapping[str, object]) -> str:
    """SHA-256 of a network's tensors, by name: the same weights give the same hash anywhere."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
