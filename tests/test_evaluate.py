"""`skipsr_cli.measure.evaluate` end to end on generated media and the debug model (random weights)."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import make_clip, make_non_video

from skipsr_cli.errors import InputError, UsageError
from skipsr_cli.measure.evaluate import (
    METHODS,
    ClipResult,
    Row,
    average_rows,
    evaluate,
    find_sources,
    format_table,
    load_reference,
    result_to_json,
)
from skipsr_cli.weights import load_model


def write_png(path: Path, image: np.ndarray) -> Path:
    """One RGB picture (H, W, 3) uint8 as a PNG, through PyAV's png encoder."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def smooth_image(height: int, width: int, phase: float) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack(
        [128 + 90 * np.sin(x / 7 + phase), 128 + 90 * np.cos(y / 5 - phase), (x + y) * 2], -1
    )
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    return load_model("debug", random_weights=True)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    return make_clip(path, width=64, height=48, frames=8, rate=Fraction(24), audio=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two 50x38 PNGs (neither side divides by 4, so x4 crops) and a stray text file to ignore."""
    root = tmp_path_factory.mktemp("images")
    write_png(root / "b.png", smooth_image(38, 50, 1.0))
    write_png(root / "a.png", smooth_image(38, 50, 0.0))
    (root / "notes.txt").write_text("not media\n")
    return root


def assert_complete(result, clips: int) -> None:
    """Every track has all four methods, with finite figures in range and JSON that round-trips."""
    assert len(result.clips) == clips
    for rows in [c.rows for c in result.clips] + [result.averages]:
        for track in ("clean", "web"):
            assert [r.method for r in rows if r.track == track] == list(METHODS)
        for r in rows:
            assert math.isfinite(r.psnr) and -1 <= r.ssim <= 1
            assert r.flicker is None or (math.isfinite(r.flicker) and r.flicker >= 0)
            if r.method in ("lanczos", "bicubic"):
                assert r.psnr > 15 and r.skip is None
            elif r.method == "no-skip":
                assert r.skip == 0.0
            else:
                assert 0.0 <= r.skip <= 1.0
    text = json.dumps(result_to_json(result), allow_nan=False)
    assert json.loads(text)["scale"] == result.scale


@pytest.mark.parametrize("scale", [2, 4])
def test_video_all_methods(video, model, scale):
    lines = []
    result = evaluate([video], scale, model, frames=5, chunk_frames=4, log=lines.append)
    assert_complete(result, 1)
    clip = result.clips[0]
    assert (clip.name, clip.frames, clip.size, clip.crop) == ("clip.mp4", 5, (48, 64), (0, 0))
    assert all(r.flicker is not None for r in clip.rows)
    assert result.averages == clip.rows  # one clip: the average is that clip
    assert "clip.mp4: clean model" in lines
    table = format_table(result)
    for word in ("clip.mp4", "average over 1 clip", "no-skip", "lanczos", "bicubic", "flicker"):
        assert word in table


@pytest.mark.parametrize("scale", [2, 4])
def test_image_folder_all_methods(folder, model, scale):
    result = evaluate([folder], scale, model)
    assert_complete(result, 2)
    assert [c.name for c in result.clips] == ["a.png", "b.png"]
    crop = (38 % scale, 50 % scale)
    for clip in result.clips:
        assert (clip.frames, clip.crop, clip.size) == (1, crop, (38 - crop[0], 50 - crop[1]))
        assert all(r.flicker is None for r in clip.rows)  # one frame: no change to compare
    assert all(r.flicker is None for r in result.averages)
    assert json.loads(json.dumps(result_to_json(result)))["clips"][0]["rows"][0]["flicker"] is None


def test_reference_is_cropped_at_bottom_and_right(folder):
    source = find_sources([folder / "a.png"])[0]
    ref = load_reference(source, 4)
    expected = torch.from_numpy(smooth_image(38, 50, 0.0)[:36, :48]).permute(2, 0, 1).float() / 255
    assert ref.crop == (2, 2)
    assert ref.frames.shape == (1, 3, 36, 48)
    torch.testing.assert_close(ref.frames[0], expected, rtol=0, atol=0)


def test_a_ten_bit_reference_is_read_at_its_depth(tmp_path):
    """A 10-bit video decodes to 16-bit RGB: the reference must be scaled by 65535, not 255."""
    path = make_clip(
        tmp_path / "deep.mkv", width=64, height=48, frames=3, audio=False, pix_fmt="yuv420p10le"
    )
    ref = load_reference(find_sources([path])[0], 2)
    assert 0.05 < ref.frames.mean().item() < 0.95 and ref.frames.max().item() <= 1.0
    result = evaluate([path], 2, methods=("lanczos",), frames=3)
    assert result.clips[0].rows[0].psnr > 20


def test_a_pq_reference_finds_its_shots_as_upscale_does(model, tmp_path, monkeypatch):
    """The shots of a PQ clip are found with its transfer (16), as `upscale` finds them; eval
    read every reference as SDR. Images and SDR videos name none."""
    from media import make_colour_clip

    from skipsr_cli.measure import evaluate as evaluation

    seen = []

    def spy(lr, step=1, transfer=None):
        seen.append(transfer)
        return shot_starts(lr, step, transfer)

    shot_starts = evaluation.shot_starts
    monkeypatch.setattr(evaluation, "shot_starts", spy)
    rgb = smooth_image(48, 64, 0.0)
    pq = make_colour_clip(
        tmp_path / "pq.mp4", rgb, matrix=9, colour_range=1, primaries=9, transfer=16, frames=3
    )
    assert load_reference(find_sources([pq])[0], 2).transfer == 16
    evaluate([pq], 2, model, methods=("model",), frames=3)
    assert seen and set(seen) == {16}
    seen.clear()
    sdr = make_clip(tmp_path / "sdr.mp4", width=64, height=48, frames=3, audio=False)
    evaluate([sdr], 2, model, methods=("model",), frames=3)
    assert seen and set(seen) == {None}


def test_mixed_paths_and_frame_limit(video, folder):
    result = evaluate([video, folder / "b.png"], 2, methods=("lanczos",), frames=3)
    assert [(c.name, c.frames) for c in result.clips] == [("clip.mp4", 3), ("b.png", 1)]
    assert [(r.track, r.method) for r in result.averages] == [
        ("clean", "lanczos"),
        ("web", "lanczos"),
    ]
    # Averages weigh clips equally; flicker averages over the clips that have one (the video).
    clean = [c.rows[0] for c in result.clips]
    assert result.averages[0].psnr == pytest.approx((clean[0].psnr + clean[1].psnr) / 2)
    assert result.averages[0].flicker == clean[0].flicker
    assert "average over 2 clip(s); flicker over the 1 with 2+ frames" in format_table(result)


def test_threshold_reaches_the_model(video, model):
    def skip(threshold: float) -> float:
        result = evaluate([video], 4, model, frames=4, methods=("model",), threshold=threshold)
        return result.clips[0].rows[0].skip

    assert skip(1e9) == 0.0  # every predicted score is below tau: every token kept
    assert skip(-1e9) == 1.0  # none below: every token skipped


def test_a_fixed_share_skips_the_tokens_scored_highest(video, model):
    from models.mask_predictor import keep_ranked

    scores = torch.tensor([[[[31.0, 45.0], [38.0, 52.0]]]])  # (B, T', H', W')
    assert keep_ranked(scores, 0.5).flatten().tolist() == [True, False, True, False]
    assert keep_ranked(scores, 0.0).all() and not keep_ranked(scores, 0.99).any()
    result = evaluate([video], 4, model, frames=4, methods=("model",), skip_fraction=0.3)
    skipped = [r.skip for r in result.clips[0].rows]
    assert all(abs(s - 0.3) < 0.05 for s in skipped), skipped  # whole tokens of a small grid
    assert result_to_json(result)["skip_fraction"] == 0.3
    assert "30% of tokens scored highest skipped" in format_table(result)


def test_average_rows():
    def row(psnr: float, flicker: float | None, skip: float | None) -> Row:
        return Row("clean", "model", psnr, 0.5, flicker, skip)

    clips = [
        ClipResult("a", "a", 4, (8, 8), (0, 0), [row(20.0, 2.0, 0.25)]),
        ClipResult("b", "b", 1, (8, 8), (0, 0), [row(30.0, None, 0.75)]),
    ]
    assert average_rows(clips) == [Row("clean", "model", 25.0, 0.5, 2.0, 0.5)]


def test_bad_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        evaluate([tmp_path / "missing.mp4"], 2, methods=("bicubic",))
    with pytest.raises(InputError, match="no images or videos"):
        evaluate([tmp_path], 2, methods=("bicubic",))
    with pytest.raises(InputError):
        evaluate([make_non_video(tmp_path / "fake.mp4")], 2, methods=("bicubic",))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        evaluate([tmp_path / "broken.png"], 2, methods=("bicubic",))


def test_bad_arguments_are_usage_errors(video):
    with pytest.raises(UsageError, match="need a model"):
        evaluate([video], 2)
    with pytest.raises(UsageError, match="methods"):
        evaluate([video], 2, methods=("nearest",))


def test_several_models_in_one_run_share_the_inputs(video, model):
    """Rows per model, named; a model measured twice under two names gives the same figures, and
    the same as alone: every model sees the very same degraded inputs."""
    alone = evaluate([video], 2, model, frames=3, methods=("model", "lanczos"))
    both = evaluate([video], 2, {"a": model, "b": model}, frames=3, methods=("model", "lanczos"))
    rows = {(r.track, r.method): r for r in both.clips[0].rows}
    assert sorted(rows) == sorted(
        (t, m) for t in ("clean", "web") for m in ("model:a", "model:b", "lanczos")
    )

    def figures(result, name: str = "") -> dict:
        """(track, method) -> every figure, model `name`'s rows under the plain label "model"."""
        return {
            (r.track, r.method.removesuffix(f":{name}")): (r.psnr, r.ssim, r.flicker, r.skip)
            for r in result.clips[0].rows
            if r.method in ("model", "lanczos", f"model:{name}")
        }

    # Exactly equal, whole tables at once: a failure lists every row that moved, so it tells
    # different inputs (the lanczos rows move too) from a different network output (model only).
    assert figures(both, "a") == figures(alone)
    assert figures(both, "b") == figures(alone)
    assert "model:a" in format_table(both)


def test_eval_command_compares_weights_files(video, tmp_path):
    from typer.testing import CliRunner

    from skipsr_cli.cli import app
    from skipsr_cli.weights import load_model, save_model

    for name, seed in (("one", 1), ("two", 2)):
        save_model(
            load_model("debug", random_weights=True, seed=seed), tmp_path / f"{name}.safetensors"
        )
    args = ["eval", str(video), "--frames", "2", "--json", "-q", "--device", "cpu"]
    args += [
        "--weights",
        str(tmp_path / "one.safetensors"),
        "--weights",
        str(tmp_path / "two.safetensors"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    methods = {r["method"] for r in json.loads(result.stdout)["averages"]}
    assert {"model:one", "model:two", "no-skip:one", "no-skip:two", "lanczos", "bicubic"} == methods


def test_eval_command_compares_denoise_blends(video, tmp_path):
    from typer.testing import CliRunner

    from skipsr_cli.cli import app
    from skipsr_cli.weights import load_model, save_model

    for name, seed in (("one", 1), ("two", 2)):
        save_model(
            load_model("debug", random_weights=True, seed=seed), tmp_path / f"{name}.safetensors"
        )
    args = ["eval", str(video), "--frames", "2", "--json", "-q", "--device", "cpu"]
    args += ["--weights", str(tmp_path / "one.safetensors")]
    args += ["--denoise-weights", str(tmp_path / "two.safetensors")]
    result = CliRunner().invoke(app, [*args, "--denoise", "0", "--denoise", "1"])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r["psnr"] for r in json.loads(result.stdout)["averages"]}
    assert {"model:one@d0", "model:one@d1", "no-skip:one@d0", "lanczos"} <= set(rows)
    assert rows["model:one@d0"] != rows["model:one@d1"]
    # --denoise 1 towards two.safetensors is two.safetensors itself: the same figures
    base = ["eval", str(video), "--frames", "2", "--json", "-q", "--device", "cpu"]
    two = CliRunner().invoke(app, [*base, "--weights", str(tmp_path / "two.safetensors")])
    assert two.exit_code == 0, two.output
    alone = {r["method"]: r["psnr"] for r in json.loads(two.stdout)["averages"]}
    assert alone["model"] == rows["model:one@d1"]
