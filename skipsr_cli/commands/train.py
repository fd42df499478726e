"""`skipsr train ...`: pack the data, run the stages, check the VAE."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from skipsr_cli.commands.common import (
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    exit_codes,
    pick_device,
)
from skipsr_cli.errors import InputError, UsageError
from skipsr_cli.run.options import check_threshold
from skipsr_cli.weights import load_model

train_app = typer.Typer(
    help="Train the model: pack the data, then run the stages vae, dit, mask.", no_args_is_help=True
)


@train_app.command("pack")
@exit_codes
def train_pack_command(
    sources: Annotated[
        list[Path],
        typer.Argument(help="Folders of training media (like shared/data/train), one or more."),
    ],
    dest: Annotated[Path, typer.Argument(help="Where to write the pack.")],
    max_side: Annotated[
        int, typer.Option(help="Photos are downscaled to at most this many pixels.")
    ] = 1280,
    native_crops: Annotated[
        int, typer.Option(min=0, help="Crops at full scale from each photo larger than max-side.")
    ] = 0,
    crop_side: Annotated[int, typer.Option(min=64, help="Side of those crops in pixels.")] = 384,
    sequence_crf: Annotated[
        int, typer.Option(min=0, max=51, help="x264 CRF of frame sequences packed as clips.")
    ] = 12,
) -> None:
    """Copy the training split (validation held out), photos downscaled, into a compact folder."""
    from skipsr_cli.train.data import pack

    for source in sources:
        if not source.is_dir():
            raise InputError(f"not a folder: {source}")
    manifest = pack(sources, dest, max_side, native_crops, crop_side, sequence_crf)
    print(f"packed {len(manifest['files'])} files into {dest}")


@train_app.command("run")
@exit_codes
def train_run_command(
    stage: Annotated[str, typer.Argument(help="vae, dit or mask.")],
    data: Annotated[Path, typer.Option(help="A pack made by `skipsr train pack`.")],
    out: Annotated[
        Path, typer.Option(help="Checkpoint folder of this stage (resumed if present).")
    ],
    model: Annotated[str, typer.Option("--model", help="Preset to train.")] = "base",
    config: Annotated[
        Path | None, typer.Option(help="A JSON ModelArgs to train instead of the preset.")
    ] = None,
    init: Annotated[Path | None, typer.Option(help="Weights from the previous stage.")] = None,
    minutes: Annotated[float, typer.Option(help="Wall-clock budget of this run.")] = 9.0,
    max_steps: Annotated[int, typer.Option(help="Stop at this step.")] = 100_000,
    batch: Annotated[int, typer.Option()] = 8,
    frames: Annotated[int, typer.Option()] = 8,
    crop: Annotated[int, typer.Option()] = 192,
    lr: Annotated[float, typer.Option()] = 4e-4,
    workers: Annotated[int, typer.Option(help="Data worker processes.")] = 12,
    seed: Annotated[int, typer.Option()] = 0,
    decoder: Annotated[
        bool, typer.Option("--decoder", help="dit stage: also train the VAE decoder.")
    ] = False,
    reuse: Annotated[
        int,
        typer.Option(
            min=1, max=8, help="Steps per loaded batch, each on a mirrored or turned view."
        ),
    ] = 1,
    stop_at: Annotated[
        int | None,
        typer.Option(min=1, help="End this run at this step (the schedule still spans max-steps)."),
    ] = None,
    augment: Annotated[
        bool, typer.Option(help="Turn, mirror and reorder the colours of every training clip.")
    ] = True,
    temporal: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="dit stage: weight of the temporal loss (frame-to-frame changes against the target's).",
        ),
    ] = 0.0,
    init_partial: Annotated[
        bool,
        typer.Option(
            "--init-partial",
            help="Load only the --init tensors that fit (a wider network); the rest start fresh.",
        ),
    ] = False,
    degrade: Annotated[
        str,
        typer.Option(
            help="Training inputs: mixed (blur, noise, H.264 and JPEG), video (H.264 CRF 8-34), "
            "clean (CRF 8-16), delivery (CRF 8-30, x264 presets veryfast to slow), web (CRF 22-34, "
            "the same presets) or none (bicubic only).",
        ),
    ] = "mixed",
    photo_moves: Annotated[
        str,
        typer.Option(
            help="How photos become clips: exact (whole-pixel pans, the photo's pixels kept) or "
            "resampled (a bicubic move with zoom and spin, what base up to ft4m used).",
        ),
    ] = "exact",
    video_fraction: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="The share of clips cut from real videos; the rest are photos."
        ),
    ] = 0.3,
    scale: Annotated[
        list[int] | None,
        typer.Option(
            "--scale",
            "-s",
            help="A scale to train at; repeat it to weight the draw (-s 2 -s 2 -s 4). Default 2 and 4.",
        ),
    ] = None,
) -> None:
    """Train one stage for at most --minutes, then checkpoint; run again to resume exactly."""
    from models import PRESETS, ModelArgs
    from skipsr_cli.train.data import PHOTO_MOVES
    from skipsr_cli.train.degrade import PROFILES
    from skipsr_cli.train.loop import STAGES, TrainConfig, train

    if stage not in STAGES:
        raise UsageError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    if config is not None:
        args = ModelArgs.from_json(config.read_text())
    elif model in PRESETS:
        args = PRESETS[model]
    else:
        raise UsageError(f"unknown preset {model!r}")
    scales = tuple(scale or (2, 4))
    if degrade not in PROFILES:
        raise UsageError(f"--degrade must be one of {', '.join(PROFILES)}, not {degrade!r}")
    if photo_moves not in PHOTO_MOVES:
        raise UsageError(
            f"--photo-moves must be one of {', '.join(PHOTO_MOVES)}, not {photo_moves!r}"
        )
    if any(s < 2 or crop % s for s in scales):
        raise UsageError(f"each --scale must be at least 2 and divide --crop {crop}, not {scales}")
    cfg = TrainConfig(
        stage,
        data,
        out,
        args,
        init,
        minutes,
        max_steps,
        batch,
        frames,
        crop,
        lr,
        seed=seed,
        workers=workers,
        decoder=decoder,
        reuse=reuse,
        stop_at=stop_at,
        augment=augment,
        scales=scales,
        temporal=temporal,
        degrade=degrade,
        init_partial=init_partial,
        photo_moves=photo_moves,
        video_fraction=video_fraction,
    )
    train(cfg, lambda line: print(line, flush=True))


@train_app.command("vae-check")
@exit_codes
def train_vae_check_command(
    weights: Annotated[
        Path, typer.Argument(help="Weights (or a checkpoint's export) whose VAE to check.")
    ],
    val: Annotated[Path, typer.Option(help="Folder of held-out videos and images.")],
    device: DeviceOpt = DeviceChoice.auto,
) -> None:
    """Round-trip PSNR of the VAE on held-out media (encode, decode, 8-bit), per file and mean."""
    from skipsr_cli.train.loop import vae_round_trip, validation_clips

    net = load_model(weights=weights, device=pick_device(device))
    print(f"{'':>45}  {'fill':>8}  {'round trip':>10}")
    for name, (fill, trip) in vae_round_trip(net, validation_clips(val)).items():
        print(f"{name:>45}  {fill:6.2f} dB  {trip:7.2f} dB")


@train_app.command("export")
@exit_codes
def train_export_command(
    weights: Annotated[Path, typer.Argument(help="Trained weights (a stage's export).")],
    out: Annotated[Path, typer.Argument(help="Where to write the shippable file.")],
    threshold: Annotated[
        float | None, typer.Option(help="Default tau (dB) to store with the weights.")
    ] = None,
    dtype: DtypeOpt = DtypeChoice.bf16,
) -> None:
    """Cast weights (bf16 by default), set the default tau, and print the file's SHA-256."""
    import hashlib
    from dataclasses import replace

    from skipsr_cli.weights import describe, save_model

    check_threshold(threshold)
    net = load_model(weights=weights)
    if threshold is not None:
        net.args = replace(net.args, threshold=threshold)
    cast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype.value, torch.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(net, out, dtype=cast)
    counts = describe(net)["parameters"]
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{digest}  {out.name}")
    print(f"parameters {sum(counts.values()):,} {counts}; {out.stat().st_size / 2**20:.2f} MiB")
