"""Numbered image sequences (frame_0001.png, ...) read as a video: probed and decoded in order.

`video_io.probe` and `read_frames` hand a sequence's path here; the files themselves are found
and read by image_io.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from skipsr_cli.errors import InputError
from skipsr_cli.media.colour import ColourInfo
from skipsr_cli.media.image_io import SEQUENCE_RATE, read_image
from skipsr_cli.media.video_io import DecodedFrame, VideoInfo, frame_picture, pix_fmt_depth


def probe_sequence(path: Path, frames: list[tuple[int, Path]]) -> VideoInfo:
    """What probe says of the sequence `path` names: its (number, file) `frames`, at
    SEQUENCE_RATE."""
    files = [p for _, p in frames]
    numbers = tuple(n for n, _ in frames)
    first = read_image(files[0])
    return VideoInfo(
        path=path,
        width=first.width,
        height=first.height,
        rate=SEQUENCE_RATE,
        time_base=1 / SEQUENCE_RATE,
        frame_count=len(files),
        duration=float(len(files) / SEQUENCE_RATE),
        codec="image sequence",
        pix_fmt=first.format.name,
        audio_streams=0,
        colour=ColourInfo.of(first),
        bit_depth=pix_fmt_depth(first.format.name),
        sequence=True,
        frames_exact=True,
        # the output's frames keep these numbers when they are distinct and increasing
        frame_numbers=numbers if list(numbers) == sorted(set(numbers)) else None,
    )


def read_sequence(files: list[Path], start: int = 0) -> Iterator[DecodedFrame]:
    """The sequence's pictures from file `start` on, each numbered by its place; a picture of
    another size than the first is an InputError."""
    size = None
    for index, file in enumerate(files[start:], start):
        frame = read_image(file)
        if size is not None and (frame.width, frame.height) != size:
            raise InputError(
                f"{file} is {frame.width}x{frame.height}, the sequence {size[0]}x{size[1]}"
            )
        size = (frame.width, frame.height)
        yield DecodedFrame(frame_picture(frame), index, index)
