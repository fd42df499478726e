"""A folder batch: which files a folder holds, and where each one's output goes.

The rule that tells a batch from an image sequence (README, "Folders"; `skipsr upscale --help`):

- a folder whose media files are all images with a number in their names is ONE image sequence,
  read as one clip (the behaviour of a single upscale);
- a folder holding video files is a batch: every video is upscaled into its own output;
- a folder holding both videos and numbered images is a usage error that names both ways;
- images that are not all numbered (a folder of photos) are a batch of stills, one image out each;
- `--glob` or `--recursive` always asks for a batch.

Hidden files (a name starting with a dot, such as a killed run's partial files) are never inputs,
nor are the files of an output folder inside IN_DIR (earlier outputs). An output folder may also
hold IN_DIR (IN_DIR videos/raw, OUT_DIR videos): the outputs land beside it, never inside it (an
output there would be an input of the next run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from skipsr_cli.errors import InputError, UsageError
from skipsr_cli.media.image_io import IMAGE_SUFFIXES, frame_number

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg"}
    | {".flv", ".wmv", ".ogv", ".3gp", ".gif", ".mxf", ".y4m"}
)
STILL_SUFFIX = ".png"  # stills are written as PNG, the one image format the writer makes
# inputs whose container holds raw video only, which the encoders do not write: outputs in Matroska
RAW_SUFFIXES = {".y4m": ".mkv"}


class FolderKind(str, Enum):
    SEQUENCE = "sequence"  # numbered images only: one clip
    BATCH = "batch"  # videos, or images that are not a numbered sequence


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: its input, its output, and its name relative to the folders."""

    input: Path
    output: Path
    name: str  # the input's path relative to IN_DIR, as reports show it
    mask_out: Path | None = None


def media_files(folder: Path, recursive: bool = False, glob: str | None = None) -> list[Path]:
    """The videos and images of a folder (and its subfolders with `recursive`), sorted by path."""
    pattern = glob or "*"
    found = folder.rglob(pattern) if recursive else folder.glob(pattern)
    return sorted(
        p
        for p in found
        if p.is_file()
        and p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def folder_kind(folder: Path, recursive: bool = False, glob: str | None = None) -> FolderKind:
    """Whether a folder input is one image sequence or a batch (the rule in this module's doc)."""
    files = media_files(folder, recursive, glob)
    if not files:
        what = f"matching {glob!r} " if glob else ""
        raise InputError(f"no videos or images {what}in folder {folder}")
    if recursive or glob is not None:
        return FolderKind.BATCH
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    numbered = [p for p in images if frame_number(p) is not None]
    if videos and numbered:
        raise UsageError(
            f"{folder} holds both videos ({videos[0].name}, ...) and numbered images "
            f"({numbered[0].name}, ...): to upscale each video, pass --glob "
            f"'*{videos[0].suffix}'; to read the images as one clip, give their pattern, e.g. "
            f"'{folder / _pattern_of(numbered[0])}'"
        )
    if images and not videos and len(numbered) == len(images):
        return FolderKind.SEQUENCE
    return FolderKind.BATCH


def _pattern_of(image: Path) -> str:
    """A printf pattern that matches a numbered image's name: shot_0012.png -> shot_%04d.png."""
    head, digits, tail = re.match(r"(.*?)(\d+)(\D*)$", image.stem).groups()
    return f"{head}%0{len(digits)}d{tail}{image.suffix}"


def plan_batch(
    in_dir: Path,
    out_dir: Path,
    *,
    recursive: bool = False,
    glob: str | None = None,
    ext: str | None = None,
    mask_dir: Path | None = None,
) -> list[BatchItem]:
    """Every file of the batch with its output: the same relative path under `out_dir`, with the
    input's extension (stills: .png) unless `ext` names another container."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    check_out_dir(in_dir, out_dir)
    if mask_dir is not None:
        check_mask_dir(in_dir, out_dir, Path(mask_dir))
    suffix = None if ext is None else "." + ext.lstrip(".").lower()
    if suffix is not None and suffix not in (VIDEO_SUFFIXES - RAW_SUFFIXES.keys()) | {STILL_SUFFIX}:
        raise UsageError(f"--ext {ext}: not a container skipsr writes")
    # the files of a folder the batch writes into (OUT_DIR, a mask folder) are earlier outputs,
    # never read back, where it lies inside IN_DIR (or is reached through a link); one that holds
    # IN_DIR holds every input, so there it says nothing: the outputs land beside IN_DIR
    written = [f for f in (out_dir, mask_dir) if f is not None and not _inside(in_dir, f)]
    items, seen = [], {}
    for path in media_files(in_dir, recursive, glob):
        if any(_inside(path, folder) for folder in written):
            continue
        rel = path.relative_to(in_dir)
        out_rel = rel.with_suffix(_output_suffix(path, suffix))
        if out_rel in seen:
            raise UsageError(f"{seen[out_rel]} and {rel} would both be written to {out_rel}")
        seen[out_rel] = rel
        mask = None if mask_dir is None else mask_dir / out_rel
        items.append(BatchItem(path, out_dir / out_rel, rel.as_posix(), mask))
    if not items:
        raise InputError(f"no videos or images to upscale in folder {in_dir}")
    videos = [i for i in items if i.input.suffix.lower() not in IMAGE_SUFFIXES]
    if suffix == STILL_SUFFIX and videos:  # each would fail: a video is not one PNG
        raise UsageError(
            f"--ext {ext}: {videos[0].name} is a video, and a batch writes each video into one "
            "file (stills become PNG without --ext); name a video container such as mkv or mp4"
        )
    check_no_input_written(items, in_dir, written)
    check_no_output_shared(items)
    return items


def check_out_dir(in_dir: Path, out_dir: Path) -> None:
    """A batch writes into a folder: not a file, nor a name that looks like one, nor IN_DIR."""
    looks_like_file = out_dir.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES
    if (out_dir.exists() and not out_dir.is_dir()) or (not out_dir.exists() and looks_like_file):
        raise UsageError(
            f"{in_dir} is a batch (see `skipsr upscale --help`), so the output must be a folder, "
            f"not {out_dir}"
        )
    if out_dir.exists() and out_dir.resolve() == in_dir.resolve():
        raise UsageError(f"the output folder {out_dir} is the input folder: choose another")


def check_mask_dir(in_dir: Path, out_dir: Path, mask_dir: Path) -> None:
    """A batch's --mask-out is a folder of its own: the masks take the outputs' names, so in
    OUT_DIR they would replace the outputs (and in IN_DIR they would be inputs)."""
    if mask_dir.exists() and not mask_dir.is_dir():
        raise UsageError(
            f"--mask-out {mask_dir}: a batch writes its masks into a folder, not a file"
        )
    if mask_dir.resolve() == out_dir.resolve():
        raise UsageError(
            f"--mask-out {mask_dir} is the output folder: the masks would take the outputs' "
            "names; choose another folder"
        )
    if mask_dir.resolve() == in_dir.resolve():
        raise UsageError(f"--mask-out {mask_dir} is the input folder: choose another folder")


def check_no_input_written(items: list[BatchItem], in_dir: Path, written: list[Path]) -> None:
    """Refuse a batch that would write into its own inputs: where OUT_DIR holds IN_DIR (IN_DIR
    videos/raw, OUT_DIR videos) with --recursive, raw/raw/a.mp4 is written to videos/raw/a.mp4,
    the input raw/a.mp4; or an input that is a link to where an output goes. Any output (or mask)
    landing inside IN_DIR, outside the `written` folders whose files are never read, is refused
    too: a rerun would read it as an input, or refuse the batch that wrote it."""
    inputs = {item.input.resolve(): item.name for item in items}
    for item in items:
        for output in (item.output, item.mask_out):
            if output is None:
                continue
            clash = inputs.get(output.resolve())
            if clash is not None:
                raise UsageError(
                    f"{item.name} would be written to {output}, which is the input {clash}: "
                    "choose another output folder"
                )
            if _inside(output, in_dir) and not any(_inside(output, f) for f in written):
                raise UsageError(
                    f"{item.name} would be written to {output}, inside the input folder "
                    f"{in_dir}, where it would be read as an input: choose another output folder"
                )


def check_no_output_shared(items: list[BatchItem]) -> None:
    """Every output and mask its own file: a mask folder inside OUT_DIR can put a mask where a
    --recursive batch writes an output (--mask-out out/sub: the mask of a.mp4 is out/sub/a.mp4,
    the output of sub/a.mp4), and the second file written would replace the first."""
    taken: dict[Path, str] = {}
    for item in items:
        for what, path in (("output", item.output), ("mask", item.mask_out)):
            if path is None:
                continue
            here = f"the {what} of {item.name}"
            first = taken.setdefault(path.resolve(), here)
            if first != here:
                raise UsageError(
                    f"{first} and {here} would both be written to {path}: "
                    "choose a --mask-out folder outside the output folder"
                )


def _output_suffix(path: Path, ext: str | None) -> str:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return STILL_SUFFIX
    return ext or RAW_SUFFIXES.get(path.suffix.lower(), path.suffix)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())
