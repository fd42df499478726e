"""Small helpers shared by the tests (media generation lives in media.py)."""

from __future__ import annotations

import torch


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Every parameter random and non-zero, so no path can hide behind a zero-initialised layer."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module
