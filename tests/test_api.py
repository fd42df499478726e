"""The Python API (`skipsr_cli.upscale`, `skipsr_cli.load_model`): what the command itself calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from media import make_clip
from typer.testing import CliRunner

import skipsr_cli
from models import SkipSR
from skipsr_cli.cli import app
from skipsr_cli.errors import InputError, OutputError, UsageError
from skipsr_cli.media.video_io import read_frames
from skipsr_cli.run.progress import Advanced, Started, Summary
from skipsr_cli.weights import save_model

FRAMES = 9


@pytest.fixture(scope="module")
def model() -> SkipSR:
    return skipsr_cli.load_model("debug", device="cpu", random_weights=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("in") / "in.mp4", frames=FRAMES, audio=True)


def frames_of(path: Path) -> list[np.ndarray]:
    return [f.rgb for f in read_frames(path)]


def test_load_model_builds_a_preset_on_the_device_asked(model: SkipSR):
    assert isinstance(model, SkipSR) and not model.training
    param = next(model.parameters())
    assert param.device.type == "cpu" and param.dtype == torch.float32
    half = skipsr_cli.load_model("debug", device="cpu", dtype="bf16", random_weights=True)
    assert next(half.parameters()).dtype == torch.bfloat16


def test_load_model_reads_a_weights_path(model: SkipSR, tmp_path: Path):
    path = tmp_path / "mine.safetensors"
    save_model(model, path)
    for name in (path, str(path)):
        loaded = skipsr_cli.load_model(name, device="cpu")
        for (key, a), b in zip(
            model.state_dict().items(), loaded.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), key


def test_upscale_returns_the_summary_and_reports_events(model: SkipSR, clip: Path, tmp_path: Path):
    events = []
    out = tmp_path / "out.mp4"
    summary = skipsr_cli.upscale(
        clip, out, model=model, chunk_frames=4, overlap=1, progress=events.append
    )
    assert isinstance(summary, Summary) and summary.status == "ok"
    assert summary.frames == FRAMES and (summary.out_width, summary.out_height) == (128, 96)
    assert isinstance(events[0], Started) and isinstance(events[-1], Summary)
    assert any(isinstance(e, Advanced) for e in events)
    assert len(frames_of(out)) == FRAMES


def test_a_warm_model_serves_many_files_with_the_same_output(
    model: SkipSR, clip: Path, tmp_path: Path
):
    """Keeping a model loaded across calls changes nothing: both calls write the same frames."""
    outs = [tmp_path / f"out{i}.mkv" for i in range(2)]
    for out in outs:
        skipsr_cli.upscale(clip, out, model=model, lossless=True)
    first, second = (frames_of(p) for p in outs)
    assert len(first) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_the_command_is_the_api(model: SkipSR, clip: Path, tmp_path: Path):
    """`skipsr upscale` with some options writes exactly what the API writes with the same ones."""
    by_api, by_cli = tmp_path / "api.mkv", tmp_path / "cli.mkv"
    options = skipsr_cli.UpscaleOptions(
        model="debug", random_weights=True, device="cpu", lossless=True, overlap=2, copy_audio=False
    )
    summary = skipsr_cli.upscale(clip, by_api, options)
    args = ["upscale", str(clip), str(by_cli), "--model", "debug", "--random-weights"]
    args += ["--device", "cpu", "--lossless", "--overlap", "2", "--no-audio", "--quiet", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f'"frames": {summary.frames}' in result.output
    api_frames, cli_frames = frames_of(by_api), frames_of(by_cli)
    assert len(api_frames) == len(cli_frames) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(api_frames, cli_frames, strict=True))


def test_upscale_raises_the_typed_errors(model: SkipSR, clip: Path, tmp_path: Path):
    with pytest.raises(InputError):
        skipsr_cli.upscale(tmp_path / "missing.mp4", tmp_path / "out.mp4", model=model)
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"")
    with pytest.raises(OutputError):
        skipsr_cli.upscale(clip, taken, model=model)
    with pytest.raises(UsageError):
        skipsr_cli.upscale(clip, tmp_path / "out.mp4", model=model, scale=3)
    with pytest.raises(TypeError, match="crff"):
        skipsr_cli.upscale(clip, tmp_path / "out.mp4", model=model, crff=20)
    assert not (tmp_path / "out.mp4").exists()


def test_importing_the_package_is_cheap():
    code = "import sys, skipsr_cli; assert 'torch' not in sys.modules; print(skipsr_cli.__all__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "upscale" in done.stdout and "load_model" in done.stdout


def test_every_name_the_package_exports_is_there():
    """The README's `stitch` was not: skipsr_cli.stitch was an AttributeError."""
    assert all(callable(getattr(skipsr_cli, name)) for name in skipsr_cli.__all__)
    assert skipsr_cli.stitch is skipsr_cli.api.stitch


def test_paths_given_as_text_work_as_paths(model: SkipSR, clip: Path, tmp_path: Path):
    """Options naming files or folders (mask_out, weights, denoise_weights, parts) may be given
    as text, as the command's are: mask_out="m.gif" crashed ('str' has no attribute 'suffix')."""
    from skipsr_cli.api import PATH_OPTIONS, _options

    out, mask = tmp_path / "out.mp4", tmp_path / "m.gif"
    skipsr_cli.upscale(clip, out, model=model, mask_out=str(mask), chunk_frames=4, overlap=1)
    assert len(frames_of(out)) == len(frames_of(mask)) == FRAMES
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", width=32, height=24, frames=2, audio=False)
    masks = tmp_path / "masks"
    done = skipsr_cli.upscale_batch(folder, tmp_path / "up", model=model, mask_out=str(masks))
    assert [f.status for f in done.files] == ["done"], done.files
    assert (masks / "a.mp4").is_file() and (tmp_path / "up" / "a.mp4").is_file()
    assert {"mask_out", "weights", "denoise_weights", "parts"} == PATH_OPTIONS
    given = skipsr_cli.UpscaleOptions(parts="parts", mask_out="m.mp4")  # type: ignore[arg-type]
    opts = _options(given, "w.safetensors", {"denoise_weights": "d.safetensors"})
    assert {name: getattr(opts, name) for name in PATH_OPTIONS} == {
        "mask_out": Path("m.mp4"),
        "weights": Path("w.safetensors"),
        "denoise_weights": Path("d.safetensors"),
        "parts": Path("parts"),
    }
    assert all(type(getattr(opts, name)) is not str for name in PATH_OPTIONS)
