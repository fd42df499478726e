"""Resume for everyone: a long run killed with SIGKILL is continued by the same command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from media import make_clip

from skipsr_cli import api
from skipsr_cli.farm import resume

SMALL = "import skipsr_cli.farm.resume as r; r.RESUME_FRAMES = 10; r.FRAMES_PER_PART = 6; "
ARGS = ["--model", "debug", "--random-weights", "--device", "cpu", "--lossless", "-q"]
ARGS += ["--chunk-frames", "8", "--overlap", "2"]


def frames(path: Path) -> tuple[list[np.ndarray], list[float], int]:
    with av.open(str(path)) as f:
        got = [(fr.to_ndarray(format="rgb24"), fr.time) for fr in f.decode(video=0)]
        return [a for a, _ in got], [t for _, t in got], len(f.streams.audio)


def cli(clip: Path, out: Path) -> subprocess.Popen:
    code = SMALL + "from skipsr_cli.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "upscale", str(clip), str(out), *ARGS],
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def small_segments(monkeypatch):
    monkeypatch.setattr(resume, "RESUME_FRAMES", 10)
    monkeypatch.setattr(resume, "FRAMES_PER_PART", 6)


def test_a_long_run_in_segments_equals_one_piece_and_cleans_up(tmp_path, small_segments):
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=True)
    run = dict(
        model="debug", random_weights=True, device="cpu", lossless=True, chunk_frames=8, overlap=2
    )
    summary = api.upscale(clip, tmp_path / "seg.mkv", **run)
    assert summary.frames == 23 and not resume.work_folder(tmp_path / "seg.mkv").exists()
    resume.RESUME_FRAMES = 10**9  # the same run in one piece
    api.upscale(clip, tmp_path / "one.mkv", **run)
    a, b = frames(tmp_path / "seg.mkv"), frames(tmp_path / "one.mkv")
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[1] == pytest.approx(b[1]) and a[2] == b[2] == 1


def test_sigkill_then_rerun_finishes_from_the_done_segments(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=True)
    whole = cli(clip, tmp_path / "whole.mkv")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    out = tmp_path / "out.mkv"
    work = resume.work_folder(out)
    for kill_after in (1, 2):  # kill once a segment is done, then once two are
        run = cli(clip, out)
        deadline = time.monotonic() + 120
        while len(list(work.glob("part-*.json"))) < kill_after and time.monotonic() < deadline:
            if run.poll() is not None:
                break
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in work.glob("part-*.mkv")}
    assert kept and not out.exists()
    last = cli(clip, out)
    assert last.wait(timeout=300) == 0, last.stderr.read()
    assert not work.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
    a, b = frames(out), frames(tmp_path / "whole.mkv")
    assert len(a[0]) == 23 and all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[1] == pytest.approx(b[1]) and a[2] == 1
