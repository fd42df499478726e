"""The `skipsr` command line: options -> config objects -> library calls; exceptions -> exit codes.

Exit codes (README, "Exit codes"): 0 ok, 1 internal error, 2 bad usage, 3 unreadable input,
4 model or weights error, 5 output or encode error, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer

from models.skipsr import Settings
from skipsr_cli import __version__
from skipsr_cli.cli_bench import bench_app
from skipsr_cli.cli_common import (
    FRAME_SLICE,
    DebugOpt,
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    RandomOpt,
    WeightsOpt,
    check_threshold,
    exit_codes,
    parse_size,
    pick_device,
    pick_dtype,
    run_state,
)
from skipsr_cli.cli_train import train_app
from skipsr_cli.encoding import EncodeOptions, default_codec, lossless_options
from skipsr_cli.errors import InputError, UsageError
from skipsr_cli.image_io import is_image_output
from skipsr_cli.pipeline import UpscaleJob, prepare, upscale
from skipsr_cli.progress import make_renderer
from skipsr_cli.weights import load_model

app = typer.Typer(
    name="skipsr",
    help="Video super-resolution with SkipSR: detailed regions go through the transformer, flat ones skip it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(bench_app, name="bench")
app.add_typer(train_app, name="train")


@app.command("upscale")
@exit_codes
def upscale_command(
    input: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", help="Video to upscale (any container and codec FFmpeg reads)."
        ),
    ],
    output: Annotated[
        Path,
        typer.Argument(
            metavar="OUTPUT", help="Where to write the result; the container follows the extension."
        ),
    ],
    scale: Annotated[int, typer.Option("--scale", "-s", help="Upscale factor: 2 or 4.")] = 2,
    size: Annotated[
        str | None, typer.Option(help="Target size WIDTHxHEIGHT (overrides --scale).")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="tau in dB: skip tokens whose plain upsample is predicted at least this good. Higher keeps more (slower, closer to --no-skip)."
        ),
    ] = None,
    no_skip: Annotated[
        bool, typer.Option("--no-skip", help="Keep every token: the dense baseline.")
    ] = False,
    steps: Annotated[
        int, typer.Option(min=1, max=1000, help="Flow-matching steps; 1 is one-step.")
    ] = 1,
    device: DeviceOpt = DeviceChoice.auto,
    dtype: DtypeOpt = DtypeChoice.auto,
    chunk_frames: Annotated[
        int, typer.Option(min=1, help="Frames per chunk (memory grows with it).")
    ] = 16,
    overlap: Annotated[
        int, typer.Option(min=0, help="Frames shared by neighbouring chunks, cross-faded.")
    ] = 4,
    tile: Annotated[
        int | None,
        typer.Option(min=4, help="Decode in tiles of this many latent pixels to bound memory."),
    ] = None,
    weights: WeightsOpt = None,
    model: ModelOpt = "base",
    random_weights: RandomOpt = False,
    seed: Annotated[
        int, typer.Option(help="Seed of the sampling noise (and of --random-weights).")
    ] = 0,
    codec: Annotated[
        str | None,
        typer.Option(
            help="Video encoder, e.g. libx264, libx265, libvpx-vp9, ffv1 [default: libx264; libvpx-vp9 for .webm, gif for .gif]."
        ),
    ] = None,
    crf: Annotated[
        int | None, typer.Option(help="Constant rate factor (quality) for x264/x265/vpx.")
    ] = 18,
    preset: Annotated[
        str | None, typer.Option("--preset", help="Encoder preset, e.g. medium, slow, veryfast.")
    ] = "medium",
    pix_fmt: Annotated[
        str | None, typer.Option("--pix-fmt", help="Output pixel format, e.g. yuv420p, yuv444p.")
    ] = None,
    lossless: Annotated[
        bool,
        typer.Option(
            "--lossless",
            help="Lossless encoding: FFV1 (RGB) in mkv, x264 4:4:4 qp 0 in mp4/mov, VP9 in webm.",
        ),
    ] = False,
    no_audio: Annotated[
        bool, typer.Option("--no-audio", help="Leave the audio streams out.")
    ] = False,
    audio_bitrate: Annotated[
        int | None,
        typer.Option(
            "--audio-bitrate",
            min=8,
            help="kb/s for audio the output container cannot hold as it is, which is re-encoded [default: 64 a channel for Opus, 96 for AAC]. Audio that fits is copied untouched.",
        ),
    ] = None,
    no_subtitles: Annotated[
        bool, typer.Option("--no-subtitles", help="Leave the subtitle streams out.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", "-y", help="Replace an existing output file.")
    ] = False,
    mask_out: Annotated[
        Path | None,
        typer.Option("--mask-out", help="Also write a video with skipped regions tinted blue."),
    ] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Upscale a video: `skipsr upscale in.mp4 out.mp4`."""
    run_state["debug"] = debug
    check_threshold(threshold)
    if scale not in (2, 4) and size is None:
        raise UsageError(f"--scale must be 2 or 4, not {scale} (or give --size WIDTHxHEIGHT)")
    if weights is not None and random_weights:
        raise UsageError("--weights and --random-weights exclude each other")
    if not input.exists() and "%" not in input.name:  # a %d pattern names an image sequence
        raise InputError(f"input not found: {input}")
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    settings = Settings(
        threshold=threshold,
        skip=not no_skip,
        steps=steps,
        seed=seed,
        decode_tile=tile,
        frame_slice=FRAME_SLICE,
    )
    if is_image_output(output):  # PNG frames: lossless already, RGB, no encoder options
        if codec not in (None, "png"):
            raise UsageError(f"PNG frames are written with the png encoder, not {codec}")
        encode = EncodeOptions(codec="png", crf=None, preset=None, pix_fmt=pix_fmt)
    elif lossless:
        encode = lossless_options(output.suffix, codec, pix_fmt, preset)
    else:
        encode = EncodeOptions(
            codec=codec or default_codec(output.suffix), crf=crf, preset=preset, pix_fmt=pix_fmt
        )
    job = UpscaleJob(
        input,
        output,
        scale,
        parse_size(size),
        chunk_frames,
        overlap,
        settings,
        encode,
        overwrite,
        mask_out,
        copy_audio=not no_audio,
        copy_subtitles=not no_subtitles,
        audio_kbps=audio_bitrate,
    )
    plan = prepare(job)
    net = load_model(model, weights, random_weights=random_weights, device=dev, dtype=dt, seed=seed)
    renderer = make_renderer(quiet)
    try:
        summary = upscale(net, plan, dev, dt, renderer)
    finally:
        renderer.close()
    for warning in summary.warnings:  # shown even with --quiet: something was left out
        print(f"skipsr: warning: {warning}", file=sys.stderr, flush=True)
    if json_out:
        print(json.dumps(summary.as_dict()), flush=True)


@app.command("eval")
@exit_codes
def eval_command(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="HR_FILES_OR_DIR",
            help="High-resolution references: videos, PNG/JPEG images, or folders of them.",
        ),
    ],
    scale: Annotated[int, typer.Option("--scale", "-s", help="Scale factor: 2 or 4.")] = 2,
    frames: Annotated[
        int | None,
        typer.Option(min=1, help="Use only the first N frames of each video (default: all)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="tau in dB for the model row (default: the model's own).")
    ] = None,
    chunk_frames: Annotated[
        int, typer.Option(min=1, help="Frames per model call (no overlap in evaluation).")
    ] = 16,
    device: DeviceOpt = DeviceChoice.auto,
    dtype: DtypeOpt = DtypeChoice.auto,
    weights: WeightsOpt = None,
    model: ModelOpt = "base",
    random_weights: RandomOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Measure the model against lanczos and bicubic on degraded copies: `skipsr eval clips/ -s 2`."""
    from skipsr_cli.evaluate import evaluate, format_table, result_to_json

    run_state["debug"] = debug
    check_threshold(threshold)
    if scale not in (2, 4):
        raise UsageError(f"--scale must be 2 or 4, not {scale}")
    if weights is not None and random_weights:
        raise UsageError("--weights and --random-weights exclude each other")
    for path in inputs:
        if not path.exists():
            raise InputError(f"input not found: {path}")
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    net = load_model(model, weights, random_weights=random_weights, device=dev, dtype=dt)

    def log(line: str) -> None:
        if not quiet:
            print(f"skipsr eval: {line}", file=sys.stderr, flush=True)

    result = evaluate(
        inputs, scale, net, frames=frames, threshold=threshold, chunk_frames=chunk_frames, log=log
    )
    if json_out:
        print(json.dumps(result_to_json(result), allow_nan=False), flush=True)
    else:
        print(format_table(result), flush=True)


@app.command("version")
def version_command() -> None:
    """Print the version."""
    print(f"skipsr {__version__} (torch {torch.__version__})")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
