"""How much of a photo's finest detail a bicubic sub-pixel resampling keeps: the energy of the
Laplacian (the top octave) after a random shift by a fraction of a pixel, over the energy before,
for the first 40 photos of a training pack, 4 shifts each. Prints the median and the mean.

    PYTHONPATH=. python3 benchmarks/resampling_detail.py .carry/pack
"""

import random
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from skipsr_cli.train.data import read_image
from skipsr_cli.train.degrade import from_uint8


def laplacian_energy(x: torch.Tensor) -> float:
    c = x[..., 1:-1, 1:-1]
    lap = 4 * c - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return lap.pow(2).mean().item()


rng = random.Random(0)
kept = []
for path in sorted((Path(sys.argv[1]) / "images").glob("*.jpg"))[:40]:
    photo = from_uint8(read_image(path)[None])  # (1, 3, H, W)
    _, _, h, w = photo.shape
    for _ in range(4):
        dy, dx = rng.random(), rng.random()
        theta = torch.tensor([[[1, 0, 2 * dx / w], [0, 1, 2 * dy / h]]], dtype=torch.float32)
        grid = F.affine_grid(theta, list(photo.shape), align_corners=False)
        moved = F.grid_sample(
            photo, grid, mode="bicubic", padding_mode="reflection", align_corners=False
        )
        inner = (..., slice(8, 256), slice(8, 256))  # away from the reflected border
        kept.append(laplacian_energy(moved.clamp(0, 1)[inner]) / laplacian_energy(photo[inner]))
print(
    f"top-octave energy kept: median {statistics.median(kept):.3f}, mean {statistics.mean(kept):.3f}"
)
