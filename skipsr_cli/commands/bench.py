"""`skipsr bench ...`: benchmarks that print tables."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated

import torch.nn.functional as F
import typer

from models.skipsr import Settings
from skipsr_cli.commands.common import (
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    JsonOpt,
    ModelOpt,
    RandomOpt,
    WeightsOpt,
    exit_codes,
    pick_device,
    pick_dtype,
)
from skipsr_cli.errors import InputError, UsageError
from skipsr_cli.run.chunking import CHUNK_FRAMES, OVERLAP
from skipsr_cli.run.device_frames import frames_to_device
from skipsr_cli.run.options import FRAME_SLICE, check_threshold, parse_size
from skipsr_cli.weights import load_model

# The encoder of the runs a benchmark makes (the upscale and its floors), as `upscale` takes it.
CodecOpt = Annotated[str, typer.Option(help="Encoder of every run.")]
CrfOpt = Annotated[int, typer.Option(help="CRF of every run.")]
PresetOpt = Annotated[str, typer.Option("--preset", help="Encoder preset of every run.")]

bench_app = typer.Typer(
    help="Benchmarks that print tables (see BENCHMARKS.md).", no_args_is_help=True
)


@bench_app.command("transformer")
@exit_codes
def bench_transformer_command(
    model: Annotated[
        str, typer.Option("--model", help="Model preset (random weights).")
    ] = "seedvr2-3b",
    size: Annotated[str, typer.Option(help="Output size WIDTHxHEIGHT of the clip.")] = "1280x720",
    frames: Annotated[
        int, typer.Option(min=1, help="Output frames in the clip (one latent clip).")
    ] = 32,
    kept: Annotated[
        str, typer.Option(help="Comma-separated kept fractions.")
    ] = "1.0,0.75,0.5,0.25",
    repeats: Annotated[int, typer.Option(min=1)] = 10,
    warmup: Annotated[int, typer.Option(min=0)] = 3,
    device: DeviceOpt = DeviceChoice.auto,
    dtype: DtypeOpt = DtypeChoice.auto,
    json_out: JsonOpt = False,
) -> None:
    """Masked-transformer forward time at forced kept fractions (the paper's scaling claim)."""
    from skipsr_cli.measure.bench import bench_transformer, device_name, token_grid

    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    try:
        fractions = [float(f) for f in kept.split(",")]
    except ValueError:
        raise UsageError(f"--kept {kept!r}: expected numbers like 1.0,0.5") from None
    if not all(0 < f <= 1 for f in fractions):
        raise UsageError("--kept fractions must be in (0, 1]")
    net = load_model(model, random_weights=True, device=dev, dtype=dt)
    grid = token_grid(net, parse_size(size), frames)
    rows = bench_transformer(net, grid, fractions, repeats, warmup)
    if json_out:
        print(
            json.dumps(
                {
                    "model": model,
                    "grid": grid,
                    "device": device_name(dev),
                    "rows": [r.as_dict() for r in rows],
                }
            )
        )
        return
    print(
        f"{model} transformer, token grid {grid} ({size}, {frames} frames), {dt}, {device_name(dev)}"
    )
    print(f"{'kept':>6} {'tokens':>8} {'median ms':>10} {'min ms':>9} {'vs dense':>9}")
    for r in rows:
        print(
            f"{r.kept_fraction:>6.2f} {r.tokens:>8} {r.median_ms:>10.2f} {r.min_ms:>9.2f} {r.ratio:>9.3f}"
        )


@bench_app.command("model")
@exit_codes
def bench_model_command(
    source: Annotated[
        Path, typer.Argument(help="A video whose first frames are the input (resized to --size).")
    ],
    size: Annotated[str, typer.Option(help="Input size WIDTHxHEIGHT.")] = "1280x720",
    scale: Annotated[int, typer.Option("--scale", "-s", min=1, max=8)] = 2,
    frames: Annotated[int, typer.Option(min=1, help="Frames per model call (one chunk).")] = 16,
    threshold: Annotated[
        float | None, typer.Option(help="tau in dB (default: the model's).")
    ] = None,
    kept: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Force this kept fraction instead.")
    ] = None,
    no_skip: Annotated[bool, typer.Option("--no-skip", help="Keep every token.")] = False,
    repeats: Annotated[int, typer.Option(min=1)] = 10,
    warmup: Annotated[int, typer.Option(min=0)] = 3,
    weights: WeightsOpt = None,
    model: ModelOpt = "base",
    random_weights: RandomOpt = False,
    device: DeviceOpt = DeviceChoice.auto,
    dtype: DtypeOpt = DtypeChoice.auto,
    json_out: JsonOpt = False,
) -> None:
    """Model-only time per frame, stage by stage (upsample, encode, predictor, transformer,
    compose, decode), on real frames: model fps, skip ratio, peak GPU memory."""
    from skipsr_cli.measure.bench import MODEL_STAGES, bench_model, device_name
    from skipsr_cli.media.video_io import probe, read_frames

    check_threshold(threshold)  # nan or inf: exit 2, as upscale says it
    if not source.is_file():
        raise InputError(f"input not found: {source}")
    probe(source)  # a clear error for a non-video
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    width, height = parse_size(size)
    net = load_model(model, weights, random_weights=random_weights, device=dev, dtype=dt)
    decoded = list(itertools.islice(read_frames(source), frames))
    if len(decoded) < frames:
        raise InputError(f"{source} has {len(decoded)} frames; --frames asks for {frames}")
    clip = frames_to_device(decoded, dev)
    lr = F.interpolate(
        clip[0].transpose(0, 1), size=(height, width), mode="bicubic", antialias=True
    )
    lr = lr.clamp(0, 1).transpose(0, 1)[None].to(dt)  # (1, 3, T, h, w)
    settings = Settings(threshold=threshold, skip=not no_skip, frame_slice=FRAME_SLICE)
    out_size = (height * scale, width * scale)
    result = bench_model(net, lr, out_size, settings, repeats, warmup, kept)
    head = {
        "model": str(weights) if weights else model,
        "input": f"{width}x{height}",
        "output": f"{width * scale}x{height * scale}",
        "frames": frames,
        "dtype": str(dt).removeprefix("torch."),
        "device": device_name(dev),
    }
    if json_out:
        print(json.dumps({**head, **result.as_dict()}))
        return
    print(", ".join(f"{k} {v}" for k, v in head.items()))
    print(f"{'stage':>12} {'ms/frame':>9}")
    for name in MODEL_STAGES:
        print(f"{name:>12} {result.stage_ms[name]:>9.3f}")
    print(f"{'total':>12} {1000 / result.model_fps:>9.3f}")
    memory = "" if result.peak_gpu_gib is None else f", peak GPU {result.peak_gpu_gib:.2f} GiB"
    print(f"model-only {result.model_fps:.1f} fps, skip ratio {result.skip_ratio:.1%}{memory}")


@bench_app.command("run")
@exit_codes
def bench_run_command(
    source: Annotated[
        Path, typer.Argument(help="The input video (its own size is the input size).")
    ],
    scale: Annotated[int, typer.Option("--scale", "-s", min=1, max=8)] = 2,
    frames: Annotated[
        int, typer.Option(min=1, help="Frames for the per-stage timings (the runs use them all).")
    ] = 16,
    threshold: Annotated[
        float | None, typer.Option(help="tau in dB (default: the model's).")
    ] = None,
    no_skip: Annotated[bool, typer.Option("--no-skip", help="Keep every token.")] = False,
    codec: CodecOpt = "libx264",
    crf: CrfOpt = 18,
    preset: PresetOpt = "medium",
    weights: WeightsOpt = None,
    model: ModelOpt = "base",
    random_weights: RandomOpt = False,
    device: DeviceOpt = DeviceChoice.auto,
    dtype: DtypeOpt = DtypeChoice.auto,
    json_out: JsonOpt = False,
) -> None:
    """A whole upscale against its encode floor (decode, bicubic on the device, the same encoder),
    with decode, model stages, colour conversion and encode timed alone, in ms per frame."""
    from skipsr_cli.measure.bench import bench_run
    from skipsr_cli.media.encoding import EncodeOptions
    from skipsr_cli.media.video_io import probe

    check_threshold(threshold)  # nan or inf: exit 2, as upscale says it
    if not source.is_file():
        raise InputError(f"input not found: {source}")
    probe(source)  # a clear error for a non-video, before the model loads
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    net = load_model(model, weights, random_weights=random_weights, device=dev, dtype=dt)
    settings = Settings(threshold=threshold, skip=not no_skip, frame_slice=FRAME_SLICE)
    options = EncodeOptions(codec=codec, crf=crf, preset=preset)
    result = bench_run(source, net, scale, frames, settings, options, dev, dt)
    if json_out:
        print(json.dumps(result))
        return
    print(
        ", ".join(
            f"{k} {result[k]}" for k in ("input", "output", "frames", "device", "dtype", "encoder")
        )
    )
    print(f"{'stage':>12} {'ms/frame':>9}")
    for name, ms in result["stage_ms"].items():
        print(f"{name:>12} {ms:>9.3f}")
    print(
        f"end to end {result['end_to_end_fps']:.2f} fps, encode floor {result['floor_fps']:.2f} fps "
        f"(ratio {result['ratio_to_floor']}), model only {result['model_fps']:.1f} fps, "
        f"skip ratio {result['skip_ratio']:.1%}; warm-up before the runs {result['warmup_s']:.2f} s"
    )
    for run, waits in result["waits_s"].items():
        print(f"{run} waited (s): " + ", ".join(f"{k} {v:.2f}" for k, v in waits.items()))


@bench_app.command("capacity")
@exit_codes
def bench_capacity_command(
    source: Annotated[
        Path, typer.Argument(help="The input video (its own size is the input size).")
    ],
    scale: Annotated[int, typer.Option("--scale", "-s", min=1, max=8)] = 2,
    workers: Annotated[
        str,
        typer.Option(
            help="Copies to run at once (of the floor, or with --upscale of the upscale), one row each: 1,2,3,4."
        ),
    ] = "1,2,3,4",
    devices: Annotated[
        str | None,
        typer.Option(help="Where the copies run, in turn (as upscale's --devices)."),
    ] = None,
    codec: CodecOpt = "libx264",
    crf: CrfOpt = 18,
    preset: PresetOpt = "medium",
    upscale: Annotated[
        bool,
        typer.Option(
            "--upscale",
            help="Copies of the whole upscale (the model, bf16 on CUDA) instead of the floor: "
            "what --workers K of one long video does once its workers are up.",
        ),
    ] = False,
    weights: WeightsOpt = None,
    model: ModelOpt = "base",
    random_weights: RandomOpt = False,
    threshold: Annotated[
        float | None, typer.Option(help="tau in dB of --upscale (default: the model's).")
    ] = None,
    chunk_frames: Annotated[
        int, typer.Option(min=1, help="Frames per chunk in every copy, as upscale's.")
    ] = CHUNK_FRAMES,
    overlap: Annotated[
        int, typer.Option(min=0, help="Frames shared by neighbouring chunks, as upscale's.")
    ] = OVERLAP,
    bicubic_frames: Annotated[
        bool,
        typer.Option(
            "--bicubic-frames",
            help="With --upscale: run the model on every chunk but encode bicubic's frames, "
            "to tell what the model's presence costs the encoder from what its frames do.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """The host's encoding capacity: K copies of the encode floor (the whole pipeline with bicubic
    in place of the model) at once, each with its share of the cores, for each K; the best total
    is what a whole upscale is measured against. With --upscale, the same for the model."""
    from skipsr_cli.batch.workers import parse_devices
    from skipsr_cli.measure.capacity import Upscaler, encode_capacity
    from skipsr_cli.media.encoding import EncodeOptions, validate_encode_options
    from skipsr_cli.media.video_io import probe
    from skipsr_cli.run.pipeline import check_chunk_options

    check_threshold(threshold)  # nan or inf: exit 2, as upscale says it
    if not source.is_file():
        raise InputError(f"input not found: {source}")
    info = probe(source)
    try:
        counts = [int(k) for k in workers.split(",")]
    except ValueError:
        raise UsageError(f"--workers {workers}: give counts like 1,2,4") from None
    if not counts or min(counts) < 1 or max(counts) > 64:
        raise UsageError(f"--workers {workers}: each count must be 1 to 64")
    check_chunk_options(chunk_frames, overlap)
    options = EncodeOptions(codec=codec, crf=crf, preset=preset)
    validate_encode_options(options, info.width * scale, info.height * scale)
    if bicubic_frames and not upscale:
        raise UsageError("--bicubic-frames goes with --upscale (the floor's frames are bicubic's)")
    upscaler = None
    if upscale:
        load_model(model, weights, random_weights=random_weights)  # its error before the copies
        settings = Settings(threshold=threshold, frame_slice=FRAME_SLICE)
        upscaler = Upscaler(model, weights, random_weights, settings, bicubic_frames)
    rows = encode_capacity(
        source, scale, options, parse_devices(devices), counts, upscaler, (chunk_frames, overlap)
    )
    best = max(rows, key=lambda r: r.total_fps)
    head = {
        "input": f"{info.width}x{info.height}",
        "output": f"{info.width * scale}x{info.height * scale}",
        "encoder": f"{codec} crf {crf} {preset}",
        "copies_of": ("model beside bicubic" if bicubic_frames else "upscale")
        if upscale
        else "floor",
        "chunks": f"{chunk_frames} frames, overlap {overlap}",
    }
    if json_out:
        print(
            json.dumps(
                {
                    **head,
                    "rows": [r.as_dict() for r in rows],
                    "best_fps" if upscale else "capacity_fps": best.total_fps,
                }
            )
        )
        return
    print(", ".join(f"{k} {v}" for k, v in head.items()))
    print(
        f"{'copies':>6} {'frames':>7} {'wall s':>8} {'total fps':>10} {'steady fps':>11} "
        f"{'slowest copy fps':>17} {'CPU ms/frame':>13} {'calling thread':>15}"
    )
    for r in rows:
        steady = "-" if r.steady_fps is None else f"{r.steady_fps:.2f}"
        print(
            f"{r.workers:>6} {r.frames:>7} {r.wall_s:>8.2f} {r.total_fps:>10.2f} {steady:>11} "
            f"{r.slowest_fps:>17.2f} {r.cpu_ms_per_frame:>13.2f} "
            f"{r.main_thread_cpu_ms_per_frame:>15.2f}"
        )
    print(f"{'best' if upscale else 'capacity'} {best.total_fps:.2f} fps ({best.workers} at once)")
