"""Quality figures for `skipsr eval`: PSNR (RGB), SSIM (luma) and a flicker score.

Every function takes two clips (T, 3, H, W) of floats in [0, 1] (output first, reference second)
and returns a Python float. Work runs in float64, a few frames at a time, so a 1080p clip needs a few
hundred MiB beyond its own tensors however long it is. Figures for a clip are the mean of the
per-frame figures, so a long clip and a short one are read on the same scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

PSNR_CAP = 100.0  # dB for identical frames (MSE 0), so averages and JSON stay finite
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
LUMA_BT601 = (0.299, 0.587, 0.114)  # Y' from R'G'B', full range: data range stays 1
_CHUNK_ELEMENTS = 1 << 24  # float64 elements per working chunk: 128 MiB


def _check_pair(out: Tensor, ref: Tensor) -> None:
    if out.shape != ref.shape or out.dim() != 4 or out.shape[1] != 3:
        raise ValueError(
            f"expected two clips (T, 3, H, W) of one shape, got {tuple(out.shape)} and {tuple(ref.shape)}"
        )
    if out.shape[0] == 0:
        raise ValueError("cannot measure an empty clip")


def _frame_step(frame_shape: torch.Size, factor: int = 1) -> int:
    """Frames per chunk so that `factor` float64 copies of a chunk stay near the element budget."""
    per_frame = math.prod(frame_shape) * factor
    return max(1, _CHUNK_ELEMENTS // per_frame)


def _chunks(
    out: Tensor, ref: Tensor, step: int, overlap: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """Float64 copies of both clips on their device (a GPU measures where it upscaled), `step`
    frames at a time, neighbours sharing `overlap`."""
    t = out.shape[0]
    for start in range(0, max(t - overlap, 1), step):
        stop = min(start + step + overlap, t)
        yield out[start:stop].double(), ref[start:stop].to(out.device, torch.float64)


def psnr_per_frame(out: Tensor, ref: Tensor) -> Tensor:
    """(T,) PSNR in dB on RGB with data range 1, capped at PSNR_CAP."""
    _check_pair(out, ref)
    values = []
    for o, r in _chunks(out, ref, _frame_step(out.shape[1:], 2)):
        mse = (o - r).square().flatten(1).mean(1)  # (t,)
        db = 10 * torch.log10(1 / mse)  # inf where mse == 0
        values.append(db.clamp(max=PSNR_CAP))
    return torch.cat(values)


def psnr(out: Tensor, ref: Tensor) -> float:
    """Mean over frames of the per-frame PSNR (dB); identical frames count as PSNR_CAP."""
    return psnr_per_frame(out, ref).mean().item()


def luma(frames: Tensor) -> Tensor:
    """BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B: (T, 3, H, W) -> (T, 1, H, W)."""
    weights = torch.tensor(LUMA_BT601, dtype=frames.dtype, device=frames.device)
    return (frames * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """(size,) float64 normalised 1-D Gaussian; SSIM's 2-D window is its outer product."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _blur(x: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian over the valid region only (no padding), as in Wang et al. 2004.

    Written as in-place sums of shifted views: on the CPU this is several times faster than
    float64 conv2d, which has no optimised kernel.
    """
    k = g.numel()
    taps = g.tolist()
    w = x.shape[-1] - k + 1
    rows = x[..., :w] * taps[0]  # (..., H, W - k + 1)
    for i in range(1, k):
        rows.add_(x[..., i : i + w], alpha=taps[i])
    h = x.shape[-2] - k + 1
    out = rows[..., :h, :] * taps[0]  # (..., H - k + 1, W - k + 1)
    for i in range(1, k):
        out.add_(rows[..., i : i + h, :], alpha=taps[i])
    return out


def ssim_per_frame(out: Tensor, ref: Tensor) -> Tensor:
    """(T,) mean SSIM on BT.601 luma: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, range 1.

    Frames smaller than the window use a window as large as their shorter side, so tiny test
    clips still get a figure instead of an error.
    """
    _check_pair(out, ref)
    h, w = out.shape[-2:]
    g = gaussian_window(min(SSIM_WINDOW, h, w))
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    values = []
    # Two RGB chunks, two luma maps and three five-map stacks are live: about 6 RGB frames' worth.
    for o, r in _chunks(out, ref, _frame_step(out.shape[1:], 6)):
        x, y = luma(o), luma(r)  # (t, 1, H, W)
        stats = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), g)  # (t, 5, H', W')
        mx, my, xx, yy, xy = stats.unbind(1)
        vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
        num = (2 * mx * my + c1) * (2 * cov + c2)
        den = (mx * mx + my * my + c1) * (vx + vy + c2)
        values.append((num / den).flatten(1).mean(1))
    return torch.cat(values)


def ssim(out: Tensor, ref: Tensor) -> float:
    """Mean over frames of the per-frame luma SSIM."""
    return ssim_per_frame(out, ref).mean().item()


def flicker(out: Tensor, ref: Tensor) -> float:
    """Mean |(out[t+1] - out[t]) - (ref[t+1] - ref[t])| over t, pixels and channels, x255.

    It measures temporal change the reference does not have (or lacks change it has), in 8-bit code
    values; a constant error (a fixed offset, a static blur) scores 0 because only the change between
    frames counts. With d = out - ref the term is d[t+1] - d[t], so one difference clip suffices.
    Needs at least two frames.
    """
    _check_pair(out, ref)
    t = out.shape[0]
    if t < 2:
        raise ValueError("flicker needs at least two frames")
    total = 0.0
    # Chunks share one frame so that every pair (t, t+1) is counted exactly once.
    for o, r in _chunks(out, ref, _frame_step(out.shape[1:], 3), overlap=1):
        d = o - r  # (t', 3, H, W)
        total += (d[1:] - d[:-1]).abs().sum().item()
    pairs_elements = (t - 1) * math.prod(out.shape[1:])
    return 255 * total / pairs_elements
