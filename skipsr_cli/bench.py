"""Benchmarks that print tables. Speed claims come from here, never from timed tests.

`transformer`: the masked DiT's forward time at forced kept fractions on one latent clip, the
paper's scaling claim (time should fall about in proportion to the kept fraction).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from models import SkipSR
from models.dit import TokenSet


@dataclass(frozen=True)
class TransformerRow:
    kept_fraction: float
    tokens: int  # kept tokens
    median_ms: float
    min_ms: float
    ratio: float  # median time / the dense (fraction 1.0) median time

    def as_dict(self) -> dict:
        return asdict(self)


def token_grid(model: SkipSR, out_size: tuple[int, int], frames: int) -> tuple[int, int, int]:
    """The full token grid (T', H', W') of an output clip of `frames` frames at (width, height)."""
    ft, th, tw = model.args.token_pixels
    w, h = out_size
    return -(-frames // ft), -(-h // th), -(-w // tw)


def forced_keep(
    grid: tuple[int, int, int], fraction: float, seed: int, device: torch.device
) -> torch.Tensor:
    """A keep mask with exactly round(fraction * tokens) tokens kept, at random places."""
    n = grid[0] * grid[1] * grid[2]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[: round(fraction * n)]] = True
    return keep.view(1, *grid).to(device)


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Milliseconds of one call: CUDA events on a GPU, the host clock elsewhere."""

    def run(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000

    return run


@torch.inference_mode()
def bench_transformer(
    model: SkipSR,
    grid: tuple[int, int, int],
    fractions: list[float],
    repeats: int,
    warmup: int,
    seed: int = 0,
) -> list[TransformerRow]:
    """Time mask packing + the masked DiT forward (one flow step) at each kept fraction."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    dit, measure = model.dit, timer(device)
    dim = dit.args.latent_channels * dit.args.patch_volume
    results = []
    for fraction in fractions:
        keep = forced_keep(grid, fraction, seed, device)
        n = int(keep.sum())
        x = torch.randn(n, dim, device=device, dtype=dtype)
        c = torch.randn(n, dim, device=device, dtype=dtype)
        t = torch.ones(1, device=device)

        def step(x=x, c=c, t=t, keep=keep) -> None:
            dit(x, c, t, TokenSet.from_keep(keep, dit.args.window))

        for _ in range(warmup):
            step()
        times = [measure(step) for _ in range(repeats)]
        results.append((fraction, n, statistics.median(times), min(times)))
    dense = next((r[2] for r in results if r[0] == 1.0), results[0][2])
    return [
        TransformerRow(f, n, round(med, 3), round(lo, 3), round(med / dense, 4))
        for f, n, med, lo in results
    ]
