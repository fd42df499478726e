"""Audio that the output container cannot hold as it is, re-encoded to a codec that it can.

WebM takes only Opus and Vorbis, MP4 neither 8-bit PCM nor WavPack, and so on: rather than leave a
film silent, such audio is decoded, resampled where the encoder needs it and encoded again (Opus in
WebM and Matroska, AAC in MP4 and MOV, MP3 in AVI) at a transparent bitrate. Its timestamps are
kept, so it stays in sync with the video. Whether a stream fits is decided by the muxer itself
(`stream_copy`); this module only runs for the streams that do not.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable

import av

from skipsr_cli.media.av_errors import AV_ERRORS

# Encoders to try per muxer, best first.
_CANDIDATES = {
    "webm": ("libopus", "libvorbis"),
    "matroska": ("libopus", "flac"),
    "mp4": ("aac",),
    "mov": ("aac",),
    "ipod": ("aac",),
    "avi": ("libmp3lame",),
}
# Per channel: Opus and AAC are transparent for most listeners at these rates.
_KBPS_PER_CHANNEL = {"libopus": 64, "libvorbis": 80, "aac": 96, "libmp3lame": 112}
_LABEL = {
    "libopus": "Opus",
    "libvorbis": "Vorbis",
    "aac": "AAC",
    "libmp3lame": "MP3",
    "flac": "FLAC",
}

# FFmpeg's default layout per channel count (av_channel_layout_default): what its command line
# guesses for a stream that gives only a count.
_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "2.1",
    4: "4.0",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}


def known_layout(stream: av.stream.Stream) -> str:
    """The stream's channel layout, or FFmpeg's default for its channel count where the source
    gives only the count (PCM in Matroska or MOV): MP4's muxer refuses an unnamed layout when it
    finishes the file."""
    name = stream.layout.name
    if name == f"{stream.channels} channels":
        return _DEFAULT_LAYOUTS.get(stream.channels, name)
    return name


def _settings(
    stream: av.stream.Stream, codec: str, channels_cap: int | None, kbps: int | None
) -> dict:
    """Rate, layout, sample format and bitrate (`kbps`, else the codec's default per channel) for
    re-encoding `stream` with `codec`."""
    encoder = av.Codec(codec, "w")
    rates = encoder.audio_rates
    rate = stream.sample_rate
    if rates and rate not in rates:
        rate = 48000 if 48000 in rates else max(rates)
    layout = known_layout(stream)
    channels = stream.channels
    if channels_cap is not None and channels > channels_cap:
        layout, channels = "stereo", 2
    formats = [f.name for f in encoder.audio_formats or ()]
    settings = {"rate": rate, "layout": layout, "format": formats[0] if formats else None}
    if kbps is not None:
        settings["bit_rate"] = kbps * 1000
    elif codec in _KBPS_PER_CHANNEL:
        settings["bit_rate"] = _KBPS_PER_CHANNEL[codec] * 1000 * channels
    return settings


def _add(output: av.container.OutputContainer, codec: str, settings: dict) -> av.stream.Stream:
    stream = output.add_stream(codec, rate=settings["rate"], layout=settings["layout"])
    ctx = stream.codec_context
    if settings["format"] is not None:
        ctx.format = settings["format"]
    if "bit_rate" in settings:
        ctx.bit_rate = settings["bit_rate"]
    ctx.open()
    return stream


def muxer_takes(
    format_name: str, add: Callable[[av.container.OutputContainer], object]
) -> bool | None:
    """Whether a `format_name` muxer writes its header after `add` puts a stream in it, tried on a
    throwaway in-memory output so the verdict is the muxer's own; None where it cannot be asked in
    memory."""
    try:
        probe = av.open(io.BytesIO(), "w", format=format_name)
    except AV_ERRORS:
        return None
    try:
        add(probe)
        probe.start_encoding()
        return True
    except AV_ERRORS:
        return False
    finally:
        with contextlib.suppress(Exception):
            probe.close()


def plan_transcode(
    stream: av.stream.Stream, format_name: str, kbps: int | None = None
) -> tuple[str, dict] | None:
    """(encoder, settings) for audio `stream` in a `format_name` output, or None when no encoder
    this FFmpeg has can make audio that container takes. More than two channels are kept where
    the encoder takes them, else mixed down to stereo."""
    if stream.type != "audio" or stream.codec_context is None or not stream.channels:
        return None
    for codec in _CANDIDATES.get(format_name, ("aac", "libopus")):
        if codec not in av.codecs_available:
            continue
        for cap in (None, 2):
            settings = _settings(stream, codec, cap, kbps)
            if muxer_takes(format_name, functools.partial(_add, codec=codec, settings=settings)):
                return codec, settings
    return None


def describe_plan(codec: str, settings: dict) -> str:
    """ "Opus at 128 kb/s" for a warning line."""
    rate = settings.get("bit_rate")
    return _LABEL.get(codec, codec) + (f" at {rate // 1000} kb/s" if rate else "")


class AudioTranscoder:
    """Decodes the packets of one source audio stream and muxes them re-encoded into `output`."""

    def __init__(
        self,
        source: av.stream.Stream,
        output: av.container.OutputContainer,
        codec: str,
        settings: dict,
    ) -> None:
        self.source = source
        # packets the decoder refused (damaged source audio): skipped, as ffmpeg does
        self.dropped = 0
        self._output = output
        self.stream = _add(output, codec, settings)
        ctx = self.stream.codec_context
        self._resampler = av.AudioResampler(
            format=ctx.format,
            layout=ctx.layout,
            rate=ctx.sample_rate,
            frame_size=ctx.frame_size or None,  # fixed-size encoders: Opus 960, AAC 1024
        )

    def feed(self, packet: av.Packet) -> None:
        """Decode one source packet and mux whatever the encoder gives back."""
        try:
            frames = self.source.codec_context.decode(packet)
        except av.InvalidDataError:
            self.dropped += 1
            return
        for frame in frames:
            self._encode(self._resampler.resample(frame))

    def flush(self) -> None:
        """Drain the decoder, the resampler and the encoder at the end of the stream."""
        for frame in self.source.codec_context.decode(None):
            self._encode(self._resampler.resample(frame))
        self._encode(self._resampler.resample(None))
        self._output.mux(self.stream.encode(None))

    def _encode(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            self._output.mux(self.stream.encode(frame))
