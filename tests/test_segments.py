"""Segments and stitch: parts of one video, rendered apart, join into exactly a whole run."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from damage import lavfi_clip
from media import make_clip

from skipsr_cli import api
from skipsr_cli.errors import InputError, OutputError, UsageError
from skipsr_cli.farm.segments import Segment, parse_segment, read_manifests
from skipsr_cli.run import pipeline
from skipsr_cli.run.progress import Advanced, Started, Summary

RUN = dict(chunk_frames=8, overlap=2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("src") / "in.mp4", frames=23, audio=True)


@pytest.fixture(scope="module")
def debug():
    return api.load_model("debug", random_weights=True, device="cpu")


def decoded(path: Path) -> tuple[list[np.ndarray], list[float], int]:
    """Frames, their times, and the number of audio streams."""
    with av.open(str(path)) as f:
        frames = [(fr.to_ndarray(format="rgb24"), fr.time) for fr in f.decode(video=0)]
        audio = len(f.streams.audio)
    return [a for a, _ in frames], [t for _, t in frames], audio


def test_parse_segment_from_text_and_from_farms():
    assert parse_segment("2/4") == Segment(2, 4)
    for bad in ("0/3", "5/4", "x", "3"):
        with pytest.raises(UsageError, match="--segment"):
            parse_segment(bad)
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "8"}
    assert parse_segment("auto", env=slurm) == Segment(3, 4)
    assert parse_segment(
        "auto",
        env={
            "SLURM_ARRAY_TASK_ID": "0",
            "SLURM_ARRAY_TASK_MIN": "0",
            "SLURM_ARRAY_TASK_COUNT": "2",
        },
    ) == Segment(1, 2)
    # --array=0-30:2 (16 tasks): task 2 is the second part, whatever --segments adds
    stepped = {
        "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_TASK_MAX": "30",
        "SLURM_ARRAY_TASK_STEP": "2",
    }
    stepped["SLURM_ARRAY_TASK_COUNT"] = "16"
    for task, part in (("0", 1), ("2", 2), ("30", 16)):
        env = {**stepped, "SLURM_ARRAY_TASK_ID": task}
        assert parse_segment("auto", env=env) == parse_segment("auto", 16, env) == Segment(part, 16)
    # what does not say which part a task is, refused rather than guessed: a part sent again as
    # an array of its own (--array=7), a list (--array=1,5,9), a task off the array's step
    alone = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "7", "SLURM_ARRAY_TASK_MAX": "7"}
    listed = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "9"}
    listed["SLURM_ARRAY_TASK_COUNT"] = "3"
    for env, why in ((alone, "holds one task"), (listed, "not on a SLURM array range"), (
        {**stepped, "SLURM_ARRAY_TASK_ID": "3"}, "not on a SLURM array range"
    ), ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MAX": "9"}, "without SLURM_ARRAY_TASK_MIN")):  # fmt: skip
        with pytest.raises(UsageError, match=why):
            parse_segment("auto", 16, env)
    # N = 1 (the whole video on the one task) only when --segments 1 says so
    assert parse_segment("auto", 1, {**alone, "SLURM_ARRAY_TASK_COUNT": "1"}) == Segment(1, 1)
    with pytest.raises(UsageError, match="holds one task"):
        parse_segment("auto", env={**alone, "SLURM_ARRAY_TASK_COUNT": "1"})
    # --segments that disagrees with the array: its tasks past N would fail, the stitch never run
    sixteen = {
        "SLURM_ARRAY_TASK_ID": "3",
        "SLURM_ARRAY_TASK_MIN": "1",
        "SLURM_ARRAY_TASK_MAX": "16",
    }
    with pytest.raises(UsageError, match="--segments 8 disagrees with SLURM's array of 16 tasks"):
        parse_segment("auto", 8, sixteen)
    assert parse_segment("auto", 3, env={"JOB_COMPLETION_INDEX": "0"}) == Segment(1, 3)
    assert parse_segment("auto", 5, env={"AWS_BATCH_JOB_ARRAY_INDEX": "4"}) == Segment(5, 5)
    with pytest.raises(UsageError, match="--segments N"):
        parse_segment("auto", env={"JOB_COMPLETION_INDEX": "1"})
    with pytest.raises(UsageError, match="no array index"):
        parse_segment("auto", 3, env={})
    # an index past the array is named as the scheduler set it, not as a part I/N nobody typed;
    # a task counted with neither MAX nor COUNT said prints no None
    for name in ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"):
        with pytest.raises(UsageError, match=rf"{name}=16 is outside the array of 16 parts"):
            parse_segment("auto", 16, env={name: "16"})
    for task, array in (("0", r"1-4 \(4 tasks\)"), ("9", r"1-7:2 \(4 tasks\)")):
        env = {"SLURM_ARRAY_TASK_ID": task, "SLURM_ARRAY_TASK_MIN": "1"}
        env["SLURM_ARRAY_TASK_MAX"] = "4" if task == "0" else "7"
        env["SLURM_ARRAY_TASK_STEP"] = "1" if task == "0" else "2"
        with pytest.raises(UsageError, match=rf"_ID={task} is outside its array {array}"):
            parse_segment("auto", 4, env)
    counted = {k: v for k, v in stepped.items() if k != "SLURM_ARRAY_TASK_MAX"}
    with pytest.raises(UsageError, match=r"\(min 0, step 2, 16 tasks\)") as said:
        parse_segment("auto", 16, env={**counted, "SLURM_ARRAY_TASK_ID": "3"})
    assert "None" not in str(said.value)


def test_parts_tile_the_video():
    for total, count in ((23, 4), (5, 5), (100, 7)):
        ranges = [Segment(i, count).frames(total) for i in range(1, count + 1)]
        assert ranges[0][0] == 0 and ranges[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def render_parts(clip: Path, out: Path, model, count: int, plan=RUN, **options) -> None:
    for i in reversed(range(1, count + 1)):  # in any order, as a farm finishes them
        api.upscale(clip, out, model=model, segment=f"{i}/{count}", **plan, **options)


# cross-faded chunks of 8, and the default plan (chunks of 16, two parts inside the first)
@pytest.mark.parametrize("plan", [RUN, {}], ids=["8-2", "default"])
def test_lossless_parts_stitch_into_the_whole_run_bit_for_bit(clip, debug, tmp_path, plan):
    api.upscale(clip, tmp_path / "whole.mkv", model=debug, lossless=True, **plan)
    render_parts(clip, tmp_path / "out.mkv", debug, 3, plan=plan, lossless=True)
    assert api.stitch(tmp_path / "out.mkv") == 23
    whole, stitched = decoded(tmp_path / "whole.mkv"), decoded(tmp_path / "out.mkv")
    assert len(stitched[0]) == 23
    assert all(np.array_equal(a, b) for a, b in zip(whole[0], stitched[0], strict=True))
    assert stitched[1] == pytest.approx(whole[1]) and stitched[2] == whole[2] == 1


def test_an_avi_with_b_frames_stitches_into_the_whole_run(debug, tmp_path):
    """An AVI times H.264 B-frames' packets in decode order (seeking.decode_ordered): the parts
    begin at the frames a whole run numbers so, and the stitch times them as the whole run."""
    src = make_clip(tmp_path / "in.avi", frames=23, audio=True, options={"bf": "3"})
    api.upscale(src, tmp_path / "whole.mkv", model=debug, lossless=True, **RUN)
    render_parts(src, tmp_path / "out.mkv", debug, 3, lossless=True)
    assert api.stitch(tmp_path / "out.mkv") == 23
    whole, stitched = decoded(tmp_path / "whole.mkv"), decoded(tmp_path / "out.mkv")
    assert all(np.array_equal(a, b) for a, b in zip(whole[0], stitched[0], strict=True))
    assert stitched[1] == pytest.approx(whole[1]) and stitched[2] == whole[2] == 1


def video_timing(path: Path) -> tuple[object, float]:
    """The video stream's frame rate as written, and when its last frame ends, in seconds."""
    with av.open(str(path)) as f:
        stream = f.streams.video[0]
        ends = [(p.pts + p.duration) * p.time_base for p in f.demux(stream) if p.size]
        return stream.average_rate, float(max(ends))


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_x264_parts_join_with_the_timing_and_audio_of_a_whole_run(clip, debug, tmp_path, ext):
    whole_path, out = tmp_path / f"whole{ext}", tmp_path / f"out{ext}"
    api.upscale(clip, whole_path, model=debug, **RUN)
    render_parts(clip, out, debug, 3)
    api.stitch(out)
    whole, stitched = decoded(whole_path), decoded(out)
    assert len(stitched[0]) == len(whole[0]) == 23  # every frame decodes, none lost at a join
    assert stitched[1] == pytest.approx(whole[1]) and stitched[2] == 1
    # the last frame lasts as long (an mp4 keeps its duration as given) and the rate is the
    # same (Matroska writes its default duration from it)
    assert video_timing(out) == video_timing(whole_path)
    with av.open(str(out)) as f, av.open(str(whole_path)) as g:
        assert f.streams.audio[0].duration == g.streams.audio[0].duration


def packets(path: Path) -> tuple[object, list[list[tuple[int, int, int]]]]:
    """The file's start, and each stream's (pts, dts, duration) in the order they are stored."""
    with av.open(str(path)) as f:
        kept: list[list[tuple[int, int, int]]] = [[] for _ in f.streams]
        for p in f.demux():
            if p.size:
                kept[p.stream.index].append((p.pts, p.dts, p.duration))
        return f.start_time, kept


@pytest.mark.parametrize(
    ("source", "ext"), [("mp4 24", ".ts"), ("mkv 30000/1001", ".ts"), ("mkv 30000/1001", ".mov")]
)
def test_stitched_packets_have_the_times_of_a_whole_run(clip, debug, tmp_path, source, ext):
    # MPEG-TS moves every stream so the first decode time is 0: the pieces' decode times must
    # begin as far back as a whole run's (x264's declared depth, not the pieces' own reordering).
    # A 1 ms clock (Matroska) becomes mov's 1/16000: the last frame's duration must be the
    # muxer's, as in a whole run, not one rounded on the source's clock.
    if source != "mp4 24":
        clip = make_clip(tmp_path / "in.mkv", frames=23, rate=Fraction(30000, 1001))
    whole_path, out = tmp_path / f"whole{ext}", tmp_path / f"out{ext}"
    api.upscale(clip, whole_path, model=debug, **RUN)
    render_parts(clip, out, debug, 3)
    api.stitch(out)
    (start, stitched), (whole_start, whole) = packets(out), packets(whole_path)
    assert start == whole_start
    assert [len(s) for s in stitched] == [len(s) for s in whole]
    for mine, theirs in zip(stitched, whole, strict=True):
        assert sorted(p[0] for p in mine) == sorted(p[0] for p in theirs)  # every pts
        # decode times and durations as stored (a part's B-frames lie elsewhere than a whole
        # run's, so a pts may have another frame's place in decode order)
        assert [p[1:] for p in mine] == [p[1:] for p in theirs]


def test_a_variable_frame_rate_stitch_keeps_the_durations_of_a_whole_run(debug, tmp_path):
    # Matroska: a frame before a pause lasts a frame at the rate in a whole run (as in the
    # source), not until the next frame
    pause = "setpts='PTS+gte(N,10)*0.12/TB+gte(N,17)*0.08/TB'"
    clip = lavfi_clip(tmp_path / "vfr.mkv", "-frames:v", "24", "-vf", pause, "-c:v", "libx264")
    whole_path, out = tmp_path / "whole.mkv", tmp_path / "out.mkv"
    api.upscale(clip, whole_path, model=debug, **RUN)
    render_parts(clip, out, debug, 3)
    api.stitch(out)
    (_, stitched), (_, whole) = packets(out), packets(whole_path)
    times = [sorted((p[0], p[2]) for p in kept[0]) for kept in (stitched, whole, packets(clip)[1])]
    assert times[0] == times[1] and len(times[0]) == 24
    assert [d for _, d in times[0]] == [d for _, d in times[2]]  # the source's own


def codec_of(path: Path) -> str:
    with av.open(str(path)) as f:
        return f.streams.video[0].codec_context.name


# parts are Matroska files, but encoded as the output's container wants: webm takes VP9 (never
# x264, which it cannot hold), and a lossless mp4 x264 at qp 0 (not Matroska's FFV1)
@pytest.mark.parametrize(("name", "options", "codec"), [
    ("out.webm", {}, "vp9"), ("out.mp4", {"lossless": True}, "h264"),
    # AV1 parts decode with libdav1d, an encoder of which name there is none: copied as they are
    ("out.mkv", {"codec": "libsvtav1"}, "libdav1d"),
])  # fmt: skip
def test_parts_take_the_encoder_of_the_output_container(
    clip, debug, tmp_path, name, options, codec
):
    api.upscale(clip, tmp_path / f"whole{Path(name).suffix}", model=debug, **RUN, **options)
    render_parts(clip, tmp_path / name, debug, 2, **options)
    assert api.stitch(tmp_path / name) == 23
    assert codec_of(tmp_path / name) == codec_of(tmp_path / f"whole{Path(name).suffix}") == codec
    whole, stitched = decoded(tmp_path / f"whole{Path(name).suffix}"), decoded(tmp_path / name)
    assert len(stitched[0]) == 23 and stitched[2] == 1
    if options.get("lossless"):
        assert all(np.array_equal(a, b) for a, b in zip(whole[0], stitched[0], strict=True))


def test_stitch_refuses_a_missing_or_foreign_part(clip, debug, tmp_path):
    out = tmp_path / "out.mkv"
    api.upscale(clip, out, model=debug, segment="1/2", **RUN)
    with pytest.raises(InputError, match="part-00002-of-00002"):
        api.stitch(out)
    api.upscale(clip, out, model=debug, segment="2/2", crf=30, **RUN)
    with pytest.raises(InputError, match="settings"):
        api.stitch(out)
    assert not out.exists()


def test_a_part_run_again_is_kept_when_done_and_rendered_again_when_not(clip, debug, tmp_path):
    """A farm task sent again (a requeued array) keeps its finished part; other options, a part
    cut short or changed, or --overwrite render it again."""
    out = tmp_path / "out.mkv"
    part = tmp_path / "out.mkv.parts" / "part-00001-of-00002.mkv"
    first = api.upscale(clip, out, model=debug, segment="1/2", **RUN)
    written = part.stat().st_mtime_ns
    again = api.upscale(clip, out, model=debug, segment="1/2", **RUN)
    assert again.status == "kept" and again.frames == first.frames == 11
    assert again.denoise == first.denoise is not None  # was None: the amount of the kept part
    assert part.stat().st_mtime_ns == written
    forced = api.upscale(clip, out, model=debug, segment="1/2", overwrite=True, **RUN)
    assert forced.status == "ok" and part.stat().st_mtime_ns != written
    part.write_bytes(part.read_bytes()[:-100])  # cut short since: rendered again
    assert api.upscale(clip, out, model=debug, segment="1/2", **RUN).status == "ok"
    damaged = bytearray(part.read_bytes())  # the same size, one byte changed: rendered again
    damaged[len(damaged) // 2] ^= 0xFF
    part.write_bytes(bytes(damaged))
    assert api.upscale(clip, out, model=debug, segment="1/2", **RUN).status == "ok"
    other = api.upscale(clip, out, model=debug, segment="1/2", crf=30, **RUN)
    assert other.status == "ok"
    # a manifest without the encoder (an older version's parts, which took Matroska's) is redone
    manifest = part.with_suffix(".json")
    record = json.loads(manifest.read_text())
    assert api.upscale(clip, out, model=debug, segment="1/2", crf=30, **RUN).status == "kept"
    del record["encoder"]
    manifest.write_text(json.dumps(record))
    assert api.upscale(clip, out, model=debug, segment="1/2", crf=30, **RUN).status == "ok"
    # one without the part's size or hash (changed by hand, or made before they were recorded)
    # is rendered again: nothing says the part is as it was written
    for key in ("bytes", "sha256"):
        record = json.loads(manifest.read_text())
        del record[key]
        manifest.write_text(json.dumps(record))
        assert api.upscale(clip, out, model=debug, segment="1/2", crf=30, **RUN).status == "ok"
    # an input rewritten since (its modification time moved; frames of a fixed size changed in
    # the middle keep its size, head and tail): rendered again
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert api.upscale(clip, out, model=debug, segment="1/2", crf=30, **RUN).status == "ok"
    finally:
        os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_part_refuses_what_it_cannot_carry_and_does_not_warn_of_its_audio(clip, debug, tmp_path):
    out = tmp_path / "out.mkv"
    for extra in (dict(frames="0:10"), dict(mask_out=tmp_path / "mask.mkv")):
        with pytest.raises(UsageError, match="not with --frames or --mask-out"):
            api.upscale(clip, out, model=debug, segment="1/2", **extra, **RUN)
    # more parts than frames: refused in every task, also in those that would have frames
    with pytest.raises(UsageError, match="23 frames, fewer than 24 parts"):
        api.upscale(clip, out, model=debug, segment="1/24", **RUN)
    assert not (tmp_path / "out.mkv.parts").exists()
    # the stitch adds the source's audio: a part says nothing of leaving it out
    assert api.upscale(clip, out, model=debug, segment="1/2", **RUN).warnings == ()
    whole_range = api.upscale(clip, tmp_path / "range.mkv", model=debug, frames="0:5", **RUN)
    assert any("video only" in w for w in whole_range.warnings)  # a plain range still says so


def test_the_stitch_names_the_odd_part_not_the_first(clip, debug, tmp_path):
    out = tmp_path / "out.mkv"
    api.upscale(clip, out, model=debug, segment="1/3", crf=30, **RUN)
    for i in (2, 3):
        api.upscale(clip, out, model=debug, segment=f"{i}/3", **RUN)
    with pytest.raises(InputError, match=r"^part 1 .* differs from part 2 in settings \(crf 30"):
        api.stitch(out)


def test_stitch_takes_the_input_by_its_content_not_its_path(clip, debug, tmp_path):
    """Nodes that mount the storage at other paths make parts of the same file."""
    elsewhere = tmp_path / "mnt2" / "in.mp4"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(clip.read_bytes())
    out = tmp_path / "out.mkv"
    api.upscale(clip, out, model=debug, segment="1/2", **RUN)
    api.upscale(elsewhere, out, model=debug, segment="2/2", **RUN)
    assert api.stitch(out) == 23


def test_stitch_refuses_a_part_cut_short_or_replaced_naming_it(clip, debug, tmp_path):
    out = tmp_path / "out.mkv"
    render_parts(clip, out, debug, 2)
    folder = tmp_path / "out.mkv.parts"
    first, second = folder / "part-00001-of-00002.mkv", folder / "part-00002-of-00002.mkv"
    kept = second.read_bytes()
    second.write_bytes(kept[: len(kept) // 2])
    with pytest.raises(InputError, match=r"part 2 \(part-00002-of-00002.mkv\) is \d+ bytes"):
        api.stitch(out)
    second.write_bytes(first.read_bytes())  # the first part's file copied over the second's
    with pytest.raises(InputError, match="part 2 .*cut short or replaced"):
        api.stitch(out)
    damaged = bytearray(kept)  # the same size, one byte flipped in its middle
    damaged[len(kept) // 2] ^= 0xFF
    second.write_bytes(bytes(damaged))
    with pytest.raises(InputError, match=r"part 2 \(part-00002-of-00002.mkv\) is not the file"):
        api.stitch(out)
    assert not out.exists()
    second.write_bytes(kept)
    assert api.stitch(out) == 23
    # a manifest without the size or the hash (changed by hand, or made before they were
    # recorded) is refused by name: nothing says its part is as it was written
    manifest = folder / "part-00002-of-00002.json"
    for key in ("bytes", "sha256"):
        record = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({k: v for k, v in record.items() if k != key}))
        with pytest.raises(InputError, match=f"the manifest {manifest} is not one skipsr wrote"):
            api.stitch(out, overwrite=True)
        manifest.write_text(json.dumps(record))
    assert api.stitch(out, overwrite=True) == 23


def test_the_stitch_refuses_a_folder_of_two_splits_naming_them(clip, debug, tmp_path):
    """A complete older split beside an unfinished newer one: which the user means is not known,
    so the stitch does not pick the complete one (a run's own stitch knows its split)."""
    out = tmp_path / "out.mkv"
    render_parts(clip, out, debug, 2)
    api.upscale(clip, out, model=debug, segment="1/3", **RUN)  # a newer split, unfinished
    with pytest.raises(InputError, match="holds parts of splits into 2 and 3 parts: keep"):
        api.stitch(out)
    assert not out.exists()


@pytest.mark.parametrize("workers", [dict(devices="cpu,cpu"), dict(devices="cpu", workers=2)])
def test_two_workers_render_one_video_as_one_device_does(
    clip, debug, tmp_path, monkeypatch, workers
):
    """--devices cpu,cpu, or --devices cpu --workers 2: each of two worker processes renders
    segments; the stitch equals a whole run."""
    api.upscale(clip, tmp_path / "whole.mkv", model=debug, lossless=True, **RUN)
    spread, on_devices = [], api.upscale_on_devices
    monkeypatch.setattr(api, "upscale_on_devices", lambda *a: spread.append(a[3]) or on_devices(*a))
    summary = api.upscale(
        clip, tmp_path / "two.mkv", model="debug", random_weights=True, segments=3, lossless=True,
        **workers, **RUN,
    )  # fmt: skip
    assert summary.frames == 23 and spread == [[torch.device("cpu")] * 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.mkv", "whole.mkv"]  # no parts left
    whole, two = decoded(tmp_path / "whole.mkv"), decoded(tmp_path / "two.mkv")
    assert all(np.array_equal(a, b) for a, b in zip(whole[0], two[0], strict=True))
    assert two[1] == pytest.approx(whole[1]) and two[2] == 1


def test_several_workers_check_first_and_split_only_what_splits(clip, tmp_path, monkeypatch):
    """With several workers a run is checked as any run is before any work (an existing output
    without overwrite); what cannot be split runs as one worker (a one-frame clip, an image
    output); a frame range or a mask video with several workers is a usage error."""
    spread = []
    monkeypatch.setattr(api, "upscale_on_devices", lambda *a: spread.append(a) or 0)
    two = dict(model="debug", random_weights=True, devices="cpu", workers=2, **RUN)
    (tmp_path / "taken.mkv").write_bytes(b"mine")
    with pytest.raises(OutputError, match="output exists"):
        api.upscale(clip, tmp_path / "taken.mkv", **two)
    assert (tmp_path / "taken.mkv").read_bytes() == b"mine"
    for bad in (dict(frames=(0, 5)), dict(mask_out=tmp_path / "mask.mkv")):
        with pytest.raises(UsageError, match="not with several workers"):
            api.upscale(clip, tmp_path / "r.mkv", **bad, **two)
    one = make_clip(tmp_path / "one.mp4", frames=1, audio=False)
    assert api.upscale(one, tmp_path / "one_x2.mkv", **two).frames == 1
    assert api.upscale(clip, tmp_path / "f_%03d.png", **two).frames == 23
    assert spread == []  # none of these went to the workers
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_several_workers_report_one_run_and_count_only_what_is_left(clip, tmp_path):
    """The workers' parts are shown as one run: one Started for the whole output, frames that only
    grow, and one summary with every frame; parts an earlier run finished are not counted as
    frames to render."""
    parts = tmp_path / "parts"
    run = dict(model="debug", random_weights=True, segments=3, parts=parts, **RUN)
    first = api.upscale(clip, tmp_path / "out.mkv", segment="1/3", **run)  # an earlier run's
    events = []
    summary = api.upscale(
        clip, tmp_path / "out.mkv", devices="cpu", workers=2, progress=events.append, **run
    )
    started = [e for e in events if isinstance(e, Started)]
    assert len(started) == 1 and started[0].output == tmp_path / "out.mkv"
    assert started[0].total_frames == 23 - first.frames  # told before any part starts
    assert started[0].device == "cpu x2"
    left = 23 - first.frames
    advanced = [e for e in events if isinstance(e, Advanced)]
    assert [e.frames for e in advanced] == sorted(e.frames for e in advanced)
    assert advanced[-1].frames == left and {e.total_frames for e in advanced} == {left}
    assert events[-1] is summary and isinstance(summary, Summary)
    assert summary.frames == 23 and summary.device == "cpu x2"
    timeline = summary.parts  # parts 2 and 3, one a worker
    assert [t["part"] for t in timeline] == [2, 3] and sum(t["frames"] for t in timeline) == left
    assert all(0 <= t["started_s"] <= t["first_frames_s"] <= t["finished_s"] for t in timeline)
    assert summary.output == str(tmp_path / "out.mkv") and summary.fps > 0
    # the CPU each part cost the process that rendered it, all its threads, and their sum
    assert all(t["cpu_s"] > 0 for t in timeline)
    assert summary.cpu_seconds == pytest.approx(sum(t["cpu_s"] for t in timeline), abs=1e-3)


def test_a_long_video_on_a_gpu_host_takes_its_workers_by_itself(clip, tmp_path, monkeypatch):
    """No --workers: a long video gets the workers the machine holds (workers_per_gpu), and only
    then; --workers, a network the caller loaded, or a short input keep one process."""
    from skipsr_cli.farm import resume

    spread = []
    monkeypatch.setattr(api, "upscale_on_devices", lambda *a: spread.append(a[3:5]) or 0)
    monkeypatch.setattr(api, "workers_per_gpu", lambda gpus, size, model: 3)
    run = dict(model="debug", random_weights=True, device="cpu", **RUN)
    api.upscale(clip, tmp_path / "short.mkv", **run)  # shorter than RESUME_FRAMES
    assert spread == []
    monkeypatch.setattr(resume, "RESUME_FRAMES", 10)
    api.upscale(clip, tmp_path / "long.mkv", **run)
    assert spread == [([torch.device("cpu")] * 3, None)]  # the parts: resume.part_count's
    monkeypatch.setenv("SKIPSR_WORKER_THREADS", "4")  # a task sharing its node: one worker
    api.upscale(clip, tmp_path / "shared.mkv", **run)
    monkeypatch.delenv("SKIPSR_WORKER_THREADS")
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True, raising=False)
    api.upscale(clip, tmp_path / "pooled.mkv", **run)  # a pool's worker may start no process
    api.upscale(clip, tmp_path / "one.mkv", workers=1, **run)
    debug = api.load_model("debug", random_weights=True, device="cpu")
    api.upscale(clip, tmp_path / "loaded.mkv", model=debug, **RUN)
    assert len(spread) == 1


def test_the_workers_get_their_parts_in_a_multiple_of_their_number(clip, tmp_path, monkeypatch):
    """Without --segments, the workers' run takes resume.part_count's parts for its number of
    workers (23 frames, 6 a part: 4 parts for 2 or 4 workers, 3 for 3)."""
    from skipsr_cli.farm import devices, resume
    from skipsr_cli.run.options import UpscaleOptions

    monkeypatch.setattr(resume, "FRAMES_PER_PART", 6)
    counts = []

    def render(input, output, opts, found, parts, total, run):
        counts.append((len(found), parts))
        raise KeyboardInterrupt  # stop before any work: only the split is asked

    monkeypatch.setattr(devices, "_render", render)
    for n in (2, 3, 4):
        with pytest.raises(KeyboardInterrupt):
            devices.upscale_on_devices(
                clip, tmp_path / "out.mkv", UpscaleOptions(), [torch.device("cpu")] * n, total=23
            )
    assert counts == [(2, 4), (3, 3), (4, 4)]


def test_workers_per_gpu_follows_cores_and_memory():
    """A worker per 4 cores, at most 4 a GPU, as far as the GPU's memory and host memory hold
    them; never fewer than one; one on the CPU."""
    from skipsr_cli.farm.devices import gpu_bytes_per_worker, host_bytes_per_worker, workers_per_gpu

    gib = 2**30
    one, two = [torch.device("cuda:0")], [torch.device("cuda:0"), torch.device("cuda:1")]
    size = (2560, 1440)
    plenty = dict(gpu=100 * gib, host=100 * gib)
    assert workers_per_gpu(one, size, cores=16, **plenty) == 4
    assert workers_per_gpu(one, size, cores=64, **plenty) == 4
    assert workers_per_gpu(one, size, cores=10, **plenty) == 2
    assert workers_per_gpu(one, size, cores=7, **plenty) == 1
    assert workers_per_gpu(two, size, cores=32, **plenty) == 4
    assert workers_per_gpu(two, size, cores=20, **plenty) == 2
    need = gpu_bytes_per_worker(size)
    assert 5 * gib < need < 7 * gib  # 4.9 GiB measured a worker at 2560x1440, with a margin
    assert gpu_bytes_per_worker((3840, 2160)) > 2 * need
    assert workers_per_gpu(one, size, cores=16, gpu=2 * need, host=100 * gib) == 2
    assert workers_per_gpu(one, (3840, 2160), cores=16, gpu=20 * gib, host=100 * gib) == 1
    assert workers_per_gpu(one, size, cores=16, gpu=100 * gib, host=7 * gib) == 2
    # host memory grows with the output's pixels: 16 GiB hold 4 workers at 1440p, 2 at 2160p
    assert 3 * gib < host_bytes_per_worker(size) < 4 * gib < host_bytes_per_worker((3840, 2160))
    assert workers_per_gpu(one, size, cores=16, gpu=100 * gib, host=16 * gib) == 4
    assert workers_per_gpu(one, (3840, 2160), cores=16, gpu=100 * gib, host=16 * gib) == 2
    assert workers_per_gpu(one, size, cores=16, gpu=gib, host=gib) == 1
    assert workers_per_gpu([torch.device("cpu")], size, cores=64, **plenty) == 1


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_file_cut_short_runs_in_one_piece_and_says_what_it_lost(tmp_path, ext):
    """Workers split a video by its packets; a file cut short holds fewer than it announces, so it
    runs in one piece instead, where the loss is said (and with --strict refused), never silent."""
    from damage import make_source, truncated

    cut = truncated(make_source(tmp_path, ext, frames=20), tmp_path / f"cut.{ext}", 0.5)
    two = dict(model="debug", random_weights=True, devices="cpu", workers=2, **RUN)
    summary = api.upscale(cut, tmp_path / "out.mkv", **two)
    assert summary.frames_lost == 20 - summary.frames > 0
    assert summary.warnings[0].startswith("damaged input:") and summary.device == "cpu"
    with pytest.raises(InputError, match="damaged input"):
        api.upscale(cut, tmp_path / "strict.mkv", strict=True, **two)
    with pytest.raises(InputError, match="cannot be split into parts: upscale it without --ray"):
        api.upscale(cut, tmp_path / "ray.mkv", model="debug", random_weights=True, ray="local")
    # the parts asked for are not silently dropped for one piece either
    with pytest.raises(InputError, match="cannot be split into parts: upscale it without --segm"):
        api.upscale(cut, tmp_path / "n.mkv", model="debug", random_weights=True, segments=3, **RUN)
    # nor is a farm's task of it: each is refused, before it makes its parts folder
    with pytest.raises(InputError, match=r"\d+ frames, fewer than the 20 it announces"):
        api.upscale(cut, tmp_path / "t.mkv", model="debug", random_weights=True, segment="1/2")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"cut.{ext}", "out.mkv", f"src.{ext}"]
    )


def _group_stopped(group: int) -> bool:
    """Whether every process of process group `group` is stopped (or gone), by /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        except OSError:  # it ended meanwhile
            continue
        if int(fields[2]) == group and fields[0] not in "TtZX":
            return False
    return True


def test_ctrl_c_stops_the_workers_and_leaves_no_partial_part(tmp_path):
    """Ctrl-C with several workers once a part is done: exit 130, no output, the parts finished
    so far kept for the rerun and said in the one line, and no worker's half-written part left
    beside them (the workers unwind on SIGTERM)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from skipsr_cli.farm.segments import work_folder

    clip = make_clip(tmp_path / "in.mp4", frames=240, audio=False)
    out = tmp_path / "out.mkv"
    args = ["upscale", clip, out, "--model", "debug", "--random-weights", "--devices", "cpu,cpu"]
    code = "from skipsr_cli.cli import main; main()"
    run = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args), "--segments", "6", "-q"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own: the run and its workers, no more
    )
    folder = work_folder(out)

    def midway() -> bool:  # a part done, another being written
        names = {p.name for p in folder.glob("*")}
        return any("partial" in n for n in names) and any(n.endswith(".json") for n in names)

    # The run is frozen (SIGSTOP to its group) while it is looked at and Ctrl-C'd: the signal
    # lands while that part is still being written, however long this process is held up between
    # the look and the signal (on a loaded host the run could otherwise finish meanwhile).
    deadline = time.monotonic() + 120
    try:
        while True:
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.02)
            if not midway():
                continue
            os.killpg(run.pid, signal.SIGSTOP)
            while not _group_stopped(run.pid):
                assert time.monotonic() < deadline
                time.sleep(0.001)
            if midway():
                break
            os.killpg(run.pid, signal.SIGCONT)
        run.send_signal(signal.SIGINT)  # pending until the run goes on
        os.killpg(run.pid, signal.SIGCONT)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:  # the test failed: leave no run behind, stopped or not
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
    assert run.returncode == 130, err
    assert not out.exists()
    assert not [p.name for p in folder.glob("*") if "partial" in p.name]
    done = len(list(folder.glob("part-*.json")))
    assert err.strip().splitlines()[-1] == (
        "skipsr: interrupted; no output was left behind; "
        f"{done} of 6 parts done, kept in {folder}: the same command resumes"
    )


def test_parts_made_with_other_options_are_refused_naming_the_option(tmp_path):
    """A farm whose nodes ran different versions (or options): the stitch names what differs."""
    for index, overlap in ((1, 4), (2, 0)):
        settings = {"chunk_frames": 16, "overlap": overlap}
        write_manifest(tmp_path, index, settings=settings)
    with pytest.raises(InputError, match=r"in settings \(overlap 0, not 4\): .*another version"):
        read_manifests(tmp_path, tmp_path / "out.mkv")


def test_a_part_given_the_default_codec_by_name_joins_the_others(clip, debug, tmp_path):
    out = tmp_path / "out.mkv"  # a farm task requeued with the default spelt out
    api.upscale(clip, out, model=debug, segment="1/2", codec="libx264", **RUN)
    api.upscale(clip, out, model=debug, segment="2/2", **RUN)
    assert api.stitch(out) == 23
    api.upscale(clip, out, model=debug, segment="2/2", codec="libx265", **RUN)  # another: refused
    with pytest.raises(InputError, match=r"part 2 .* in encoder"):
        api.stitch(out, overwrite=True)


def write_manifest(folder: Path, number: int, **changes: object) -> Path:
    """Part `number` of 2 of 9 frames' manifest, as a run writes it but for `changes`."""
    name = f"part-{number:05d}-of-00002"
    frames = [0, 4] if number == 1 else [4, 9]
    manifest = {
        **{"count": 2, "input": "in.mp4", "fingerprint": "f", "weights": "w", "total_frames": 9},
        **{
            "index": number,
            "part": f"{name}.mkv",
            "frames": frames,
            "frames_written": frames[1] - frames[0],
            # of the one-byte part files the tests write
            "bytes": 1,
            "sha256": hashlib.sha256(b"x").hexdigest(),
        },
        **{"settings": {"overlap": 0}, "encoder": {"codec": "libx264"}},
        **changes,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(manifest))
    return path


def test_parts_of_another_encoder_and_changed_or_malformed_manifests_are_refused(tmp_path):
    """Parts made for two outputs (a VP9 part among x264 ones: joined, they made a file of two
    codecs with exit 0), a manifest whose range was changed by hand (joined, its timestamps were
    doubled and skipped), and one that lacks what the stitch reads (a KeyError, exit 1) are each
    refused with the file named."""
    write_manifest(tmp_path, 1)
    write_manifest(tmp_path, 2, encoder={"codec": "libvpx-vp9"})
    with pytest.raises(InputError, match=r"part 2 .* differs from part 1 in encoder"):
        read_manifests(tmp_path, tmp_path / "out.mkv")
    write_manifest(tmp_path, 2, weights="another hash")  # made with --dtype fp32, say
    with pytest.raises(InputError, match=r"part 2 .* in weights \(.*or another --dtype\)"):
        read_manifests(tmp_path, tmp_path / "out.mkv")
    write_manifest(tmp_path, 2, frames=[5, 10])
    for i in (1, 2):
        (tmp_path / f"part-{i:05d}-of-00002.mkv").write_bytes(b"x")
    with pytest.raises(InputError, match=r"part 2 .* holds frames 5:10, but part 2 of 2 owns 4:9"):
        read_manifests(tmp_path, tmp_path / "out.mkv")
    for bad in ({"index": None}, {"frames": [4]}, {"part": "../elsewhere.mkv"}, {"count": 0}):
        path = write_manifest(tmp_path, 2, **bad)
        with pytest.raises(InputError, match=f"the manifest {path} is not one skipsr wrote"):
            read_manifests(tmp_path, tmp_path / "out.mkv")
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="is not one skipsr wrote"):
        read_manifests(tmp_path, tmp_path / "out.mkv")
    # a run's own split (count) passes over another split's manifests, whatever they hold
    write_manifest(tmp_path, 2)
    (tmp_path / "part-00001-of-00003.json").write_text('{"count": 3}')
    assert [m["index"] for m in read_manifests(tmp_path, tmp_path / "out.mkv", count=2)] == [1, 2]


def test_the_stitch_never_writes_over_what_it_joins(clip, debug, tmp_path):
    """An output named as one of the parts, its manifest or the source is refused (exit 2) even
    with overwrite, and every one of them is left as it was."""
    out = tmp_path / "out.mkv"
    render_parts(clip, out, debug, 2)
    folder = tmp_path / "out.mkv.parts"
    kept = {p: p.read_bytes() for p in [clip, *folder.iterdir()]}
    for target in (folder / "part-00001-of-00002.mkv", folder / "part-00002-of-00002.json"):
        with pytest.raises(UsageError, match=f"is {target.name} of the parts"):
            api.stitch(target, folder, overwrite=True)
    with pytest.raises(UsageError, match="is the input"):
        api.stitch(clip, folder, overwrite=True)
    assert {p: p.read_bytes() for p in kept} == kept
    assert api.stitch(out) == 23


def test_the_stitch_says_what_the_output_could_not_take(tmp_path, capsys):
    """A subtitle an mp4 cannot hold is left out, and audio that webm cannot hold re-encoded (at
    --audio-bitrate): the stitch says each, as upscale does, and lists them in --json."""
    from media import make_rich_mkv

    from skipsr_cli.cli import main

    rich = make_rich_mkv(tmp_path / "in.mkv", frames=6)  # a subrip subtitle, Opus audio
    aac = make_clip(tmp_path / "in.mp4", frames=6, audio=True)
    for ext, src in (("mp4", rich), ("webm", aac)):
        out = tmp_path / f"out.{ext}"
        for i in (1, 2):
            api.upscale(src, out, model="debug", random_weights=True, segment=f"{i}/2", **RUN)
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["stitch", str(out), "--json", "--audio-bitrate", "48"])
        stdout, stderr = capsys.readouterr()
        assert done.value.code == 0, stderr
        said = json.loads(stdout)["warnings"]
        assert said and stderr == "".join(f"skipsr: warning: {w}\n" for w in said)
        if ext == "mp4":
            assert any("subtitle" in w and "left out" in w for w in said)
        else:
            assert any("re-encoded to Opus at 48 kb/s" in w for w in said)


def test_stitch_and_segment_refuse_an_output_no_video_container_is(clip, debug, tmp_path, capsys):
    """The parts join into a video container: a stitch into PNG frames, a GIF, AVI (whose muxer
    refused the joined parts: exit 5 after reading them) or a name without an extension is a
    usage error (exit 2) that names the containers, not an encoder's complaint
    after the parts were read; a part rendered for such an output is refused the same way."""
    from skipsr_cli.cli import main

    render_parts(clip, tmp_path / "out.mp4", debug, 1)
    parts = tmp_path / "out.mp4.parts"
    refused = (("o.png", "PNG frames"), ("o.gif", "a GIF"), ("o", "without an extension"))
    for name, what in (*refused, ("o.avi", "AVI")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["stitch", str(tmp_path / name), "--parts", str(parts)])
        err = capsys.readouterr().err
        assert done.value.code == 2, err
        assert err.startswith("skipsr: error: cannot stitch into") and err.count("\n") == 1, err
        assert ".mp4, .mkv, .mov or .webm" in err and what in err, err
        assert "libx264" not in err and "image2" not in err, err
        with pytest.raises(UsageError, match=f"--segment renders a part .* {what}"):
            api.upscale(clip, tmp_path / name, model=debug, segment="1/2", **RUN)
    # x264 parts into a webm, which holds VP8, VP9 and AV1 only: exit 2 naming what it holds,
    # not FFmpeg's complaint as an output error (exit 5) after the parts were read
    with pytest.raises(SystemExit) as done:
        main(["stitch", str(tmp_path / "o.webm"), "--parts", str(parts)])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("skipsr: error: cannot stitch into") and "(libx264, as" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4.parts"]


def test_a_farm_task_stopped_before_its_part_takes_back_the_folder_it_made(clip, debug, tmp_path):
    """`--segment I/N` stopped (Ctrl-C, SIGTERM, an error) before its part is done: the parts
    folder it made, and left empty, goes (with the folders it made above it); a folder that was
    there before (OUT.parts/ or a --parts DIR), or that holds another task's part, stays."""

    def stop(event: object) -> None:
        if isinstance(event, Advanced):
            raise KeyboardInterrupt

    out = tmp_path / "out.mkv"
    folder = tmp_path / "out.mkv.parts"
    with pytest.raises(KeyboardInterrupt):
        api.upscale(clip, out, model=debug, segment="1/2", progress=stop, **RUN)
    assert not folder.exists()
    named = tmp_path / "farm" / "parts"
    with pytest.raises(KeyboardInterrupt):
        api.upscale(clip, out, model=debug, segment="1/2", parts=named, progress=stop, **RUN)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    for there in (folder, named):  # made before the task: kept, empty
        there.mkdir(parents=True, exist_ok=True)
        with pytest.raises(KeyboardInterrupt):
            opts = dict(parts=there) if there == named else {}
            api.upscale(clip, out, model=debug, segment="1/2", progress=stop, **opts, **RUN)
        assert there.is_dir() and not list(there.iterdir())
    folder.rmdir()
    api.upscale(clip, out, model=debug, segment="2/2", **RUN)  # another task's part
    with pytest.raises(KeyboardInterrupt):
        api.upscale(clip, out, model=debug, segment="1/2", progress=stop, **RUN)
    assert sorted(p.name for p in folder.iterdir()) == [
        "part-00002-of-00002.json",
        "part-00002-of-00002.mkv",
    ]


def test_a_task_writes_its_part_where_another_took_the_folder_back_as_it_began(
    clip, debug, tmp_path, monkeypatch
):
    """Task B found OUT.parts/ that task A made; A, stopped before its own part, took it back
    (empty) in the moment before B's writer put its partial file in it: B makes it again and
    renders its part (its writer found no folder: exit 5)."""
    folder = tmp_path / "out.mkv.parts"
    render, taken = pipeline.upscale, []

    def racing(*args, **kwargs):
        if not taken:
            taken.append(folder)
            folder.rmdir()  # task A's remove_empty
        return render(*args, **kwargs)

    monkeypatch.setattr(pipeline, "upscale", racing)
    api.upscale(clip, tmp_path / "out.mkv", model=debug, segment="1/2", **RUN)
    assert taken == [folder]
    assert sorted(p.name for p in folder.iterdir()) == [
        "part-00001-of-00002.json",
        "part-00001-of-00002.mkv",
    ]


def test_a_part_holds_the_video_alone_and_the_stitch_adds_the_rest(debug, tmp_path):
    """A part leaves the source's other streams, tags and chapters to the stitch, which copies
    them once into OUTPUT: a part that copied them too warned about streams its own .mkv cannot
    hold, a container the user never named."""
    from media import make_rich_mkv

    src = make_rich_mkv(tmp_path / "in.mkv", frames=12)
    out = tmp_path / "out.mkv"
    for i in (1, 2):
        api.upscale(src, out, model=debug, segment=f"{i}/2")
    with av.open(str(tmp_path / "out.mkv.parts" / "part-00001-of-00002.mkv")) as part:
        assert [s.type for s in part.streams] == ["video"] and not part.chapters()
        assert "title" not in part.metadata
    assert api.stitch(out) == 12
    with av.open(str(src)) as a, av.open(str(out)) as b:
        assert [s.type for s in b.streams] == [s.type for s in a.streams]
        assert len(b.chapters()) == len(a.chapters()) == 2
        assert b.metadata.get("title") == a.metadata.get("title")


@pytest.mark.parametrize("suffix", [".mov", ".mkv"])
def test_a_run_in_parts_keeps_the_start_timecode(debug, tmp_path, suffix):
    """A camera's start timecode survives the stitch as it survives a whole run (a timecode track
    in mov, a tag on the video in mkv); stitched outputs used to lose it."""
    src = make_clip(tmp_path / "in.mov", frames=12, audio=True, timecode="01:02:03:04")
    out = tmp_path / f"out{suffix}"
    api.upscale(src, out, model=debug, segments=2)
    with av.open(str(out)) as c:
        tags = {k.lower(): v for k, v in c.streams.video[0].metadata.items()}
        assert tags.get("timecode") == "01:02:03:04"
        data = [s for s in c.streams if s.type == "data"]
        assert len(data) == (0 if suffix == ".mkv" else 1)
        assert all(s.metadata.get("timecode") == "01:02:03:04" for s in data)


def test_parts_named_for_a_run_in_one_piece_are_said_to_be_unused(clip, debug, tmp_path):
    """--parts DIR on a short run without --segment or --segments: it runs in one piece, and a
    warning says the folder was not used (it was silently ignored)."""
    done = api.upscale(clip, tmp_path / "out.mkv", model=debug, parts=tmp_path / "p", **RUN)
    assert done.frames == 23 and not (tmp_path / "p").exists()
    assert any(
        w.startswith(f"--parts {tmp_path / 'p'} is for a run in parts") for w in done.warnings
    )
