"""Damaged input: every frame that can be decoded is upscaled, and the loss is said, never silent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest
from damage import (
    cut_at,
    faststart,
    ffmpeg_exe,
    ffmpeg_frames,
    lavfi_clip,
    make_source,
    transport_packets,
    truncated,
)

import skipsr_cli
from skipsr_cli.errors import InputError
from skipsr_cli.media.damage import DecodeDamage
from skipsr_cli.media.video_io import probe, read_frames

DEBUG = ["--model", "debug", "--random-weights"]
FAST = dict(chunk_frames=8, overlap=2, preset="ultrafast")


def seconds(path: Path) -> list[float]:
    """Presentation times of the video frames, in seconds."""
    with av.open(str(path)) as c:
        return [round(float(f.time), 3) for f in c.decode(video=0)]


@pytest.mark.parametrize(("ext", "fraction"), [("mp4", 0.5), ("mp4", 0.9), ("mkv", 0.5)])
def test_a_file_cut_short_gives_what_ffmpeg_decodes_and_says_what_was_lost(
    debug_model, tmp_path: Path, ext: str, fraction: float
) -> None:
    cut = truncated(make_source(tmp_path, ext, frames=20), tmp_path / f"cut.{ext}", fraction)
    out = tmp_path / "out.mkv"
    summary = skipsr_cli.upscale(cut, out, model=debug_model, **FAST)
    reference = ffmpeg_frames(cut)
    if reference is not None:
        assert summary.frames >= reference  # at least what the ffmpeg command line decodes
    assert 0 < summary.frames < 20
    assert summary.frames_lost == 20 - summary.frames
    assert summary.warnings[0].startswith(f"damaged input: {summary.frames_lost} frame(s)")
    base = probe(cut).time_base
    decoded = [
        round(float(f.pts * base), 3) for f in read_frames(cut, DecodeDamage(), strict=False)
    ]
    assert seconds(out) == decoded  # the decoded frames, at their own timestamps


def test_strict_refuses_damage_and_leaves_nothing(debug_model, tmp_path: Path) -> None:
    cut = truncated(make_source(tmp_path, "mp4", frames=20), tmp_path / "cut.mp4", 0.5)
    with pytest.raises(InputError, match="damaged input"):
        skipsr_cli.upscale(cut, tmp_path / "out.mp4", model=debug_model, strict=True, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4", "src.mp4"]


def test_the_command_warns_reports_and_with_strict_exits_3(tmp_path: Path) -> None:
    cut = truncated(make_source(tmp_path, "mkv", frames=20), tmp_path / "cut.mkv", 0.5)
    exe = [sys.executable, "-m", "skipsr_cli.cli", "upscale", str(cut)]
    r = subprocess.run(
        [*exe, str(tmp_path / "out.mp4"), *DEBUG, "--preset", "ultrafast", "-q", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("skipsr: warning: damaged input:")
    report = json.loads(r.stdout)
    assert report["frames_lost"] == 20 - report["frames"] > 0
    r = subprocess.run(
        [*exe, str(tmp_path / "strict.mp4"), *DEBUG, "-q", "--strict"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 3 and r.stderr.startswith("skipsr: error: damaged input")
    assert r.stderr.count("\n") == 1
    assert not list(tmp_path.glob("*strict*"))


def test_a_variable_frame_rate_mkv_is_not_damage_and_splits(debug_model, tmp_path: Path) -> None:
    """A healthy VFR Matroska file holds fewer frames than its duration times its nominal rate,
    the count Matroska's estimate gives: it was called damaged (exit 3 with --strict), and
    farm tasks refused to split it. Its frames reach its stated end, which a cut file's do not."""
    from skipsr_cli.farm.resume import split_frames

    vfr = lavfi_clip(
        tmp_path / "vfr.mkv",
        *("-vf", r"select=not(eq(mod(n\,7)\,3))", "-fps_mode", "vfr", "-t", "3"),
        *("-g", "10"),  # a keyframe every 10 frames: after a hole, the decode picks up again
        *("-c:v", "libx264", "-preset", "ultrafast"),
    )
    shown = len(seconds(vfr))
    info = probe(vfr)
    assert not info.frames_exact and info.frame_count - shown > 2  # the estimate overshoots
    summary = skipsr_cli.upscale(vfr, tmp_path / "out.mkv", model=debug_model, strict=True, **FAST)
    assert (summary.frames, summary.frames_lost, summary.warnings) == (shown, 0, ())
    assert split_frames(vfr, info) == shown
    # a range to the end reaches it too (farms' frame-range chunks)
    tail = skipsr_cli.upscale(
        vfr, tmp_path / "tail.mkv", model=debug_model, strict=True, frames=(40, 90), **FAST
    )
    assert (tail.frames, tail.frames_lost) == (shown - 40, 0)
    cut = truncated(vfr, tmp_path / "cut.mkv", 0.6)
    assert split_frames(cut, probe(cut)) is None  # a file cut short still runs in one piece
    with pytest.raises(InputError, match="damaged input"):
        skipsr_cli.upscale(cut, tmp_path / "cut_out.mkv", model=debug_model, strict=True, **FAST)
    # bytes lost from the middle keep the timestamps after them: the frames reach the end, but
    # pause where the hole is, which is damage
    data = vfr.read_bytes()
    holed = tmp_path / "hole.mkv"
    holed.write_bytes(data[: len(data) * 3 // 10] + data[len(data) * 6 // 10 :])
    assert split_frames(holed, probe(holed)) is None
    with pytest.raises(InputError, match="damaged input"):
        skipsr_cli.upscale(holed, tmp_path / "hole_out.mkv", model=debug_model, strict=True, **FAST)


def test_a_ts_cut_inside_a_picture_is_damage(debug_model, tmp_path: Path) -> None:
    """MPEG-TS counts no frames, and its demuxer drops a last transport packet cut short without
    a word: a `.ts` cut inside a picture passed --strict, where an mp4 or mkv cut so is refused.
    Cut in the first packet of a picture, that picture is lost with it; cut in a later one, the
    picture is cut short (the decoder conceals the rest, and flags it, or not: HEVC mostly does
    not). Both are damage now. Cut where a packet ends between two pictures, the file is a shorter
    whole one to every reader (the ffmpeg command included): no verdict is made there."""
    src = make_source(tmp_path, "ts", frames=30, audio=True)
    clean = skipsr_cli.upscale(src, tmp_path / "src.mkv", model=debug_model, strict=True, **FAST)
    assert (clean.frames, clean.frames_lost, clean.warnings) == (30, 0, ())
    with av.open(str(src)) as c:
        video = c.streams.video[0].id
    packets = list(enumerate(transport_packets(src)))[len(transport_packets(src)) // 2 :]
    first = next(i for i, packet in packets if packet == (video, True))
    later = next(i for i, packet in packets if packet == (video, False))
    for name, size in (("first", first * 188 + 100), ("later", later * 188 + 100)):
        cut = cut_at(src, tmp_path / f"{name}.ts", size)
        summary = skipsr_cli.upscale(cut, tmp_path / f"{name}.mkv", model=debug_model, **FAST)
        assert 0 < summary.frames < 30 and summary.frames_lost == 1, name
        assert summary.warnings[0].startswith("damaged input: 1 frame(s)"), name
        with pytest.raises(InputError, match="damaged input"):
            skipsr_cli.upscale(
                cut, tmp_path / f"s{name}.mkv", model=debug_model, strict=True, **FAST
            )
    between = cut_at(src, tmp_path / "between.ts", first * 188)
    summary = skipsr_cli.upscale(
        between, tmp_path / "b.mkv", model=debug_model, strict=True, **FAST
    )
    assert (summary.frames_lost, summary.frames) == (0, ffmpeg_frames(between) or summary.frames)


@pytest.mark.parametrize("fraction", [0.85, 0.95])
def test_frames_the_decoders_frame_threads_drop_are_decoded_again(
    debug_model, tmp_path: Path, fraction: float
) -> None:
    """Cut short inside its last frames, an x264 file lost two frames more than the ffmpeg
    command decodes, with no error said: FFmpeg's frame threads drop the frames in flight at the
    damaged packet. The tail is decoded again with slice threads, which lose only that one."""
    src = lavfi_clip(
        tmp_path / "src.mp4", "-frames:v", "30", "-c:v", "libx264", "-movflags", "+faststart"
    )
    cut = truncated(src, tmp_path / "cut.mp4", fraction)
    reference = ffmpeg_frames(cut)
    summary = skipsr_cli.upscale(cut, tmp_path / "out.mkv", model=debug_model, **FAST)
    assert reference is not None and 0 < reference <= summary.frames < 30
    assert summary.frames_lost == 30 - summary.frames
    assert [f.index for f in read_frames(cut, strict=False)] == list(range(summary.frames))


def test_an_open_gop_cut_at_its_keyframe_is_not_damage(debug_model, tmp_path: Path) -> None:
    """`ffmpeg -ss T -i in.mp4 -c copy` of an HEVC file with open GOPs starts on a CRA keyframe
    whose leading (RASL) pictures refer to frames before the cut: the decoder drops them without
    an error, as the ffmpeg command does, but the mp4 counts them among the samples its edit list
    shows. The file announced 3 frames more than it shows: it was warned about, refused with
    --strict, and split into parts counted on frames that never decode (its second part began
    two frames early, and the stitch timed the frames by the dropped pictures' timestamps). Cut
    short, it is still damage."""
    from skipsr_cli.farm.resume import split_frames
    from skipsr_cli.media.joiner import source_timestamps

    exe = ffmpeg_exe()
    src = x265_clip(tmp_path / "src.mp4", "open-gop=1")
    cut = tmp_path / "cut.mp4"  # from the CRA of frame 30, its three RASL pictures inside the edit
    subprocess.run([exe, "-v", "error", "-ss", "0.9", "-i", src, "-c", "copy", cut], check=True)
    with av.open(str(cut)) as c:
        samples = sum(1 for p in c.demux(video=0) if p.size and not p.is_discard)
    shown = ffmpeg_frames(cut)
    assert samples - shown == 3

    info, frames = probe(cut), list(read_frames(cut))
    assert (info.frame_count, len(frames), info.frames_exact) == (shown, shown, True)
    stamps, base = source_timestamps(cut)  # what a split counts and a stitch times frames by
    assert stamps == [f.pts for f in frames] and split_frames(cut, info) == shown
    for start in (1, shown // 2):
        assert [f.pts for f in read_frames(cut, start=start)] == stamps[start:]

    whole = tmp_path / "whole.mkv"
    summary = skipsr_cli.upscale(cut, whole, model=debug_model, strict=True, **FAST)
    assert (summary.frames, summary.frames_lost, summary.warnings) == (shown, 0, ())
    assert seconds(whole) == [round(float(t * base), 3) for t in stamps]
    parts = tmp_path / "parts.mkv"
    for i in (1, 2):
        skipsr_cli.upscale(cut, parts, model=debug_model, segment=f"{i}/2", strict=True, **FAST)
    assert skipsr_cli.stitch(parts) == shown
    assert seconds(parts) == seconds(whole)

    short = truncated(faststart(cut, tmp_path / "fast.mp4"), tmp_path / "short.mp4", 0.95)
    assert probe(short).frame_count == shown
    with pytest.raises(InputError, match="damaged input"):
        skipsr_cli.upscale(short, tmp_path / "short.mkv", model=debug_model, strict=True, **FAST)


def test_a_gop_lost_after_a_first_packet_flagged_key_is_still_damage(
    debug_model, tmp_path: Path
) -> None:
    """The open-GOP floor holds only where the first packet's own picture is the first shown. A
    file whose first packet is flagged key but is a P picture (a cut mid-GOP by a muxer that marks
    every sample sync) shows nothing until the next IDR: the GOP is lost, not leading pictures of
    a CRA. Its packets before that IDR were taken for hidden ones: probe announced the 30 frames
    that decode, and --strict passed a file missing 28."""
    src = x265_clip(tmp_path / "src.mp4")
    cut = tmp_path / "cut.mp4"
    with av.open(str(src)) as inp, av.open(str(cut), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        packets = [p for p in inp.demux(video=0) if p.size]
        first = next(i for i, p in enumerate(packets) if not p.is_keyframe)  # a P picture
        packets[first].is_keyframe = True
        for packet in packets[first:]:
            packet.stream = stream
            out.mux(packet)
    with av.open(str(cut)) as c:  # what its edit list shows
        announced = sum(1 for p in c.demux(video=0) if p.size and not p.is_discard)
    shown = ffmpeg_frames(cut)
    assert shown == 30 and probe(cut).frame_count == announced > shown
    summary = skipsr_cli.upscale(cut, tmp_path / "out.mkv", model=debug_model, **FAST)
    assert (summary.frames, summary.frames_lost) == (shown, announced - shown)
    with pytest.raises(InputError, match="damaged input"):
        skipsr_cli.upscale(cut, tmp_path / "strict.mkv", model=debug_model, strict=True, **FAST)


def x265_clip(path: Path, *params: str) -> Path:
    """60 frames of HEVC in GOPs of 30 with B-frames (and x265's `params`); skips the test where
    this ffmpeg has no libx265."""
    exe = ffmpeg_exe()
    encoders = subprocess.run([exe, "-v", "quiet", "-encoders"], capture_output=True, text=True)
    if "libx265" not in encoders.stdout:
        pytest.skip("no libx265 in this ffmpeg")
    x265 = ":".join((*params, "keyint=30:min-keyint=30:bframes=4:scenecut=0:log-level=error"))
    return lavfi_clip(path, "-frames:v", "60", "-c:v", "libx265", "-x265-params", x265)
