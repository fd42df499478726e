"""The best linear upscaler for each held-out clip, fitted on that clip: how far plain restoration
with a known degradation gets, next to lanczos and the model (issue 15's question: what stops the
model on natural footage?).

Each clip's first frames are degraded by the eval's track (`skipsr eval`'s inputs exactly). Every
output block of scale x scale pixels is then predicted as an affine function of the 9 x 9
low-resolution pixels around it (all three channels), with the weights that minimise the squared
error on that clip itself ("per clip": an oracle, it knows the kernel, the codec and the content),
or on all clips of the run together ("pooled": one filter for the whole set, which still knows the
bicubic kernel of the tracks). A model taught on many kernels does not know which one made its input,
so these say how much of the gap is knowing the degradation. Runs on the CPU.

    PYTHONPATH=. python3 benchmarks/linear_oracle.py HELDOUT_DIR [--scale 2] [--track clean] [--frames 16]

`--track none` drops the track's H.264 round trip (the antialiased bicubic downscale alone): what
the codec of the track costs. `--fit-kernel K` (repeatable: bicubic, lanczos, area, bilinear) fits
the pooled filter on inputs downscaled by those kernels instead, then measures it on the track's
own (bicubic) inputs: a filter that does not know the kernel, as a model trained on a mixture.
`--fit-pack PACK` fits the pooled filter on a training pack instead (`skipsr train pack`: its
photos, and its videos at the 0.75 scale that training caches them at, every fourth frame coded
as one sequence; all degraded by the track): a linear upscaler taught on what the model is taught on, so the held-out
clips say whether the model falls short of its own data's linear solution (it underfits) or the
data falls short of the held-out footage (a domain gap).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from skipsr_cli.measure import metrics
from skipsr_cli.measure.evaluate import find_sources, load_reference, upscale_classic
from skipsr_cli.train.data import decode_video, read_image
from skipsr_cli.train.degrade import TRACKS, from_uint8, h264_round_trip, resize

TAPS = 9  # low-resolution pixels on a side of each prediction's window
ROWS = 1 << 16  # rows of the design matrix at a time


def features(lr: torch.Tensor) -> torch.Tensor:
    """(T, 3, h, w) -> (T * h * w, 3 * TAPS**2 + 1): each pixel's window (edges replicated), and 1."""
    pad = TAPS // 2
    cols = F.unfold(F.pad(lr, (pad,) * 4, mode="replicate"), TAPS)  # (T, 3 * TAPS**2, h * w)
    cols = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return torch.cat((cols, torch.ones(cols.shape[0], 1)), 1)


def blocks(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(T, 3, H, W) -> (T * h * w, 3 * scale**2): each low-resolution pixel's block of outputs."""
    cells = F.pixel_unshuffle(hr, scale)
    return cells.permute(0, 2, 3, 1).reshape(-1, cells.shape[1])


def gram(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """X'X and X'Y of design rows `x` and their targets `y`, in runs of ROWS rows, in float64:
    neighbouring pixels' windows are nearly collinear, and float32 sums lose the fit."""
    xtx = xty = 0
    for lo in range(0, x.shape[0], ROWS):
        xs, ys = x[lo : lo + ROWS].double(), y[lo : lo + ROWS].double()
        xtx, xty = xtx + xs.T @ xs, xty + xs.T @ ys
    return xtx, xty


def normal_equations(lr: torch.Tensor, hr: torch.Tensor, scale: int) -> tuple[torch.Tensor, ...]:
    """X'X and X'Y of one clip, frame by frame."""
    xtx = xty = 0
    for i in range(lr.shape[0]):
        a, b = gram(features(lr[i : i + 1]), blocks(hr[i : i + 1], scale))
        xtx, xty = xtx + a, xty + b
    return xtx, xty


def solve(xtx: torch.Tensor, xty: torch.Tensor) -> torch.Tensor:
    ridge = 1e-6 * xtx.diagonal().mean() * torch.eye(xtx.shape[0], dtype=xtx.dtype)
    return torch.linalg.solve(xtx + ridge, xty).float()


def apply(weights: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Upscale (T, 3, h, w) with fitted weights, frame by frame."""
    out = []
    for i in range(lr.shape[0]):
        h, w = lr.shape[-2:]
        cells = (features(lr[i : i + 1]) @ weights).reshape(1, h, w, -1).permute(0, 3, 1, 2)
        out.append(F.pixel_shuffle(cells, scale).clamp(0, 1))
    return torch.cat(out)


def pack_equations(pack: Path, scale: int, track: str) -> tuple[torch.Tensor, ...]:
    """The normal equations of a training pack's media, degraded by `track` (see --fit-pack)."""
    xtx = xty = 0
    photos = (read_image(p)[None] for p in sorted((pack / "images").glob("*.jpg")))
    clips = (decode_video(p, 0.75)[::4] for p in sorted((pack / "videos").iterdir()))
    for media in itertools.chain(photos, clips):
        h, w = (side // scale * scale for side in media.shape[1:3])
        ref = from_uint8(np.ascontiguousarray(media[:, :h, :w]))
        a, b = normal_equations(degrade(ref, scale, track), ref, scale)
        xtx, xty = xtx + a, xty + b
    return xtx, xty


def degrade(ref: torch.Tensor, scale: int, track: str, kernel: str = "bicubic") -> torch.Tensor:
    """The eval's track (`Track.apply`: an antialiased downscale, then x264 at the track's CRF),
    with another kernel if asked; no codec for `none`. The reference's sides divide by `scale`."""
    lr = resize(ref, (ref.shape[-2] // scale, ref.shape[-1] // scale), kernel)
    return lr if track == "none" else h264_round_trip(lr, TRACKS[track].crf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--track", default="clean", choices=[*sorted(TRACKS), "none"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--fit-kernel", action="append", default=[])
    parser.add_argument("--fit-pack", type=Path)
    opts = parser.parse_args()
    if opts.fit_pack is not None and opts.fit_kernel:
        parser.error(
            "--fit-pack fits on the pack's own pairs (the track's kernel): no --fit-kernel"
        )
    torch.set_grad_enabled(False)
    sources = find_sources([opts.folder])
    kernels = opts.fit_kernel or ["bicubic"]
    own, fit = {}, [0, 0]
    for source in sources:  # pass 1: the normal equations (clips are decoded again in pass 2)
        ref = load_reference(source, opts.scale, opts.frames).frames
        own[source.name] = normal_equations(degrade(ref, opts.scale, opts.track), ref, opts.scale)
        for kernel in kernels if opts.fit_pack is None else []:
            pair = (
                own[source.name]
                if kernel == "bicubic"
                else normal_equations(degrade(ref, opts.scale, opts.track, kernel), ref, opts.scale)
            )
            fit = [fit[0] + pair[0], fit[1] + pair[1]]
        print(f"fitted {source.name}", file=sys.stderr, flush=True)
    if opts.fit_pack is not None:
        fit = pack_equations(opts.fit_pack, opts.scale, opts.track)
    pooled = solve(*fit)
    on = f"the pack {opts.fit_pack}" if opts.fit_pack is not None else ", ".join(kernels)
    print(
        f"x{opts.scale} {opts.track}, {TAPS}x{TAPS} taps, first {opts.frames} frames; pooled fit on {on}"
    )
    print("| clip | lanczos | linear, pooled (gain) | linear, per clip (gain) |")
    print("|---|---|---|---|")
    for source in sources:
        ref = load_reference(source, opts.scale, opts.frames).frames
        lr = degrade(ref, opts.scale, opts.track)
        size = tuple(ref.shape[-2:])
        base = metrics.psnr(upscale_classic(lr, size, "lanczos"), ref)
        shared = metrics.psnr(apply(pooled, lr, opts.scale), ref)
        alone = metrics.psnr(apply(solve(*own[source.name]), lr, opts.scale), ref)
        print(
            f"| {source.name} | {base:.2f} | {shared:.2f} ({shared - base:+.2f}) "
            f"| {alone:.2f} ({alone - base:+.2f}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
