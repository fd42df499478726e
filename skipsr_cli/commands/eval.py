"""`skipsr eval`: the model against lanczos and bicubic on degraded copies of reference media."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer

from models import SkipSR
from skipsr_cli.commands.common import (
    DebugOpt,
    DenoiseWeightsOpt,
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    RandomOpt,
    exit_codes,
    pick_device,
    pick_dtype,
    run_state,
)
from skipsr_cli.errors import InputError, UsageError
from skipsr_cli.run.options import AUTO, check_threshold, parse_denoise
from skipsr_cli.weights import Blends, blend_target, load_model


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
    skip_fraction: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=0.99,
            help="Skip this share of tokens, those the mask predictor scores highest, in place "
            "of tau (measures its ranking).",
        ),
    ] = None,
    chunk_frames: Annotated[
        int, typer.Option(min=1, help="Frames per model call (no overlap in evaluation).")
    ] = 16,
    device: DeviceOpt = DeviceChoice.auto,
    dtype: DtypeOpt = DtypeChoice.auto,
    weights: Annotated[
        list[Path] | None,
        typer.Option(
            help="A .safetensors weights file (overrides --model); repeat it to compare several on the same inputs in one run (rows model:NAME)."
        ),
    ] = None,
    model: ModelOpt = "base",
    random_weights: RandomOpt = False,
    denoise: Annotated[
        list[str] | None,
        typer.Option(
            metavar="auto|AMOUNT",
            help="Blend towards the weights for compressed sources (0 to 1, or auto, the default: from each track's own quantiser, as in upscale); repeat it to compare several in one run (rows model:dAMOUNT, or model:NAME@dAMOUNT with --weights).",
        ),
    ] = None,
    denoise_weights: DenoiseWeightsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Measure the model against lanczos and bicubic on degraded copies: `skipsr eval clips/ -s 2`."""
    from skipsr_cli.measure.evaluate import evaluate, format_table, result_to_json

    run_state["debug"] = debug
    check_threshold(threshold)
    if threshold is not None and skip_fraction is not None:
        raise UsageError("--threshold and --skip-fraction exclude each other")
    if scale not in (2, 4):
        raise UsageError(f"--scale must be 2 or 4, not {scale}")
    if weights and random_weights:
        raise UsageError("--weights and --random-weights exclude each other")
    for path in inputs:
        if not path.exists():
            raise InputError(f"input not found: {path}")
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    files = weights or [None]
    names = [p.stem if p is not None else "" for p in files]
    if len(set(names)) < len(names):  # the same file name in two folders: name them by path
        names = [str(p) for p in files]
    # by default auto, as in upscale, in rows named as without blends
    amounts = [parse_denoise(d) for d in denoise or [AUTO]]
    if random_weights and any(a not in (0, AUTO) for a in amounts):
        raise UsageError("--denoise blends trained weights: not with --random-weights")
    blended = denoise is not None and (len(amounts) > 1 or amounts[0] != 0)
    # as in upscale: an amount needs a file to blend towards; auto is 0 without one
    if weights and denoise_weights is None and any(a not in (0, AUTO) for a in amounts):
        raise UsageError(
            "--denoise with --weights needs --denoise-weights: the file to blend towards"
        )
    nets = {
        _row_name(name, amount, blended): _network(
            model, path, random_weights, amount, denoise_weights, dev, dt
        )
        for name, path in zip(names, files, strict=True)
        for amount in amounts
    }
    names = list(nets)
    net = nets[names[0]] if len(nets) == 1 else nets

    def log(line: str) -> None:
        if not quiet:
            print(f"skipsr eval: {line}", file=sys.stderr, flush=True)

    result = evaluate(
        inputs,
        scale,
        net,
        frames=frames,
        threshold=threshold,
        chunk_frames=chunk_frames,
        log=log,
        skip_fraction=skip_fraction,
    )
    if json_out:
        print(json.dumps(result_to_json(result), allow_nan=False), flush=True)
    else:
        print(format_table(result), flush=True)


def _network(
    model: str,
    path: Path | None,
    random_weights: bool,
    amount: float | str,
    other: Path | None,
    device: torch.device,
    dtype: torch.dtype,
) -> SkipSR | Blends:
    if amount == AUTO and not random_weights and blend_target(model, path, other) is not None:
        return Blends(model, path, device=device, dtype=dtype, denoise_weights=other)
    return load_model(
        model,
        path,
        random_weights=random_weights,
        device=device,
        dtype=dtype,
        denoise=0.0 if amount == AUTO else amount,  # auto with nothing to blend towards
        denoise_weights=other,
    )


def _row_name(name: str, amount: float | str, blended: bool) -> str:
    """`NAME`, or `NAME@dAMOUNT` (`dAMOUNT` alone for the preset) when blends are compared."""
    if not blended:
        return name
    text = amount if isinstance(amount, str) else f"{amount:g}"
    return f"{name}@d{text}" if name else f"d{text}"
