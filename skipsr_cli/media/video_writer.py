"""Video out, through PyAV: encode RGB frames (or device-made YCbCr planes) with the source's other
streams copied (stream_copy), written to a temporary file beside the target and renamed into place
only when complete, so a crash never leaves a half-written file where the user expects a finished one.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from skipsr_cli.errors import OutputError, UsageError
from skipsr_cli.media.av_errors import AV_ERRORS, said
from skipsr_cli.media.colour import (
    ACCURATE,
    DEVICE_PIX_FMTS,
    RANGE_FULL,
    ColourInfo,
    output_colour,
    rgb_to_ycbcr,
    sws_matrix,
)
from skipsr_cli.media.cpu_share import encoder_threads
from skipsr_cli.media.encoding import (
    EncodeOptions,
    codec_options,
    encoder_time_base,
    resolve_pix_fmt,
    validate_encode_options,
)
from skipsr_cli.media.partials import (
    Identity,
    flush_to_disk,
    identity,
    keep_old,
    partial_name,
    remove_stale,
)
from skipsr_cli.media.stream_copy import StreamCopier, packet_seconds
from skipsr_cli.media.video_io import HdrMetadata, open_input, pix_fmt_depth


def x265_hdr_params(hdr: HdrMetadata) -> str:
    """x265's HDR10 parameters for a stream's static metadata."""
    parts = ["hdr10=1"]
    if hdr.master_display:
        parts.append(f"master-display={hdr.master_display}")
    if hdr.max_cll:
        parts.append(f"max-cll={hdr.max_cll}")
    return ":".join(parts)


def partial_path(path: Path) -> Path:
    """Create the file that output is written to until complete, and return its path.

    Same directory (so the rename is atomic), same extension (so FFmpeg still guesses the
    container), a hidden name the project's .gitignore ignores, and made with O_EXCL under a random
    name: it can never be an existing file, the input included. The name carries this process's
    id, so a later run removes it if this process is killed before it can (partials.py). A folder we cannot write to fails
    here, before any work is done.
    """
    remove_stale(path.parent, path.stem, path.suffix)  # what a killed run left here
    for _ in range(100):
        temp = path.with_name(partial_name(path.stem, path.suffix))
        try:  # mode 0o666 less the umask, as any new file (mkstemp would make it 0o600)
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue  # another file's name: left alone
        except BaseException as e:
            # a failure, or a stop (Ctrl-C, SIGTERM) that may come once the file is made: a file
            # at this fresh name is ours (one that was there is FileExistsError), so it goes
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
            raise
        return temp
    raise OutputError(f"cannot write {path}: no free temporary name beside it")


def same_file(a: Path, b: Path) -> bool:
    """The same file by name, by link (symbolic or hard), or by `./` and other spellings."""
    with contextlib.suppress(OSError):
        return a.samefile(b)
    return a.resolve() == b.resolve()


def check_target(path: Path, copy_audio_from: Path | None, overwrite: bool) -> None:
    """Refuse an output that cannot or must not be written, before anything is written."""
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: directory {path.parent} does not exist")
    if not path.suffix:
        raise OutputError(f"cannot write {path}: add an extension (.mp4, .mkv, .mov, .webm)")
    if copy_audio_from is not None and same_file(path, Path(copy_audio_from)):
        raise UsageError(f"the output {path} is the input {copy_audio_from}: choose another path")
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
    out. Audio the output container cannot hold is re-encoded (at `audio_kbps` where given), any
    other stream it cannot hold is left out; each is named in `warnings`.
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
        audio_kbps: int | None = None,
        overwrite: bool = False,
        colour: ColourInfo | None = None,
        sar: Fraction | None = None,
        hdr: HdrMetadata | None = None,
    ) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.rate = Fraction(rate)
        # the frames' pts come in `time_base`; the encoder's own differs for MPEG-1/2 (1/rate)
        self._pts_base = Fraction(time_base) if time_base else 1 / self.rate
        self.time_base = encoder_time_base(options.codec, time_base, self.rate)
        self._last_slot: int | None = None  # the last frame's pts on that grid
        self.frames_written = 0
        self._last_dts: int | None = None
        # a dts further behind its pts than this is garbage (see _check_dts)
        self._dts_reach = 86_400 / self.time_base
        self._overwrite = overwrite
        self._temp: Path | None = None  # made once the target is checked
        self._output: av.container.OutputContainer | None = None
        self._copier: StreamCopier | None = None
        # One line per stream of the source that the output cannot hold: re-encoded or left out.
        self.warnings: list[str] = []
        self._done = False
        self._finished = False  # the file is complete under its partial name
        self.published = False  # and was put in place at `path`
        self._old: Path | None = None  # the file it replaced there, until `commit`
        # With `colour`, frames are converted to YUV with its matrix and range and the stream is
        # tagged with it; without, the encoder's conversion and tags are left as FFmpeg sets them.
        validate_encode_options(options, width, height)
        self.colour = output_colour(colour, height) if colour is not None else None
        self.sar = sar  # written as the stream's pixel aspect ratio, so the display shape is kept
        self.hdr = hdr  # mastering display / content light levels, passed to x265
        self._pix_fmt = resolve_pix_fmt(options)
        # An RGB output format (libx264rgb, ffv1 bgr0) has no matrix: only primaries/transfer apply.
        self._yuv_colour = self.colour is not None and not av.VideoFormat(self._pix_fmt).is_rgb
        check_target(self.path, copy_audio_from, overwrite)
        try:  # the partial file made inside: a stop right after it is made still removes it
            self._temp = partial_path(self.path)
            self._output = av.open(str(self._temp), "w")
            self._video = self._add_video_stream(options)
            if copy_audio_from is not None:
                self._copier = StreamCopier(
                    open_input(Path(copy_audio_from)),
                    self._output,
                    suffix=self.path.suffix,
                    copy_audio=copy_audio,
                    copy_subtitles=copy_subtitles,
                    audio_kbps=audio_kbps,
                )
                self.warnings.extend(self._copier.warnings)
                if self._copier.timecode:  # the muxer writes its own timecode track from this tag
                    self._video.metadata["timecode"] = self._copier.timecode
            # Open the encoder now, so a bad option fails here rather than after the model ran.
            self._video.codec_context.open()
        except AV_ERRORS as e:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {said(e, self.path)}") from e
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(self, options: EncodeOptions) -> av.VideoStream:
        assert self._output is not None
        opts = codec_options(options)
        if self.hdr is not None:
            if options.codec == "libx265":
                opts["x265-params"] = ":".join(
                    p for p in (opts.get("x265-params"), x265_hdr_params(self.hdr)) if p
                )
            else:
                self.warnings.append(
                    f"HDR mastering display and light level metadata cannot be written by "
                    f"{options.codec}; left out (--codec libx265 carries them)"
                )
        stream = self._output.add_stream(
            options.codec,
            rate=self.rate,
            options=opts,
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
        # as many threads as x264 would pick for this host (FFmpeg's default is 1), counted here,
        # never by the encoder itself: the same in every worker and part (cpu_share.py)
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = encoder_threads(self.height)
        return stream

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        """Encode one (H, W, 3) uint8 RGB frame at `pts` (in the time base the writer was given),
        or the next frame slot."""
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
        elif self._pts_base != self.time_base:
            # on one frame's grid (MPEG-1/2): the nearest slot, but after the last frame's, so
            # that frames of a variable-rate input closer than a frame apart are all kept
            pts = round(pts * self._pts_base / self.time_base)
            if self._last_slot is not None:
                pts = max(pts, self._last_slot + 1)
            self._last_slot = pts
        frame.pts = pts
        frame.time_base = self.time_base
        try:
            self._mux_video(self._video.encode(frame))
        except AV_ERRORS as e:
            raise OutputError(
                f"cannot write {self.path}: frame {self.frames_written}: {said(e, self.path)}"
            ) from e
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
            self._check_dts(packet)
            if self._copier is not None:
                self._copier.mux_until(packet_seconds(packet))
            self._output.mux(packet)

    def _check_dts(self, packet: av.Packet) -> None:
        """Replace a decode timestamp no encoder could mean by the presentation timestamp.

        libx265 leaves it uninitialised on very short streams (two frames, nothing reordered): a
        value thousands of years before or after the pts, which the muxer refuses (EINVAL) or,
        worse, writes. A valid dts is at most the pts and after the previous one; it may lie far
        back in a variable-rate stream with long pauses, but not a day back.
        """
        pts, dts = packet.pts, packet.dts
        if pts is None:
            return
        last = self._last_dts
        if (
            dts is None
            or dts > pts
            or pts - dts > self._dts_reach
            or (last is not None and dts <= last)
        ):
            dts = pts if last is None or pts > last else last + 1
            packet.dts = dts
        self._last_dts = dts

    def close(self) -> None:
        """Flush the encoder, finish the stream copy, then publish the file at `path` in one rename."""
        self.publish()
        self.commit()

    def finish(self) -> None:
        """Flush the encoder and finish the stream copy: the file is complete under its partial
        name, for `publish` to put in place."""
        if self._done or self._finished:
            return
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._finished = True

    def _finish(self) -> None:
        assert self._output is not None
        if self.frames_written == 0:
            raise OutputError(f"cannot write {self.path}: no frames were written")
        try:
            self._mux_video(self._video.encode(None))
            if self._copier is not None:
                self._copier.mux_until(None)
                self.warnings.extend(self._copier.late_warnings())
                self._copier.close()
            self._output.close()
            flush_to_disk(self._temp)
        except AV_ERRORS as e:
            raise OutputError(f"cannot write {self.path}: {said(e, self.path)}") from e

    def identity(self) -> Identity:
        """The finished file's identity at `path` (partials.identity), once `publish` has put it there."""
        assert self._temp is not None
        return identity(self.path, self._temp)

    def clash(self) -> Path | None:
        """`path`, where a file there now would stop `publish` (it appeared during the run)."""
        return self.path if self.path.exists() and not self._overwrite else None

    def publish(self) -> None:
        """Finish the file, then put it at `path` in one rename (refused where `clash` says). A
        file it replaces (--overwrite) is kept under a partial name until `commit`."""
        if self._done:
            return
        self.finish()
        try:
            if self.clash() is not None:
                raise OutputError(f"output exists: {self.path} (pass --overwrite to replace it)")
            backup = self.path.parent / partial_name(self.path.stem, self.path.suffix)
            self._old = keep_old(self.path, backup)
            try:
                os.replace(self._temp, self.path)
            except OSError as e:
                raise OutputError(f"cannot write {self.path}: {said(e, self.path)}") from e
            self.published = True
        except BaseException:
            if not self.published:
                self.commit()  # nothing was replaced: the second name goes
            self.abort()
            raise
        self._done = True

    def unpublish(self) -> None:
        """Take back the file this writer put in place, and put back the one it replaced (another
        output of its run failed)."""
        if not self.published:
            return
        if self._old is not None:
            os.replace(self._old, self.path)
            self._old = None
        else:
            self.path.unlink(missing_ok=True)
        self.published = False

    def commit(self) -> None:
        """Let go of the file `publish` replaced: every output of the run is in place."""
        if self._old is not None:
            self._old.unlink(missing_ok=True)
            self._old = None

    def abort(self) -> None:
        """Stop and delete the partial file; `path` is never touched. Safe to call more than once."""
        self._done = True
        for closable in (self._copier, self._output):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()
        if self._temp is not None:
            with contextlib.suppress(OSError):
                self._temp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
