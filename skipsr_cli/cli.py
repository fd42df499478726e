"""The `skipsr` command line: options -> config objects -> library calls; exceptions -> exit codes.

Exit codes (README, "Exit codes"): 0 ok, 1 internal error, 2 bad usage, 3 unreadable input,
4 model or weights error, 5 output or encode error, 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated

import torch
import typer

from models.skipsr import Settings
from skipsr_cli import __version__
from skipsr_cli.errors import ExitCode, InputError, SkipSRError, UsageError
from skipsr_cli.pipeline import UpscaleJob, prepare, upscale
from skipsr_cli.progress import make_renderer
from skipsr_cli.video_io import EncodeOptions
from skipsr_cli.weights import load_model

app = typer.Typer(
    name="skipsr",
    help="Video super-resolution with SkipSR: detailed regions go through the transformer, flat ones skip it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


def exit_codes(command: Callable) -> Callable:
    """Turn every failure of a command into one line on stderr and its documented exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            print("skipsr: interrupted; no output was left behind", file=sys.stderr)
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except SkipSRError as e:
            _report(e, str(e))
            raise typer.Exit(e.exit_code) from None
        except Exception as e:  # a bug: say so plainly
            _report(
                e, f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)"
            )
            raise typer.Exit(ExitCode.INTERNAL) from None

    return wrapper


def _report(error: BaseException, message: str) -> None:
    if _state["debug"]:
        traceback.print_exception(error, file=sys.stderr)
    print(f"skipsr: error: {message}", file=sys.stderr, flush=True)


class DeviceChoice(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


class DtypeChoice(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


def pick_device(choice: DeviceChoice) -> torch.device:
    if choice is DeviceChoice.cuda and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use --device cpu)")
    if choice is DeviceChoice.cpu or (
        choice is DeviceChoice.auto and not torch.cuda.is_available()
    ):
        return torch.device("cpu")
    return torch.device("cuda")


def pick_dtype(choice: DtypeChoice, device: torch.device) -> torch.dtype:
    if choice is DtypeChoice.auto:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[choice.value]


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1920x1080") from None
    if w < 1 or h < 1 or w > 16384 or h > 16384:
        raise UsageError(f"--size {text!r}: width and height must be between 1 and 16384")
    return w, h


# Full-resolution VAE work runs this many frames at a time (exact; bounds memory at large sizes).
FRAME_SLICE = 4

# Options shared by several commands, declared once.
DeviceOpt = Annotated[DeviceChoice, typer.Option(help="Where the model runs.")]
DtypeOpt = Annotated[
    DtypeChoice, typer.Option(help="Model precision; auto = bf16 on CUDA, fp32 on CPU.")
]
WeightsOpt = Annotated[
    Path | None, typer.Option(help="A .safetensors weights file (overrides --model).")
]
ModelOpt = Annotated[str, typer.Option("--model", help="Model preset: base, debug, seedvr2-3b.")]
RandomOpt = Annotated[
    bool,
    typer.Option("--random-weights", help="Untrained random weights, for tests and benchmarks."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


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
        str, typer.Option(help="Video encoder, e.g. libx264, libx265, libvpx-vp9, ffv1.")
    ] = "libx264",
    crf: Annotated[
        int | None, typer.Option(help="Constant rate factor (quality) for x264/x265/vpx.")
    ] = 18,
    preset: Annotated[
        str | None, typer.Option("--preset", help="Encoder preset, e.g. medium, slow, veryfast.")
    ] = "medium",
    pix_fmt: Annotated[
        str | None, typer.Option("--pix-fmt", help="Output pixel format, e.g. yuv420p, yuv444p.")
    ] = None,
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
    _state["debug"] = debug
    if scale not in (2, 4) and size is None:
        raise UsageError(f"--scale must be 2 or 4, not {scale} (or give --size WIDTHxHEIGHT)")
    if weights is not None and random_weights:
        raise UsageError("--weights and --random-weights exclude each other")
    if not input.exists():
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
    encode = EncodeOptions(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt)
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
    )
    plan = prepare(job)
    net = load_model(model, weights, random_weights=random_weights, device=dev, dtype=dt, seed=seed)
    renderer = make_renderer(quiet)
    try:
        summary = upscale(net, plan, dev, dt, renderer)
    finally:
        renderer.close()
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

    _state["debug"] = debug
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


bench_app = typer.Typer(
    help="Benchmarks that print tables (see BENCHMARKS.md).", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")


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
    from skipsr_cli.bench import bench_transformer, token_grid

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
                    "device": _device_name(dev),
                    "rows": [r.as_dict() for r in rows],
                }
            )
        )
        return
    print(
        f"{model} transformer, token grid {grid} ({size}, {frames} frames), {dt}, {_device_name(dev)}"
    )
    print(f"{'kept':>6} {'tokens':>8} {'median ms':>10} {'min ms':>9} {'vs dense':>9}")
    for r in rows:
        print(
            f"{r.kept_fraction:>6.2f} {r.tokens:>8} {r.median_ms:>10.2f} {r.min_ms:>9.2f} {r.ratio:>9.3f}"
        )


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


train_app = typer.Typer(
    help="Train the model: pack the data, then run the stages vae, dit, mask.", no_args_is_help=True
)
app.add_typer(train_app, name="train")


@train_app.command("pack")
@exit_codes
def train_pack_command(
    source: Annotated[
        Path, typer.Argument(help="Folder of training media (like shared/data/train).")
    ],
    dest: Annotated[Path, typer.Argument(help="Where to write the pack.")],
    max_side: Annotated[
        int, typer.Option(help="Photos are downscaled to at most this many pixels.")
    ] = 1280,
) -> None:
    """Copy the training split (validation held out), photos downscaled, into a compact folder."""
    from skipsr_cli.train_data import pack

    if not source.is_dir():
        raise InputError(f"not a folder: {source}")
    manifest = pack(source, dest, max_side)
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
) -> None:
    """Train one stage for at most --minutes, then checkpoint; run again to resume exactly."""
    from models import PRESETS, ModelArgs
    from skipsr_cli.train import STAGES, TrainConfig, train

    if stage not in STAGES:
        raise UsageError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    if config is not None:
        args = ModelArgs.from_json(config.read_text())
    elif model in PRESETS:
        args = PRESETS[model]
    else:
        raise UsageError(f"unknown preset {model!r}")
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
    from skipsr_cli.train import vae_round_trip, validation_clips

    net = load_model(weights=weights, device=pick_device(device))
    print(f"{'':>45}  {'fill':>8}  {'round trip':>10}")
    for name, (fill, trip) in vae_round_trip(net, validation_clips(val)).items():
        print(f"{name:>45}  {fill:6.2f} dB  {trip:7.2f} dB")


@app.command("version")
def version_command() -> None:
    """Print the version."""
    print(f"skipsr {__version__} (torch {torch.__version__})")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
