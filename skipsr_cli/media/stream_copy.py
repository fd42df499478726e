"""Copying a source's other streams (audio, subtitles, data), its tags and chapters, untouched.

The video is re-encoded by the writer; everything else the output container can hold is remuxed
packet for packet, interleaved with the video by time. Audio it cannot hold is re-encoded to a codec
it can (`audio_transcode`); any other stream it cannot hold is left out. Both are decided per stream
before anything is written and reported as one warning line per stream.
"""

from __future__ import annotations

import av

from skipsr_cli.media.audio_transcode import (
    AudioTranscoder,
    describe_plan,
    known_layout,
    muxer_takes,
    plan_transcode,
)

# Global tags the muxer writes itself, or that describe the source's container (mp4 brands):
# copying them would describe the wrong program or file format.
_OWN_GLOBAL_TAGS = frozenset({"encoder", "major_brand", "minor_version", "compatible_brands"})
# Per-stream tags that describe the source file's layout, not the stream: the muxer rewrites them.
_OWN_STREAM_TAGS = frozenset({"duration"})


def packet_seconds(packet: av.Packet) -> float | None:
    """Time of a packet in mux order (dts, else pts), in seconds, for interleaving."""
    t = packet.dts if packet.dts is not None else packet.pts
    if t is None or not packet.time_base:
        return None
    return float(t * packet.time_base)


def _codec_name(stream: av.stream.Stream) -> str:
    ctx = stream.codec_context
    if ctx is not None and ctx.name:
        return ctx.name
    return getattr(stream, "name", None) or "unknown codec"


def _tag(stream: av.stream.Stream, name: str) -> str | None:
    """A stream tag by name, in any case (Matroska upper-cases them)."""
    return next((v for k, v in stream.metadata.items() if k.lower() == name), None)


AVDISCARD_ALL = 48  # libavformat's AVDiscard: the demuxer gives none of the stream's packets


def _chapter_track(stream: av.stream.Stream) -> bool:
    """An mp4/mov chapter track (the text track the chapter list is read from), which FFmpeg's
    demuxer shows as a data stream it discards itself."""
    return getattr(stream, "discard", 0) >= AVDISCARD_ALL


def describe(stream: av.stream.Stream) -> str:
    """ "subtitle stream 2 (subrip, eng)": how a warning names a stream of the source."""
    details = ", ".join(x for x in (_codec_name(stream), stream.metadata.get("language")) if x)
    return f"{stream.type} stream {stream.index} ({details})"


def _fits(stream: av.stream.Stream, format_name: str) -> bool:
    """Whether a muxer of `format_name` accepts `stream` as a copy (its codec tags and header
    checks); where it cannot be asked in memory, the real output decides."""
    return (
        muxer_takes(format_name, lambda probe: probe.add_stream_from_template(stream)) is not False
    )


def _is_cover(stream: av.stream.Stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


# Cover image codecs Matroska attaches: file extension and MIME type.
_IMAGE_TYPES = {"mjpeg": ("jpg", "image/jpeg"), "png": ("png", "image/png")}


def _first_packet(path: str, index: int) -> bytes | None:
    """The bytes of the first packet of stream `index` (a cover's one picture), read separately so
    the copier's own demuxer stays at the start."""
    try:
        with av.open(path) as source:
            packets = source.demux(source.streams[index])
            return next((bytes(p) for p in packets if p.size), None)
    except (av.FFmpegError, OSError):
        return None


def _takes_attachments(format_name: str) -> bool:
    """Matroska keeps attachment streams; WebM drops them without a word, and mp4, mov and the
    rest have none."""
    return format_name == "matroska"


class StreamCopier:
    """Remuxes the chosen streams of a source, packet for packet, into an output container.

    It keeps its own demuxer on the source reading only those streams, one packet ahead, so the
    writer can interleave them with the video as it goes instead of appending them at the end.
    Global tags and chapters are set on the output at once, before its header is written.
    """

    def __init__(
        self,
        source: av.container.InputContainer,
        output: av.container.OutputContainer,
        *,
        suffix: str,
        copy_audio: bool = True,
        copy_subtitles: bool = True,
        copy_data: bool = True,
        audio_kbps: int | None = None,
    ) -> None:
        self._input = source
        self._output = output
        self._audio_kbps = audio_kbps
        self.warnings: list[str] = []
        # The source's start timecode (a mov/mp4 timecode track, or a video stream tag). Its track
        # is not copied: the writer tags the new video stream with it and the muxer makes its own
        # track (a copied timecode track makes the mov muxer fail at the trailer).
        self.timecode: str | None = None
        main = next((v for v in source.streams.video if not _is_cover(v)), None)
        try:
            self._copy_tags_and_chapters()
            wanted = {"audio": copy_audio, "subtitle": copy_subtitles, "data": copy_data}
            self._map: dict[int, av.stream.Stream] = {}
            self._transcoders: dict[int, AudioTranscoder] = {}
            for s in self._input.streams:
                timecode = _tag(s, "timecode")
                if timecode and s.type in ("video", "data"):
                    self.timecode = self.timecode or timecode
                    if s.type == "data":
                        continue
                if s.type == "attachment":
                    self._copy_attachment(s, suffix)
                    continue
                if s.type == "data" and _chapter_track(s):
                    continue  # the chapters themselves are copied (set_chapters)
                if s.type == "video" and _is_cover(s):
                    self._copy_cover(s, suffix)
                    continue
                if s.type == "video" and s is not main:
                    self.warnings.append(f"{describe(s)} is another video, not upscaled; left out")
                    continue
                if not wanted.get(s.type, False):
                    continue  # the video itself, or left out by choice
                if not _fits(s, output.format.name):
                    self._transcode_or_leave_out(s, suffix)
                    continue
                self._map[s.index] = self._add_copy(s)
        except BaseException:
            self._input.close()
            raise
        streams = [self._input.streams[i] for i in [*self._map, *self._transcoders]]
        self._packets = self._input.demux(*streams) if streams else iter(())
        self._pending: av.Packet | None = None
        self._flushed = False

    def _transcode_or_leave_out(self, stream: av.stream.Stream, suffix: str) -> None:
        plan = plan_transcode(stream, self._output.format.name, self._audio_kbps)
        if plan is None:
            self.warnings.append(f"{describe(stream)} cannot be stored in {suffix}; left out")
            return
        transcoder = AudioTranscoder(stream, self._output, *plan)
        tags = {k: v for k, v in stream.metadata.items() if k.lower() not in _OWN_STREAM_TAGS}
        transcoder.stream.metadata.update(tags)
        transcoder.stream.disposition = stream.disposition
        self._transcoders[stream.index] = transcoder
        self.warnings.append(
            f"{describe(stream)} cannot be stored in {suffix}; re-encoded to {describe_plan(*plan)}"
        )

    def _copy_tags_and_chapters(self) -> None:
        tags = {k: v for k, v in self._input.metadata.items() if k.lower() not in _OWN_GLOBAL_TAGS}
        self._output.metadata.update(tags)  # title, comment, ...
        chapters = self._input.chapters()
        if chapters:
            self._output.set_chapters(chapters)

    def _copy_attachment(self, stream: av.stream.Stream, suffix: str) -> None:
        """An attached file (a subtitle's font, a cover image in Matroska) goes into the header
        where the container takes attachments; elsewhere it is left out with a warning."""
        name, mimetype = getattr(stream, "name", None), getattr(stream, "mimetype", None)
        data = getattr(stream, "data", None)
        label = f"attachment stream {stream.index} ({name or 'unnamed'})"
        if not name or not mimetype or data is None:
            self.warnings.append(f"{label} has no name, type or data; left out")
            return
        if not _takes_attachments(self._output.format.name):
            self.warnings.append(f"{label} cannot be stored in {suffix}; left out")
            return
        self._output.add_attachment(name, mimetype, bytes(data))

    def _copy_cover(self, stream: av.stream.Stream, suffix: str) -> None:
        """Cover art stays cover art: an attached picture in MP4 (its `covr` atom), an attachment
        in Matroska (as `cover.jpg`), where players look for it; other containers have no place."""
        label = f"{describe(stream)} is cover art"
        fmt = self._output.format.name
        if fmt in ("mp4", "ipod") and _fits(stream, fmt):
            self._map[stream.index] = self._add_copy(stream)
        elif fmt == "matroska" and stream.codec_context is not None:
            kind = _IMAGE_TYPES.get(stream.codec_context.name)
            data = _first_packet(self._input.name, stream.index)
            if kind is None or data is None:
                self.warnings.append(f"{label} in a format Matroska cannot attach; left out")
                return
            name = _tag(stream, "filename") or f"cover.{kind[0]}"
            self._output.add_attachment(name, kind[1], data)
        else:
            self.warnings.append(f"{label}, which {suffix} cannot hold; left out")

    def _add_copy(self, template: av.stream.Stream) -> av.stream.Stream:
        stream = self._output.add_stream_from_template(template)
        tags = {k: v for k, v in template.metadata.items() if k.lower() not in _OWN_STREAM_TAGS}
        stream.metadata.update(tags)  # language, title, handler_name
        stream.disposition = template.disposition  # default, forced, ...
        if template.type == "audio" and stream.codec_context is not None:
            layout = known_layout(template)
            if layout != template.layout.name:
                stream.codec_context.layout = layout
                if template.channels > 2:  # mono and stereo are not a guess
                    self.warnings.append(
                        f"{describe(template)} names no channel layout; its {template.channels} "
                        f"channels are written as {layout}, FFmpeg's default"
                    )
        return stream

    def mux_until(self, seconds: float | None) -> None:
        """Mux packets up to `seconds` (all that remain when None)."""
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    if seconds is None and not self._flushed:  # the end: drain the re-encoders
                        self._flushed = True
                        for transcoder in self._transcoders.values():
                            transcoder.flush()
                    return
            packet = self._pending
            if packet.size == 0:  # the flush packet PyAV yields at end of file
                self._pending = None
                continue
            t = packet_seconds(packet)
            if seconds is not None and t is not None and t > seconds:
                return
            self._pending = None
            if packet.stream_index in self._transcoders:
                self._transcoders[packet.stream_index].feed(packet)
                continue
            # mux() rescales from packet.time_base (the source stream's) to the output stream's.
            packet.stream = self._map[packet.stream_index]
            self._output.mux(packet)

    def late_warnings(self) -> list[str]:
        """What only the end of the copy knows: source audio packets that could not be decoded."""
        return [
            f"{describe(t.source)}: {t.dropped} undecodable packets skipped in re-encoding"
            for t in self._transcoders.values()
            if t.dropped
        ]

    def close(self) -> None:
        self._input.close()
