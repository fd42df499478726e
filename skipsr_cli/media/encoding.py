"""Encoder options: what the user chose, the defaults, lossless modes, and their validation."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av

from skipsr_cli.errors import UsageError
from skipsr_cli.media.av_errors import AV_ERRORS

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
    """The encoder for an output extension when none is chosen: VP9 for webm, GIF for gif, x264."""
    return _DEFAULT_BY_SUFFIX.get(suffix.lower(), "libx264")


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


def check_container(path: Path, codec: str, name: str = "output") -> None:
    """Refuse a file name FFmpeg knows no container for, or whose container cannot hold `codec`
    (x264 in a GIF, anything encoded in a .y4m): a usage error now, not a failed write after the
    model's work. `name` (e.g. "--mask-out") says which output the message is about."""
    try:
        muxer = av.open(str(path), "w")  # the format guessed from the name; no file is opened
    except AV_ERRORS as e:
        named = f"the extension {path.suffix}" if path.suffix else "a name without an extension"
        raise UsageError(
            f"{name} {path}: FFmpeg writes no video container by {named}; "
            "name it e.g. .mp4, .mkv, .webm or .gif"
        ) from e
    try:
        _check_muxer(muxer, path, codec, name)
    finally:
        muxer.close()


def _check_muxer(muxer: av.container.OutputContainer, path: Path, codec: str, name: str) -> None:
    kind = muxer.format.name
    if muxer.default_video_codec in _RAW_ONLY and codec not in _RAW_ONLY:
        raise UsageError(
            f"{name} {path}: {path.suffix} ({kind}) holds uncompressed video only, which skipsr "
            "does not write; name it e.g. .mkv (with --lossless, every value is kept)"
        )
    try:
        muxer.add_stream(codec)
    except AV_ERRORS as e:
        if kind in _IMAGE_MUXERS:
            raise UsageError(
                f"{name} {path}: skipsr writes images as PNG, not {path.suffix}; "
                f"name it e.g. {path.with_suffix('.png')}"
            ) from e
        raise UsageError(
            f"{name} {path}: the {kind} container cannot hold {codec}; choose another "
            "extension (.mp4, .mkv, .webm, .gif) or --codec"
        ) from e


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


def validate_encode_options(options: EncodeOptions, width: int, height: int) -> None:
    """Reject encoder settings that cannot work, before any (slow) model work starts."""
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
    _trial_open(options, width, height, pix_fmt)


def _trial_open(options: EncodeOptions, width: int, height: int, pix_fmt: str) -> None:
    """Open the encoder once with these settings (milliseconds): what it refuses (an unknown
    preset, say) is a usage error now, not a failed write after the model's work."""
    trial = av.CodecContext.create(options.codec, "w")
    trial.width, trial.height, trial.pix_fmt = width, height, pix_fmt
    trial.time_base = Fraction(1, 25)
    trial.options = codec_options(options)
    try:
        trial.open()
    except AV_ERRORS as e:
        settings = ", ".join(f"{k} {v}" for k, v in trial.options.items()) or "its defaults"
        raise UsageError(f"encoder {options.codec} refuses {settings} at {pix_fmt}: {e}") from e


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
    return opts


_STITCHABLE = {
    "libx264": ("x264-params", "stitchable=1"),
    "libx265": ("x265-params", "opt-qp-pps=0:opt-ref-list-length-pps=0"),
}
