"""Rotary position embedding over three axes (t, h, w), from integer token coordinates.

Positions are the token's coordinates on the full token grid, never its index in a packed sequence:
that is what makes the embedding mask-aware. A kept token rotates exactly as it would with nothing
skipped. Rotary attention depends only on position differences, so global coordinates give the same
scores as window-local ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Split a head's dimensions over (t, h, w): a quarter for time, the rest shared by space."""
    t = 2 * (head_dim // 8)
    h = 2 * ((head_dim - t) // 4)
    w = head_dim - t - h
    return t, h, w


class Rope3D(nn.Module):
    """Maps (N, 3) integer coordinates to the (cos, sin) tables of shape (N, head_dim // 2)."""

    def __init__(self, head_dim: int, theta: float = 10_000.0) -> None:
        super().__init__()
        self.dims = axis_dims(head_dim)
        self.theta = theta

    def forward(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        # float64 keeps large coordinates (long videos, 4K grids) exact before the cast; the
        # tables are made in runs of tokens so the float64 temporaries stay small
        freqs = torch.cat(
            [
                self.theta
                ** -(torch.arange(0, d, 2, device=coords.device, dtype=torch.float64) / d)
                for d in self.dims
            ]
        )  # (head_dim/2,)
        axis = torch.repeat_interleave(
            torch.arange(3, device=coords.device),
            torch.tensor([d // 2 for d in self.dims], device=coords.device),
        )  # which coordinate each frequency turns with
        cos = coords.new_empty(coords.shape[0], freqs.numel(), dtype=torch.float32)
        sin = torch.empty_like(cos)
        for lo in range(0, coords.shape[0], _RUN):
            angle = coords[lo : lo + _RUN, axis].to(torch.float64) * freqs  # (n, head_dim/2)
            cos[lo : lo + _RUN], sin[lo : lo + _RUN] = angle.cos(), angle.sin()
        return cos, sin


_RUN = 1 << 18


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (2i, 2i+1) of x: (N, heads, head_dim) by the per-token angles."""
    x2 = x.float().unflatten(-1, (-1, 2))  # (N, heads, head_dim/2, 2)
    c, s = cos[:, None, :], sin[:, None, :]  # (N, 1, head_dim/2)
    real = x2[..., 0] * c - x2[..., 1] * s
    imag = x2[..., 0] * s + x2[..., 1] * c
    return torch.stack((real, imag), dim=-1).flatten(-2).to(x.dtype)
