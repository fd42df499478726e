"""Small, deterministic test media generated on the fly with PyAV (helpers, not tests).

Clips are tiny (64x48, a few frames) so every test that needs a video can make its own in
milliseconds, and nothing binary has to live in the repository.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from skipsr_cli.media.encoding import EncodeOptions
from skipsr_cli.media.video_io import probe, read_frames
from skipsr_cli.media.video_writer import VideoWriter

AUDIO_RATE = 48000
_AUDIO_CHUNK = 1024  # samples per frame handed to the audio encoder (it re-frames as it needs)


def _frame_image(width: int, height: int, i: int, texture: np.ndarray) -> np.ndarray:
    """A smooth diagonal gradient that moves with i, plus fixed texture, so frames all differ."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = 2 * np.pi * i / 16
    r = 128 + 100 * np.sin(2 * np.pi * x / max(width, 1) + phase)
    g = 128 + 100 * np.cos(2 * np.pi * y / max(height, 1) - phase)
    b = 255 * ((x + y + 4 * i) % 64) / 64
    rgb = np.stack([r, g, b], axis=-1) + texture  # (H, W, 3)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def audio_codec_for(path: Path) -> str:
    """An audio encoder the container accepts: AAC for mp4/mov, Opus or Vorbis for webm/mkv."""
    if path.suffix.lower() in {".webm", ".mkv"}:
        for name in ("libopus", "libvorbis"):
            if name in av.codecs_available:
                return name
    return "aac"


def _even_safe_pix_fmt(pix_fmt: str, width: int, height: int) -> str:
    """Chroma-subsampled formats need even sizes; odd test sizes switch to 4:4:4."""
    fmt = av.VideoFormat(pix_fmt)
    if (width % 2 and fmt.chroma_width(2) < 2) or (height % 2 and fmt.chroma_height(2) < 2):
        return "yuv444p"
    return pix_fmt


def sine_wave(samples: int, freq: float = 440.0) -> np.ndarray:
    """(1, samples) float32 mono sine."""
    t = np.arange(samples, dtype=np.float64) / AUDIO_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None]


def _write_audio(
    output: av.container.OutputContainer,
    stream: av.AudioStream,
    frames: int,
    rate: Fraction,
    freq: float = 440.0,
) -> None:
    samples = round(Fraction(frames) / rate * AUDIO_RATE)  # exactly as long as the video
    wave = sine_wave(samples, freq)
    for start in range(0, samples, _AUDIO_CHUNK):
        chunk = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(wave[:, start : start + _AUDIO_CHUNK]),
            format="fltp",
            layout="mono",
        )
        chunk.sample_rate = AUDIO_RATE
        chunk.pts = start
        chunk.time_base = Fraction(1, AUDIO_RATE)
        output.mux(stream.encode(chunk))
    output.mux(stream.encode(None))


def make_clip(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 10,
    rate: Fraction = Fraction(24),
    audio: bool = True,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    seed: int = 0,
    sar: Fraction | None = None,
    timecode: str | None = None,
    rotation: int = 0,
    options: dict[str, str] | None = None,
) -> Path:
    """Write a short clip with a moving picture and (optionally) a sine tone of the same length.

    `sar` sets a pixel aspect ratio; `timecode` (mov/mp4) makes the muxer add a timecode data track;
    `options` go to the encoder (`{"bf": "3"}`: B-frames, which x264's ultrafast leaves out).
    """
    path = Path(path)
    rate = Fraction(rate)
    pix_fmt = _even_safe_pix_fmt(pix_fmt, width, height)
    texture = np.random.default_rng(seed).normal(0, 12, size=(height, width, 3)).astype(np.float32)
    with av.open(str(path), "w") as output:
        video = output.add_stream(codec, rate=rate, width=width, height=height, time_base=1 / rate)
        video.pix_fmt = pix_fmt
        if sar is not None:
            video.codec_context.sample_aspect_ratio = sar
        if timecode is not None:
            video.metadata["timecode"] = timecode
        if rotation:
            video.set_display_rotation(rotation)  # a display matrix, as phones write
        if codec in {"libx264", "libx265"}:
            video.options = {"preset": "ultrafast", "crf": "18", **(options or {})}
        sound = None
        if audio:
            sound = output.add_stream(audio_codec_for(path), rate=AUDIO_RATE, layout="mono")
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                _frame_image(width, height, i, texture), format="rgb24"
            )
            frame.pts = i
            frame.time_base = 1 / rate
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        if sound is not None:
            _write_audio(output, sound, frames, rate)
    return path


def make_non_video(path: Path) -> Path:
    """A text file wearing a video extension: must be refused as input, not crash the decoder."""
    path = Path(path)
    path.write_text("this is not a video\n" * 20)
    return path


def make_audio_only(path: Path, *, seconds: float = 0.5) -> Path:
    """A valid media file without any video stream."""
    path = Path(path)
    with av.open(str(path), "w") as output:
        stream = output.add_stream(audio_codec_for(path), rate=AUDIO_RATE, layout="mono")
        _write_audio(output, stream, round(seconds * 24), Fraction(24))
    return path


def audio_packets(path: Path) -> list[bytes]:
    """Raw bytes of every audio packet, in file order, to prove a stream copy is bit-exact."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def stream_span(path: Path, kind: str) -> tuple[float, float]:
    """(start, end) in seconds of the first `kind` stream ("video" or "audio"), from its packets."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        times = [
            (p.pts * p.time_base, (p.pts + p.duration) * p.time_base)
            for p in container.demux(stream)
            if p.size and p.pts is not None
        ]
    return float(min(t[0] for t in times)), float(max(t[1] for t in times))


def stream_seconds(path: Path, kind: str) -> float:
    """End time of the first `kind` stream, in seconds."""
    return stream_span(path, kind)[1]


def make_corrupt_clip(path: Path, *, frames: int = 20) -> Path:
    """An intra-only FFV1 clip (.mkv) whose middle bytes are scrambled: opens, then fails to decode."""
    path = Path(path)
    make_clip(path, codec="ffv1", frames=frames, audio=False)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + 400, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


SUBTITLE_SRT = """1
00:00:00,000 --> 00:00:00,150
Hello

2
00:00:00,200 --> 00:00:00,350
World
"""


def make_rich_mkv(path: Path, *, frames: int = 10, rate: Fraction = Fraction(24)) -> Path:
    """An mkv with video, two audio streams ("eng" and "fra", with titles), a subrip subtitle,
    two chapters and a global title: everything a stream copy must carry over.

    PyAV cannot encode subtitles from Python, so the subtitle stream is remuxed from a tiny .srt
    file, which FFmpeg demuxes.
    """
    path = Path(path)
    rate = Fraction(rate)
    base = path.with_suffix(".parts")
    video_src = make_clip(base.with_suffix(".video.mkv"), frames=frames, rate=rate, audio=False)
    srt = base.with_suffix(".srt")
    srt.write_text(SUBTITLE_SRT)
    with av.open(str(video_src)) as vin, av.open(str(srt)) as sin, av.open(str(path), "w") as out:
        video = out.add_stream_from_template(vin.streams.video[0])
        audio = []
        for lang, title, freq in (("eng", "English", 440.0), ("fra", "Français", 660.0)):
            stream = out.add_stream(audio_codec_for(path), rate=AUDIO_RATE, layout="mono")
            stream.metadata.update({"language": lang, "title": title})
            audio.append((stream, freq))
        audio[0][0].disposition = av.stream.Disposition.default
        subtitle = out.add_stream_from_template(sin.streams[0])
        subtitle.metadata.update({"language": "eng", "title": "Captions"})
        subtitle.disposition = av.stream.Disposition.forced
        out.metadata["title"] = "A rich test clip"
        half = frames * 500 // int(rate)  # milliseconds at half the clip
        out.set_chapters(
            [
                {"id": 1, "start": 0, "end": half, "time_base": Fraction(1, 1000),
                 "metadata": {"title": "Opening"}},
                {"id": 2, "start": half, "end": 2 * half, "time_base": Fraction(1, 1000),
                 "metadata": {"title": "Ending"}},
            ]
        )  # fmt: skip
        for packet in vin.demux(vin.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)
        for packet in sin.demux(sin.streams[0]):
            if packet.size:
                packet.stream = subtitle
                out.mux(packet)
        for stream, freq in audio:
            _write_audio(out, stream, frames, rate, freq)
    video_src.unlink()
    srt.unlink()
    return path


def packets_of(path: Path, kind: str, index: int = 0) -> list[bytes]:
    """Raw bytes of every packet of the index-th `kind` stream ("audio", "subtitles", ...)."""
    with av.open(str(path)) as container:
        streams = getattr(container.streams, kind)
        if len(streams) <= index:
            return []
        return [bytes(p) for p in container.demux(streams[index]) if p.size]


# Luma weights (Kr, Kb) of the YCbCr matrices, keyed by FFmpeg's AVColorSpace codes.
MATRIX_WEIGHTS = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114), 9: (0.2627, 0.0593)}
RANGE_LIMITED, RANGE_FULL = 1, 2


def colour_gradient(width: int = 96, height: int = 64) -> np.ndarray:
    """(H, W, 3) uint8: a smooth sweep through fully saturated hues left to right, fading to white
    at the top and to black at the bottom, so the picture holds primaries and secondaries (where a
    wrong matrix shows most) as well as greys."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    hue = 6 * x / width  # 0..6: red, yellow, green, cyan, blue, magenta
    r = np.clip(np.abs(hue - 3) - 1, 0, 1)
    g = np.clip(2 - np.abs(hue - 2), 0, 1)
    b = np.clip(2 - np.abs(hue - 4), 0, 1)
    pure = np.stack([r, g, b], axis=-1)
    v = (y / max(height - 1, 1))[..., None]  # 0 at the top, 1 at the bottom
    top = 1 - 2 * np.clip(0.5 - v, 0, 0.5)  # saturation: 0 (white) at the top, 1 from the middle
    bright = 1 - np.clip(v - 0.5, 0, 0.5)  # brightness: 1 down to the middle, 0.5 at the bottom
    rgb = (pure * top + (1 - top)) * bright
    return np.round(255 * rgb).astype(np.uint8)


def rgb_to_yuv(rgb: np.ndarray, matrix: int, colour_range: int) -> np.ndarray:
    """(3, H, W) uint8 Y, Cb, Cr planes of an RGB picture, by the textbook BT.601/709/2020 formulas."""
    kr, kb = MATRIX_WEIGHTS[matrix]
    r, g, b = (rgb[..., c].astype(np.float64) / 255 for c in range(3))
    luma = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - luma) / (2 * (1 - kb))
    cr = (r - luma) / (2 * (1 - kr))
    if colour_range == RANGE_FULL:
        planes = (255 * luma, 128 + 255 * cb, 128 + 255 * cr)
    else:
        planes = (16 + 219 * luma, 128 + 224 * cb, 128 + 224 * cr)
    return np.clip(np.round(np.stack(planes)), 0, 255).astype(np.uint8)


def yuv_to_rgb(yuv: np.ndarray, matrix: int, colour_range: int) -> np.ndarray:
    """(H, W, 3) float RGB (0..255) of (3, H, W) Y, Cb, Cr planes: the inverse of rgb_to_yuv."""
    kr, kb = MATRIX_WEIGHTS[matrix]
    y, cb, cr = (p.astype(np.float64) for p in yuv)
    if colour_range == RANGE_FULL:
        luma, cb, cr = y / 255, (cb - 128) / 255, (cr - 128) / 255
    else:
        luma, cb, cr = (y - 16) / 219, (cb - 128) / 224, (cr - 128) / 224
    r = luma + 2 * (1 - kr) * cr
    b = luma + 2 * (1 - kb) * cb
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    return 255 * np.stack([r, g, b], axis=-1)


def make_colour_clip(
    path: Path,
    rgb: np.ndarray,
    *,
    matrix: int | None,
    colour_range: int | None,
    primaries: int | None = None,
    transfer: int | None = None,
    encode_matrix: int | None = None,
    frames: int = 3,
    rate: Fraction = Fraction(24),
) -> Path:
    """A lossless yuv444p (x264 qp 0) clip of the still picture `rgb`, converted to YCbCr with
    `matrix` and `colour_range` (so its tags tell the truth) and tagged with them, and with
    `primaries`/`transfer`. None leaves a tag unspecified; `encode_matrix` / a None range then say
    how the pixels were really made (default: `matrix`, limited)."""
    path = Path(path)
    height, width = rgb.shape[:2]
    yuv = rgb_to_yuv(rgb, encode_matrix or matrix or 6, colour_range or RANGE_LIMITED)
    with av.open(str(path), "w") as output:
        video = output.add_stream("libx264", rate=rate, width=width, height=height)
        video.time_base = 1 / rate
        video.pix_fmt = "yuv444p"
        video.options = {"preset": "ultrafast", "qp": "0"}
        ctx = video.codec_context
        for name, value in (
            ("colorspace", matrix),
            ("color_range", colour_range),
            ("color_primaries", primaries),
            ("color_trc", transfer),
        ):
            if value is not None:
                setattr(ctx, name, value)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv444p")
            if matrix is not None:
                frame.colorspace = matrix
            if colour_range is not None:
                frame.color_range = colour_range
            frame.pts = i
            frame.time_base = 1 / rate
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
    return path


FAST = EncodeOptions(preset="ultrafast")


def writer_like(
    src: Path, dst: Path, options: EncodeOptions = FAST, **kwargs: object
) -> VideoWriter:
    """A writer for `dst` with the size, rate and time base of `src`."""
    info = probe(src)
    return VideoWriter(
        dst,
        width=info.width,
        height=info.height,
        rate=info.rate,
        time_base=info.time_base,
        options=options,
        **kwargs,
    )


def copy_through(
    src: Path, dst: Path, options: EncodeOptions = FAST, **kwargs: object
) -> VideoWriter:
    """Decode `src` and re-encode every frame to `dst` with its timestamps and audio."""
    with writer_like(src, dst, options, copy_audio_from=src, **kwargs) as writer:
        for frame in read_frames(src):
            writer.write(frame.rgb, frame.pts)
    return writer
