"""--denoise auto: the amount read from the source's own H.264 quantiser, the same blend wherever a
file runs (alone, in a batch, in an evaluation)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from av.sidedata.sidedata import Type as SideDataType
from media import make_clip

import skipsr_cli
from skipsr_cli.errors import UsageError
from skipsr_cli.measure.evaluate import evaluate_clip
from skipsr_cli.media import quantiser
from skipsr_cli.media.quantiser import mean_qp
from skipsr_cli.run.options import (
    AUTO,
    UpscaleOptions,
    denoise_amount,
    effective_denoise,
    parse_denoise,
)
from skipsr_cli.train.degrade import TRACKS, h264_encode
from skipsr_cli.weights import QP_CLEAN, QP_WEB, Blends, auto_denoise, load_model, save_model


def texture(frames: int = 6, height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1]: noise-like detail that moves, which x264 must quantise."""
    rng = np.random.default_rng(seed)
    base = rng.random((3, height, width + frames), dtype=np.float32)
    return torch.stack([torch.from_numpy(base[:, :, i : i + width]) for i in range(frames)])


def h264_file(path: Path, crf: int, seed: int = 0) -> Path:
    path.write_bytes(h264_encode(texture(seed=seed), crf).getvalue())
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """Two weights files of one (debug) network, to blend between."""
    folder = tmp_path_factory.mktemp("weights")
    paths = folder / "a.safetensors", folder / "b.safetensors"
    for seed, path in enumerate(paths, 1):
        save_model(load_model("debug", random_weights=True, seed=seed), path)
    return paths


def test_mean_qp_reads_how_coarsely_h264_was_quantised(tmp_path):
    fine = mean_qp(h264_file(tmp_path / "fine.mp4", 10))
    coarse = mean_qp(h264_file(tmp_path / "coarse.mp4", 40))
    assert fine is not None and coarse is not None
    assert fine < QP_CLEAN < QP_WEB < coarse


def test_other_codecs_images_and_junk_give_no_estimate(tmp_path):
    assert mean_qp(make_clip(tmp_path / "m.mp4", codec="mpeg4", frames=3, audio=False)) is None
    image = make_clip(tmp_path / "still.png", codec="png", pix_fmt="rgb24", frames=1, audio=False)
    assert mean_qp(image) is None
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0not a video" * 100)
    assert mean_qp(junk) is None


def test_the_quantiser_is_looked_up_by_type_as_pyav_19_lays_side_data_out():
    """PyAV 19's side data is a mapping whose iteration yields the types, not the data."""

    class Params:
        def qp_map(self) -> np.ndarray:
            return np.array([[20, 22], [24, 26]], dtype=np.int32)

    frame = SimpleNamespace(side_data={SideDataType.VIDEO_ENC_PARAMS: Params()})
    assert quantiser._frame_qp(frame) == 23.0
    assert quantiser._frame_qp(SimpleNamespace(side_data={})) is None


def test_a_stream_that_reports_no_quantiser_is_read_no_further_than_its_first_frames(
    tmp_path, monkeypatch
):
    """Where no frame reports a quantiser the estimate gives up after FRAMES, not at the end of
    what may be a film (it read all 5,000 frames of a clip on the GPU host, 4.3 s)."""
    clip = make_clip(tmp_path / "long.mp4", frames=5 * quantiser.FRAMES, audio=False)
    seen = []
    monkeypatch.setattr(quantiser, "_frame_qp", lambda frame: seen.append(frame.pts))
    assert mean_qp(clip) is None
    assert len(seen) == quantiser.FRAMES


def test_auto_denoise_is_linear_between_the_clean_and_the_web_quantiser():
    assert auto_denoise(None) == 0.0
    assert auto_denoise(QP_CLEAN - 5) == 0.0 and auto_denoise(QP_CLEAN) == 0.0
    assert auto_denoise((QP_CLEAN + QP_WEB) / 2) == pytest.approx(0.5)
    assert auto_denoise(QP_WEB) == 1.0 and auto_denoise(QP_WEB + 10) == 1.0


def test_parse_denoise():
    assert parse_denoise("auto") == AUTO and parse_denoise(" AUTO ") == AUTO
    assert parse_denoise("0.25") == 0.25 and parse_denoise(1) == 1.0
    for bad in ("1.5", "-0.1", "nan", "lots", float("inf")):
        with pytest.raises(UsageError, match="--denoise must be auto or a number from 0 to 1"):
            parse_denoise(bad)
    with pytest.raises(UsageError) as said:  # what was given, not the NaN it was read as
        parse_denoise("abc")
    assert str(said.value) == "--denoise must be auto or a number from 0 to 1, not 'abc'"


def test_an_input_gets_the_amount_of_its_own_quantiser(tmp_path):
    coarse = h264_file(tmp_path / "coarse.mp4", 40)
    auto = UpscaleOptions(denoise="auto")
    assert denoise_amount(auto, coarse) == auto_denoise(mean_qp(coarse)) == 1.0
    assert denoise_amount(auto, h264_file(tmp_path / "fine.mp4", 10)) == 0.0
    assert denoise_amount(UpscaleOptions(denoise=0.3), coarse) == 0.3


def test_blends_give_the_network_load_model_builds(pair):
    a, b = pair
    blends = Blends(weights=a, denoise_weights=b)
    for amount in (0.4, 1.0, 0.0, 0.4):
        got = blends.at(amount).state_dict()
        want = load_model(weights=a, denoise=amount, denoise_weights=b).state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), amount


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as f:
        return [frame.to_ndarray(format="rgb24") for frame in f.decode(video=0)]


def test_a_batch_runs_each_file_at_its_own_amount(tmp_path, pair):
    """Each output of a batch with --denoise auto, and of a single upscale with it, is the file a
    single upscale makes with that file's amount given outright."""
    a, b = pair
    folder = tmp_path / "in"
    folder.mkdir()
    inputs = [h264_file(folder / "fine.mp4", 10), h264_file(folder / "coarse.mp4", 40, seed=1)]
    common = dict(weights=a, denoise_weights=b, lossless=True, device="cpu")
    summary = skipsr_cli.upscale_batch(
        folder, tmp_path / "out", denoise="auto", ext="mkv", **common
    )
    assert [f.status for f in summary.files] == ["done", "done"], summary.files
    for path in inputs:
        amount = auto_denoise(mean_qp(path))
        alone = tmp_path / f"{path.stem}.alone.mkv"
        skipsr_cli.upscale(path, alone, denoise=amount, **common)
        auto = tmp_path / f"{path.stem}.auto.mkv"
        summary = skipsr_cli.upscale(path, auto, denoise="auto", **common)
        assert summary.denoise == amount  # said in the summary (and in --json)
        for made in (tmp_path / "out" / f"{path.stem}.mkv", auto):
            pairs = zip(frames_of(made), frames_of(alone), strict=True)
            assert all(np.array_equal(x, y) for x, y in pairs), made
    assert {auto_denoise(mean_qp(p)) for p in inputs} == {0.0, 1.0}  # two different networks ran


def test_a_given_network_runs_as_it_was_loaded(tmp_path, pair):
    """A network the caller loaded is blended already: auto (the default) runs it as it is, even
    on a coarse source, and an amount is refused."""
    net = load_model(weights=pair[0])
    clip = h264_file(tmp_path / "c.mp4", 30)
    assert UpscaleOptions().denoise == AUTO
    summary = skipsr_cli.upscale(clip, tmp_path / "o.mp4", model=net)
    assert summary.denoise == 0.0
    plain = skipsr_cli.upscale(clip, tmp_path / "p.mp4", model=pair[0], denoise=0)
    pairs = zip(frames_of(tmp_path / "o.mp4"), frames_of(plain.output), strict=True)
    assert all(np.array_equal(x, y) for x, y in pairs)
    with pytest.raises(UsageError, match="give load_model the amount"):
        skipsr_cli.upscale(clip, tmp_path / "q.mp4", model=net, denoise=0.5)


def test_auto_is_zero_where_there_is_nothing_to_blend_towards(tmp_path, pair):
    """The default auto on weights with no file to blend towards (a file of one's own, a preset
    that ships none, random weights) reads no quantiser and runs the weights as they are."""
    coarse = h264_file(tmp_path / "coarse.mp4", 34)
    for options in (
        UpscaleOptions(weights=pair[0]),
        UpscaleOptions(model="debug"),
        UpscaleOptions(model="debug", random_weights=True),
    ):
        assert effective_denoise(options) == 0.0
        assert denoise_amount(options, coarse) == 0.0
    given = UpscaleOptions(weights=pair[0], denoise_weights=pair[1])
    assert effective_denoise(given) == AUTO and denoise_amount(given, coarse) == 1.0


@torch.no_grad()
def test_evaluation_runs_each_track_at_the_amount_of_its_quantiser(pair):
    a, b = pair
    ref = texture(frames=4, height=64, width=96)
    amounts = {t.name: auto_denoise(t.apply_measured(ref, 2)[1]) for t in TRACKS.values()}
    models = {
        "auto": Blends(weights=a, denoise_weights=b),
        **{
            name: load_model(weights=a, denoise=amount, denoise_weights=b)
            for name, amount in amounts.items()
        },
    }
    result = evaluate_clip(ref, 2, models, methods=["model"])
    rows = {(r.track, r.method): r for r in result}
    for track, amount in amounts.items():
        assert rows[(track, "model:auto")].psnr == rows[(track, f"model:{track}")].psnr
        assert rows[(track, "model:auto")].denoise == amount  # said in the row (and the JSON)
        assert rows[(track, f"model:{track}")].denoise is None


def test_deeper_video_is_read_on_the_eight_bit_scale(tmp_path):
    """FFmpeg reports 10-bit H.264 QPs 12 higher for the same quantiser step: put back."""
    qps = {}
    for pix_fmt in ("yuv420p", "yuv420p10le"):
        path = tmp_path / f"{pix_fmt}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=25, options={"crf": "18"})
            stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
            for image in (texture(frames=6) * 255).byte().permute(0, 2, 3, 1).numpy():
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(stream.encode())
        qps[pix_fmt] = mean_qp(path)
    assert abs(qps["yuv420p10le"] - qps["yuv420p"]) < 3, qps


def test_load_model_takes_an_amount_not_auto(pair):
    with pytest.raises(UsageError, match="auto is worked out per input"):
        skipsr_cli.load_model(pair[0], denoise="auto", denoise_weights=pair[1], device="cpu")
    net = skipsr_cli.load_model(pair[0], denoise="0.5", denoise_weights=pair[1], device="cpu")
    want = load_model(weights=pair[0], denoise=0.5, denoise_weights=pair[1]).state_dict()
    assert all(torch.equal(net.state_dict()[k], want[k]) for k in want)


def test_a_record_holds_the_amount_or_the_auto_mapping():
    from skipsr_cli.batch.records import options_key

    assert options_key(UpscaleOptions(denoise="0.5")) == options_key(UpscaleOptions(denoise=0.5))
    auto = options_key(UpscaleOptions(denoise="auto"))["denoise"]
    assert auto.startswith("auto") and f"{QP_CLEAN:g}" in auto and f"{QP_WEB:g}" in auto


def test_eval_runs_auto_alone_and_refuses_a_blend_with_nothing_to_blend_towards(tmp_path, pair):
    import json

    from typer.testing import CliRunner

    from skipsr_cli.cli import app

    clip = h264_file(tmp_path / "ref.mp4", 8)
    args = ["eval", str(clip), "--frames", "2", "--json", "-q", "--device", "cpu"]
    args += ["--weights", str(pair[0])]
    refused = CliRunner().invoke(app, [*args, "--denoise", "0.5"])
    assert refused.exit_code == 2 and "--denoise-weights" in refused.output
    alone = CliRunner().invoke(app, [*args, "--denoise", "auto"])  # as in upscale: auto is 0
    assert alone.exit_code == 0, alone.output
    rows = json.loads(alone.stdout)["clips"][0]["rows"]
    assert {r["denoise"] for r in rows if r["method"] == "model"} == {None}  # no blend ran
    done = CliRunner().invoke(app, [*args, "--denoise", "auto", "--denoise-weights", str(pair[1])])
    assert done.exit_code == 0, done.output
    methods = {r["method"] for r in json.loads(done.stdout)["averages"]}
    assert {"model", "no-skip", "lanczos"} <= methods  # one network: plain rows
