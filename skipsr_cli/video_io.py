"""Video in and video out, through PyAV only.

This module and stream_copy are the only ones that touch media files. It probes an input, decodes it
one frame at a time (so memory stays flat however long the film), and encodes the result with every
audio, subtitle and data stream of the source copied untouched and interleaved with the video (see
stream_copy). The output is written to a temporary file beside the target and renamed into place
only when complete, so a crash never leaves a half-written file where the user expects a finished one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from skipsr_cli.colour import (
    ACCURATE,
    DEVICE_PIX_FMTS,
    RANGE_FULL,
    RANGE_LIMITED,
    ColourInfo,
    output_colour,
    rgb_to_ycbcr,
    sws_matrix,
)
from skipsr_cli.errors import InputError, OutputError, UsageError
from skipsr_cli.stream_copy import StreamCopier, packet_seconds

# Errors PyAV raises for unreadable or unwritable media: its own FFmpegError family, plus the plain
# OSError / ValueError it uses for bad paths, unsupported codec/container pairs and bad arguments.
_AV_ERRORS = (av.FFmpegError, OSError, ValueError)

# Encoders whose "preset" option speaks x264's vocabulary ("medium", "slow", ...). Other encoders
# either have no preset or a numeric one, so the default "medium" would make them fail to open.
_PRESET_ENCODERS = frozenset({"libx264", "libx265"})
_DEFAULT_PIX_FMT = {"libx264": "yuv420p", "libx265": "yuv420p"}


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


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded picture with the timestamp the writer needs to keep the input's timing."""

    rgb: np.ndarray  # (H, W, 3) RGB, C-contiguous: uint8, or uint16 (0-65535) for > 8-bit inputs
    pts: int | None  # in VideoInfo.time_base units
    index: int  # 0-based, in the order PyAV delivers frames (presentation order)


@dataclass(frozen=True)
class EncodeOptions:
    """The user's encoder choices; checked by validate_encode_options before any model work."""

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str | None = None  # None: yuv420p for x264/x265, else the encoder's first format
    bitrate: int | None = None  # bits/s; when set, used instead of crf
    lossless: bool = False  # the encoder's lossless mode (lossless_options picks codec and format)


# Encoders with a lossless mode, and the private options that select it.
_LOSSLESS = {
    "ffv1": {},
    "libx264": {"qp": "0"},
    "libx264rgb": {"qp": "0"},
    "libx265": {"x265-params": "lossless=1"},
    "libvpx-vp9": {"lossless": "1"},
}


def lossless_options(
    suffix: str, codec: str | None, pix_fmt: str | None, preset: str | None
) -> EncodeOptions:
    """`--lossless`: FFV1 in RGB (bgr0: the model's output exactly) for mkv, avi and nut; x264 in
    4:4:4 at qp 0 for mp4 and mov; VP9 lossless for webm. An explicit codec must have a lossless mode."""
    if codec is None:
        by_suffix = {".mkv": "ffv1", ".avi": "ffv1", ".nut": "ffv1", ".webm": "libvpx-vp9"}
        codec = by_suffix.get(suffix.lower(), "libx264")
    if codec not in _LOSSLESS:
        raise UsageError(
            f"--lossless: encoder {codec} has no lossless mode; use one of {', '.join(_LOSSLESS)}"
        )
    if pix_fmt is None:
        pix_fmt = {"ffv1": "bgr0", "libx264rgb": "bgr0"}.get(codec, "yuv444p")
    return EncodeOptions(codec, crf=None, preset=preset, pix_fmt=pix_fmt, lossless=True)


def _open_input(path: Path) -> av.container.InputContainer:
    """Open a media file, turning every way it can fail into one readable InputError."""
    if not path.exists():
        raise InputError(f"input not found: {path}")
    try:
        return av.open(str(path), "r")
    except _AV_ERRORS as e:
        raise InputError(f"cannot read {path}: {e}") from e


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
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
    """Seconds: the video stream's own duration where the container stores one (mp4 header, mkv
    tag), else the whole file's, which may include a longer audio track."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tagged = _tag_seconds(stream.metadata.get("DURATION"))
    if tagged:
        return tagged
    if container.duration:
        return container.duration / av.time_base
    return None


def probe(path: Path) -> VideoInfo:
    """Read what the pipeline needs to plan its work (decoding at most the first frame)."""
    from skipsr_cli.image_io import sequence_files

    path = Path(path)
    files = sequence_files(path)
    if files is not None:
        return _probe_sequence(path, files)
    container = _open_input(path)
    with container:
        stream = _video_stream(container, path)
        rate = _stream_rate(stream)
        if rate is None:
            raise InputError(f"cannot read {path}: the video stream has no frame rate")
        duration = _stream_duration(container, stream)
        frame_count: int | None = stream.frames or None
        if frame_count is None and duration is not None:
            frame_count = round(duration * rate)
        ctx = stream.codec_context
        rotation = _first_rotation(container, stream)
        width, height, sar = ctx.width, ctx.height, _sample_aspect(stream)
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
        )


def _probe_sequence(path: Path, files: list[Path]) -> VideoInfo:
    from skipsr_cli.image_io import SEQUENCE_RATE, read_image

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
    )


def _read_sequence(files: list[Path]) -> Iterator[DecodedFrame]:
    from skipsr_cli.image_io import read_image

    size = None
    for index, file in enumerate(files):
        frame = read_image(file)
        if size is not None and (frame.width, frame.height) != size:
            raise InputError(
                f"{file} is {frame.width}x{frame.height}, the sequence {size[0]}x{size[1]}"
            )
        size = (frame.width, frame.height)
        yield DecodedFrame(_to_rgb(frame), index, index)


def _first_rotation(container: av.container.InputContainer, stream: av.VideoStream) -> int:
    """The display rotation of the first frame, to a multiple of 90 degrees (phone videos carry
    it as a display matrix); 0 when there is none or the first frame cannot be decoded."""
    try:
        for frame in container.decode(stream):
            return _quarter_turns(frame.rotation) * 90
    except _AV_ERRORS:
        return 0
    return 0


def _quarter_turns(degrees: float | None) -> int:
    """Counter-clockwise quarter turns in -1..2 for an angle (rounded to the nearest quarter)."""
    turns = round((degrees or 0) / 90) % 4
    return turns - 4 if turns == 3 else turns


def pix_fmt_depth(pix_fmt: str | None) -> int:
    """Bits per component of a pixel format (8 where unknown)."""
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components) if pix_fmt else 8
    except _AV_ERRORS:
        return 8


def _sample_aspect(stream: av.VideoStream) -> Fraction | None:
    """The stream's pixel aspect ratio (the container's, else the codec's); None if unset (0/1)."""
    for sar in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if sar:
            return Fraction(sar)
    return None


def read_frames(path: Path) -> Iterator[DecodedFrame]:
    """Stream the first video stream as RGB frames, one at a time.

    The file is opened now, so a missing or unreadable input fails at the call, not at the first
    ``next()``. A decode error mid-stream raises InputError naming the frame: a frame is never
    skipped, because a shorter output would silently fall out of sync with the audio.
    """
    from skipsr_cli.image_io import sequence_files

    path = Path(path)
    files = sequence_files(path)
    if files is not None:
        return _read_sequence(files)
    container = _open_input(path)
    try:
        stream = _video_stream(container, path)
        stream.codec_context.thread_type = "AUTO"  # slice + frame threads: decode beside the model
    except BaseException:
        container.close()
        raise
    return _decode(container, stream, path)


def _decode(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> Iterator[DecodedFrame]:
    index = 0
    with container:
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    rgb = _to_rgb(frame)
                    turns = _quarter_turns(frame.rotation)
                    if turns:  # show the picture the right way up; the output has no matrix
                        rgb = np.ascontiguousarray(np.rot90(rgb, turns))
                    yield DecodedFrame(rgb, frame.pts, index)
                    index += 1
        except _AV_ERRORS as e:
            raise InputError(f"cannot decode {path} at frame {index}: {e}") from e


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8, or uint16 for frames of more than 8 bits (10-bit and 12-bit video, 16-bit
    PNG), converted with the frame's own matrix and range: never through 8 bits.

    Where the stream names no matrix, FFmpeg's convention applies (BT.709 from 720 lines up, BT.601
    below; see default_matrix); where it names no range, limited, except the "yuvj" formats, which
    are full by definition. RGB and palette frames need no matrix.
    """
    fmt = frame.format
    target = "rgb48le" if max(c.bits for c in fmt.components) > 8 else "rgb24"
    if fmt.is_rgb or fmt.has_palette:
        rgb = frame.to_ndarray(format=target)
    else:
        colour = ColourInfo.of(frame)
        full = fmt.name.startswith("yuvj")
        colour_range = colour.range or (RANGE_FULL if full else RANGE_LIMITED)
        rgb = frame.to_ndarray(
            format=target,
            src_colorspace=sws_matrix(colour.matrix, frame.height),
            src_color_range=colour_range,
            dst_color_range=RANGE_FULL,
        )
    return np.ascontiguousarray(rgb)


def _encoder(name: str) -> av.Codec:
    try:
        codec = av.Codec(name, "w")
    except _AV_ERRORS as e:
        raise UsageError(
            f"unknown encoder {name!r} (try libx264, libx265, libvpx-vp9 or ffv1)"
        ) from e
    if codec.type != "video":
        raise UsageError(f"{name!r} is a {codec.type} encoder, not a video encoder")
    return codec


def default_pix_fmt(codec: str, bit_depth: int) -> str | None:
    """The widely playable format of x264/x265 at an input's depth: 8-bit 4:2:0, or 10-bit (12-bit
    for x265) 4:2:0 for deeper inputs, so their precision is kept. None: the encoder's own."""
    if codec not in _DEFAULT_PIX_FMT:
        return None
    if bit_depth <= 8:
        return "yuv420p"
    return "yuv420p12le" if codec == "libx265" and bit_depth >= 12 else "yuv420p10le"


def resolve_pix_fmt(options: EncodeOptions) -> str:
    """The pixel format the encoder will get: the user's choice, else a widely playable default."""
    if options.pix_fmt is not None:
        return options.pix_fmt
    if options.codec in _DEFAULT_PIX_FMT:
        return _DEFAULT_PIX_FMT[options.codec]
    formats = _encoder(options.codec).video_formats
    return formats[0].name if formats else "yuv420p"


def validate_encode_options(options: EncodeOptions, width: int, height: int) -> None:
    """Reject encoder settings that cannot work, before any (slow) model work starts."""
    codec = _encoder(options.codec)
    pix_fmt = resolve_pix_fmt(options)
    try:
        fmt = av.VideoFormat(pix_fmt)
    except _AV_ERRORS as e:
        raise UsageError(f"unknown pixel format {pix_fmt!r}") from e
    supported = [f.name for f in codec.video_formats or []]
    if supported and pix_fmt not in supported:
        raise UsageError(
            f"encoder {options.codec} does not support pixel format {pix_fmt}; "
            f"choose one of: {', '.join(supported)}"
        )
    if width <= 0 or height <= 0:
        raise UsageError(f"invalid output size {width}x{height}")
    odd_w = width % 2 and fmt.chroma_width(2) < 2
    odd_h = height % 2 and fmt.chroma_height(2) < 2
    if odd_w or odd_h:
        raise UsageError(
            f"output size {width}x{height} is odd but pixel format {pix_fmt} needs even sizes; "
            "choose e.g. --pix-fmt yuv444p or an even --size"
        )
    if options.crf is not None and options.crf < 0:
        raise UsageError(f"invalid CRF {options.crf}: it must be 0 or more")
    if options.bitrate is not None and options.bitrate <= 0:
        raise UsageError(f"invalid bitrate {options.bitrate}: it must be positive")


def _codec_options(options: EncodeOptions) -> dict[str, str]:
    """Private encoder options: CRF unless a bitrate is given; an x264-style preset where it applies."""
    opts: dict[str, str] = dict(_LOSSLESS.get(options.codec, {})) if options.lossless else {}
    if options.crf is not None and options.bitrate is None and not options.lossless:
        opts["crf"] = str(options.crf)
    if options.preset is not None and options.codec in _PRESET_ENCODERS:
        opts["preset"] = options.preset
    return opts


def partial_path(path: Path) -> Path:
    """Where output is written until complete: same directory (so the rename is atomic), same
    extension (so FFmpeg still guesses the container), a name the project's .gitignore ignores."""
    return path.with_name(f"{path.stem}.skipsr-partial{path.suffix}")


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        return a.samefile(b)
    return a.resolve() == b.resolve()


def _check_target(path: Path, copy_audio_from: Path | None, overwrite: bool) -> None:
    """Refuse an output that cannot or must not be written, before anything is written."""
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: directory {path.parent} does not exist")
    if not path.suffix:
        raise OutputError(f"cannot write {path}: add an extension (.mp4, .mkv, .mov, .webm)")
    if copy_audio_from is not None and _same_file(path, Path(copy_audio_from)):
        raise OutputError(f"cannot write {path}: it is the input file")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    if path.exists() and not overwrite:
        raise OutputError(f"output exists: {path} (pass --overwrite to replace it)")


class VideoWriter:
    """Encodes RGB frames into a video file, copying the source's other streams, atomically.

    Use as a context manager: a clean exit publishes the file, an exception deletes the partial
    file and leaves `path` as it was.

    `copy_audio_from` (its name kept for compatibility) is the file whose audio, subtitle and data
    streams, global tags and chapters are copied; `copy_audio` / `copy_subtitles` leave those kinds
    out. A stream the output container cannot hold is left out and named in `warnings`.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        rate: Fraction,
        time_base: Fraction | None,
        options: EncodeOptions,
        copy_audio_from: Path | None = None,
        copy_audio: bool = True,
        copy_subtitles: bool = True,
        overwrite: bool = False,
        colour: ColourInfo | None = None,
        sar: Fraction | None = None,
    ) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.rate = Fraction(rate)
        self.time_base = Fraction(time_base) if time_base else 1 / self.rate
        self.frames_written = 0
        self._overwrite = overwrite
        self._temp = partial_path(self.path)
        self._output: av.container.OutputContainer | None = None
        self._copier: StreamCopier | None = None
        # One line per stream of the source that the output cannot hold and that was left out.
        self.warnings: list[str] = []
        self._done = False
        # With `colour`, frames are converted to YUV with its matrix and range and the stream is
        # tagged with it; without, the encoder's conversion and tags are left as FFmpeg sets them.
        validate_encode_options(options, width, height)
        self.colour = output_colour(colour, height) if colour is not None else None
        self.sar = sar  # written as the stream's pixel aspect ratio, so the display shape is kept
        self._pix_fmt = resolve_pix_fmt(options)
        # An RGB output format (libx264rgb, ffv1 bgr0) has no matrix: only primaries/transfer apply.
        self._yuv_colour = self.colour is not None and not av.VideoFormat(self._pix_fmt).is_rgb
        _check_target(self.path, copy_audio_from, overwrite)
        try:
            self._output = av.open(str(self._temp), "w")
            self._video = self._add_video_stream(options)
            if copy_audio_from is not None:
                self._copier = StreamCopier(
                    _open_input(Path(copy_audio_from)),
                    self._output,
                    suffix=self.path.suffix,
                    copy_audio=copy_audio,
                    copy_subtitles=copy_subtitles,
                )
                self.warnings = self._copier.warnings
                if self._copier.timecode:  # the muxer writes its own timecode track from this tag
                    self._video.metadata["timecode"] = self._copier.timecode
            # Open the encoder now, so a bad option fails here rather than after the model ran.
            self._video.codec_context.open()
        except _AV_ERRORS as e:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {e}") from e
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(self, options: EncodeOptions) -> av.VideoStream:
        assert self._output is not None
        stream = self._output.add_stream(
            options.codec,
            rate=self.rate,
            options=_codec_options(options),
            width=self.width,
            height=self.height,
            time_base=self.time_base,
        )
        stream.pix_fmt = resolve_pix_fmt(options)
        if self.sar is not None:
            stream.codec_context.sample_aspect_ratio = self.sar
        if options.bitrate is not None:
            stream.bit_rate = options.bitrate
        if self.colour is not None:
            ctx = stream.codec_context
            if self.colour.primaries is not None:
                ctx.color_primaries = self.colour.primaries
            if self.colour.transfer is not None:
                ctx.color_trc = self.colour.transfer
            if self._yuv_colour:
                ctx.colorspace = self.colour.matrix
                ctx.color_range = self.colour.range
        # thread_count 0 lets the encoder pick one thread per core (FFmpeg's default is 1).
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = 0
        return stream

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        """Encode one (H, W, 3) uint8 RGB frame at `pts` (time_base units), or the next frame slot."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype not in (np.uint8, np.uint16):
            raise ValueError(
                f"expected a ({self.height}, {self.width}, 3) uint8 or uint16 frame, "
                f"got {rgb.shape} {rgb.dtype}"
            )
        if rgb.dtype == np.uint16:  # 16-bit RGB: swscale converts at depth, never through 8 bits
            frame = self._deep_frame(np.ascontiguousarray(rgb))
        elif self._yuv_colour:
            frame = self._yuv_frame(rgb)
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        self._encode(frame, pts)

    @property
    def planes_format(self) -> str | None:
        """The pix_fmt in which write_planes takes frames converted elsewhere (colour.rgb_to_planes,
        on the model's device), or None where only RGB is taken."""
        even = self.width % 2 == 0 and self.height % 2 == 0
        if self._yuv_colour and self._pix_fmt in DEVICE_PIX_FMTS and even:
            return self._pix_fmt
        return None

    def write_planes(self, planes: np.ndarray, pts: int | None = None) -> None:
        """Encode one frame given as uint8 planes in `planes_format` (colour.rgb_to_planes's layout),
        already converted with this writer's matrix and range."""
        if self.planes_format is None:
            raise ValueError(f"{self.path}: this output takes RGB frames only")
        assert self.colour is not None
        frame = av.VideoFrame.from_ndarray(planes, format=self._pix_fmt)
        if (frame.width, frame.height) != (self.width, self.height):
            raise ValueError(
                f"expected {self.width}x{self.height} planes, got {frame.width}x{frame.height}"
            )
        frame.colorspace = self.colour.matrix
        frame.color_range = self.colour.range
        self._encode(frame, pts)

    def _encode(self, frame: av.VideoFrame, pts: int | None) -> None:
        if pts is None:
            pts = round(self.frames_written / self.rate / self.time_base)
        frame.pts = pts
        frame.time_base = self.time_base
        try:
            self._mux_video(self._video.encode(frame))
        except _AV_ERRORS as e:
            raise OutputError(f"cannot write {self.path}: frame {self.frames_written}: {e}") from e
        self.frames_written += 1

    @property
    def depth(self) -> int:
        """Bits per component the output is written at; frames of more than 8 come as uint16 RGB."""
        return pix_fmt_depth(self._pix_fmt)

    def _deep_frame(self, rgb: np.ndarray) -> av.VideoFrame:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le")
        if not self._yuv_colour:
            return frame
        assert self.colour is not None
        matrix = sws_matrix(self.colour.matrix, self.height)
        out = frame.reformat(
            format=self._pix_fmt,
            dst_colorspace=matrix,
            src_color_range=RANGE_FULL,
            dst_color_range=self.colour.range,
            interpolation=ACCURATE,
        )
        out.colorspace = self.colour.matrix
        out.color_range = self.colour.range
        return out

    def _yuv_frame(self, rgb: np.ndarray) -> av.VideoFrame:
        """The frame in the output's format, converted with the output's matrix and range.

        RGB -> YCbCr 4:4:4 in floating point (colour.rgb_to_ycbcr); swscale then only subsamples
        chroma or changes depth.
        """
        assert self.colour is not None and self.colour.matrix is not None
        planes = rgb_to_ycbcr(rgb, self.colour)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv444p")
        matrix = sws_matrix(self.colour.matrix, self.height)
        frame.colorspace = self.colour.matrix
        frame.color_range = self.colour.range
        if self._pix_fmt != "yuv444p":
            frame = frame.reformat(
                format=self._pix_fmt,
                src_colorspace=matrix,
                dst_colorspace=matrix,
                src_color_range=self.colour.range,
                dst_color_range=self.colour.range,
                interpolation=ACCURATE,
            )
        return frame

    def _mux_video(self, packets: list[av.Packet]) -> None:
        """Mux video packets, each preceded by the copied packets that play before it."""
        assert self._output is not None
        for packet in packets:
            if self._copier is not None:
                self._copier.mux_until(packet_seconds(packet))
            self._output.mux(packet)

    def close(self) -> None:
        """Flush the encoder, finish the stream copy, then publish the file at `path` in one rename."""
        if self._done:
            return
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._done = True

    def _finish(self) -> None:
        assert self._output is not None
        if self.frames_written == 0:
            raise OutputError(f"cannot write {self.path}: no frames were written")
        try:
            self._mux_video(self._video.encode(None))
            if self._copier is not None:
                self._copier.mux_until(None)
                self._copier.close()
            self._output.close()
        except _AV_ERRORS as e:
            raise OutputError(f"cannot write {self.path}: {e}") from e
        if self.path.exists() and not self._overwrite:
            raise OutputError(f"output exists: {self.path} (pass --overwrite to replace it)")
        try:
            os.replace(self._temp, self.path)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e}") from e

    def abort(self) -> None:
        """Stop and delete the partial file; `path` is never touched. Safe to call more than once."""
        self._done = True
        for closable in (self._copier, self._output):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()
        with contextlib.suppress(OSError):
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
