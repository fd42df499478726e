"""`skipsr bench ...`: benchmarks that print tables."""

from __future__ import annotations

import json
from typing import Annotated

import torch
import typer

from skipsr_cli.cli_common import (
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    JsonOpt,
    exit_codes,
    parse_size,
    pick_device,
    pick_dtype,
)
from skipsr_cli.errors import UsageError
from skipsr_cli.weights import load_model

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
