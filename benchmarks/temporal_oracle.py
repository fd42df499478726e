"""How much the neighbouring frames could add: the best linear upscaler of each held-out clip that
sees the frames around the one it upscales, against the same filter that sees only that frame.

`linear_oracle.py` fits one affine map from the 9 x 9 low-resolution pixels around each output
block to that block, per clip ("per clip": it knows the kernel, the codec and the content). Here
the map also sees a --taps x --taps window at the same place in each of the RADIUS frames before and
after (the clip's ends repeated), with no motion compensation: what early fusion of neighbouring
frames, the cheapest way for a model to use time, could give. Fitted on every STRIDE-th pixel in
each direction, measured on every pixel of the first FRAMES frames. Runs on the CPU.

    PYTHONPATH=. python3 benchmarks/temporal_oracle.py HELDOUT_DIR [--scale 2] [--track clean]
        [--frames 16] [--radius 1 --radius 2] [--taps 5] [--stride 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.linear_oracle import TAPS, degrade, gram, solve
from skipsr_cli.measure import metrics
from skipsr_cli.measure.evaluate import find_sources, load_reference, upscale_classic

BAND = 64  # low-resolution rows whose windows are unfolded at a time


def windows(frame: torch.Tensor, taps: int, rows: slice, stride: int) -> torch.Tensor:
    """(3, h, w) -> (n, 3 * taps**2): the windows around the pixels of `rows`, every `stride`-th
    row and column (edges replicated)."""
    pad = taps // 2
    padded = F.pad(frame[None], (pad,) * 4, mode="replicate")
    band = padded[:, :, rows.start : rows.stop + 2 * pad]
    cols = F.unfold(band, taps)  # (1, 3 * taps**2, rows * w)
    cols = cols.reshape(cols.shape[1], rows.stop - rows.start, -1)[:, ::stride, ::stride]
    return cols.reshape(cols.shape[0], -1).T


def features(lr: torch.Tensor, i: int, radius: int, taps: int, rows: slice, stride: int):
    """The design rows of frame i over `rows`: its TAPS x TAPS windows (as linear_oracle.py),
    the neighbours' taps x taps windows at the same places, and 1."""
    parts = [windows(lr[i], TAPS, rows, stride)]
    last = lr.shape[0] - 1
    for d in (*range(-radius, 0), *range(1, radius + 1)):
        parts.append(windows(lr[min(max(i + d, 0), last)], taps, rows, stride))
    return torch.cat((*parts, torch.ones(parts[0].shape[0], 1)), 1)


def targets(hr: torch.Tensor, scale: int, rows: slice, stride: int) -> torch.Tensor:
    """(3, H, W) -> (n, 3 * scale**2): the output blocks of those low-resolution pixels."""
    cells = F.pixel_unshuffle(hr[None], scale)[0, :, rows.start : rows.stop][:, ::stride, ::stride]
    return cells.reshape(cells.shape[0], -1).T


def fit(lr, hr, scale, radius, taps, stride) -> torch.Tensor:
    xtx = xty = 0
    for i in range(lr.shape[0]):
        for lo in range(0, lr.shape[-2], BAND):
            rows = slice(lo, min(lo + BAND, lr.shape[-2]))
            x = features(lr, i, radius, taps, rows, stride)
            y = targets(hr[i], scale, rows, stride)
            a, b = gram(x, y)
            xtx, xty = xtx + a, xty + b
    return solve(xtx, xty)


def apply(weights, lr, scale, radius, taps) -> torch.Tensor:
    out = []
    h, w = lr.shape[-2:]
    for i in range(lr.shape[0]):
        bands = []
        for lo in range(0, h, BAND):
            rows = slice(lo, min(lo + BAND, h))
            cells = features(lr, i, radius, taps, rows, 1) @ weights
            bands.append(cells.T.reshape(-1, rows.stop - rows.start, w))
        out.append(F.pixel_shuffle(torch.cat(bands, 1)[None], scale).clamp(0, 1))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--track", default="clean")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--radius", type=int, action="append", default=[])
    parser.add_argument("--taps", type=int, default=5)
    parser.add_argument("--stride", type=int, default=3)
    opts = parser.parse_args()
    torch.set_grad_enabled(False)
    radii = [0, *(opts.radius or [1])]
    print(
        f"x{opts.scale} {opts.track}, first {opts.frames} frames, per-clip fits on one pixel in "
        f"{opts.stride} along each side; neighbours' windows {opts.taps}x{opts.taps}"
    )
    head = " | ".join(f"{r} frame(s) each side" if r else "this frame only" for r in radii)
    print(f"| clip | lanczos | {head} |")
    print("|---|---|" + "---|" * len(radii))
    for source in find_sources([opts.folder]):
        ref = load_reference(source, opts.scale, opts.frames).frames
        lr = degrade(ref, opts.scale, opts.track)
        base = metrics.psnr(upscale_classic(lr, tuple(ref.shape[-2:]), "lanczos"), ref)
        cells = []
        for r in radii:
            weights = fit(lr, ref, opts.scale, r, opts.taps, opts.stride)
            gain = metrics.psnr(apply(weights, lr, opts.scale, r, opts.taps), ref) - base
            cells.append(f"{gain:+.2f}")
            print(f"  {source.name} radius {r}: {gain:+.2f}", file=sys.stderr, flush=True)
        print(f"| {source.name} | {base:.2f} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
