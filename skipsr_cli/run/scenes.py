"""Scene cuts: the model never looks across one, so one shot does not bleed into the next.

The model's transformer attends across a few frames of its chunk, and a learned VAE's temporal
convolutions reach further still; at a cut, that mixes two unrelated pictures. So a chunk is cut
where its shot changes and each shot's frames go through the model apart, the pieces joined as
the memory ladder joins its sub-clips (`memory.run_in_pieces`). A network whose token spans
several frames is split at the start of the token that holds the cut (its pieces must hold whole
tokens), so up to that many frames less one run with the next shot.

A cut is found from one pair of consecutive frames of the chunk alone, never from frames beyond
it. The chunk grid is absolute (run/chunking.py), so a frame range, a segment and a whole run
find the same cuts in the same chunks and still compute the same frames. Both frames are
averaged down to a coarse grid of cells (a pan or a moving subject shifts them little), then two
scores compare them: how much the cells changed (mean absolute difference) and how much the
distribution of their values changed (histograms). A cut changes both; motion changes the first,
a lighting change the second. The thresholds were set on real clips with and without cuts
(BENCHMARKS.md, `benchmarks/scene_cuts.py`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

CELLS = 32  # the coarse grid's cells along each side (fewer where the frame is smaller)
BINS = 16  # histogram bins a channel
CHANGE = 0.10  # mean absolute change of the cells, of the full range, at or above which ...
SHIFT = 0.20  # ... and histogram distance (half the L1 distance, 0-1) at or above which: a cut


def pair_scores(frames: Tensor) -> tuple[Tensor, Tensor]:
    """frames (T, 3, h, w) in [0, 1] -> for each pair (j - 1, j), j = 1 .. T-1: the cells' mean
    absolute change and the histograms' distance, each (T - 1,) in [0, 1]."""
    cells = F.adaptive_avg_pool2d(
        frames.float(), (min(CELLS, frames.shape[2]), min(CELLS, frames.shape[3]))
    )
    change = (cells[1:] - cells[:-1]).abs().mean(dim=(1, 2, 3))
    bins = (cells.clamp(0, 1) * BINS).long().clamp_(max=BINS - 1).flatten(2)  # (T, 3, cells)
    hist = F.one_hot(bins, BINS).sum(dim=2).float() / bins.shape[2]  # (T, 3, BINS)
    shift = (hist[1:] - hist[:-1]).abs().sum(dim=2).mean(dim=1) / 2
    return change, shift


def shot_starts(lr: Tensor, step: int = 1) -> list[int]:
    """Where a new shot starts in lr (1, 3, T, h, w): frame indices in 1 .. T-1, moved back to a
    multiple of `step` (the model's frames a token: its pieces must hold whole tokens)."""
    if lr.shape[2] < 2:
        return []
    change, shift = pair_scores(lr[0].transpose(0, 1))
    found = ((change >= CHANGE) & (shift >= SHIFT)).nonzero().flatten().tolist()
    return sorted({(j + 1) // step * step for j in found} - {0})
