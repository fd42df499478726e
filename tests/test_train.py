"""Training: the validation split is held out, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from media import make_clip

from models import PRESETS, DiTArgs, ModelArgs, VAEArgs
from skipsr_cli.errors import UsageError
from skipsr_cli.train import loop
from skipsr_cli.train.checkpoint import SHARD_BYTES, load_tensors, save_tensors
from skipsr_cli.train.data import VALIDATION, read_image, split, write_jpeg
from skipsr_cli.train.data import pack as pack_sources
from skipsr_cli.train.loop import TrainConfig, train


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pack")
    (root / "images").mkdir()
    (root / "videos").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        y, x = np.mgrid[0:120, 0:160]
        image = np.stack(
            [
                128 + 100 * np.sin(x / (7 + i)),
                128 + 100 * np.cos(y / 9),
                rng.integers(0, 255, (120, 160)),
            ],
            -1,
        )
        write_jpeg(image.clip(0, 255).astype(np.uint8), root / "images" / f"img{i}.jpg")
    make_clip(root / "videos" / "clip.mp4", width=96, height=80, frames=12, audio=False)
    return root


def run(
    pack: Path,
    out: Path,
    stage: str,
    steps: int,
    init: Path | None = None,
    args: ModelArgs = PRESETS["debug"],
    decoder: bool = False,
    stop_at: int | None = None,
    reuse: int = 1,
    degrade: str = "mixed",
    photo_moves: str = "exact",
    video_fraction: float = 0.3,
    workers: int = 0,
) -> None:
    cfg = TrainConfig(
        stage,
        pack,
        out,
        args,
        init=init,
        decoder=decoder,
        stop_at=stop_at,
        reuse=reuse,
        degrade=degrade,
        photo_moves=photo_moves,
        video_fraction=video_fraction,
        max_steps=steps,
        batch=2,
        frames=4,
        crop=32,
        workers=workers,
        warmup=2,
        save_every=1e9,
    )
    train(cfg, lambda line: None)


@pytest.mark.parametrize("stage, reuse", [("vae", 1), ("dit", 1), ("dit", 3)])
def test_resumed_training_equals_uninterrupted(pack, tmp_path, stage, reuse):
    """With reuse 3 the run stops mid-batch (step 2 of 3) and must pick up at its third view."""
    init = None
    if stage == "dit":
        run(pack, tmp_path / "vae", "vae", 1)
        init = tmp_path / "vae.safetensors"
    run(pack, tmp_path / "straight", stage, 4, init, reuse=reuse)
    run(pack, tmp_path / "resumed", stage, 4, init, stop_at=2, reuse=reuse)
    run(pack, tmp_path / "resumed", stage, 4, init, reuse=reuse)  # picks up at step 2
    a = load_tensors(tmp_path / "straight", ["model-000.safetensors"])
    b = load_tensors(tmp_path / "resumed", ["model-000.safetensors"])
    assert a.keys() == b.keys()
    changed = 0
    for key in a:
        assert torch.equal(a[key], b[key]), key
    init_state = load_tensors(tmp_path / "vae", ["model-000.safetensors"]) if init else None
    if init_state is not None:
        changed = sum(not torch.equal(a[k], init_state[k]) for k in a if k.startswith("dit."))
        assert changed > 0  # the stage did train


def test_data_workers_give_the_batches_of_the_process_itself(pack, tmp_path, monkeypatch):
    """Two data workers, started from a fork server (never forks of the training process, which
    hung a run on the GPU machine), make the same batches in the same order as the training
    process alone: the weights are equal."""
    run(pack, tmp_path / "vae", "vae", 1)
    init = tmp_path / "vae.safetensors"
    run(pack, tmp_path / "alone", "dit", 3, init)
    made, data_loader = [], loop.DataLoader
    monkeypatch.setattr(loop, "DataLoader", lambda *a, **k: made.append(k) or data_loader(*a, **k))
    run(pack, tmp_path / "workers", "dit", 3, init, workers=2)
    assert [k["multiprocessing_context"] for k in made] == ["forkserver"]
    a = load_tensors(tmp_path / "alone", ["model-000.safetensors"])
    b = load_tensors(tmp_path / "workers", ["model-000.safetensors"])
    start = load_tensors(tmp_path / "vae", ["model-000.safetensors"])
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(a[k], start[k]) for k in a if k.startswith("dit."))  # it trained


PIXEL = ModelArgs(
    vae=VAEArgs(kind="pixel", spatial=4, temporal=1, latent_channels=48, widths=(8,), blocks=(1,)),
    dit=DiTArgs(
        latent_channels=48, width=32, depth=2, heads=2, head_dim=16, mlp_hidden=64, window=(2, 4, 4)
    ),
    mask=PRESETS["debug"].mask,
)


def test_pixel_latent_trains_its_decoder_with_the_transformer(pack, tmp_path):
    with pytest.raises(UsageError, match="nothing to train alone"):
        run(pack, tmp_path / "vae", "vae", 1, args=PIXEL)
    run(pack, tmp_path / "dit", "dit", 3, args=PIXEL, decoder=True)
    state = load_tensors(tmp_path / "dit", ["model-000.safetensors"])
    # both start at zero (the DiT's output layer, the decoder's last convolution) and must move
    assert state["vae.decoder.conv_out.weight"].abs().max() > 0
    assert state["dit.out.weight"].abs().max() > 0


def test_validation_files_are_held_out(tmp_path):
    for rel in [*VALIDATION, "images/x/train.jpg", "video/y/train.mp4"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    train_files, held = split(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in held) == sorted(VALIDATION)
    assert not set(train_files) & set(held) and len(train_files) == 2


def test_pack_downscales_photos_and_adds_native_scale_crops(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (200, 300, 3)).astype(np.uint8)  # larger than max_side
    small = rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)
    (tmp_path / "src/images/a").mkdir(parents=True)
    write_jpeg(big, tmp_path / "src/images/a/big.jpg")
    write_jpeg(small, tmp_path / "src/images/a/small.jpg")
    held = tmp_path / "src" / VALIDATION[1]
    held.parent.mkdir(parents=True)
    write_jpeg(big, held)
    manifest = pack_sources(tmp_path / "src", tmp_path / "pack", 150, native_crops=2, crop_side=64)
    names = sorted(p.name for p in (tmp_path / "pack/images").iterdir())
    assert names == [
        "images__a__big.jpg",
        "images__a__big__native0.jpg",
        "images__a__big__native1.jpg",
        "images__a__small.jpg",
    ]  # the held-out photo is not packed, and a photo within max_side gets no crops
    assert len(manifest["files"]) == 2
    assert read_image(tmp_path / "pack/images/images__a__big.jpg").shape == (100, 150, 3)
    source = read_image(tmp_path / "src/images/a/big.jpg").astype(int)
    for i in range(2):  # each crop is the source's own pixels, somewhere in it (up to the JPEG)
        crop = read_image(tmp_path / f"pack/images/images__a__big__native{i}.jpg").astype(int)
        assert crop.shape == (64, 64, 3)
        errors = [
            np.abs(source[y : y + 64, x : x + 64] - crop).mean()
            for y in range(200 - 63)
            for x in range(300 - 63)
        ]
        assert min(errors) < 6 < np.median(errors)


def test_shards_stay_under_the_limit(tmp_path):
    tensors = {f"t{i}": torch.randn(2**20) for i in range(9)}  # 9 x 4 MiB
    names = save_tensors(tensors, tmp_path, "big")
    assert len(names) == 3
    assert all((tmp_path / n).stat().st_size <= SHARD_BYTES + 2**16 for n in names)
    back = load_tensors(tmp_path, names)
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_augment_keeps_the_pixels_and_varies_the_view():
    import random

    from skipsr_cli.train.data import augment

    frame = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    clip = torch.stack((frame, frame / 2))
    views = [augment(clip, random.Random(i)) for i in range(64)]
    for v in views:  # the same values, moved: a permutation of pixels and of channels
        assert v.shape == clip.shape
        assert torch.equal(v.flatten().sort().values, clip.flatten().sort().values)
        assert torch.equal(v[1], v[0] / 2)  # every frame moved alike
    distinct = {tuple(v.flatten().tolist()) for v in views}
    assert len(distinct) > 24  # of the 48 variants, most appear in 64 draws
    assert torch.equal(augment(clip, random.Random(5)), augment(clip, random.Random(5)))


def test_repeated_scales_weight_the_draw(pack, tmp_path):
    import random

    from skipsr_cli.train.data import ClipPairs, Sources, cache_videos

    pairs = ClipPairs(pack, tmp_path / "cache", 1, 2, 32, 0, 0, scales=(2, 2, 4), degrade="none")
    cache_videos(pack, tmp_path / "cache")
    sources = Sources(pack, tmp_path / "cache")
    drawn = [pairs.make_batch(sources, random.Random(k)) for k in range(200)]
    for hr, lr, scale in drawn:
        assert lr.shape[-1] * scale == hr.shape[-1] == 32
    twos = sum(scale == 2 for _, _, scale in drawn)
    # about 133 of 200 at x2 when 2 is listed twice; an unweighted draw gives about 100 (sd 7)
    assert 115 <= twos <= 150, twos


def test_the_video_cache_says_what_it_decodes_and_keeps_only_whole_files(
    pack, tmp_path, monkeypatch
):
    import shutil

    from skipsr_cli.train import data
    from skipsr_cli.train.data import Sources, cache_videos

    lines: list[str] = []
    cache = tmp_path / "cache"
    cache_videos(pack, cache, log=lines.append)
    videos = sorted((pack / "videos").iterdir())
    assert len(lines) == len(videos) > 0
    assert lines[0] == f"cached training video 1 of {len(videos)}: {videos[0].name}"
    names = {p.name for p in cache.iterdir()}
    assert names == {f"video_{i}.npy" for i in range(len(videos))} | {"videos.json"}
    cache_videos(pack, cache, log=lines.append)  # nothing decoded twice
    assert len(lines) == len(videos)
    assert len(Sources(pack, cache).videos) == len(videos)

    # a pack whose videos changed: the cache is made again, never loaded with another's files
    changed = tmp_path / "changed"
    shutil.copytree(pack, changed)
    extra = changed / "videos" / ("zz_" + videos[0].name)
    shutil.copy(videos[0], extra)

    def cut_short(path, array):  # a run killed while it writes its first file
        Path(path).write_bytes(b"cut short")
        raise OSError("killed")

    monkeypatch.setattr(data.np, "save", cut_short)
    with pytest.raises(OSError, match="killed"):
        cache_videos(changed, cache)
    # the stale files are gone and the cut one never took a video's name
    assert not list(cache.glob("video_*.npy"))
    monkeypatch.undo()
    cache_videos(changed, cache)
    assert len(Sources(changed, cache).videos) == len(videos) + 1


def test_train_run_rejects_a_bad_scale_and_a_folder_that_is_not_a_pack(pack, tmp_path):
    from typer.testing import CliRunner

    from skipsr_cli.cli import app

    base = ["train", "run", "dit", "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(app, [*base, "--data", str(pack), "-s", "5"])
    assert r.exit_code == 2 and "--scale" in r.output
    r = CliRunner().invoke(app, [*base, "--data", str(tmp_path)])
    assert r.exit_code == 3 and "not a training pack" in r.output
    r = CliRunner().invoke(app, [*base, "--data", str(pack), "--degrade", "heavy"])
    assert (
        r.exit_code == 2
        and "--degrade must be one of mixed, video, clean, delivery, web, none" in r.output
    )
    r = CliRunner().invoke(app, [*base, "--data", str(pack), "--photo-moves", "warp"])
    assert r.exit_code == 2 and "--photo-moves must be one of exact, resampled" in r.output
    assert not (tmp_path / "o").exists()


def test_a_run_resumes_only_on_the_inputs_it_trained_on(pack, tmp_path):
    run(pack, tmp_path / "vae", "vae", 2, stop_at=1, degrade="clean")
    with pytest.raises(UsageError, match="trained with --degrade clean"):
        run(pack, tmp_path / "vae", "vae", 2)  # mixed, the default
    run(pack, tmp_path / "vae", "vae", 2, degrade="clean")  # the same inputs: it goes on


def test_a_run_resumes_only_on_the_photo_moves_it_trained_on(pack, tmp_path):
    run(pack, tmp_path / "vae", "vae", 2, stop_at=1, degrade="none", photo_moves="resampled")
    with pytest.raises(UsageError, match="trained with --photo-moves resampled"):
        run(pack, tmp_path / "vae", "vae", 2, degrade="none")  # exact, the default
    run(pack, tmp_path / "vae", "vae", 2, degrade="none", photo_moves="resampled")


def test_a_run_resumes_only_on_the_share_of_videos_it_trained_on(pack, tmp_path):
    run(pack, tmp_path / "vae", "vae", 2, stop_at=1, degrade="none", video_fraction=0.5)
    with pytest.raises(UsageError, match="trained with --video-fraction 0.5"):
        run(pack, tmp_path / "vae", "vae", 2, degrade="none")  # 0.3, the default
    run(pack, tmp_path / "vae", "vae", 2, degrade="none", video_fraction=0.5)


def test_a_run_resumes_only_on_its_own_schedule(pack, tmp_path):
    run(pack, tmp_path / "dit", "dit", 4, stop_at=1, degrade="none", reuse=2)
    with pytest.raises(UsageError, match=r"trained with --reuse 2 \(now 1\)"):
        run(pack, tmp_path / "dit", "dit", 4, degrade="none")
    with pytest.raises(UsageError, match="trained with --max-steps 4"):
        run(pack, tmp_path / "dit", "dit", 6, degrade="none", reuse=2)


def _place(photo: torch.Tensor, frame: torch.Tensor) -> tuple[int, int]:
    """Where `frame` sits in `photo`, pixel for pixel (it must sit in exactly one place)."""
    side = frame.shape[-1]
    found = [
        (y, x)
        for y in range(photo.shape[1] - side + 1)
        for x in range(photo.shape[2] - side + 1)
        if torch.equal(photo[:, y : y + side, x : x + side], frame)
    ]
    assert len(found) == 1
    return found[0]


def test_exact_photo_pans_keep_the_photos_pixels():
    """Every frame of an exact pan is a crop of the photo itself (a photo too small to zoom out
    of), each frame moved from the last by the same whole pixels, at most MAX_PAN; over many draws
    the pans go both ways on both axes, and a photo with no room along one side holds still there."""
    import random

    from skipsr_cli.train.data import MAX_PAN, exact_photo_clip

    photo = torch.rand(3, 40, 56)
    moves = set()
    for k in range(60):
        clip = exact_photo_clip(photo, 4, 24, random.Random(k))
        assert clip.shape == (4, 3, 24, 24)
        places = [_place(photo, frame) for frame in clip]
        steps = {(b[0] - a[0], b[1] - a[1]) for a, b in zip(places, places[1:], strict=False)}
        assert len(steps) == 1
        ((dy, dx),) = steps
        assert abs(dy) <= MAX_PAN and abs(dx) <= MAX_PAN
        moves.add((dy, dx))
    assert {dy > 0 for dy, _ in moves} == {True, False} == {dx < 0 for _, dx in moves}
    assert {dy < 0 for dy, _ in moves} == {True, False} == {dx > 0 for _, dx in moves}
    narrow = torch.rand(3, 25, 120)  # one row to spare: no room for a vertical pan of 4 frames
    for k in range(10):
        clip = exact_photo_clip(narrow, 4, 24, random.Random(k))
        assert len({_place(narrow, frame)[0] for frame in clip}) == 1


def test_exact_photo_pans_zoom_out_and_fit_small_photos():
    import random

    from skipsr_cli.train.data import exact_photo_clip

    photo = torch.rand(3, 200, 200)  # room to zoom out up to 200 / (1.6 * 24) = 5.2 times
    spreads = [exact_photo_clip(photo, 2, 24, random.Random(k)).std().item() for k in range(20)]
    assert min(spreads) < 0.25  # shrunk views average the noise out: less spread than the photo's
    small = exact_photo_clip(torch.rand(3, 20, 40), 2, 24, random.Random(0))  # resampled instead
    assert small.shape == (2, 3, 24, 24)


def test_degradation_profiles_draw_what_they_promise():
    """`none` is the bicubic downscale itself; `clean` stays within a light codec's reach of it;
    `mixed`, `video` and `delivery` go further (blur, noise, heavy H.264 or JPEG) on some draws; every profile
    is a pure function of its draw, so resumed training sees the same pairs."""
    import random

    from skipsr_cli.train.degrade import PROFILES, random_degrade, resize

    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    luma = 0.2 + 0.3 * (x / 63) + 0.3 * (((x + y) % 8) / 7)  # a ramp and fine grey stripes
    base = torch.stack([luma, luma + 0.05 * y / 63, luma - 0.05])  # chroma smooth (4:2:0 keeps it)
    hr = torch.stack([base.roll(i, dims=2) for i in range(2)])  # (T=2, 3, 64, 64)
    plain = resize(hr, (32, 32), "bicubic")
    assert torch.equal(random_degrade(hr, 2, random.Random(0), "none"), plain)
    worst, best = {}, {}
    for profile in PROFILES:
        errors = []
        for seed in range(12):
            out = random_degrade(hr, 2, random.Random(seed), profile)
            assert out.shape == (2, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
            again = random_degrade(hr, 2, random.Random(seed), profile)
            assert torch.equal(out, again)
            errors.append((out - resize(hr, (32, 32), "area")).abs().mean().item())
        worst[profile], best[profile] = max(errors), min(errors)
    assert worst["clean"] < 0.03  # kernels differ a little; CRF 8-16 keeps the stripes
    assert worst["mixed"] > worst["clean"] and worst["video"] > worst["clean"]
    assert worst["delivery"] > worst["clean"]  # CRF up to 30
    assert best["web"] > best["delivery"]  # every clip through x264 at CRF 22 or more
    with pytest.raises(ValueError, match="unknown degradation profile"):
        random_degrade(hr, 2, random.Random(0), "heavy")


def test_frame_sequences_under_video_are_packed_as_clips(tmp_path):
    """A DAVIS-style folder of numbered JPEGs is one clip in the pack, never a pile of photos."""
    from skipsr_cli.train.data import decode_video, frame_sequences

    root = tmp_path / "src"
    seq = root / "video" / "davis" / "dog"
    seq.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(5):
        write_jpeg(rng.integers(0, 256, (48, 64, 3)).astype(np.uint8), seq / f"{i:05d}.jpg")
    (root / "images").mkdir()
    write_jpeg(rng.integers(0, 256, (40, 40, 3)).astype(np.uint8), root / "images" / "a.jpg")
    assert frame_sequences(root) == [seq]
    manifest = pack_sources([root], tmp_path / "pack", max_side=64)
    assert sorted(f["packed"] for f in manifest["files"]) == [
        "images__a.jpg",
        "video__davis__dog.mp4",
    ]
    clip = decode_video(tmp_path / "pack" / "videos" / "video__davis__dog.mp4")
    assert clip.shape == (5, 48, 64, 3)
    assert [p.name for p in (tmp_path / "pack" / "images").iterdir()] == ["images__a.jpg"]


def test_two_roots_pack_into_one_with_their_names_in_front(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("one", "two"):
        (tmp_path / name / "images").mkdir(parents=True)
        write_jpeg(
            rng.integers(0, 256, (32, 32, 3)).astype(np.uint8), tmp_path / name / "images" / "x.jpg"
        )
    pack_sources([tmp_path / "one", tmp_path / "two"], tmp_path / "pack")
    names = sorted(p.name for p in (tmp_path / "pack" / "images").iterdir())
    assert names == ["one__images__x.jpg", "two__images__x.jpg"]


def test_temporal_loss_weighs_frame_changes_against_the_target():
    """The temporal term is what grows the loss when the output moves unlike the target."""
    from models import SkipSR
    from skipsr_cli.train.loop import dit_loss

    model = SkipSR(PIXEL)
    model.init_weights(0)
    hr = torch.rand(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    lr = torch.nn.functional.avg_pool3d(hr, (1, 2, 2))
    plain, _ = dit_loss(model, hr, lr, step=5)
    with_time, _ = dit_loss(model, hr, lr, step=5, temporal=1.0)
    assert with_time.item() > plain.item()
    with_time.backward()
    assert model.vae.decoder.conv_out.weight.grad is not None


def test_a_wider_decoder_starts_from_narrower_weights(pack, tmp_path):
    """--init-partial: every tensor that fits is loaded; the rest (the wider decoder) starts fresh."""
    from dataclasses import replace

    from models import SkipSR
    from skipsr_cli.train.loop import TrainConfig, build
    from skipsr_cli.weights import save_model

    narrow = SkipSR(PIXEL)
    narrow.init_weights(4)
    save_model(narrow, tmp_path / "narrow.safetensors", stage="dit", step="0")
    wide = replace(PIXEL, vae=replace(PIXEL.vae, widths=(16,), blocks=(2,)))
    cfg = TrainConfig("dit", pack, tmp_path / "out", wide, init=tmp_path / "narrow.safetensors")
    with pytest.raises(RuntimeError):  # a strict load refuses the other shapes
        build(cfg, torch.device("cpu"))
    model = build(replace(cfg, init_partial=True), torch.device("cpu"))
    for key, value in narrow.state_dict().items():
        if key.startswith("dit."):
            assert torch.equal(model.state_dict()[key], value), key
    assert model.vae.decoder.conv_in.weight.shape[0] == 16


def test_a_deeper_network_starts_computing_what_the_shallower_one_did(pack, tmp_path):
    """--init-partial into more transformer layers, decoder blocks, a fine decoder stage, a
    linear branch and a decoder that also sees the neighbouring frames: the new parts start as
    the identity (the new inputs of the first convolution at zero), so the output is unchanged
    until training moves them, and the fine stage and the linear branch train with the decoder."""
    from dataclasses import replace

    from models import SkipSR
    from models.skipsr import Settings
    from skipsr_cli.train.loop import TrainConfig, build, trainable
    from skipsr_cli.weights import save_model

    shallow = SkipSR(PIXEL)
    shallow.init_weights(5)
    with torch.no_grad():  # a trained-looking net: nothing at zero
        for p in shallow.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    save_model(shallow, tmp_path / "shallow.safetensors", stage="dit", step="0")
    # a fine stage, a linear branch, one neighbouring frame each side
    vae = replace(PIXEL.vae, widths=(8, 4), blocks=(2, 1), linear=3, neighbours=1)
    deeper = replace(PIXEL, dit=replace(PIXEL.dit, depth=3), vae=vae)
    cfg = TrainConfig("dit", pack, tmp_path / "o", deeper, init=tmp_path / "shallow.safetensors")
    model = build(replace(cfg, init_partial=True), torch.device("cpu")).eval()
    assert len(model.dit.blocks) == 3 and len(model.vae.decoder.blocks) == 2
    assert model.vae.decoder.conv_in.weight.shape[1] == 3 * 48
    tuned = {id(p) for p in trainable(model, "dit", decoder=True).parameters()}
    assert all(id(p) in tuned for p in [*model.vae.fine.parameters(), model.vae.linear.weight])
    lr = torch.rand(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        a = shallow.eval()(lr, (32, 32), Settings(skip=False)).frames
        b = model(lr, (32, 32), Settings(skip=False)).frames
        assert torch.equal(a, b)
        model.vae.decoder.conv_in.weight[:, 48:].normal_(0, 0.05)  # now the neighbours count
        assert not torch.equal(a, model(lr, (32, 32), Settings(skip=False)).frames)


def test_gradients_are_averaged_over_processes(tmp_path):
    """Two gloo processes with different gradients end with their mean, in place of each."""
    import subprocess
    import sys

    script = tmp_path / "avg.py"
    script.write_text(
        "import torch, torch.distributed as dist\n"
        "from skipsr_cli.train.loop import average_gradients, start_ranks\n"
        "rank, world = start_ranks()\n"
        "a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))\n"
        "a.grad = torch.full((3,), float(rank + 1))\n"
        "average_gradients([a, b], world)\n"  # b has no gradient: it counts as zeros
        "assert torch.equal(a.grad, torch.full((3,), 1.5)) and torch.equal(b.grad, torch.zeros(2, 2))\n"
        "dist.destroy_process_group()\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_only_the_decoders_first_convolution_widens_and_only_for_more_neighbours():
    """--init-partial from one neighbouring frame a side to two starts at the same output (the
    inputs of fewer neighbours are a prefix of those of more); a wider decoder or mask predictor
    is not "widened" (its other layers' loaded weights would read fresh random features)."""
    from dataclasses import replace

    from models import SkipSR
    from models.skipsr import Settings
    from skipsr_cli.train.warm_start import fitting_tensors, widened_inputs

    one = SkipSR(replace(PIXEL, vae=replace(PIXEL.vae, neighbours=1)))
    one.init_weights(7)
    with torch.no_grad():
        for p in one.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    two = SkipSR(replace(PIXEL, vae=replace(PIXEL.vae, neighbours=2)))
    two.init_weights(8)
    two.load_state_dict(fitting_tensors(two, widened_inputs(two, one.state_dict())))
    lr = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        a = one.eval()(lr, (32, 32), Settings(skip=False)).frames
        assert torch.equal(a, two.eval()(lr, (32, 32), Settings(skip=False)).frames)
    wide = SkipSR(replace(PIXEL, vae=replace(PIXEL.vae, widths=(16,))))  # conv_out: 8 -> 16 in
    narrow = SkipSR(PIXEL).state_dict()
    grown = widened_inputs(wide, narrow)
    assert all(torch.equal(grown[k], narrow[k]) for k in narrow)
