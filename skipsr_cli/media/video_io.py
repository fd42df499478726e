"""Video in, through PyAV: probe an input and decode it one frame at a time as RGB.

Memory stays flat however long the film. Frames come out upright (a display rotation is applied),
converted with the stream's own matrix and range, and at 16 bits where the input is deeper than 8.
Numbered image sequences read through image_io. Writing lives in video_writer, encoder options in
encoding, the copy of the other streams in stream_copy.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from skipsr_cli.errors import InputError
from skipsr_cli.media.av_errors import AV_ERRORS, said
from skipsr_cli.media.colour import (
    ACCURATE,
    EXACT_RGB,
    PLANAR_8BIT,
    RANGE_FULL,
    RANGE_LIMITED,
    ColourInfo,
    YCbCr8,
    output_colour,
    sws_matrix,
)
from skipsr_cli.media.cpu_share import decoder_threads
from skipsr_cli.media.damage import Concealed, DecodeDamage
from skipsr_cli.media.seeking import FrameClock, first_shown, frame_timing, seek_frame, shows


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline plans with: size, exact rational rate, time base and (estimated) length."""

    path: Path
    width: int
    height: int
    rate: Fraction
    time_base: Fraction
    frame_count: int | None
    duration: float | None
    codec: str
    pix_fmt: str
    audio_streams: int
    colour: ColourInfo = ColourInfo()  # primaries, transfer, matrix, range; None = unspecified
    sar: Fraction | None = None  # sample (pixel) aspect ratio; None where the stream says nothing
    bit_depth: int = 8  # bits per component of the stream's pixel format
    # Counter-clockwise degrees (0, 90, 180, -90) the display matrix turns the stored picture by.
    # Frames are read already turned, and width/height/sar describe the picture as displayed.
    rotation: int = 0
    sequence: bool = False  # a numbered image sequence (no other streams, no container)
    frame_numbers: tuple[int, ...] | None = None  # a sequence's numbers, for the output's names
    hdr: HdrMetadata | None = None  # mastering display and content light levels, if any
    # frame_count is the container's own count (mp4's sample table, a sequence's files), not an
    # estimate from the duration, which may be two frames off on a healthy file
    frames_exact: bool = False
    start: float = 0.0  # seconds: the video stream's first timestamp (its end: start + duration)


@dataclass(frozen=True)
class HdrMetadata:
    """HDR10 static metadata of a stream, in x265's notation (what the writer passes on)."""

    master_display: (
        str | None
    )  # "G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)": 0.00002 and 0.0001 cd/m2 units
    max_cll: str | None  # "MaxCLL,MaxFALL" in cd/m2


class DecodedFrame:
    """One decoded picture with the timestamp the writer needs to keep the input's timing.

    8-bit planar YCbCr pictures (nearly every video) keep their planes (`ycbcr`): the pipeline
    converts whole chunks of them on its device, which takes that work off the decoding thread and
    halves what is uploaded. `rgb` converts on the host, once, where a reader asks for it."""

    __slots__ = ("_rgb", "ycbcr", "pts", "index")

    def __init__(self, picture: np.ndarray | YCbCr8, pts: int | None, index: int) -> None:
        self.ycbcr = picture if isinstance(picture, YCbCr8) else None
        self._rgb = None if isinstance(picture, YCbCr8) else picture
        self.pts = pts  # in VideoInfo.time_base units
        self.index = index  # 0-based, in the order PyAV delivers frames (presentation order)

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) RGB, C-contiguous: uint8, or uint16 (0-65535) for > 8-bit inputs."""
        if self._rgb is None:
            self._rgb = self.ycbcr.rgb()
        return self._rgb


def open_input(path: Path) -> av.container.InputContainer:
    """Open a media file, turning every way it can fail into one readable InputError."""
    if not path.exists():
        raise InputError(f"input not found: {path}")
    try:
        return av.open(str(path), "r")
    except AV_ERRORS as e:
        raise InputError(f"cannot read {path}: {said(e, path)}") from e


def video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    """The first real video stream; cover art (an attached picture) is not the video."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise InputError(f"no video stream in {path}")


def _stream_rate(stream: av.VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def _tag_seconds(tag: str | None) -> float | None:
    """Matroska's per-stream DURATION tag, "HH:MM:SS.nnnnnnnnn", in seconds."""
    try:
        hours, minutes, seconds = (tag or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _stream_duration(
    container: av.container.InputContainer, stream: av.VideoStream
) -> float | None:
    """Seconds: the video stream's own duration where the container stores one (mkv tag, mp4
    header), else the whole file's, which may include a longer audio track (FFmpeg gives each
    Matroska stream the file's). FFmpeg's muxer tags where a stream ends, counted from the file's
    zero, so one that starts late is that much shorter; mkvmerge's tag is the length already."""
    tagged = _tag_seconds(stream.metadata.get("DURATION"))
    if tagged:
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        ffmpeg = str(container.metadata.get("ENCODER", "")).startswith("Lavf")
        return tagged - start if ffmpeg and 0 < start < tagged else tagged
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def probe(path: Path) -> VideoInfo:
    """Read what the pipeline needs to plan its work (decoding at most the first frame)."""
    from skipsr_cli.media.image_io import sequence_frames
    from skipsr_cli.media.sequences import probe_sequence

    path = Path(path)
    frames = sequence_frames(path)
    if frames is not None:
        return probe_sequence(path, frames)
    container = open_input(path)
    with container:
        stream = video_stream(container, path)
        rate = _stream_rate(stream)
        if rate is None:
            raise InputError(f"cannot read {path}: the video stream has no frame rate")
        duration = _stream_duration(container, stream)
        ctx = stream.codec_context
        rotation, hdr, hidden = _first_frame_facts(container, stream)
        # an mp4 counts among its own the frames its edit list hides (decoded, never shown) and
        # the leading pictures an open GOP cut at its keyframe cannot show (first_shown)
        frame_count: int | None = stream.frames - hidden if stream.frames else None
        if frame_count is None and duration is not None:
            frame_count = round(duration * rate)
        width, height, sar = ctx.width, ctx.height, _sample_aspect(stream)
        if width <= 0 or height <= 0:  # a damaged header: no picture can be made of it
            raise InputError(f"cannot read {path}: the video stream has no picture size")
        if rotation in (90, -90):
            width, height, sar = height, width, (1 / sar if sar else None)
        return VideoInfo(
            path=path,
            width=width,
            height=height,
            rate=rate,
            time_base=Fraction(stream.time_base or Fraction(1, rate)),
            frame_count=frame_count,
            duration=duration,
            codec=ctx.name,
            pix_fmt=ctx.pix_fmt or "unknown",
            audio_streams=len(container.streams.audio),
            colour=ColourInfo.of(ctx),
            sar=sar,
            bit_depth=pix_fmt_depth(ctx.pix_fmt),
            rotation=rotation,
            hdr=hdr,
            frames_exact=bool(stream.frames),
            start=float(stream.start_time * stream.time_base) if stream.start_time else 0.0,
        )


def _first_frame_facts(
    container: av.container.InputContainer, stream: av.VideoStream
) -> tuple[int, HdrMetadata | None, int]:
    """What only a decoded frame tells: its display rotation (a multiple of 90 degrees) and HDR10
    metadata, (0, None) if it cannot be decoded; and the packets before the first frame shown
    that show nothing (first_shown)."""
    frame, _, hidden = first_shown(container, stream)
    if frame is None:
        return 0, None, hidden
    return _quarter_turns(frame.rotation) * 90, _hdr_metadata(frame), hidden


def _hdr_metadata(frame: av.VideoFrame) -> HdrMetadata | None:
    """Mastering display and content light level side data, as x265 spells them."""
    from av.sidedata.sidedata import Type

    def ints(kind: Type) -> tuple[int, ...] | None:
        try:
            data = frame.side_data[kind]
        except (KeyError, IndexError, TypeError):
            return None
        raw = bytes(data)
        return struct.unpack(f"<{len(raw) // 4}i", raw[: len(raw) // 4 * 4])

    master, light = ints(Type.MASTERING_DISPLAY_METADATA), ints(Type.CONTENT_LIGHT_LEVEL)
    display = None
    if master is not None and len(master) >= 22 and master[20] and master[21]:
        # AVMasteringDisplayMetadata: (r, g, b) x (x, y), white (x, y), min, max: rationals
        q = [master[i] / master[i + 1] if master[i + 1] else 0.0 for i in range(0, 20, 2)]
        c = [round(v * 50000) for v in q[:8]]
        lum = round(q[9] * 10000), round(q[8] * 10000)
        display = (
            f"G({c[2]},{c[3]})B({c[4]},{c[5]})R({c[0]},{c[1]})WP({c[6]},{c[7]})L({lum[0]},{lum[1]})"
        )
    cll = f"{light[0]},{light[1]}" if light is not None and len(light) >= 2 else None
    return HdrMetadata(display, cll) if display or cll else None


def _quarter_turns(degrees: float | None) -> int:
    """Counter-clockwise quarter turns in -1..2 for an angle (rounded to the nearest quarter)."""
    turns = round((degrees or 0) / 90) % 4
    return turns - 4 if turns == 3 else turns


def pix_fmt_depth(pix_fmt: str | None) -> int:
    """Bits per component of a pixel format (8 where unknown)."""
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components) if pix_fmt else 8
    except AV_ERRORS:
        return 8


def _sample_aspect(stream: av.VideoStream) -> Fraction | None:
    """The stream's pixel aspect ratio (the container's, else the codec's); None if unset (0/1)."""
    for sar in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if sar:
            return Fraction(sar)
    return None


def read_frames(
    path: Path, damage: DecodeDamage | None = None, *, strict: bool = True, start: int = 0
) -> Iterator[DecodedFrame]:
    """Stream the first video stream as RGB frames, one at a time.

    The file is opened now, so a missing or unreadable input fails at the call, not at the first
    ``next()``. With `strict` (the default), a decode error raises InputError naming the frame.
    Without it, every frame that can be decoded is decoded, as ``ffmpeg`` does: a packet the decoder
    refuses and a file cut short are noted in `damage` and the decode goes on, so the caller can say
    how many frames were lost (never silently).

    With `start`, the frames begin at that frame (counted in presentation order, as `index` is): the
    decoder seeks to the keyframe at or before it and drops what comes before it (decodes from the
    start where packets are timed in decode order: seeking.decode_ordered, an AVI's B-frames).
    """
    from skipsr_cli.media.image_io import sequence_files
    from skipsr_cli.media.sequences import read_sequence

    path = Path(path)
    files = sequence_files(path)
    if files is not None:
        return read_sequence(files, start)
    floor, ordered = frame_timing(path)
    container, stream = _open_video(path)
    try:
        landed = seek_frame(container, stream, start, floor) if start and not ordered else None
    except BaseException:
        container.close()
        raise
    damage = damage or DecodeDamage()
    if start and landed is None:  # no keyframe to seek to: decode from the start, drop the rest
        container.close()  # a seek that missed leaves the demuxer anywhere: start again
        container, stream = _open_video(path)
        frames = _decode(container, stream, path, damage, strict, (floor, ordered))
        return (f for f in frames if f.index >= start)
    if landed is None:
        return _decode(container, stream, path, damage, strict, (floor, ordered))
    after, first = landed
    return _decode(container, stream, path, damage, strict, (floor, ordered), start, after, first)


def _open_video(
    path: Path, frame_threads: bool = True
) -> tuple[av.container.InputContainer, av.VideoStream]:
    """The input opened, with its video stream's decoder set up to run beside the model (slice
    and frame threads, or slice threads alone)."""
    container = open_input(path)
    try:
        stream = video_stream(container, path)
        stream.codec_context.thread_type = "AUTO" if frame_threads else "SLICE"
        if decoder_threads():  # a worker among several on this host: its share of the cores
            stream.codec_context.thread_count = decoder_threads()
    except BaseException:
        container.close()
        raise
    return container, stream


def _decode(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    path: Path,
    damage: DecodeDamage,
    strict: bool,
    timing: tuple[int | None, bool],  # frame_timing's
    index: int = 0,
    after: int | None = None,
    first: av.Packet | None = None,
) -> Iterator[DecodedFrame]:
    """Frames numbered from `index`; with `after` (a seek's target), those before it dropped;
    `first` is a packet read already (the seek's keyframe). `timing`: frame_timing's. A decode
    with frame threads that gave fewer frames than its packets that show one (`shows`, with
    frame_timing's floor) and its container's count goes on as `_decode_again` finds."""
    last, shown, given = None, 0, 0  # the latest timestamp given; packets to show, frames given
    floor, clock = timing[0], FrameClock(timing[1])
    with container:
        for packet in _packets(container, stream, path, damage, strict, first):
            if packet is not None and shows(packet, floor):
                shown += after is None or packet.pts is None or packet.pts >= after
                clock.sent(packet)
            try:
                frames = packet.decode() if packet is not None else stream.decode(None)
            except AV_ERRORS as e:  # one damaged packet: the next one may decode again
                if strict:
                    raise InputError(
                        f"damaged input {path}: cannot decode it at frame {index}: {e}"
                    ) from e
                damage.note(f"frame {index}", e, None if packet is None else packet.pts)
                continue
            for frame in frames:
                pts = clock.pts(frame)
                if after is not None and pts is not None and pts < after:
                    continue  # between the keyframe the seek found and the frame asked for
                if frame.is_corrupt:  # given, with what was lost or damaged concealed
                    damage.met(f"frame {index}", Concealed(), strict, path, pts)
                if pts is not None and frame.time_base:
                    damage.saw(float(pts * frame.time_base))
                    last = pts if last is None else max(last, pts)
                picture = frame_picture(frame)
                turns = _quarter_turns(frame.rotation)
                if turns:  # show the picture the right way up; the output has no matrix
                    picture = (
                        picture.rotated(turns)
                        if isinstance(picture, YCbCr8)
                        else np.ascontiguousarray(np.rot90(picture, turns))
                    )
                yield DecodedFrame(picture, pts, index)
                index += 1
                given += 1
    # frames dropped: fewer given than packets to show, in a file that counts more (an mp4 cut
    # short; not a stream whose packets outnumber its frames by design, as VP8's hidden ones)
    threaded = stream.codec_context.thread_type.name != "SLICE"
    if not strict and threaded and given < shown and index < stream.frames:
        yield from _decode_again(path, damage, timing, index, after if last is None else last + 1)


def _decode_again(
    path: Path, damage: DecodeDamage, timing: tuple[int | None, bool], index: int, after: int | None
) -> Iterator[DecodedFrame]:
    """The frames from `index` on (those shown at `after` or later), decoded again with slice
    threads alone: FFmpeg's frame threads drop the frames in flight at a damaged packet without
    a word (an H.264 file cut short: 3 frames where the ffmpeg command decodes 5), where slice
    threads lose only that packet's. From the keyframe before frame `index - 1` where a seek
    finds it, else from the start; what this decode meets goes into `damage`."""
    container, stream = _open_video(path, frame_threads=False)
    try:
        seek = index and not timing[1]  # no seek where packets are timed in decode order
        landed = seek_frame(container, stream, index - 1, timing[0]) if seek else None
    except BaseException:
        container.close()
        raise
    if seek and landed is None:
        container.close()  # a seek that missed leaves the demuxer anywhere: start again
        container, stream = _open_video(path, frame_threads=False)
    first = None if landed is None else landed[1]
    met, damage.errors = damage.errors, 0  # the same cut, met twice, is one
    yield from _decode(container, stream, path, damage, False, timing, index, after, first)
    damage.errors = max(met, damage.errors)


def _packets(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    path: Path,
    damage: DecodeDamage,
    strict: bool,
    first: av.Packet | None = None,
) -> Iterator[av.Packet | None]:
    """The stream's packets (`first` read already); where the file breaks off, None (flush what
    the decoder holds)."""
    if first is not None:
        yield first
    demux, last = container.demux(stream), None  # and the latest packet's timestamp
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            if container.format.name == "mpegts":  # no count to hold a cut to: its last bytes
                damage.ts_end(path, stream.id, last, strict)
            return
        except AV_ERRORS as e:  # cut short or unreadable from here on
            if strict:
                raise InputError(f"cannot read {path}: {said(e, path)}") from e
            damage.note("reading the file", e)
            yield None
            return
        last = packet.pts if packet.size else last
        yield packet


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """The frame's 8-bit planes as (height, width) views, without their line padding."""
    planes = [
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]
        for p in frame.planes
    ]
    for plane in planes:  # the decoder's own picture, which later frames may refer to
        plane.flags.writeable = False
    return planes


def rgb8(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any frame (deeper ones rounded to 8 bits), converted as inputs are."""
    rgb = frame_to_rgb(frame)
    if rgb.dtype == np.uint8:
        return rgb
    return (rgb.astype(np.float32) / 257 + 0.5).astype(np.uint8)


def frame_picture(frame: av.VideoFrame) -> np.ndarray | YCbCr8:
    """The frame's planes where it is 8-bit planar YCbCr (converted later, see DecodedFrame),
    else its RGB as frame_to_rgb makes it."""
    planes = ycbcr8(frame)
    return planes if planes is not None else frame_to_rgb(frame)


def ycbcr8(frame: av.VideoFrame) -> YCbCr8 | None:
    """An 8-bit planar YCbCr frame's planes and resolved colour (an unnamed matrix follows the
    height, as sws_matrix's does: see default_matrix); None for other formats."""
    if frame.format.name not in PLANAR_8BIT:
        return None
    return YCbCr8(*_planes(frame), output_colour(_input_colour(frame), frame.height))


def _input_colour(frame: av.VideoFrame) -> ColourInfo:
    """The frame's matrix (None where unnamed) and range: where unnamed, limited, except the
    "yuvj" formats, which are full by definition."""
    colour, full = ColourInfo.of(frame), frame.format.name.startswith("yuvj")
    unnamed = RANGE_FULL if full else RANGE_LIMITED
    return ColourInfo(matrix=colour.matrix, range=colour.range or unnamed)


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8, or uint16 for frames of more than 8 bits (10-bit and 12-bit video, 16-bit
    PNG), converted with the frame's own matrix and range (defaults: _input_colour): never through 8
    bits. RGB and palette frames need no matrix. 8-bit planar YCbCr is converted by
    colour.ycbcr_to_rgb (rounded, no bias); other formats by swscale, with rounding."""
    planes = ycbcr8(frame)
    if planes is not None:
        return planes.rgb()
    fmt = frame.format
    target = "rgb48le" if max(c.bits for c in fmt.components) > 8 else "rgb24"
    if fmt.is_rgb or fmt.has_palette:
        rgb = frame.to_ndarray(format=target)
    else:
        colour = _input_colour(frame)
        rgb = frame.to_ndarray(
            format=target,
            src_colorspace=sws_matrix(colour.matrix, frame.height),
            src_color_range=colour.range,
            dst_color_range=RANGE_FULL,
            # Rounded (deeper video: 1/257 of an 8-bit code value); swscale's full-chroma path to
            # rgb48 returns wrong colours (FFmpeg 7), and its truncation would darken 8-bit.
            interpolation=ACCURATE if target == "rgb48le" else EXACT_RGB,
        )
    return np.ascontiguousarray(rgb)
