"""The `skipsr` console script end to end, on the debug preset with random weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from media import audio_packets, make_clip, make_non_video, stream_seconds

from skipsr_cli.errors import ExitCode
from skipsr_cli.media.video_io import probe, read_frames
from skipsr_cli.run.chunking import CHUNK_FRAMES, OVERLAP

DEBUG = ["--model", "debug", "--random-weights"]


def skipsr_exe() -> str:
    """The installed console script (pyproject's [project.scripts]), beside this interpreter."""
    exe = Path(sys.executable).parent / "skipsr"
    found = str(exe) if exe.exists() else shutil.which("skipsr")
    assert found, "the skipsr console script is not installed (pip install -e .)"
    return found


def run(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [skipsr_exe(), *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "in.mp4"
    return make_clip(path, width=64, height=48, frames=23, rate=Fraction(24000, 1001), audio=True)


def test_upscale_keeps_frames_rate_and_audio(clip, tmp_path):
    out = tmp_path / "out.mp4"
    mask = tmp_path / "mask.mp4"
    r = run(
        "upscale",
        clip,
        out,
        *DEBUG,
        "--chunk-frames",
        "8",
        "--overlap",
        "2",
        "--mask-out",
        mask,
        "--json",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    src, dst = probe(clip), probe(out)
    assert (dst.width, dst.height) == (2 * src.width, 2 * src.height)
    assert sum(1 for _ in read_frames(out)) == sum(1 for _ in read_frames(clip)) == 23
    assert dst.rate == src.rate == Fraction(24000, 1001)
    assert dst.audio_streams == 1
    assert abs(stream_seconds(out, "audio") - stream_seconds(clip, "audio")) < 1 / 24
    assert audio_packets(out) == audio_packets(clip)  # copied, not re-encoded
    assert (
        summary["frames"] == 23
        and summary["out_width"] == 128
        and 0.0 <= summary["skip_ratio"] <= 1.0
    )
    assert sum(1 for _ in read_frames(mask)) == 23
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mask.mp4",
        "out.mp4",
    ]  # no temp files left


def test_scale_4_size_and_odd_input(tmp_path):
    odd = make_clip(
        tmp_path / "odd.mkv", width=45, height=27, frames=6, audio=False, pix_fmt="yuv444p"
    )
    out = tmp_path / "x4.mkv"
    r = run("upscale", odd, out, *DEBUG, "--scale", "4", "--pix-fmt", "yuv444p", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # --quiet
    info = probe(out)
    assert (info.width, info.height) == (180, 108)  # no cropping: padded inside, cropped back
    sized = tmp_path / "sized.mp4"
    r = run("upscale", odd, sized, *DEBUG, "--size", "100x60", "-q")
    assert r.returncode == 0, r.stderr
    assert (probe(sized).width, probe(sized).height) == (100, 60)


def test_no_skip_and_steps(clip, tmp_path):
    out = tmp_path / "dense.mp4"
    r = run("upscale", clip, out, *DEBUG, "--no-skip", "--steps", "2", "--json", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["skip_ratio"] == 0.0


@pytest.mark.parametrize(
    ("make_input", "code"),
    [
        (lambda d: d / "missing.mp4", ExitCode.INPUT),
        (lambda d: make_non_video(d / "notes.mp4"), ExitCode.INPUT),
    ],
)
def test_bad_input_gets_its_exit_code_and_leaves_no_output(tmp_path, make_input, code):
    src = make_input(tmp_path)
    before = src.read_bytes() if src.exists() else None
    out = tmp_path / "out.mp4"
    r = run("upscale", src, out, *DEBUG)
    assert r.returncode == code
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("skipsr: error:")  # one line
    assert "Errno" not in r.stderr, r.stderr  # FFmpeg's words, not its error number
    assert not out.exists()
    assert not list(tmp_path.glob("*skipsr-partial*"))
    assert (src.read_bytes() if src.exists() else None) == before  # the input is never touched


def test_usage_errors(clip, tmp_path):
    out = tmp_path / "out.mp4"
    assert run("upscale", clip, out, *DEBUG, "--scale", "3").returncode == ExitCode.USAGE
    assert (
        run("upscale", clip, out, *DEBUG, "--overlap", "8", "--chunk-frames", "8").returncode
        == ExitCode.USAGE
    )
    assert run("upscale", clip, out, "--no-such-option").returncode == ExitCode.USAGE
    assert run("upscale", clip, clip, *DEBUG).returncode == ExitCode.USAGE
    assert not out.exists()


def test_existing_output_is_kept_without_overwrite(clip, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    r = run("upscale", clip, out, *DEBUG)
    assert r.returncode == ExitCode.OUTPUT
    assert out.read_bytes() == b"precious"
    assert run("upscale", clip, out, *DEBUG, "--overwrite", "-q").returncode == 0
    assert probe(out).width == 128


def test_without_trained_weights_it_says_so(clip, tmp_path):
    r = run("upscale", clip, tmp_path / "out.mp4", "--model", "debug")  # no weights ship for debug
    assert r.returncode == ExitCode.MODEL
    assert "no trained weights" in r.stderr and "--random-weights" in r.stderr


def test_bad_weights_file(clip, tmp_path):
    bogus = tmp_path / "w.safetensors"
    bogus.write_bytes(b"not safetensors at all")
    r = run("upscale", clip, tmp_path / "out.mp4", "--weights", bogus)
    assert r.returncode == ExitCode.MODEL and "safetensors" in r.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_plain_progress_lines_when_not_a_terminal(clip, tmp_path):
    r = run("upscale", clip, tmp_path / "out.mp4", *DEBUG)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("upscaling") and lines[-1].startswith("done: 23 frames")
    assert any(line.startswith("frames 23/23") for line in lines)
    assert r.stdout == ""  # stdout stays clean without --json


def make_vfr_clip(path: Path, pts: list[int], time_base: Fraction) -> Path:
    """A clip whose frames sit at irregular timestamps (like a phone's variable frame rate)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24, options={"crf": "18", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.time_base = time_base
        for i, p in enumerate(pts):
            image = np.full((32, 48, 3), 20 * i % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def frame_times(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as f:
        return [float(frame.pts * frame.time_base) for frame in f.decode(video=0)]


def test_variable_frame_rate_timestamps_carry_over(tmp_path):
    pts = [0, 1, 3, 4, 8, 9, 10, 15, 16, 20]
    src = make_vfr_clip(tmp_path / "vfr.mkv", pts, Fraction(1, 24))
    out = tmp_path / "out.mkv"
    r = run("upscale", src, out, *DEBUG, "--chunk-frames", "4", "--overlap", "1", "-q")
    assert r.returncode == 0, r.stderr
    before, after = frame_times(src), frame_times(out)
    assert len(after) == len(before) == len(pts)
    assert max(abs(a - b) for a, b in zip(after, before, strict=True)) < 1e-3


def test_streams_the_container_cannot_hold_are_left_out_with_a_warning(tmp_path):
    from media import make_rich_mkv

    src = make_rich_mkv(tmp_path / "rich.mkv")
    out = tmp_path / "out.mp4"
    r = run("upscale", src, out, *DEBUG, "-q", "--json")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("skipsr: warning:")]
    assert len(warnings) == 1 and "subtitle" in warnings[0]
    assert json.loads(r.stdout)["warnings"] == [warnings[0].removeprefix("skipsr: warning: ")]
    assert probe(out).audio_streams == 2
    r = run("upscale", src, tmp_path / "quiet.mp4", *DEBUG, "-q", "--no-audio", "--no-subtitles")
    assert r.returncode == 0 and r.stderr == ""
    assert probe(tmp_path / "quiet.mp4").audio_streams == 0


def test_audio_webm_cannot_hold_is_reencoded_at_the_chosen_bitrate(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=8)  # AAC audio
    out = tmp_path / "out.webm"
    r = run("upscale", src, out, *DEBUG, "-q", "--json", "--audio-bitrate", "48")
    assert r.returncode == 0, r.stderr
    expected = "audio stream 1 (aac, und) cannot be stored in .webm; re-encoded to Opus at 48 kb/s"
    assert json.loads(r.stdout)["warnings"] == [expected]
    assert f"skipsr: warning: {expected}" in r.stderr
    assert probe(out).audio_streams == 1
    r = run("upscale", src, tmp_path / "x.webm", *DEBUG, "-q", "--audio-bitrate", "0")
    assert r.returncode == 2 and not (tmp_path / "x.webm").exists()


def test_colour_tags_survive_upscale(tmp_path):
    from media import colour_gradient, make_colour_clip

    src = make_colour_clip(
        tmp_path / "bt709full.mkv",
        colour_gradient(64, 48),
        matrix=1,
        colour_range=2,
        primaries=1,
        transfer=1,
        frames=4,
    )
    out = tmp_path / "out.mkv"
    r = run("upscale", src, out, *DEBUG, "--pix-fmt", "yuv444p", "-q")
    assert r.returncode == 0, r.stderr
    assert probe(out).colour == probe(src).colour
    assert probe(src).colour.matrix == 1 and probe(src).colour.range == 2


def test_lossless_flag_picks_the_containers_lossless_encoder(clip, tmp_path):
    out = tmp_path / "out.mkv"
    r = run("upscale", clip, out, *DEBUG, "--lossless", "-q")
    assert r.returncode == 0, r.stderr
    assert probe(out).codec == "ffv1"
    r = run("upscale", clip, tmp_path / "o.mp4", *DEBUG, "--lossless", "--codec", "mpeg4")
    assert r.returncode == ExitCode.USAGE and "no lossless mode" in r.stderr


def test_image_sequence_pattern_to_png_frames(tmp_path):
    from test_images import picture, write_png

    for n in range(2):
        write_png(tmp_path / f"in_{n:03d}.png", picture(n))
    out = tmp_path / "out_%03d.png"
    r = run("upscale", tmp_path / "in_%03d.png", out, *DEBUG, "-q")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob("out_*.png")) == ["out_000.png", "out_001.png"]
    r = run("upscale", tmp_path / "in_%03d.png", out, *DEBUG, "--pix-fmt", "yuv420p")
    assert r.returncode == ExitCode.USAGE and "rgb24" in r.stderr


@pytest.mark.slow
def test_bench_run_measures_the_upscale_against_its_encode_floor(clip):
    r = run("bench", "run", clip, *DEBUG, "--frames", "4", "--preset", "ultrafast", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["frames"] == 23 and result["output"] == "128x96"
    assert result["end_to_end_fps"] > 0 and result["floor_fps"] > 0
    ratio = result["end_to_end_fps"] / result["floor_fps"]
    assert abs(result["ratio_to_floor"] - ratio) < 1e-3
    assert list(result["stage_ms"]) == [
        "decode", "upsample", "vae_encode", "predictor", "transformer", "compose",
        "vae_decode", "colour", "encode", "encode_model",
    ]  # fmt: skip
    assert all(v >= 0 for v in result["stage_ms"].values())
    for waits in (result["waits_s"]["upscale"], result["waits_s"]["floor"]):
        assert set(waits) == {
            "model_waited_for_decoder", "model_waited_for_encoder", "encoder_waited_for_model",
            "encoder_waited_for_first_frames", "encoder_waited_until_its_queue_filled",
        }  # fmt: skip
        # the encoder waits for the first chunk, and that wait is part of its start's waits,
        # which are part of all its waits
        first, filled = (
            waits["encoder_waited_for_first_frames"], waits["encoder_waited_until_its_queue_filled"]
        )  # fmt: skip
        assert 0 < first <= filled <= waits["encoder_waited_for_model"]


@pytest.mark.slow
def test_bench_capacity_runs_copies_of_the_floor_at_once(clip, tmp_path):
    """Each row counts every copy's frames; the capacity is the best row's total. Copies longer
    than their start (64 frames handed to the encoder) also give the rate over their common
    middle."""
    # long enough that the copies' common middle (after 64 frames each) holds on a busy host
    src = make_clip(tmp_path / "in.mp4", width=64, height=48, frames=360)
    r = run("bench", "capacity", src, "--workers", "1,2", "--preset", "ultrafast", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    rows = result["rows"]
    assert [row["workers"] for row in rows] == [1, 2]
    assert [row["frames"] for row in rows] == [360, 720]  # every frame of every copy
    for row in rows:
        assert row["total_fps"] == pytest.approx(row["frames"] / row["wall_s"], rel=0.01)
        assert row["slowest_fps"] > 0
        # the process's CPU time holds its calling thread's
        assert 0 < row["main_thread_cpu_ms_per_frame"] < row["cpu_ms_per_frame"]
        # each copy's encoder waited for its first frames at least
        assert row["waits_s"]["encoder_waited_for_model"] > 0
        assert row["steady_fps"] > 0
    assert result["capacity_fps"] == max(row["total_fps"] for row in rows)
    bad = run("bench", "capacity", clip, "--workers", "0")
    assert bad.returncode == ExitCode.USAGE and "--workers 0" in bad.stderr
    bad = run("bench", "capacity", clip, "--preset", "fastest")
    assert bad.returncode == ExitCode.USAGE and "fastest" in bad.stderr


def test_the_steady_rate_counts_every_copy_over_the_runs_common_middle():
    """From when the last copy is past its start until the first copy is done, each copy's count
    taken linearly between its reports."""
    from skipsr_cli.measure.capacity import steady_rate

    # two copies of 200 frames reported every 16 frames: one at 10 fps from t = 0, one at
    # 8 fps from t = 1, whose 64th frame comes at t = 9 and its last at t = 26
    fast = [(n / 10, n) for n in range(16, 201, 16)] + [(20.0, 200)]
    slow = [(1 + n / 8, n) for n in range(16, 201, 16)] + [(26.0, 200)]
    # window 9 to 20: the fast copy hands 200 - 90 = 110 frames, the slow one 8 * 11 = 88
    assert steady_rate([fast, slow], after=64) == pytest.approx((110 + 88) / 11, abs=0.01)
    assert steady_rate([fast], after=64) == pytest.approx(10.0)
    assert steady_rate([fast, [(1.0, 16), (2.0, 50)]], after=64) is None  # one never got past 64
    late = [(n / 2, n) for n in range(16, 201, 16)]  # past 64 only at t = 32, after fast is done
    assert steady_rate([fast, late], after=64) is None
    assert steady_rate([], after=64) is None


@pytest.mark.slow
def test_bench_capacity_upscale_runs_copies_of_the_model(clip, tmp_path):
    """--upscale: the same copies with the model in place of bicubic, so its best total can be set
    against the floor's capacity; weights that cannot load fail before any copy starts."""
    r = run(
        "bench", "capacity", clip, "--workers", "2", "--preset", "ultrafast", "--upscale",
        *DEBUG, "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["copies_of"] == "upscale"
    (row,) = result["rows"]
    assert row["workers"] == 2 and row["frames"] == 46
    assert row["total_fps"] == pytest.approx(row["frames"] / row["wall_s"], rel=0.01)
    assert row["steady_fps"] is None  # 23 frames a copy: all start, no steady middle
    assert result["chunks"] == f"{CHUNK_FRAMES} frames, overlap {OVERLAP}"  # upscale's defaults
    floor = run(
        "bench", "capacity", clip, "--workers", "1", "--preset", "ultrafast", "--json",
        "--chunk-frames", "8", "--overlap", "2",
    )  # fmt: skip
    floor = json.loads(floor.stdout)
    assert floor["copies_of"] == "floor" and floor["chunks"] == "8 frames, overlap 2"
    assert floor["rows"][0]["frames"] == 23  # every frame, whatever the chunks
    bad = run("bench", "capacity", clip, "--chunk-frames", "8", "--overlap", "4")
    assert bad.returncode == ExitCode.USAGE and "--chunk-frames/--overlap" in bad.stderr
    bad = run("bench", "capacity", clip, "--upscale", "--weights", tmp_path / "missing.safetensors")
    assert bad.returncode == ExitCode.MODEL and "missing.safetensors" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_each_capacity_copy_runs_the_chunk_plan_it_is_given(clip, monkeypatch):
    """--chunk-frames/--overlap reach the pipeline job of every copy (run here in-process)."""
    import queue
    import threading

    from skipsr_cli.measure import bench, capacity
    from skipsr_cli.media import cpu_share
    from skipsr_cli.media.encoding import EncodeOptions
    from skipsr_cli.run import pipeline

    jobs = []

    def upscale(network, plan, dev, dt, emit):
        jobs.append(plan.job)
        return SimpleNamespace(frames=7, waits={})

    monkeypatch.setattr(pipeline, "upscale", upscale)
    monkeypatch.setattr(bench, "warm_up", lambda *args: 0.0)
    monkeypatch.setattr(cpu_share, "apply_cpu_share", lambda *args: None)
    results = queue.Queue()
    args = (str(clip), 2, EncodeOptions(preset="ultrafast"), "cpu", 1, None)
    capacity._copy(*args, (8, 2), threading.Barrier(1), results)
    assert results.get(timeout=5)[0] == 7
    (job,) = jobs
    assert (job.chunk_frames, job.overlap, job.scale) == (8, 2, 2)


def test_model_beside_bicubic_runs_the_model_and_hands_on_bicubic(clip):
    """`bench capacity --upscale --bicubic-frames`: every chunk goes through the model, whose mask
    comes back, while the frames are bicubic's, the floor's own."""
    import torch

    from models.skipsr import Settings
    from skipsr_cli.measure.bench import ModelBeside, Resampler
    from skipsr_cli.weights import load_model

    model = load_model("debug", random_weights=True)
    calls = []
    model.register_forward_hook(lambda module, args, out: calls.append(out))
    lr = torch.rand(1, 3, 5, 24, 40, generator=torch.Generator().manual_seed(0))
    out = ModelBeside(model)(lr, (48, 80), Settings())
    (made,) = calls
    assert torch.equal(out.frames, Resampler()(lr, (48, 80), Settings()).frames)
    assert not torch.equal(out.frames, made.frames)  # the untrained debug model's own differ
    assert out.keep is made.keep and out.kept_fraction == made.kept_fraction
    bad = run("bench", "capacity", clip, "--bicubic-frames")
    assert bad.returncode == ExitCode.USAGE and "--bicubic-frames goes with --upscale" in bad.stderr


@pytest.mark.slow
def test_bench_capacity_says_why_a_copy_failed(tmp_path):
    """A copy that fails before the common start ends the measurement at once, with its reason."""
    import torch

    from skipsr_cli.errors import ModelError
    from skipsr_cli.measure.capacity import encode_capacity
    from skipsr_cli.media.encoding import EncodeOptions

    garbage = tmp_path / "not_a_video.mp4"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(ModelError, match="a copy failed: InputError"):
        encode_capacity(garbage, 2, EncodeOptions(preset="ultrafast"), [torch.device("cpu")], [2])


def test_an_output_folder_that_is_not_writable_fails_before_the_model(clip, tmp_path, monkeypatch):
    from skipsr_cli.errors import OutputError
    from skipsr_cli.run.pipeline import UpscaleJob, prepare

    folder = tmp_path / "locked"
    folder.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != folder and real(p, mode))
    for out in (folder / "out.mp4", folder / "f_%03d.png"):
        with pytest.raises(OutputError, match="not writable"):
            prepare(UpscaleJob(clip, out))


@pytest.mark.parametrize(("sig", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_mid_run_leaves_nothing_behind(tmp_path, sig, code):
    import signal
    import time

    src = make_clip(tmp_path / "long.mp4", width=128, height=96, frames=300, audio=True)
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [skipsr_exe(), "upscale", src, out, *DEBUG, "--preset", "ultrafast", "-q"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*skipsr-partial*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "no output was left behind" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]


def test_the_container_picks_the_default_encoder(clip, tmp_path):
    import av

    for name, codec in (("out.webm", "vp9"), ("out.gif", "gif"), ("out.mkv", "h264")):
        r = run("upscale", clip, tmp_path / name, *DEBUG, "--preset", "ultrafast", "-q")
        assert r.returncode == 0, r.stderr
        with av.open(str(tmp_path / name)) as c:
            assert c.streams.video[0].codec_context.name == codec
            assert "major_brand" not in {k.lower() for k in c.metadata}  # mp4's, not webm's


def test_nan_tau_a_hard_link_and_an_empty_video_get_their_exit_codes(clip, tmp_path):
    r = run("upscale", clip, tmp_path / "o.mp4", *DEBUG, "--threshold", "nan")
    assert r.returncode == ExitCode.USAGE and "finite" in r.stderr
    link = tmp_path / "link.mp4"
    os.link(clip, link)
    before = clip.read_bytes()
    r = run("upscale", clip, link, *DEBUG, "-y")
    assert r.returncode == ExitCode.USAGE and "is the input" in r.stderr
    assert clip.read_bytes() == before
    import av

    empty = tmp_path / "empty.mkv"  # a video stream without a single packet, and some audio
    with av.open(str(empty), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(audio.encode(frame))
        out.mux(audio.encode())
    r = run("upscale", empty, tmp_path / "e.mkv", *DEBUG)
    assert r.returncode == ExitCode.INPUT and "no frames" in r.stderr
    assert not list(tmp_path.glob("*e.mkv*"))


def test_the_console_script_collects_again_after_its_imports(monkeypatch):
    """The console script imports torch and the commands with collection off (about 0.3 s of
    collections on this machine), then freezes what they made and collects again for the run;
    it freezes what is left just before it exits too (the last collection took 0.5 s)."""
    import gc

    from skipsr_cli.cli import main

    monkeypatch.setattr(sys, "argv", ["skipsr", "upscale", "--help"])
    before = gc.get_freeze_count()
    handler = signal.getsignal(signal.SIGINT)  # the console script leaves its own in place
    try:
        with pytest.raises(SystemExit) as ended:
            main()
        assert ended.value.code == 0
        assert gc.isenabled() and gc.get_freeze_count() > before
    finally:
        signal.signal(signal.SIGINT, handler)
        gc.unfreeze()
        gc.enable()


@pytest.mark.parametrize("command", [[], ["bench"], ["train"]])
def test_a_bare_command_shows_its_help_once(command, tmp_path):
    """`skipsr`, `skipsr bench`, `skipsr train` alone: the help once, exit 2, and no stray line
    on stderr (Rich printed the help twice, and an empty line went to stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "skipsr_cli.cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == ExitCode.USAGE
    said = done.stdout + done.stderr
    assert said.count("Usage:") == 1 and "Commands" in said, said
    assert done.stderr.strip() in ("", said.strip())
