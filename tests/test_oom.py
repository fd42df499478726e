"""Out of GPU memory lowers the settings and goes on (issue 16, item 7), on the CPU with `debug`.

The model's forward is wrapped to raise torch.cuda.OutOfMemoryError when a call holds more frames
than a limit, or decodes without tiles: the run must finish with one warning naming what was
lowered (the same frames as an unconstrained run, to float rounding, where the lowering is exact), and fail with exit 4,
one line and no file only when even the lowest rung runs out.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import make_clip

from models import SkipSR
from models.skipsr import Result, Settings
from skipsr_cli.cli import main
from skipsr_cli.errors import ExitCode
from skipsr_cli.run import memory
from skipsr_cli.run.memory import MemoryLadder, ladder

DEBUG = [
    "--model",
    "debug",
    "--random-weights",
    "--lossless",
    "--device",
    "cpu",
]  # FFV1, fp32: exact
FRAMES = 17  # three chunks of 8 with an overlap of 2


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "in.mp4"
    return make_clip(path, frames=FRAMES, rate=Fraction(24000, 1001), audio=False)


def call(capsys, *args: str | Path) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return done.value.code, err, out


def out_of_memory_unless(monkeypatch, *, frames: int = 10**9, tiled: bool = False) -> list[bool]:
    """Wrap SkipSR.forward: a call with more than `frames` frames, or (with `tiled`) an untiled
    decode, raises CUDA's out-of-memory error. Returns the list of calls, True where one ran."""
    calls: list[bool] = []
    forward = SkipSR.forward

    def limited(self, lr, size, settings=Settings()):
        fits = lr.shape[2] <= frames and (not tiled or settings.decode_tile is not None)
        calls.append(fits)
        if not fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return forward(self, lr, size, settings)

    monkeypatch.setattr(SkipSR, "forward", limited)
    return calls


def frames_and_times(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as f:
        decoded = list(f.decode(video=0))
    return [d.to_ndarray(format="rgb24") for d in decoded], [float(d.time) for d in decoded]


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("skipsr: warning:")]


def test_the_ladder_goes_exact_first_then_fewer_frames():
    rungs = ladder(Settings(frame_slice=4), chunk_frames=16, step=1)
    assert [r.frames for r in rungs] == [None, None, 8, 4, 2, 1]
    assert [r.exact for r in rungs] == [True, True, False, False, False, False]
    assert rungs[0].settings == Settings(frame_slice=4)
    assert all(r.settings.frame_slice == 1 and r.settings.decode_tile for r in rungs[1:])
    assert [r.frames for r in ladder(Settings(), 13, step=4)] == [None, None, 8, 4]
    small = Settings(frame_slice=1, decode_tile=16)  # already lowest: no second exact rung
    assert [(r.frames, r.settings) for r in ladder(small, 4, step=4)] == [(None, small)]


def test_a_lowered_rung_is_kept_and_rungs_that_change_nothing_are_passed(monkeypatch):
    """A 6-frame chunk under a plan of 16: 8 frames per call would be the whole chunk again."""
    calls: list[int] = []

    def model(lr, size, settings):
        calls.append(lr.shape[2])
        if lr.shape[2] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")
        t = lr.shape[2]
        return Result(torch.full((1, 3, t, *size), 0.5), torch.ones(1, t, 1, 1, dtype=bool), 1.0)

    ladder_ = MemoryLadder(Settings(frame_slice=4), chunk_frames=16, step=1)
    lr = torch.zeros(1, 3, 6, 4, 4)
    result = ladder_.run(model, lr, (8, 8), first=32)
    assert calls == [6, 6, 4, 2, 2, 2]  # whole, exact, 4 (8 passed), then 2 fits: 3 sub-clips
    assert result.frames.shape == (1, 3, 6, 8, 8) and result.keep.shape == (1, 6, 1, 1)
    calls.clear()
    ladder_.run(model, lr, (8, 8), first=48)
    assert calls == [2, 2, 2]  # kept
    (warning,) = ladder_.warnings
    assert warning.startswith("out of GPU memory at frame 32: from there on ran with 2 frame(s)")


def test_exact_fallback_gives_the_same_frames_and_warns_once(capsys, monkeypatch, clip, tmp_path):
    ref, out = tmp_path / "ref.mkv", tmp_path / "out.mkv"
    options = [*DEBUG, "--chunk-frames", "8", "--overlap", "2"]
    code, err, _ = call(capsys, "upscale", clip, ref, *options, "-q")
    assert code == 0, err
    monkeypatch.setattr(memory, "TILE", 8)  # tiles smaller than the debug clip's latent
    calls = out_of_memory_unless(monkeypatch, tiled=True)
    code, err, stdout = call(capsys, "upscale", clip, out, *options, "-q", "--json")
    assert code == 0, err
    assert calls.count(False) == 1, calls  # lowered once, then kept for the rest of the run
    (warning,) = warnings_of(err)
    assert "out of GPU memory at frame 0" in warning and "tiles of 8 latent pixels" in warning
    assert "the same output, to float rounding" in warning
    summary = json.loads(stdout)
    assert summary["warnings"] == [warning.removeprefix("skipsr: warning: ")]
    (want, want_times), (got, got_times) = frames_and_times(ref), frames_and_times(out)
    assert len(got) == FRAMES and got_times == want_times
    # The same arithmetic in other slices and tiles: oneDNN (or cuDNN) picks its kernels by shape,
    # so floats may round apart by an ulp and, rarely, an 8-bit value by one.
    diff = np.abs(np.stack(want).astype(int) - np.stack(got).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


def test_fewer_frames_per_call_finish_the_run_with_a_warning(capsys, monkeypatch, clip, tmp_path):
    out, mask = tmp_path / "out.mkv", tmp_path / "mask.mkv"
    calls = out_of_memory_unless(monkeypatch, frames=4)
    options = [*DEBUG, "--chunk-frames", "8", "--overlap", "2", "--mask-out", mask]
    code, err, stdout = call(capsys, "upscale", clip, out, *options, "-q", "--json")
    assert code == 0, err
    assert calls[:3] == [False, False, True] and all(calls[2:]), calls  # 8, 8 exact, then 4s
    (warning,) = warnings_of(err)
    assert "4 frame(s) per model call (of 8 a chunk)" in warning
    assert "changes the picture slightly" in warning
    assert json.loads(stdout)["warnings"] == [warning.removeprefix("skipsr: warning: ")]
    _, src_times = frames_and_times(clip)
    for path in (out, mask):
        frames, times = frames_and_times(path)
        assert len(frames) == FRAMES
        np.testing.assert_allclose(times, src_times, atol=5e-4)  # Matroska keeps milliseconds


def test_when_nothing_fits_it_is_exit_4_one_line_and_no_file(capsys, monkeypatch, clip, tmp_path):
    calls = out_of_memory_unless(monkeypatch, frames=0)
    folder = tmp_path / "out"
    folder.mkdir()
    code, err, stdout = call(capsys, "upscale", clip, folder / "out.mp4", *DEBUG, "-q")
    assert code == ExitCode.MODEL, err
    assert err.startswith("skipsr: error: out of GPU memory") and err.count("\n") == 1, err
    assert "1 frame(s) per model call" not in err and "4 frame(s) per model call" in err
    assert list(folder.iterdir()) == [] and stdout == ""
    assert len(calls) == len(ladder(Settings(frame_slice=4), 16, 4))  # every rung, once


@pytest.mark.parametrize("where", ["loading", "shots"])
def test_out_of_memory_outside_the_ladder_says_where(capsys, monkeypatch, clip, tmp_path, where):
    """Out of memory putting a chunk's frames on the device, or finding and joining its shots
    (outside the ladder, which only lowers the model's calls): exit 4, one line that names which,
    and no file."""
    from skipsr_cli.run import pipeline

    def full(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")

    monkeypatch.setattr(pipeline, "frames_to_device" if where == "loading" else "shot_starts", full)
    folder = tmp_path / "out"
    folder.mkdir()
    code, err, stdout = call(capsys, "upscale", clip, folder / "out.mp4", *DEBUG, "-q")
    assert code == ExitCode.MODEL and err.count("\n") == 1, err
    said = "loading frames 0-15" if where == "loading" else "on frames 0-15, finding or joining"
    assert err.startswith(f"skipsr: error: out of GPU memory {said}"), err
    assert list(folder.iterdir()) == [] and stdout == ""


def test_another_device_error_loading_a_chunk_is_a_model_error(capsys, monkeypatch, clip, tmp_path):
    """A CUDA error of the chunk before surfaces as the next chunk is copied to the device: exit 4,
    one line naming the frames, not an internal error."""
    from skipsr_cli.run import pipeline

    def failed(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")

    monkeypatch.setattr(pipeline, "frames_to_device", failed)
    code, err, _ = call(capsys, "upscale", clip, tmp_path / "out.mp4", *DEBUG, "-q")
    assert code == ExitCode.MODEL and err.count("\n") == 1, err
    assert err.startswith("skipsr: error: the model failed on frames 0-15: CUDA error"), err
    assert not (tmp_path / "out.mp4").exists()
