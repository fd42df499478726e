"""Finding frame N of a video without decoding what comes before it: a seek to the keyframe at
or before it, checked, since not every demuxer lands where it is asked to; and which packets show
a frame at all (`shows`), which is what N counts; and where packets are timed in decode order
(`decode_ordered`: AVI), which frames take which times (`FrameClock`), where no seek can be used."""

from __future__ import annotations

import heapq
from pathlib import Path

import av

from skipsr_cli.media.av_errors import AV_ERRORS

REORDER_WINDOW = 64  # packets past a frame that may still show before it (H.264 allows 16)
# first_shown's floor (None: no packet is dropped for its time), and whether packets are timed in
# decode order (decode_ordered): how a stream's packets give its frames' numbers and times
Timing = tuple[int | None, bool]


def seek_frame(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    start: int,
    floor: int | None = None,
) -> tuple[int, av.Packet] | None:
    """Seek to the keyframe at or before frame `start`: the timestamp of frame `start` and the
    first packet read after the seek, or None where there is no keyframe to seek to or the seek
    did not land on it (the caller then decodes from the beginning). Frames are counted among
    the packets that show one (`shows`, with first_shown's `floor`).

    Frame `start` is counted among the packets demuxed up to REORDER_WINDOW past it (decode order
    runs at most a few frames ahead of presentation), so a part near the start of a long film does
    not read the whole file to find its first frame. Some demuxers (MPEG-TS) land near the
    timestamp asked for rather than on a keyframe before it, and a decoder that starts past its
    keyframe gives no pictures until the next: so the packet read first must be that keyframe."""
    stamps, keys = [], []
    for packet in container.demux(stream):
        if not shows(packet, floor):  # no picture, or one decoded and never shown
            continue
        if packet.pts is None:  # a frame no timestamp can find
            return None
        stamps.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
        if len(stamps) > start + REORDER_WINDOW:
            break
    stamps.sort()
    if len(stamps) <= start:
        return None
    key = max((k for k in keys if k <= stamps[start]), default=None)
    if key is None:
        return None
    for back in SEEK_BACK:  # on the keyframe, then further before it where the seek overshot
        try:
            container.seek(
                key - int(back / stream.time_base), stream=stream, backward=True, any_frame=False
            )
            first = _keyframe_at(container, stream, key)
        except AV_ERRORS:
            return None
        if first is not None:
            return stamps[start], first
    return None


def frame_timing(path: Path) -> Timing:
    """first_shown's floor for the video of `path` (leading pictures before it show nothing), and
    whether its packets are timed in decode order (decode_ordered, read from the start)."""
    from skipsr_cli.media.video_io import open_input, video_stream

    with open_input(path) as container:
        stream = video_stream(container, path)
        floor, reorders = first_shown(container, stream)[1], stream.codec_context.reorder_depth
    if not reorders:
        return floor, False
    with open_input(path) as container:
        return floor, decode_ordered(container, video_stream(container, path))


def decode_ordered(container: av.container.InputContainer, stream: av.VideoStream) -> bool:
    """Whether the stream's packets carry decode times where its frames show in another order. An
    AVI holds no presentation times: FFmpeg's demuxer gives H.264 with B-frames its decode times
    (packets 1, 2, 3, 4, 5 whose pictures show as 1, 4, 3, 5, 2), and the decoder's frames keep
    their packets' times, out of order. Then frame N cannot be found by its packet's time (no
    seek) and frames are timed by FrameClock. Told from the first packets (the container's start,
    up to REORDER_WINDOW): times that never go back, where the codec reorders frames (FFmpeg's
    has_b_frames). MPEG-4 Part 2 in AVI is not: FFmpeg's parser gives its packets their own."""
    if not stream.codec_context.reorder_depth:
        return False
    stamps: list[int] = []
    for packet in container.demux(stream):
        if packet.size and packet.pts is not None:
            stamps.append(packet.pts)
        if len(stamps) > REORDER_WINDOW:
            break
    return all(a <= b for a, b in zip(stamps, stamps[1:], strict=False))


class FrameClock:
    """The timestamp each frame takes as the decoder gives it: its own, or where packets are timed
    in decode order (`decode_ordered`), the earliest time among the packets sent that show a frame
    (`shows`) not yet taken: frames leave the decoder in presentation order, so the Nth frame takes
    the Nth packet's time, as source_timestamps (the packets' times, sorted) has it. Where the
    packets' times are presentation times after all, that earliest time is the frame's own."""

    def __init__(self, ordered: bool) -> None:
        self.pending: list[int] | None = [] if ordered else None

    def sent(self, packet: av.Packet) -> None:
        """A packet that shows a frame has gone to the decoder."""
        if self.pending is not None and packet.pts is not None:
            heapq.heappush(self.pending, packet.pts)

    def pts(self, frame: av.VideoFrame) -> int | None:
        if self.pending is None:
            return frame.pts
        return heapq.heappop(self.pending) if self.pending else None


def shows(packet: av.Packet, floor: int | None = None) -> bool:
    """Whether a packet shows a frame: it holds a picture that an edit list does not hide
    (decoded, never shown), and that is not a leading picture timed before `floor`, the first
    frame the decoder shows (first_shown)."""
    if not packet.size or packet.is_discard:
        return False
    return floor is None or packet.pts is None or packet.pts >= floor


def first_shown(
    container: av.container.InputContainer, stream: av.VideoStream
) -> tuple[av.VideoFrame | None, int | None, int]:
    """Decoded from the container's start: the first frame shown, the `floor` that `shows` takes
    (None: no packet is dropped for its time), and how many packets read before it show nothing.

    Those are the packets an edit list hides and, in a file that starts on a keyframe whose own
    picture is the first shown, those timed before it: an open GOP's leading pictures cut off from
    the frames they refer to (an HEVC CRA's RASL pictures after `ffmpeg -ss T -c copy`). The
    decoder drops them without an error, as every player does, but the container counts them.
    Frames leave the decoder in presentation order, after every leading picture of their keyframe
    has gone in. A file that does not start on a keyframe keeps no floor: what its decoder drops
    is damage; nor does one whose first frame shown is not its first packet's picture (a packet
    flagged key that is none, or a keyframe the decoder could not use: a GOP lost, not leading
    pictures). (None, None, the hidden packets read) where no frame decodes. Only the timestamps
    of the packets read are kept: a file that never decodes is not held in memory."""
    read: list[tuple[int | None, bool]] = []  # (pts, hidden by the edit list) of those with data
    keyed, lead = False, None  # the first packet a keyframe; the first packet not hidden, its pts
    try:
        for packet in container.demux(stream):
            if packet.size:
                keyed = keyed or (not read and packet.is_keyframe)
                if lead is None and not packet.is_discard:
                    lead = packet.pts
                read.append((packet.pts, packet.is_discard))
            for frame in packet.decode():  # the end of the file's packet flushes the decoder
                floor = frame.pts if keyed and frame.pts is not None and frame.pts == lead else None
                return frame, floor, sum(_hidden(pts, discard, floor) for pts, discard in read)
    except AV_ERRORS:
        pass
    return None, None, sum(discard for _, discard in read)


def _hidden(pts: int | None, discard: bool, floor: int | None) -> bool:
    """`not shows` for a packet with data, from its timestamp and discard flag alone."""
    return discard or (floor is not None and pts is not None and pts < floor)


SEEK_BACK = (0, 1, 4, 16)  # seconds before the keyframe that seeks aim at, in turn


def _keyframe_at(
    container: av.container.InputContainer, stream: av.VideoStream, key: int
) -> av.Packet | None:
    """The keyframe packet of timestamp `key`, read forward from where a seek landed (packets
    before it dropped); None when the seek landed past it."""
    for packet in container.demux(stream):
        if not packet.size:
            continue
        if packet.is_keyframe and packet.pts == key:
            return packet
        if packet.dts is not None and packet.dts > key:  # decoded after the keyframe: past it
            return None
    return None
