"""Frame ranges: `--frames START:END` renders part of a video exactly as a whole run renders it.

The chunk grid is counted from the video's first frame (run/chunking.py), so a range runs the
chunks that touch it, whole, reading their context frames from outside the range, and keeps only
the frames it owns. Frames before the first of those chunks are decoded and dropped (no seek yet).
A range's output starts at time 0 and holds video only: audio and subtitles belong to the joined
file, not to its pieces.
"""

from __future__ import annotations

from dataclasses import replace

from skipsr_cli.errors import UsageError
from skipsr_cli.media.video_io import VideoInfo


def parse_frames(value: str | tuple[int, int | None] | None) -> tuple[int, int | None] | None:
    """'START:END' (END exclusive; 'START:' runs to the end), or (start, end) -> (start, end)."""
    if value is None:
        return None
    if isinstance(value, str):
        head, sep, tail = value.partition(":")
        try:
            start, stop = int(head), (int(tail) if tail.strip() else None)
        except ValueError:
            sep, start, stop = "", -1, None
    else:
        sep, (start, stop) = ":", value
    if not sep or start < 0 or (stop is not None and stop <= start):
        raise UsageError(
            f"--frames {value!r}: expected START:END with 0 <= START < END (END exclusive), "
            "or START: to the end"
        )
    return start, stop


VIDEO_ONLY = (
    "a frame range holds video only: audio and subtitles are left out of it "
    "(they belong to the file its pieces are joined into)"
)


def range_view(info: VideoInfo, frames: tuple[int, int | None]) -> tuple[VideoInfo, list[str]]:
    """What the run sees of the input inside the range: its length and frame numbers (a range past
    the end stops at the end, as farms' last chunks overshoot), and the notes for the summary."""
    start, stop = frames
    count = info.frame_count
    if count is not None:
        if start >= count:
            end = "" if stop is None else stop
            raise UsageError(f"--frames {start}:{end} starts past the input's {count} frames")
        stop = count if stop is None else min(stop, count)
    numbers = None
    if stop is not None:
        numbers = tuple(
            info.frame_numbers[start:stop] if info.frame_numbers else range(start, stop)
        )
    notes = [VIDEO_ONLY] if info.audio_streams and not info.sequence else []
    length = None if stop is None else stop - start
    return replace(info, frame_count=length, frame_numbers=numbers), notes
