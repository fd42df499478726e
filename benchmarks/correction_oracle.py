"""How much a per-clip linear correction on top of the model's output could add, and how much of it
a correction fitted on the clip's own input alone recovers (issue 15: test-time adaptation).

Each clip's first frames are degraded by the eval's track, then upscaled by the model (CPU, fp32,
default tau). A correction predicts every output pixel as an affine function of the 5 x 5 window of
the model's output around it (three channels). Two fits, both per clip:

- "oracle": fitted against the reference itself. It bounds what any such correction could do.
- "self": fitted without the reference, one scale step down (an octave at x2). The input is
  degraded once more by the same track (the low-resolution frames become the targets), that is
  upscaled by the model, and the correction that maps this output onto the input is applied to the
  model's output at full scale.
  Zero-shot super-resolution's premise, that a picture's detail repeats across scales, decides
  whether this helps.

    PYTHONPATH=. python3 benchmarks/correction_oracle.py HELDOUT_DIR [--scale 2] [--frames 8] [--only NAME]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.linear_oracle import gram, solve
from models.skipsr import Settings
from skipsr_cli.measure import metrics
from skipsr_cli.measure.evaluate import find_sources, load_reference, upscale_classic, upscale_model
from skipsr_cli.train.degrade import TRACKS
from skipsr_cli.weights import load_model

TAPS = 5  # output pixels on a side of the correction's window


def features(img: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) -> (H * W, 3 * TAPS**2 + 1): each pixel's window (edges replicated), and 1."""
    pad = TAPS // 2
    cols = F.unfold(F.pad(img, (pad,) * 4, mode="replicate"), TAPS)[0].T
    return torch.cat((cols, torch.ones(cols.shape[0], 1)), 1)


def normal_equations(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """X'X and X'Y of a correction from `src` frames to `dst` frames (same size), frame by frame."""
    xtx = xty = 0
    for i in range(src.shape[0]):
        a, b = gram(features(src[i : i + 1]), dst[i].reshape(3, -1).T)
        xtx, xty = xtx + a, xty + b
    return xtx, xty


def apply(weights: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    out = []
    for i in range(img.shape[0]):
        h, w = img.shape[-2:]
        out.append((features(img[i : i + 1]) @ weights).T.reshape(1, 3, h, w).clamp(0, 1))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--track", default="clean", choices=sorted(TRACKS))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--only", action="append", default=[])
    opts = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_model()
    track = TRACKS[opts.track]
    print(
        f"x{opts.scale} {opts.track}, first {opts.frames} frames, base on the CPU (fp32), {TAPS}x{TAPS} taps"
    )
    print("| clip | lanczos | base (gain) | + oracle correction | + self correction |")
    print("|---|---|---|---|---|")
    for source in find_sources([opts.folder]):
        if opts.only and not any(o in source.name for o in opts.only):
            continue
        ref = load_reference(source, opts.scale, opts.frames).frames
        lr = track.apply(ref, opts.scale)
        size = tuple(ref.shape[-2:])
        out, _ = upscale_model(model, lr, size, Settings())
        # one scale step down: the input, degraded again by the track, upscaled back to its size
        side = (lr.shape[-2] // opts.scale * opts.scale, lr.shape[-1] // opts.scale * opts.scale)
        small = lr[..., : side[0], : side[1]]
        low = track.apply(small, opts.scale)
        low_out, _ = upscale_model(model, low, side, Settings())
        lanczos = metrics.psnr(upscale_classic(lr, size, "lanczos"), ref)
        plain = metrics.psnr(out, ref)
        oracle = metrics.psnr(apply(solve(*normal_equations(out, ref)), out), ref)
        own = metrics.psnr(apply(solve(*normal_equations(low_out, small)), out), ref)
        print(
            f"| {source.name} | {lanczos:.2f} | {plain:.2f} ({plain - lanczos:+.2f}) "
            f"| {oracle - plain:+.2f} | {own - plain:+.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
