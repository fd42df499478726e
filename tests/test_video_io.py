"""video_io against clips generated on the fly: probe, streamed decode, atomic encode, audio copy."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import (
    FAST,
    audio_packets,
    copy_through,
    make_audio_only,
    make_clip,
    make_corrupt_clip,
    make_non_video,
    make_rich_mkv,
    packets_of,
    stream_seconds,
    stream_span,
    writer_like,
)

from skipsr_cli import api
from skipsr_cli.errors import InputError, OutputError, UsageError
from skipsr_cli.media.encoding import EncodeOptions, validate_encode_options
from skipsr_cli.media.video_io import probe, read_frames
from skipsr_cli.media.video_writer import VideoWriter, partial_path


def _av_offset(path: Path) -> float:
    """Seconds between the first audio and the first video packet: what lip sync depends on."""
    return stream_span(path, "audio")[0] - stream_span(path, "video")[0]


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "skipsr-partial" in p.name)


@pytest.mark.parametrize("rate", [Fraction(24), Fraction(24000, 1001), Fraction(30)])
def test_probe_reports_size_rate_count_and_audio(tmp_path: Path, rate: Fraction) -> None:
    clip = make_clip(tmp_path / "in.mp4", width=64, height=48, frames=12, rate=rate)
    info = probe(clip)
    assert (info.width, info.height) == (64, 48)
    assert info.rate == rate and isinstance(info.rate, Fraction)
    assert info.frame_count == 12
    assert info.duration == pytest.approx(12 / rate, abs=1e-3)
    assert (info.codec, info.pix_fmt, info.audio_streams) == ("h264", "yuv420p", 1)
    assert probe(make_clip(tmp_path / "silent.mp4", audio=False)).audio_streams == 0


def test_read_frames_streams_every_frame_in_order(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "in.mp4", frames=9, rate=Fraction(24000, 1001))
    frames = list(read_frames(clip))
    assert [f.index for f in frames] == list(range(9))
    for f in frames:
        assert f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8
        assert f.rgb.flags["C_CONTIGUOUS"]
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
    assert pts[1] - pts[0] == 1001  # one frame of 24000/1001 in a 1/24000 time base
    assert not np.array_equal(frames[0].rgb, frames[1].rgb)


def test_round_trip_keeps_frames_rate_and_copies_audio_bit_exact(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=14, rate=Fraction(24000, 1001))
    out = tmp_path / "out.mp4"
    copy_through(src, out)
    before, after = probe(src), probe(out)
    assert after.frame_count == 14 and after.rate == before.rate
    assert after.audio_streams == 1
    assert [f.pts for f in read_frames(out)] == [f.pts for f in read_frames(src)]
    # Same picture back (lossy, so only close), no colour shift.
    a, b = next(read_frames(src)).rgb, next(read_frames(out)).rgb
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 6
    one_frame = float(1 / before.rate)
    assert abs(stream_seconds(out, "audio") - stream_seconds(out, "video")) <= one_frame
    assert _av_offset(out) == pytest.approx(_av_offset(src), abs=1e-4)
    assert audio_packets(out) == audio_packets(src) and audio_packets(src)
    assert _leftovers(tmp_path) == []


def test_audio_copy_into_another_container_is_rescaled_and_in_sync(tmp_path: Path) -> None:
    """mp4 audio (time base 1/48000) into mkv (1/1000): the muxer must rescale, not reinterpret.

    Matroska cannot store the negative start of AAC priming, so FFmpeg shifts every stream by the
    same amount; what must hold is the offset between audio and video, to the millisecond.
    """
    src = make_clip(tmp_path / "in.mp4", frames=12)
    out = tmp_path / "out.mkv"
    copy_through(src, out)
    with av.open(str(out)) as container:
        assert container.streams.audio[0].time_base == Fraction(1, 1000)
    assert audio_packets(out) == audio_packets(src)
    assert _av_offset(out) == pytest.approx(_av_offset(src), abs=1e-3)
    assert abs(stream_seconds(out, "audio") - stream_seconds(out, "video")) <= 1 / 24


def _audio_samples(path: Path) -> np.ndarray:
    """The first audio stream decoded to mono float32 at 48 kHz."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
    with av.open(str(path)) as container:
        frames = [f for p in container.demux(container.streams.audio[0]) for f in p.decode()]
    out = [g.to_ndarray()[0] for f in [*frames, None] for g in resampler.resample(f)]
    return np.concatenate(out)


def _audio_start(path: Path) -> float:
    with av.open(str(path)) as container:
        packets = container.demux(container.streams.audio[0])
        return next(f.time for p in packets for f in p.decode())


def test_audio_the_container_cannot_hold_is_reencoded_in_sync(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=24)  # AAC audio, which WebM cannot carry
    out = tmp_path / "out.webm"
    writer = copy_through(src, out, options=EncodeOptions(codec="libvpx-vp9"))
    assert writer.warnings == [
        "audio stream 1 (aac, und) cannot be stored in .webm; re-encoded to Opus at 64 kb/s"
    ]
    info = probe(out)
    assert info.audio_streams == 1 and info.frame_count == 24
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
    # decoded, the sound starts and ends where the source's does (the encoders' priming aside)
    assert _audio_start(out) == pytest.approx(_audio_start(src), abs=1e-3)
    assert stream_seconds(out, "audio") == pytest.approx(stream_seconds(src, "audio"), abs=0.03)
    # the same sound: the tone's level and its shape, sample for sample once aligned
    a, b = _audio_samples(src), _audio_samples(out)
    n = min(len(a), len(b)) - 2000
    lag = max(
        range(-400, 401),
        key=lambda k: float(np.dot(a[1000 : 1000 + n - 800], b[1000 + k : 1000 + k + n - 800])),
    )
    x, y = a[1000 : 1000 + n - 800], b[1000 + lag : 1000 + lag + n - 800]
    assert abs(lag) <= 48 * 10  # within 10 ms
    assert np.corrcoef(x, y)[0, 1] > 0.99
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.1)


def _with_pcm(tmp_path: Path, codec: str, dtype: type, layout: str = "stereo") -> Path:
    """A 12-frame mkv whose audio is half a second of a tone on every channel in `codec` (PCM in
    Matroska reads back with a channel count but no named layout)."""
    src = make_clip(tmp_path / "video.mkv", frames=12, audio=False)
    path = tmp_path / f"{codec}.mkv"
    tone = np.sin(np.arange(24000) * 2 * np.pi * 440 / 48000) * 0.25
    samples = (
        (tone * 32767).astype(np.int16)
        if dtype is np.int16
        else (tone * 127 + 128).astype(np.uint8)
    )
    fmt = "s16" if dtype is np.int16 else "u8"
    channels = av.AudioLayout(layout).nb_channels
    with av.open(str(src)) as inp, av.open(str(path), "w") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        sound = out.add_stream(codec, rate=48000, layout=layout)
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)
        frame = av.AudioFrame.from_ndarray(
            np.stack([samples] * channels).T.reshape(1, -1), format=fmt, layout=layout
        )
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path


def test_pcm_audio_without_a_named_layout_is_copied_into_mp4(tmp_path: Path) -> None:
    # The mp4 muxer took the stream at the header and refused it at the trailer ("unsupported
    # channel layout 2 channels"): the whole upscale was lost at its very end.
    src = _with_pcm(tmp_path, "pcm_s16le", np.int16)
    out = tmp_path / "out.mp4"
    writer = copy_through(src, out)
    assert writer.warnings == []
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert (audio.codec_context.name, audio.layout.name) == ("pcm_s16le", "stereo")
    assert b"".join(audio_packets(out)) == b"".join(audio_packets(src))


def test_multichannel_pcm_without_a_layout_gets_ffmpegs_default_and_a_warning(
    tmp_path: Path,
) -> None:
    src = _with_pcm(tmp_path, "pcm_s16le", np.int16, layout="5.1")
    out = tmp_path / "out.mp4"
    writer = copy_through(src, out)
    assert writer.warnings == [
        "audio stream 1 (pcm_s16le) names no channel layout; its 6 channels are written as 5.1, "
        "FFmpeg's default"
    ]
    with av.open(str(out)) as container:
        assert container.streams.audio[0].layout.name == "5.1"
    assert b"".join(audio_packets(out)) == b"".join(audio_packets(src))


def test_audio_mp4_cannot_hold_is_reencoded_to_aac(tmp_path: Path) -> None:
    src = _with_pcm(tmp_path, "pcm_u8", np.uint8)
    out = tmp_path / "out.mp4"
    writer = copy_through(src, out)
    assert writer.warnings == [
        "audio stream 1 (pcm_u8) cannot be stored in .mp4; re-encoded to AAC at 192 kb/s"
    ]
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert (audio.codec_context.name, audio.channels, audio.sample_rate) == ("aac", 2, 48000)
    assert _audio_start(out) == pytest.approx(0.0, abs=1e-3)
    assert stream_seconds(out, "audio") == pytest.approx(0.5, abs=0.03)
    a, b = _audio_samples(src), _audio_samples(out)
    assert np.sqrt(np.mean(b**2)) == pytest.approx(np.sqrt(np.mean(a**2)), rel=0.05)


def test_audio_is_interleaved_with_video_not_appended(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=24)
    out = tmp_path / "out.mp4"
    copy_through(src, out)
    with av.open(str(out)) as container:
        kinds = [p.stream.type for p in container.demux() if p.size]
    first_audio, last_video = kinds.index("audio"), len(kinds) - 1 - kinds[::-1].index("video")
    assert first_audio < last_video  # audio starts well before the video ends


def test_variable_frame_rate_timestamps_carry_over(tmp_path: Path) -> None:
    out = tmp_path / "vfr.mkv"
    pts = [0, 40, 80, 200, 240, 400, 410, 450]  # milliseconds, irregular
    image = np.zeros((48, 64, 3), np.uint8)
    opts = EncodeOptions(preset="ultrafast")
    with VideoWriter(
        out, width=64, height=48, rate=Fraction(25), time_base=Fraction(1, 1000), options=opts
    ) as writer:
        for i, t in enumerate(pts):
            writer.write(image + i * 20, t)
    assert writer.frames_written == len(pts)
    assert [f.pts for f in read_frames(out)] == pts


def test_existing_output_is_refused_without_overwrite(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=4)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists"):
        copy_through(src, out)
    assert out.read_bytes() == b"precious"
    copy_through(src, out, overwrite=True)
    assert probe(out).frame_count == 4
    assert _leftovers(tmp_path) == []


def test_bad_targets_are_refused_before_writing(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=2)
    with pytest.raises(OutputError, match="does not exist"):
        copy_through(src, tmp_path / "missing" / "out.mp4")
    with pytest.raises(UsageError, match="is the input"):  # exit 2, as the README says
        copy_through(src, src, overwrite=True)
    assert probe(src).frame_count == 2


def test_exception_inside_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=30)
    out = tmp_path / "out.mp4"
    with (
        pytest.raises(RuntimeError, match="model crashed"),
        writer_like(src, out, FAST, copy_audio_from=src) as writer,
    ):
        for frame in read_frames(src):
            writer.write(frame.rgb, frame.pts)
            if frame.index == 25:  # late enough that the encoder has emitted packets
                assert writer._temp.exists() and not out.exists()
                raise RuntimeError("model crashed")
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_missing_and_non_video_inputs_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="input not found"):
        read_frames(tmp_path / "nope.mp4")
    text = make_non_video(tmp_path / "text.mp4")
    with pytest.raises(InputError, match="cannot read"):
        probe(text)
    with pytest.raises(InputError, match="cannot read"):
        read_frames(text)
    with pytest.raises(InputError, match="no video stream"):
        probe(make_audio_only(tmp_path / "sound.m4a"))


def test_decode_error_mid_stream_names_the_frame(tmp_path: Path) -> None:
    clip = make_corrupt_clip(tmp_path / "bad.mkv", frames=20)
    decoded = 0
    with pytest.raises(InputError, match=r"at frame \d+") as caught:
        for _ in read_frames(clip):
            decoded += 1
    assert 0 < decoded < 20  # the good frames before the damage came through first
    assert f"at frame {decoded}" in str(caught.value)


def test_validate_encode_options_rejects_bad_choices() -> None:
    with pytest.raises(UsageError, match="unknown encoder"):
        validate_encode_options(EncodeOptions(codec="no-such-encoder"), 64, 48)
    with pytest.raises(UsageError, match="not a video encoder"):
        validate_encode_options(EncodeOptions(codec="aac"), 64, 48)
    with pytest.raises(UsageError, match="yuv444p"):
        validate_encode_options(EncodeOptions(), 63, 48)
    with pytest.raises(UsageError, match="even"):
        validate_encode_options(EncodeOptions(pix_fmt="yuv422p"), 63, 48)
    with pytest.raises(UsageError, match="does not support"):
        validate_encode_options(EncodeOptions(pix_fmt="rgb24"), 64, 48)
    validate_encode_options(EncodeOptions(pix_fmt="yuv444p"), 63, 47)
    validate_encode_options(EncodeOptions(pix_fmt="yuv422p"), 64, 47)  # 4:2:2 halves width only


def test_writer_raises_usage_error_for_unknown_encoder(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        VideoWriter(
            tmp_path / "out.mp4",
            width=64,
            height=48,
            rate=Fraction(24),
            time_base=None,
            options=EncodeOptions(codec="no-such-encoder"),
        )
    assert list(tmp_path.iterdir()) == []


def test_odd_size_with_yuv444p_works_end_to_end(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "odd.mp4", width=63, height=47, frames=5)
    out = tmp_path / "out.mp4"
    copy_through(src, out, options=EncodeOptions(preset="ultrafast", pix_fmt="yuv444p"))
    info = probe(out)
    assert (info.width, info.height, info.pix_fmt, info.frame_count) == (63, 47, "yuv444p", 5)


def test_frames_without_pts_get_regular_timestamps(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    rate = Fraction(30000, 1001)
    with VideoWriter(out, width=64, height=48, rate=rate, time_base=None, options=FAST) as writer:
        for i in range(6):
            writer.write(np.full((48, 64, 3), i * 30, np.uint8))
    info = probe(out)
    assert info.rate == rate and info.frame_count == 6
    times = [f.pts * info.time_base for f in read_frames(out)]
    assert times == [i / rate for i in range(6)]


def test_bitrate_replaces_crf(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    opts = EncodeOptions(preset="ultrafast", bitrate=50_000)
    with VideoWriter(
        out, width=64, height=48, rate=Fraction(24), time_base=None, options=opts
    ) as w:
        for i in range(4):
            w.write(np.full((48, 64, 3), i * 60, np.uint8))
    assert probe(out).frame_count == 4


@pytest.mark.parametrize(
    ("suffix", "codec"), [(".mkv", "ffv1"), (".webm", "libvpx-vp9"), (".mov", "libx264")]
)
def test_other_containers_round_trip(tmp_path: Path, suffix: str, codec: str) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    src = make_clip(tmp_path / f"in{suffix}", codec=codec, frames=6)
    out = tmp_path / f"out{suffix}"
    copy_through(src, out, options=EncodeOptions(codec=codec, preset="ultrafast"))
    info = probe(out)
    assert info.frame_count == 6 and info.rate == Fraction(24) and info.audio_streams == 1
    assert len(list(read_frames(out))) == 6
    assert audio_packets(out) == audio_packets(src)
    assert abs(stream_seconds(out, "audio") - stream_seconds(out, "video")) <= 1 / 24


def test_ffv1_rgb_is_lossless(tmp_path: Path) -> None:
    """FFV1 with an RGB pixel format is the lossless path: frames come back bit-exact."""
    src = make_clip(tmp_path / "in.mp4", frames=4, audio=False)
    out = tmp_path / "out.mkv"
    copy_through(src, out, options=EncodeOptions(codec="ffv1", pix_fmt="bgr0"))
    originals = [f.rgb for f in read_frames(src)]
    decoded = [f.rgb for f in read_frames(out)]
    assert len(decoded) == len(originals) == 4
    for a, b in zip(originals, decoded, strict=True):
        assert np.array_equal(a, b)


def _streams(path: Path) -> list[tuple[str, str | None, str | None, str | None]]:
    """(type, codec, language, title) of every stream, in order."""
    with av.open(str(path)) as container:
        return [
            (s.type, s.codec_context.name, s.metadata.get("language"), s.metadata.get("title"))
            for s in container.streams
            if s.type != "data"  # mp4 stores chapters as a text track that demuxes as data
        ]


def test_mkv_to_mkv_keeps_every_stream_tag_and_chapter(tmp_path: Path) -> None:
    src = make_rich_mkv(tmp_path / "in.mkv")
    out = tmp_path / "out.mkv"
    assert copy_through(src, out).warnings == []
    assert _streams(out)[1:] == _streams(src)[1:]  # both audio languages/titles, the subtitle
    for kind, index in (("audio", 0), ("audio", 1), ("subtitles", 0)):
        assert packets_of(out, kind, index) == packets_of(src, kind, index)
    assert packets_of(out, "subtitles") == [b"Hello", b"World"]
    with av.open(str(src)) as before, av.open(str(out)) as after:
        assert after.metadata["title"] == "A rich test clip"
        assert [(c["start"], c["end"], c["metadata"]) for c in after.chapters()] == [
            (c["start"], c["end"], c["metadata"]) for c in before.chapters()
        ]
        assert len(after.chapters()) == 2
        dispositions = [s.disposition for s in after.streams]
    assert dispositions[1] & av.stream.Disposition.default
    assert dispositions[3] & av.stream.Disposition.forced


def test_subtitle_stream_is_interleaved_by_time(tmp_path: Path) -> None:
    src = make_rich_mkv(tmp_path / "in.mkv", frames=24)
    out = tmp_path / "out.mkv"
    copy_through(src, out)
    with av.open(str(out)) as container:
        kinds = [p.stream.type for p in container.demux() if p.size]
    assert kinds.index("subtitle") < len(kinds) - 1 - kinds[::-1].index("video")


def test_mkv_to_mp4_keeps_audio_and_reports_the_subtitle(tmp_path: Path) -> None:
    src = make_rich_mkv(tmp_path / "in.mkv")
    out = tmp_path / "out.mp4"
    writer = copy_through(src, out)
    assert writer.warnings == ["subtitle stream 3 (srt, eng) cannot be stored in .mp4; left out"]
    assert [s[0] for s in _streams(out)] == ["video", "audio", "audio"]
    assert [s[2] for s in _streams(out)[1:]] == ["eng", "fra"]
    assert packets_of(out, "audio", 1) == packets_of(src, "audio", 1)
    with av.open(str(out)) as container:
        assert container.metadata.get("title") == "A rich test clip"
        assert [c["metadata"]["title"] for c in container.chapters()] == ["Opening", "Ending"]


def test_copy_subtitles_false_leaves_them_out_quietly(tmp_path: Path) -> None:
    src = make_rich_mkv(tmp_path / "in.mkv")
    for suffix in (".mkv", ".mp4"):
        out = tmp_path / f"out{suffix}"
        assert copy_through(src, out, copy_subtitles=False).warnings == []
        assert [s[0] for s in _streams(out)] == ["video", "audio", "audio"]


def test_copy_audio_false_leaves_the_audio_out(tmp_path: Path) -> None:
    src = make_rich_mkv(tmp_path / "in.mkv")
    out = tmp_path / "out.mkv"
    assert copy_through(src, out, copy_audio=False).warnings == []
    assert [s[0] for s in _streams(out)] == ["video", "subtitle"]
    assert packets_of(out, "subtitles") == [b"Hello", b"World"]


def test_the_partial_file_is_never_an_existing_file(tmp_path: Path) -> None:
    # An input named as the partial file once was (stem.skipsr-partial.ext) must survive a run.
    src = make_clip(tmp_path / "L.skipsr-partial.mp4", frames=6)
    before = src.read_bytes()
    out = tmp_path / "L.mp4"
    with writer_like(src, out, FAST, copy_audio_from=src) as writer:
        for frame in read_frames(src):
            writer.write(frame.rgb, frame.pts)
    assert src.read_bytes() == before and probe(out).frame_count == 6
    temps = {partial_path(out) for _ in range(20)}
    assert len(temps) == 20 and all(t.exists() and t.parent == tmp_path for t in temps)
    assert all(t.name.startswith(".L.") and t.suffix == ".mp4" for t in temps)


def test_a_folder_that_refuses_files_fails_when_the_writer_opens(tmp_path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("skipsr_cli.media.video_writer.os.open", refuse)
    with pytest.raises(OutputError, match="cannot write .*Permission denied"):
        partial_path(tmp_path / "out.mp4")


def test_attachments_are_kept_in_mkv_and_other_videos_are_named(tmp_path: Path) -> None:
    src = tmp_path / "multi.mkv"
    with av.open(str(src), "w") as out:
        main, other = out.add_stream("libx264", rate=25), out.add_stream("libx264", rate=25)
        for stream, side in ((main, 64), (other, 32)):
            stream.width = stream.height = side
            stream.pix_fmt = "yuv420p"
        out.add_attachment("font.ttf", "font/ttf", b"glyphs" * 20)
        for i in range(4):
            for stream, side in ((main, 64), (other, 32)):
                frame = av.VideoFrame.from_ndarray(
                    np.full((side, side, 3), 40 * i, np.uint8), format="rgb24"
                )
                frame.pts = i
                out.mux(stream.encode(frame))
        for stream in (main, other):
            out.mux(stream.encode())
    mkv = copy_through(src, tmp_path / "out.mkv")
    with av.open(str(tmp_path / "out.mkv")) as back:
        kept = [s for s in back.streams if s.type == "attachment"]
        assert [(s.name, s.mimetype, bytes(s.data)) for s in kept] == [
            ("font.ttf", "font/ttf", b"glyphs" * 20)
        ]
        assert len(back.streams.video) == 1 and back.streams.video[0].width == 64
    assert mkv.warnings == ["video stream 1 (h264) is another video, not upscaled; left out"]
    mp4 = copy_through(src, tmp_path / "out.mp4")
    assert "attachment stream 2 (font.ttf) cannot be stored in .mp4; left out" in mp4.warnings


def checked_dts(path: Path, stamps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    writer = VideoWriter(path, width=64, height=48, rate=Fraction(24), time_base=None, options=FAST)
    out = []
    for pts, dts in stamps:
        packet = av.Packet(b"")
        packet.pts, packet.dts = pts, dts
        writer._check_dts(packet)
        out.append((packet.pts, packet.dts))
    writer.abort()
    return out


def test_decode_timestamps_an_encoder_left_unset_are_replaced(tmp_path: Path) -> None:
    # libx265 leaves the dts uninitialised on two-frame streams: the pts plus a garbage offset, far
    # after the pts (the muxer refused those with EINVAL) or far before it (written as they were).
    out = tmp_path / "out.mkv"
    garbage = 281474976907252
    assert checked_dts(out, [(0, garbage), (1, garbage + 1)]) == [(0, 0), (1, 1)]
    assert checked_dts(out, [(0, -(2**62)), (1, 1 - 2**62)]) == [(0, 0), (1, 1)]
    reordered = [(0, -2), (4, -1), (2, 0), (1, 1), (3, 2), (5, 3)]  # what x265 gives 6 frames
    assert checked_dts(out, reordered) == reordered
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_damaged_audio_packets_are_skipped_in_reencoding_and_named(tmp_path: Path) -> None:
    good = make_clip(tmp_path / "good.mp4", frames=24)
    src = tmp_path / "damaged.mkv"
    rng = np.random.default_rng(0)
    with av.open(str(good)) as inp, av.open(str(src), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        audio_seen = 0
        for packet in inp.demux():
            if not packet.size:
                continue
            target = streams[packet.stream_index]
            if packet.stream.type == "audio":
                audio_seen += 1
                if audio_seen in (5, 6, 7):  # noise where three AAC frames were
                    noisy = av.Packet(rng.integers(0, 256, packet.size, np.uint8).tobytes())
                    noisy.pts, noisy.dts, noisy.time_base = packet.pts, packet.dts, packet.time_base
                    packet = noisy
            packet.stream = target
            out.mux(packet)
    out = tmp_path / "out.webm"
    writer = copy_through(src, out, options=EncodeOptions(codec="libvpx-vp9"))
    assert writer.warnings[0].endswith("re-encoded to Opus at 64 kb/s")
    assert writer.warnings[1:] == [
        "audio stream 1 (aac): 3 undecodable packets skipped in re-encoding"
    ]
    assert probe(out).audio_streams == 1 and sum(1 for _ in read_frames(out)) == 24


def test_a_long_pause_in_a_variable_rate_stream_keeps_the_encoders_reordering(
    tmp_path: Path,
) -> None:
    # x264 medium reorders B-frames: across a 100 s pause a valid dts lies far behind its pts
    out = tmp_path / "out.mp4"
    stamps = [*range(6), *range(2400, 2412)]  # in 1/24 s
    opts = EncodeOptions(preset="medium")
    with VideoWriter(
        out, width=64, height=48, rate=Fraction(24), time_base=Fraction(1, 24), options=opts
    ) as writer:
        for i, pts in enumerate(stamps):
            writer.write(np.full((48, 64, 3), (i * 37) % 256, np.uint8), pts)
    with av.open(str(out)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
        reordered = any(p.dts < p.pts for p in packets if p.pts)
        tb = container.streams.video[0].time_base
    assert reordered
    dts = [p.dts for p in packets]
    assert dts == sorted(set(dts)) and all(p.dts <= p.pts for p in packets)
    assert [round(f.pts * tb * 24) for f in read_frames(out)] == stamps


def _with_cover(tmp_path: Path) -> tuple[Path, bytes]:
    """A 12-frame mp4 with audio and a 32x32 JPEG cover (an attached picture), and the JPEG."""
    base = make_clip(tmp_path / "base.mp4", frames=12)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 32, 32, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
    jpeg = bytes(encoder.encode(picture.reformat(format="yuvj420p"))[0])
    src = tmp_path / "cover.mp4"
    with av.open(str(base)) as inp, av.open(str(src), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        cover = out.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(jpeg)
        packet.stream, packet.pts, packet.dts = cover, 0, 0
        out.mux(packet)
        for packet in inp.demux():
            if packet.size:
                packet.stream = streams[packet.stream_index]
                out.mux(packet)
    return src, jpeg


def _covers(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        pictures = [s for s in container.streams.video if s.disposition & 1024]
        return [bytes(p) for s in pictures for p in container.demux(s) if p.size]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_cover_art_stays_cover_art(tmp_path: Path, suffix: str) -> None:
    src, jpeg = _with_cover(tmp_path)
    out = tmp_path / f"out{suffix}"
    writer = copy_through(src, out)
    assert writer.warnings == []
    assert _covers(out) == [jpeg]  # mp4: the covr atom; mkv: an attachment players show
    assert sum(1 for _ in read_frames(out)) == 12 and probe(out).audio_streams == 1


def test_cover_art_a_container_cannot_hold_is_named(tmp_path: Path) -> None:
    src, _ = _with_cover(tmp_path)
    writer = copy_through(src, tmp_path / "out.mov")
    assert writer.warnings == [
        "video stream 2 (mjpeg) is cover art, which .mov cannot hold; left out"
    ]


def test_audio_bitrate_sets_the_reencoded_audios_rate(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=24)
    out = tmp_path / "out.webm"
    writer = copy_through(src, out, options=EncodeOptions(codec="libvpx-vp9"), audio_kbps=24)
    assert writer.warnings == [
        "audio stream 1 (aac, und) cannot be stored in .webm; re-encoded to Opus at 24 kb/s"
    ]
    default = tmp_path / "default.webm"
    copy_through(src, default, options=EncodeOptions(codec="libvpx-vp9"))
    # a tone at 24 kb/s takes fewer bytes than at the default 64
    assert 0 < sum(map(len, audio_packets(out))) < sum(map(len, audio_packets(default)))


def test_an_mkv_whose_audio_outlasts_its_video_announces_its_own_frames(tmp_path: Path) -> None:
    """FFmpeg gives each Matroska stream the whole file's duration (0.35 s here, the audio's);
    the video's own is its DURATION tag (0.249 s). Read from the file's, 6 frames announced 8,
    and a healthy file was called damaged (refused with --strict or split into parts)."""
    src = make_rich_mkv(tmp_path / "in.mkv", frames=6)
    info = probe(src)
    assert info.frame_count == 6 and not info.frames_exact


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("trim.mp4", ["-ss", "0.3", "-i", "SRC", "-c", "copy"]),  # an edit list hides 8 frames
        ("late.mkv", ["-itsoffset", "0.25", "-i", "SRC", "-c", "copy"]),  # starts at 0.25 s
    ],
)
def test_healthy_files_whose_counts_mislead_are_not_called_damaged(
    tmp_path, name, args, debug_model
) -> None:
    """An mp4 trimmed by stream copy counts the frames its edit list hides (decoded, never shown);
    an mkv whose video starts late tags where it ends, not how long it lasts. Read plainly, both
    announce more frames than they show, and a healthy file was refused with --strict, warned
    about, and never split into parts (every farm task failed with exit 3); a range to the end
    was called damaged too."""
    import subprocess

    from damage import ffmpeg_exe

    from skipsr_cli.farm.resume import split_frames
    from skipsr_cli.media.damage import DecodeDamage
    from skipsr_cli.run.pipeline import frames_lost

    ffmpeg = ffmpeg_exe()
    if ffmpeg is None:
        pytest.skip("no ffmpeg binary")
    source = make_clip(tmp_path / "src.mp4", frames=25, audio=False)
    path = tmp_path / name
    cmd = [ffmpeg, "-v", "error", *[str(source) if a == "SRC" else a for a in args], str(path)]
    subprocess.run(cmd, check=True)
    info, damage = probe(path), DecodeDamage()
    shown = len(list(read_frames(path, damage, strict=True)))
    assert 0 < shown <= 25 and (shown < 25) == (name == "trim.mp4")
    assert info.frame_count == shown and info.frames_exact == (name == "trim.mp4")
    assert frames_lost(info, shown, damage) == 0
    assert split_frames(path, info) == shown
    tail = api.upscale(path, tmp_path / "tail.mkv", model=debug_model, frames=f"{shown - 5}:")
    assert tail.frames == 5 and tail.frames_lost == 0 and not tail.warnings


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_an_mp4_chapter_track_is_the_chapters_not_a_stream_left_out(tmp_path: Path, ext) -> None:
    """mp4 keeps its chapter list in a text track that FFmpeg shows as a data stream: every
    output of such a source warned "data stream 1 ... left out", while its chapters were kept."""
    src = make_rich_mkv(tmp_path / "in.mkv")
    with_chapters = tmp_path / "in.mp4"
    copy_through(src, with_chapters)  # an mp4 with chapters, as FFmpeg's muxer writes them
    with av.open(str(with_chapters)) as container:
        assert any(s.type == "data" for s in container.streams)
    out = tmp_path / f"out.{ext}"
    writer = copy_through(with_chapters, out, copy_audio=False)
    assert not any("data stream" in w for w in writer.warnings), writer.warnings
    with av.open(str(out)) as container:
        assert [c["metadata"]["title"] for c in container.chapters()] == ["Opening", "Ending"]
