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
        angles = []
        for axis, dim in enumerate(self.dims):
            # float64 keeps large coordinates (long videos, 4K grids) exact before the cast
            exponent = torch.arange(0, dim, 2, device=coords.device, dtype=torch.float64) / dim
            freqs = self.theta**-exponent  # (dim/2,)
            angles.append(coords[:, axis, None].to(torch.float64) * freqs)  # (N, dim/2)
        angle = torch.cat(angles, dim=-1)  # (N, head_dim/2)
        return angle.cos().float(), angle.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (2i, 2i+1) of x: (N, heads, head_dim) by the per-token angles."""
    x2 = x.float().unflatten(-1, (-1, 2))  # (N, heads, head_dim/2, 2)
    c, s = cos[:, None, :], sin[:, None, :]  # (N, 1, head_dim/2)
    real = x2[..., 0] * c - x2[..., 1] * s
    imag = x2[..., 0] * s + x2[..., 1] * c
    return torch.stack((real, imag), dim=-1).flatten(-2).to(x.dtype)
