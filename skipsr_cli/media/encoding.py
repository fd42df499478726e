"""Encoder options: what the user chose, the defaults, lossless modes, and their validation."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.logging

from skipsr_cli.errors import UsageError
from skipsr_cli.media.av_errors import AV_ERRORS, logged_line

# Encoders whose "preset" option speaks x264's vocabulary ("medium", "slow", ...). Other encoders
# either have no preset or a numeric one, so the default "medium" would make them fail to open.
_PRESET_ENCODERS = frozenset({"libx264", "libx265"})
_DEFAULT_PIX_FMT = {"libx264": "yuv420p", "libx265": "yuv420p"}
# Encoders with a constant-quality (CRF) mode.
_CRF_ENCODERS = frozenset(
    {"libx264", "libx264rgb", "libx265", "libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"}
)


@dataclass(frozen=True)
class EncodeOptions:
    """The user's encoder choices; checked by validate_encode_options before any model work."""

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str | None = None  # None: yuv420p for x264/x265, else the encoder's first format
    bitrate: int | None = None  # bits/s; when set, used instead of crf
    lossless: bool = False  # the encoder's lossless mode (lossless_options picks codec and format)
    # headers that do not depend on the content (x264 --stitchable, x265's PPS options), so
    # pieces of one video made by separate encoder runs join into one stream
    stitchable: bool = False


# Encoders that take only one frame's time base, at a rate of their standard (MPEG-1/2: 24000/1001,
# 25, 30000/1001, 50, ...): opened at 1/rate, each frame's time rescaled to it (encoder_time_base).
_FRAME_TIME_BASE = frozenset({"mpeg1video", "mpeg2video"})


def encoder_time_base(codec: str, time_base: Fraction | None, rate: Fraction) -> Fraction:
    """The time base an encoder of `codec` is opened at, for frames timed in `time_base` (None:
    one frame's) at `rate`: their own, so every frame keeps its time, but one frame's for those
    that take no other."""
    if time_base is None or _encoder_name(codec) in _FRAME_TIME_BASE:
        return 1 / Fraction(rate)
    return Fraction(time_base)


# The encoder a container gets when --codec is not given: what its format is made for.
_DEFAULT_BY_SUFFIX = {".webm": "libvpx-vp9", ".gif": "gif"}
# x264's preset names as libvpx's cpu-used (0 slowest and best, 8 fastest), so --preset means the
# same trade-off for VP9 as for x264.
_VPX_CPU_USED = {
    "placebo": 0,
    "veryslow": 0,
    "slower": 1,
    "slow": 2,
    "medium": 3,
    "fast": 4,
    "faster": 5,
    "veryfast": 6,
    "superfast": 7,
    "ultrafast": 8,
}
# x264's preset names, which x265 takes as they are and VP9 as cpu-used: a speed on any of them.
X264_PRESETS = frozenset(_VPX_CPU_USED)


# The top of each encoder's CRF scale (0 is best); FFmpeg would clamp or refuse a value beyond it.
CRF_MAX = {"libx264": 51, "libx264rgb": 51, "libx265": 51, "libvpx-vp9": 63, "libvpx": 63}
CRF_MAX |= {"libaom-av1": 63, "libsvtav1": 63}


def default_codec(suffix: str) -> str:
    """The encoder for an output extension when none is chosen: VP9 for webm, GIF for gif; else
    x264 where its container holds it, else the first that it holds (probed: muxer_refuses) of
    its own default encoder and _CANDIDATES (VP8 for .ogv). x264 where none is held, or FFmpeg
    writes no container by that extension: check_container then says why."""
    if suffix.lower() in _DEFAULT_BY_SUFFIX:
        return _DEFAULT_BY_SUFFIX[suffix.lower()]
    muxer = _muxer_of(suffix)
    if muxer is None or muxer[0] in _IMAGE_MUXERS or _writes_own_files(muxer[0]):
        return "libx264"
    kind, own = muxer
    for codec in ("libx264", own, *_CANDIDATES):
        name = _encoder_name(codec)
        if name is not None and name not in _RAW_ONLY and muxer_refuses(kind, name) is None:
            return name
    return "libx264"


@functools.cache
def _muxer_of(suffix: str) -> tuple[str, str] | None:
    """(format, default video codec) of the muxer FFmpeg picks for a file name ending in
    `suffix`, or None where it picks none."""
    try:
        muxer = av.open(f"probe{suffix}", "w")  # the format guessed from the name; no file is made
    except AV_ERRORS:
        return None
    try:
        return muxer.format.name, muxer.default_video_codec
    finally:
        muxer.close()


def _not_an_encoder(codec: str) -> str:
    """What `codec` is, where it names no video encoder of this FFmpeg."""
    try:
        kind = av.Codec(codec, "w").type
    except AV_ERRORS:
        return f"unknown encoder {codec!r}: this FFmpeg has no encoder by that name"
    return f"{codec!r} is an {kind} encoder, not a video encoder"


def _encoder_name(codec: str) -> str | None:
    """The name of the video encoder `codec` names (vp8: libvpx), or None where this build has none."""
    try:
        found = av.Codec(codec, "w")
    except AV_ERRORS:
        return None
    return found.name if found.type == "video" else None


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


# Muxers of uncompressed frames only (.y4m: yuv4mpegpipe, .yuv: rawvideo), by the video codec
# they default to: they let an encoded stream be added, then refuse it when the header is written
# (or write its bytes under a name that says raw frames), after the model's work.
_RAW_ONLY = frozenset({"rawvideo", "wrapped_avframe"})
# Muxers of still images (image2 for .jpg, .bmp, .tif; webp; avif): skipsr writes its images as PNG.
_IMAGE_MUXERS = frozenset({"image2", "image2pipe", "webp", "apng", "avif"})


# Encoders offered in place of one a container refuses, in this order; each is probed against the
# container (and the input's time base) before it is named. The AV1 encoders print their own
# banners when opened, so they are left out of the probing.
_CANDIDATES = ("libx264", "libx265", "libvpx-vp9", "libvpx", "ffv1", "mpeg4", "prores_ks", "gif")
_PROBE_SIZE = 64  # the probe stream's width and height: even, and small enough to open at once
_ANY_RATE = Fraction(25)  # where the input's rate is not known: one every encoder takes


def check_container(
    path: Path,
    codec: str,
    name: str = "output",
    time_base: Fraction | None = None,
    rate: Fraction | None = None,
) -> None:
    """Refuse a file name FFmpeg knows no container for, or whose container cannot hold `codec`
    at the input's `time_base` and `rate` (x264 in a GIF or an .ogv, anything encoded in a .y4m,
    mpeg4 at 1/90000): a usage error now, not a failed write after the model's work. Without a
    time base, only what is refused at every one (at 1/25). `name` (e.g. "--mask-out") says which
    output the message is about."""
    muxer = _muxer_of(path.suffix) if path.suffix else None
    if muxer is None:
        named = f"the extension {path.suffix}" if path.suffix else "a name without an extension"
        raise UsageError(
            f"{name} {path}: FFmpeg writes no video container by {named}; "
            "name it e.g. .mp4, .mkv, .webm or .gif"
        )
    kind, own = muxer
    where = f"{name} {path}:"
    if _writes_own_files(kind):
        raise UsageError(
            f"{where} {path.suffix} ({kind}) is written as many files (a playlist or manifest "
            "and its segments), which skipsr does not write; write .mp4 or .mkv, then package it"
        )
    if own in _RAW_ONLY and codec not in _RAW_ONLY:
        raise UsageError(
            f"{where} {path.suffix} ({kind}) holds uncompressed video only, which skipsr "
            "does not write; name it e.g. .mkv (with --lossless, every value is kept)"
        )
    if _encoder_name(codec) is None:
        raise UsageError(
            f"{where} {_not_an_encoder(codec)}; {_offer(kind, codec, time_base, rate)}"
        )
    refused = _probe(kind, codec, time_base, rate)
    if refused is None:
        return
    if kind in _IMAGE_MUXERS:
        raise UsageError(
            f"{where} skipsr writes images as PNG, not {path.suffix}; "
            f"name it e.g. {path.with_suffix('.png')}"
        )
    stage, why = refused
    # the time base is named where it is the cause: one frame's (1/rate) would do
    timed = time_base is not None and _probe(kind, codec, None, rate) is None
    at = f" at the input's time base {time_base}" if timed else ""
    offer = _offer(kind, codec, time_base, rate)
    if stage == "encoder":  # mpeg2video at 1/12800: its encoder, not the container, refuses
        raise UsageError(f"{where} encoder {codec} cannot write{at} ({why}); {offer}")
    raise UsageError(f"{where} the {kind} container cannot hold {codec}{at}; {offer} ({why})")


def _offer(kind: str, codec: str, time_base: Fraction | None, rate: Fraction | None) -> str:
    """What to choose instead of `codec`: the encoders `kind` holds (at this time base), probed."""
    held = [
        c
        for c in _CANDIDATES
        if c != codec and _encoder_name(c) == c and _probe(kind, c, time_base, rate) is None
    ]
    if not held:
        return f"it holds none of {', '.join(_CANDIDATES)}: choose another extension (.mp4, .mkv)"
    *most, last = held[:4]
    some = f"{', '.join(most)} or {last}" if most else last
    return f"choose --codec {some} (which {kind} holds), or another extension (.mp4, .mkv, .webm)"


def muxer_refuses(
    format: str, codec: str, time_base: Fraction | None = None, rate: Fraction | None = None
) -> str | None:
    """Why the `format` muxer cannot hold a stream that encoder `codec` writes at `time_base` and
    `rate` (FFmpeg's own words), or None where it can. Found by trying, in memory: the stream is
    added, its encoder opened and the header written (cached per format, codec, time base and
    rate). Without a rate, 25 fps; without a time base, one frame's."""
    refused = _probe(format, codec, time_base, rate)
    return None if refused is None else refused[1]


@functools.cache
def _probe(
    format: str, codec: str, time_base: Fraction | None, rate: Fraction | None
) -> tuple[str, str] | None:
    """("encoder" or "muxer", why) where writing the header of a `format` file holding a `codec`
    stream fails; None where it is written. The stream is as video_writer adds it: the input's
    time base and rate, the encoder's own format, our options (x265's quiet log level)."""
    if _encoder_name(codec) is None:
        return "encoder", _not_an_encoder(codec)
    if _writes_own_files(format):  # its header would open files by names of its own (or crash)
        return "muxer", f"the {format} muxer writes files of its own"
    rate = Fraction(rate) if rate else _ANY_RATE
    options = EncodeOptions(codec=codec)
    with _ffmpeg_errors_kept():
        muxer = av.open(io.BytesIO(), "w", format=format)
        try:
            stream = muxer.add_stream(
                codec,
                rate=rate,
                options=codec_options(options),
                width=_PROBE_SIZE,
                height=_PROBE_SIZE,
                time_base=encoder_time_base(codec, time_base, rate),
            )
            stream.pix_fmt = resolve_pix_fmt(options)
            muxer.start_encoding()
        except AV_ERRORS as e:
            unopened = isinstance(e, av.FFmpegError) and "avcodec_open2" in str(e)
            return ("encoder" if unopened else "muxer"), _ffmpeg_says(e)
        finally:
            with contextlib.suppress(*AV_ERRORS):
                muxer.close()
    return None


def _writes_own_files(format: str) -> bool:
    """A muxer that opens files of its own (HLS and DASH segments, tee's outputs), not the one
    it is given; the image muxers, which write one file a frame, are told apart elsewhere."""
    return format not in _IMAGE_MUXERS and av.format.ContainerFormat(format, "w").no_file


_LOG_LEVEL = threading.Lock()


@contextlib.contextmanager
def _ffmpeg_errors_kept() -> Iterator[None]:
    """FFmpeg's error lines kept, not printed, while a probe or trial runs: PyAV gives the last one
    to the exception it raises, whose cause it names (its code alone says "Invalid argument")."""
    with _LOG_LEVEL:  # FFmpeg's level is one for the process: set and put back by one at a time
        level = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)
        try:
            with av.logging.Capture():
                yield
        finally:
            av.logging.set_level(level)


def _ffmpeg_says(error: Exception) -> str:
    """FFmpeg's last error line where PyAV kept one ("vp9 only supported in MP4."), else its text."""
    line = logged_line(error)
    return str(error) if line is None else line.rstrip(".")


def container_holds(path: Path, codec: str) -> bool:
    """Whether FFmpeg writes a container by this file name, and it can hold `codec`."""
    try:
        check_container(path, codec)
    except UsageError:
        return False
    return True


def _encoder(name: str) -> av.Codec:
    try:
        codec = av.Codec(name, "w")
    except AV_ERRORS as e:
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


def at_depth(options: EncodeOptions, bit_depth: int) -> EncodeOptions:
    """The options with the input's depth kept where no --pix-fmt is given (default_pix_fmt)."""
    deep = default_pix_fmt(options.codec, bit_depth)
    if options.pix_fmt is not None or deep is None:
        return options
    return replace(options, pix_fmt=deep)


def takes_pix_fmt(codec: str, pix_fmt: str) -> bool:
    """Whether the encoder `codec` takes frames in `pix_fmt` (one that lists none takes any)."""
    formats = _encoder(codec).video_formats
    return not formats or pix_fmt in {f.name for f in formats}


def full_chroma_at(options: EncodeOptions, width: int, height: int) -> EncodeOptions:
    """At an odd width or height, the encoder's 4:4:4 format of the same depth in place of one
    that halves the chroma (yuv420p: yuv444p, yuv420p10le: yuv444p10le), which cannot hold the
    odd row or column; the options as they are where there is no such need or no such format."""
    pix_fmt = resolve_pix_fmt(options)
    try:
        fmt = av.VideoFormat(pix_fmt)
    except AV_ERRORS:
        return options  # validate_encode_options names it
    if not (width % 2 and fmt.chroma_width(2) < 2 or height % 2 and fmt.chroma_height(2) < 2):
        return options
    bits = fmt.components[0].bits
    for full in _encoder(options.codec).video_formats or []:
        parts = full.components
        if (
            len(parts) == 3  # Y, Cb, Cr: no alpha, not grey, no palette
            and not full.is_rgb
            and not full.has_palette
            and parts[0].bits == bits
            and full.chroma_width(2) == 2
            and full.chroma_height(2) == 2
        ):
            return replace(options, pix_fmt=full.name)
    return options


def resolve_pix_fmt(options: EncodeOptions) -> str:
    """The pixel format the encoder will get: the user's choice, else a widely playable default."""
    if options.pix_fmt is not None:
        return options.pix_fmt
    if options.codec in _DEFAULT_PIX_FMT:
        return _DEFAULT_PIX_FMT[options.codec]
    formats = _encoder(options.codec).video_formats
    return formats[0].name if formats else "yuv420p"


def validate_encode_options(
    options: EncodeOptions,
    width: int,
    height: int,
    time_base: Fraction | None = None,
    rate: Fraction | None = None,
) -> None:
    """Reject encoder settings that cannot work, before any (slow) model work starts: at the
    input's `time_base` and `rate` where they are given (mpeg4 refuses 1/90000, MPEG-1/2 a rate
    outside their standard), else at 1/25."""
    codec = _encoder(options.codec)
    pix_fmt = resolve_pix_fmt(options)
    try:
        fmt = av.VideoFormat(pix_fmt)
    except AV_ERRORS as e:
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
    if options.codec in _PRESET_ENCODERS and options.preset not in (None, *_VPX_CPU_USED):
        # before the trial open, whose encoder would print its own complaint on stderr too
        names = ", ".join(_VPX_CPU_USED)
        raise UsageError(f"invalid --preset {options.preset!r}: {options.codec} takes {names}")
    top = CRF_MAX.get(options.codec)
    if options.crf is not None and (options.crf < 0 or (top is not None and options.crf > top)):
        span = f"{options.codec} takes 0 to {top}" if top is not None else "it must be 0 or more"
        raise UsageError(f"invalid CRF {options.crf}: {span}")
    if options.bitrate is not None and options.bitrate <= 0:
        raise UsageError(f"invalid bitrate {options.bitrate}: it must be positive")
    _trial_open(options, (width, height), pix_fmt, time_base, rate)


def _trial_open(
    options: EncodeOptions,
    size: tuple[int, int],
    pix_fmt: str,
    time_base: Fraction | None,
    rate: Fraction | None,
) -> None:
    """Open the encoder once with these settings, as video_writer will (milliseconds): what it
    refuses (an unknown preset, a time base) is a usage error now, not a failed write after the
    model's work."""
    trial = av.CodecContext.create(options.codec, "w")
    trial.width, trial.height = size
    trial.pix_fmt = pix_fmt
    trial.time_base = encoder_time_base(options.codec, time_base, Fraction(rate or _ANY_RATE))
    if rate:
        trial.framerate = Fraction(rate)
    trial.options = codec_options(options)
    try:
        with _ffmpeg_errors_kept():
            trial.open()
    except AV_ERRORS as e:
        settings = ", ".join(f"{k} {v}" for k, v in trial.options.items()) or "its defaults"
        at = f"{pix_fmt}, time base {trial.time_base}" if time_base else pix_fmt
        raise UsageError(
            f"encoder {options.codec} refuses {settings} at {at}: {_ffmpeg_says(e)}"
        ) from e


def codec_options(options: EncodeOptions) -> dict[str, str]:
    """Private encoder options: CRF unless a bitrate is given; an x264-style preset where it applies."""
    opts: dict[str, str] = dict(_LOSSLESS.get(options.codec, {})) if options.lossless else {}
    if options.crf is not None and options.bitrate is None and not options.lossless:
        opts["crf"] = str(options.crf)
    if options.preset is not None and options.codec in _PRESET_ENCODERS:
        opts["preset"] = options.preset
    if options.codec == "libvpx-vp9":
        opts["row-mt"] = "1"  # VP9 uses every core only with row multithreading
        if options.preset in _VPX_CPU_USED:
            opts["cpu-used"] = str(_VPX_CPU_USED[options.preset])
    if options.codec not in _CRF_ENCODERS:
        opts.pop("crf", None)  # GIF, FFV1, PNG: no rate control to set
    if options.stitchable and options.codec in _STITCHABLE:
        key, value = _STITCHABLE[options.codec]
        opts[key] = ":".join(p for p in (opts.get(key), value) if p)
    if options.codec == "libx265":
        # x265 prints its own info and notes (a dozen lines an open), past FFmpeg's log level
        opts["x265-params"] = ":".join(p for p in (opts.get("x265-params"), "log-level=error") if p)
    if options.codec == "libsvtav1":  # SVT-AV1's banner (a dozen lines an open) obeys only SVT_LOG
        os.environ.setdefault("SVT_LOG", "1")  # errors, as x265's; a user's own SVT_LOG stands
    return opts


_STITCHABLE = {
    "libx264": ("x264-params", "stitchable=1"),
    "libx265": ("x265-params", "opt-qp-pps=0:opt-ref-list-length-pps=0"),
}
