"""Where a run writes, checked before any work: never over the input, never where it may not.

An output can name the input in many spellings: the same path, `./` and `..` detours, a symbolic or
hard link, a PNG pattern whose frames are the input sequence's own files (`f_%04d.png` against
`f_%d.png`), or the input folder itself. Each is refused as a usage error naming both paths. Files
are compared by what they are (device and inode), not by how they are spelt.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from skipsr_cli.errors import OutputError, UsageError
from skipsr_cli.media.encoding import (
    EncodeOptions,
    at_depth,
    check_container,
    full_chroma_at,
    validate_encode_options,
)
from skipsr_cli.media.image_io import (
    FOLDER_PATTERN,
    IMAGE_SUFFIXES,
    PNG_FORMATS,
    frame_paths,
    is_image_output,
    sequence_files,
)
from skipsr_cli.media.video_io import VideoInfo
from skipsr_cli.media.video_writer import same_file


def check_output(
    path: Path,
    options: EncodeOptions,
    input: Path,
    info: VideoInfo,
    overwrite: bool,
    size: tuple[int, int],
    name: str | None = None,
) -> None:
    """One output of a run (the video or PNG frames, or the mask's), before any model work: a
    video's container and encoder at the input's time base and rate, its encoder settings at
    `size` (width, height), and a target that is not the input and that may be written. `name`
    ("--mask-out") begins what is said of the settings, where the output meant is not OUTPUT."""
    if not is_image_output(path):  # at the input's time base: mpeg4 at 1/90000, MPEG-2 at 1/12800
        check_container(path, options.codec, name or "output", info.time_base, info.rate)
    try:
        check_settings(path, options, size, info)
    except UsageError as e:
        raise UsageError(str(e) if name is None else f"{name} {path}: {e}") from e
    check_not_input(path, input, info.frame_count)
    if is_image_output(path):
        check_frames_target(path, info.frame_count, overwrite, info.frame_numbers)
        check_writable(path, frame_paths(path, info.frame_count)[0])
        return
    if path.exists() and not overwrite:
        raise OutputError(f"output exists: {path} (pass --overwrite to replace it)")
    if not path.parent.exists():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    check_writable(path, path.parent)


def check_settings(
    path: Path, options: EncodeOptions, size: tuple[int, int], info: VideoInfo | None = None
) -> None:
    """The encoder settings of an output at `size`: a video's (at the time base and rate of the
    input `info`, which it is written with), or PNG frames' format."""
    if not is_image_output(path):
        timing = (info.time_base, info.rate) if info is not None else (None, None)
        validate_encode_options(options, *size, *timing)
    elif options.pix_fmt not in (None, *PNG_FORMATS):
        raise UsageError(f"PNG frames are rgb24 or rgb48be, not {options.pix_fmt}")


def check_mask(
    mask: Path,
    options: EncodeOptions,
    input: Path,
    info: VideoInfo,
    overwrite: bool,
    size: tuple[int, int],
) -> EncodeOptions:
    """The mask's encoder options for this run, checked as an output's are: at the input's depth,
    and at an odd size in 4:4:4 where its encoder's format would halve the chroma (a --pix-fmt the
    mask's encoder takes is kept: options.mask_encode_options)."""
    options = at_input_depth(mask, options, info)
    if not is_image_output(mask):  # a name of the user's: its container may be any
        options = full_chroma_at(options, *size)
    check_output(mask, options, input, info, overwrite, size, "--mask-out")
    return options


def at_input_depth(path: Path, options: EncodeOptions, info: VideoInfo) -> EncodeOptions:
    """A video's encoder options with a deeper input's depth kept where no pix_fmt is chosen (PNG
    frames pick theirs as they are written)."""
    return options if is_image_output(path) else at_depth(options, info.bit_depth)


def check_not_input(output: Path, input: Path, frames: int | None) -> None:
    """Refuse an output (a video, a PNG, a PNG pattern or folder) that is or holds the input."""
    if same_file(output, input):
        raise UsageError(f"the output {output} is the input {input}: choose another path")
    if not is_image_output(output):
        return
    folder, pattern = frame_paths(output, frames)
    sequence = sequence_files(input)
    # frames written into the folder of a sequence would join it (a folder's frames, or a
    # pattern's when the output is the folder itself)
    home = input if input.is_dir() else input.parent
    if sequence and (input.is_dir() or output.is_dir()) and same_file(folder, home):
        raise UsageError(
            f"the output folder {folder} is the folder of the input {input}: choose another folder"
        )
    inputs = _identities(sequence or [input])
    files = _frame_files(folder, output.name, pattern)
    clash = next((p for p, _ in files if _id(p) in inputs), None)
    if clash is not None:
        raise UsageError(
            f"the output {output} would write over the input's frame {clash}: choose another path"
        )


def _id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _identities(files: Sequence[Path]) -> set[tuple[int, int] | None]:
    return {_id(f) for f in files} - {None}


def pattern_number(pattern: str, name: str) -> int | None:
    """The frame number a printf pattern (`f_%04d.png`) writes as `name`, or None if none does."""
    parts = re.split(r"%[-+ 0#]*\d*d", pattern, maxsplit=1)
    if len(parts) != 2:
        return None
    head, tail = parts
    match = re.fullmatch(re.escape(head) + r"(\s*-?\d+)" + re.escape(tail), name)
    if match is None:
        return None
    number = int(match.group(1))
    try:
        return number if pattern % number == name else None
    except (TypeError, ValueError):
        return None


def _frame_files(folder: Path, name: str, pattern: str | None) -> Iterator[tuple[Path, int]]:
    """(file, frame number) of the files in `folder` a PNG output could write over: one pass over
    the folder, bounded by what is in it (never by the frame count a header claims)."""
    if pattern is None:
        yield folder / name, 0
        return
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        number = pattern_number(pattern, entry.name)
        if number is not None:
            yield Path(entry.path), number


def check_folder_output(output: str | os.PathLike) -> None:
    """An output spelt as a folder (ending in a slash) means PNG frames into that folder, which
    must exist (README: "PNG frames into an existing folder"); Path() drops the slash, after
    which the name would be taken for a video file without an extension."""
    text = os.fspath(output)
    if not text.endswith(("/", os.sep)) or Path(text).is_dir():
        return
    if Path(text).exists():
        raise OutputError(f"cannot write {text}: {Path(text)} is a file, not a folder")
    raise OutputError(
        f"cannot write {text}: folder {Path(text)} does not exist (PNG frames go into an "
        "existing folder: make it first)"
    )


def check_output_name(output: Path, input: Path | None = None) -> None:
    """OUTPUT for one input names a video file (its extension picks the container), PNG frames
    (a .png name or pattern) or an existing folder of PNG frames: a name without an extension is
    none of these, a usage error before any work (the muxer refused it after the model's). The
    name suggested is a PNG's for a pattern or an image `input` (photo.jpg), else a video's."""
    if output.suffix or is_image_output(output):
        return
    image = input is not None and input.suffix.lower() in IMAGE_SUFFIXES and input.is_file()
    suffix = ".png" if "%" in output.name or image else ".mp4"
    raise UsageError(
        f"the output {output} has no extension: for one input it names a video file or PNG "
        f"frames, e.g. {output.with_name(output.name.rstrip('.') + suffix)} (PNG frames also go "
        "into a folder that exists)"
    )


def check_mask_name(mask: Path | None, output: Path) -> None:
    """--mask-out for one input names a video file: without an extension there is no container
    to write it in."""
    if mask is None or mask.suffix or is_image_output(mask):
        return
    suffix = output.suffix if output.suffix and not is_image_output(output) else ".mp4"
    raise UsageError(
        f"--mask-out {mask} has no extension: for one input it names a video file, e.g. "
        f"{mask.with_name(mask.name + suffix)}"
    )


def check_writable(path: Path, folder: Path) -> None:
    """Refuse an output whose folder we may not create files in (read-only mount, permissions)."""
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: folder {folder} is not writable")


def check_frames_target(
    path: Path, frames: int | None, overwrite: bool, numbers: Sequence[int] | None = None
) -> None:
    """Refuse a PNG-frames output that cannot be written, before any model work.

    Existing frames are looked for among the folder's files (a pass bounded by the folder), so a
    header claiming an enormous duration costs nothing here.
    """
    folder, pattern = frame_paths(path, frames)
    if pattern != FOLDER_PATTERN and not folder.is_dir():
        raise OutputError(f"cannot write {path}: folder {folder} does not exist")
    if overwrite or not folder.is_dir():
        return
    wanted = set(numbers) if numbers else range(frames or 1)
    for file, number in _frame_files(folder, path.name, pattern):
        if file.exists() and (pattern is None or number in wanted):
            raise OutputError(f"output exists: {file} (pass --overwrite to replace it)")
