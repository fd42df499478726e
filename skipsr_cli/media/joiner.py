"""Join video-only pieces into one file without re-encoding, with the source's other streams.

The pieces' packets are copied as they are (each piece starts on a keyframe of its own encoder
run); every frame takes the source's timestamp for its place in the whole video, so the joined
file has the timing of a whole run, and the audio, subtitles, chapters and tags are copied once,
in sync, from the source (stream_copy). The file is written beside the target and renamed into
place only when complete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av

from skipsr_cli.errors import OutputError
from skipsr_cli.media.av_errors import AV_ERRORS, said
from skipsr_cli.media.partials import (
    Identity,
    flush_to_disk,
    identity,
    note_placing,
    stops_deferred,
)
from skipsr_cli.media.seeking import frame_timing, shows
from skipsr_cli.media.stream_copy import StreamCopier, packet_seconds
from skipsr_cli.media.video_io import open_input, video_stream
from skipsr_cli.media.video_writer import check_target, partial_path


def source_timestamps(path: Path) -> tuple[list[int], Fraction]:
    """Presentation timestamps of the source's video frames, in order, and their time base: a
    packet each, but those that show no frame (an edit list hides them, or they are leading
    pictures cut off from their references: seeking.shows). Where packets are timed in decode
    order (seeking.decode_ordered), the Nth time is the Nth frame's, as read_frames times it."""
    floor = frame_timing(path)[0]
    with open_input(path) as container:
        stream = video_stream(container, path)
        stamps = sorted(
            p.pts for p in container.demux(stream) if p.pts is not None and shows(p, floor)
        )
        return stamps, Fraction(stream.time_base)


def join_videos(
    pieces: Sequence[tuple[Path, int]],
    output: Path,
    source: Path,
    rate: Fraction,
    *,
    overwrite: bool = False,
    copy_audio: bool = True,
    copy_subtitles: bool = True,
    audio_kbps: int | None = None,
    expected: int | None = None,
    placing: Callable[[Identity, int], object] | None = None,
) -> tuple[int, list[str]]:
    """Join (piece, first frame) pairs in order into `output`; returns (frames, warnings).
    `rate`: the frame rate a whole run's encoder is opened at, the source's as probe reads it
    (the pieces' own is read back from Matroska's default duration, which may round it).
    With `expected`, a join of another frame count is refused and nothing is published.
    `placing(identity, frames)` is called just before the joined file is renamed into place (the
    identity it will have there), which a stop waits for; the file goes into
    `partials.placements`, so a stop after it says it was written."""
    check_target(output, source, overwrite)
    stamps, time_base = source_timestamps(source)
    temp: Path | None = None
    try:  # the partial file made inside: a stop right after it is made still removes it
        temp = partial_path(output)
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(av.open(str(temp), "w"))
            first = stack.enter_context(open_input(pieces[0][0]))
            # opaque: the codec copied as it is, with no encoder of its name (AV1 parts decode
            # with libdav1d, which has none)
            video = out.add_stream_from_template(first.streams.video[0], opaque=True)
            video.time_base = time_base  # the source's clock, where the container allows it
            # Matroska's default duration comes from it (unset, an mkv read 12,800 fps), and an
            # mp4's or mov's last frame's duration
            video.codec_context.framerate = rate
            copier = StreamCopier(
                open_input(source),
                out,
                suffix=output.suffix,
                copy_audio=copy_audio,
                copy_subtitles=copy_subtitles,
                audio_kbps=audio_kbps,
            )
            stack.callback(copier.close)
            if copier.timecode:  # the source's start timecode, as a whole run keeps it
                video.metadata["timecode"] = copier.timecode
            orders = [_order(path) for path, _ in pieces]
            ranks = [r for r, _ in orders]
            # decode times run as far behind as the encoder declares (x264's 2 with B-pyramid),
            # as a whole run's do, even where no piece reorders that deep: a muxer that moves
            # the first decode time to 0 (MPEG-TS) moves every stream's timestamps by it
            depth = max(max(declared, reorder_depth(r)) for r, declared in orders)
            muxer = _PieceMuxer(stamps, time_base, video, out, copier, depth)
            frames = sum(
                muxer.copy(p, start, r) for (p, start), r in zip(pieces, ranks, strict=True)
            )
            copier.mux_until(None)
            warnings = copier.warnings + copier.late_warnings()
        if expected is not None and frames != expected:
            raise OutputError(f"the pieces hold {frames} frames, the source {expected}")
        flush_to_disk(temp)
        if output.exists() and not overwrite:
            raise OutputError(f"output exists: {output} (pass --overwrite to replace it)")
        placed = identity(output, temp)
        if placing is not None:
            placing(placed, frames)
        with stops_deferred():  # placed and noted, or neither
            note_placing([placed], [output])
            os.replace(temp, output)
    except AV_ERRORS as e:
        _remove(temp)
        raise OutputError(f"cannot write {output}: {said(e, output)}") from e
    except BaseException:
        _remove(temp)
        raise
    return frames, warnings


def _remove(temp: Path | None) -> None:
    if temp is not None:
        temp.unlink(missing_ok=True)


def _order(path: Path) -> tuple[list[int], int]:
    """For each packet of a piece's video, in decode order, its frame's place in presentation;
    and the frames its encoder says a decoder must hold (H.264's and HEVC's
    max_num_reorder_frames, FFmpeg's has_b_frames): how far its decode times run behind."""
    with open_input(path) as container:
        stream = container.streams.video[0]
        stamps = [p.pts for p in container.demux(stream) if p.size]
        declared = stream.codec_context.reorder_depth
    order = {pts: i for i, pts in enumerate(sorted(stamps))}
    return [order[pts] for pts in stamps], declared


def reorder_depth(ranks: list[int]) -> int:
    """Frames a decoder must hold before it can show the first: how far decode order runs ahead."""
    return max([0, *(i - r for i, r in enumerate(ranks))])


class _PieceMuxer:
    """Muxes the pieces' packets on the source's clock.

    A packet takes the source's timestamp of its frame (its piece's first frame plus its place in
    presentation order); decode times run `depth` frames behind decode order over the whole joined
    stream (the deepest any piece declares or reorders), so they rise strictly and never pass a
    presentation time, across the joins too.
    """

    def __init__(
        self,
        stamps: list[int],
        time_base: Fraction,
        video: av.VideoStream,
        out: av.container.OutputContainer,
        copier: StreamCopier,
        depth: int,
    ) -> None:
        self.stamps, self.time_base = stamps, time_base  # the source's frame times
        self.video, self.out, self.copier, self.depth = video, out, copier, depth

    def decode_time(self, index: int) -> int:
        """The decode timestamp of the index-th packet of the joined stream, in decode order."""
        back = index - self.depth
        if back >= 0:
            return self.stamps[back]
        if self.depth < len(self.stamps):  # as x264 and x265 begin: the first frames' times,
            return self.stamps[index] - (self.stamps[self.depth] - self.stamps[0])  # less depth's
        step = self.stamps[1] - self.stamps[0] if len(self.stamps) > 1 else 1
        return self.stamps[0] + back * step

    def copy(self, path: Path, start: int, ranks: list[int]) -> int:
        """One piece, whose frames are the source's frames start, start + 1, ..."""
        if start + len(ranks) > len(self.stamps):
            raise OutputError(f"{path} holds more frames than the source has from frame {start}")
        with open_input(path) as container:
            packets = (p for p in container.demux(container.streams.video[0]) if p.size)
            for i, (packet, rank) in enumerate(zip(packets, ranks, strict=True)):
                packet.stream = self.video
                packet.time_base = self.time_base  # mux() rescales to the stream's own
                packet.pts = self.stamps[start + rank]
                packet.dts = self.decode_time(start + i)
                # none, as a whole run's encoder gives it: the muxer makes it what it makes a
                # whole run's. An mp4 or mov takes it from the next decode time, and the last
                # frame's as a frame at the rate on its own clock (mov's 1/16000 for a 1/1000
                # source: 667, where 42 ms on the source's clock read 672); Matroska writes
                # none, and a reader takes a frame at the rate, before a pause too (the source's)
                packet.duration = 0
                self.copier.mux_until(packet_seconds(packet))
                self.out.mux(packet)
        return len(ranks)
