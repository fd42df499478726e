"""Scene cuts: the model never looks across one, so one shot does not bleed into the next.

The model's transformer attends across a few frames of its chunk, and a learned VAE's temporal
convolutions reach further still; at a cut, that mixes two unrelated pictures. So a chunk is cut
where its shot changes and each shot's frames go through the model apart, the pieces joined as
the memory ladder joins its sub-clips (`memory.run_in_pieces`). A network whose token spans
several frames is split at the end of the token that holds the cut (its pieces must hold whole
tokens), so up to that many frames less one of the new shot run with the old one: the new shot's
piece starts clean, which a VAE that is causal in time needs (its later frames see its earlier
ones), and a cut in a chunk's last token is not split.

A cut is found from the frames of the chunk alone, never from frames beyond it. The chunk grid
is absolute (run/chunking.py), so a frame range, a segment and a whole run find the same cuts in
the same chunks and still compute the same frames. Each pair of consecutive frames is averaged
down to a coarse grid of cells (a pan or a moving subject shifts them little), then two
scores compare them: how much the cells changed (mean absolute difference) and how much the
distribution of their values changed (histograms). A cut changes both; motion changes the first,
a lighting change the second. The thresholds were set on real clips with and without cuts
(BENCHMARKS.md, `benchmarks/scene_cuts.py`). They hold for pictures coded as SDR video is (and
HLG, made to look right on SDR screens); PQ codes SDR's white at about 0.58 of its range and its
shadows lower still, so PQ frames are mapped to an SDR-like scale first (`sdr_like`).

A flash (a photographer's flash, a strobe, lightning: up to FLASH odd frames, after which the
picture from before returns) crosses the thresholds twice, into the flash and out of it. It is
one shot, so both are dropped: a cut stands only where the frame before it is still a cut apart
from each of the FLASH frames after it that the chunk holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CELLS = 32  # the coarse grid's cells along each side (fewer where the frame is smaller)
BINS = 16  # histogram bins a channel
CHANGE = 0.10  # mean absolute change of the cells, of the full range, at or above which ...
SHIFT = 0.20  # ... and histogram distance (half the L1 distance, 0-1) at or above which: a cut


FLASH = 3  # odd frames after which the picture from before them may return: a flash, no cut
PQ = 16  # the transfer code of SMPTE ST 2084 (media/colour.py's ColourInfo.transfer)
REFERENCE_WHITE = 203.0  # nits: diffuse white in PQ video (ITU-R BT.2408), SDR's 1.0


def pair_scores(frames: Tensor) -> tuple[Tensor, Tensor]:
    """frames (T, 3, h, w) in [0, 1] -> for each pair (j - 1, j), j = 1 .. T-1: the cells' mean
    absolute change and the histograms' distance, each (T - 1,) in [0, 1]."""
    index = torch.arange(frames.shape[0], device=frames.device)
    return _scores(_features(frames), index[:-1], index[1:])


def shot_starts(lr: Tensor, step: int = 1, transfer: int | None = None) -> list[int]:
    """Where a new shot starts in lr (1, 3, T, h, w), RGB coded with the input's `transfer`:
    frame indices in 1 .. T-1, moved on to a multiple of `step` (the model's frames a token: its
    pieces must hold whole tokens). Flashes are not cuts. One read from the device."""
    frames = lr.shape[2]
    if frames < 2:
        return []
    # apart[d - 1][i]: frames i and i + d are a cut apart, d = 1 .. FLASH + 1 (past the chunk's
    # end: unknown, so True)
    first = torch.arange(frames - 1, device=lr.device)
    second = first + torch.arange(1, FLASH + 2, device=lr.device)[:, None]  # (FLASH + 1, T - 1)
    features = _features(lr[0].transpose(0, 1), transfer)
    change, shift = _scores(features, first.expand_as(second), second.clamp(max=frames - 1))
    apart = ((change >= CHANGE) & (shift >= SHIFT) | (second >= frames)).tolist()
    found, flashes = set(), set()
    for j in range(1, frames):
        if not apart[0][j - 1] or j in flashes:
            continue
        back = next((k for k in range(1, FLASH + 1) if not apart[k][j - 1]), None)
        if back is None:
            found.add(j)
        else:  # frames j .. j + back - 1 flashed; the way back out of them is no cut either
            flashes.update(range(j, j + back + 1))
    starts = {-(-j // step) * step for j in found}  # on to the end of the token holding it
    return sorted(s for s in starts if s < frames)  # none past a short chunk's end


def sdr_like(frames: Tensor) -> Tensor:
    """PQ code values in [0, 1] -> about what SDR video codes the same light as: to nits (ST 2084's
    EOTF), as a share of reference white (highlights above it clipped), then BT.1886's gamma."""
    e = frames.float().clamp(0, 1) ** (1 / 78.84375)
    nits = 10000 * ((e - 0.8359375).clamp(min=0) / (18.8515625 - 18.6875 * e)) ** (
        1 / 0.1593017578125
    )
    return (nits / REFERENCE_WHITE).clamp(0, 1) ** (1 / 2.4)


def _features(frames: Tensor, transfer: int | None = None) -> tuple[Tensor, Tensor]:
    """(T, 3, h, w) -> each frame averaged down to at most CELLS x CELLS cells, (T, 3, c, c'),
    on an SDR-like scale, and the cells' histograms, (T, 3, BINS)."""
    size = (min(CELLS, frames.shape[2]), min(CELLS, frames.shape[3]))
    cells = F.adaptive_avg_pool2d(frames.float(), size)
    cells = sdr_like(cells) if transfer == PQ else cells
    bins = (cells.clamp(0, 1) * BINS).long().clamp_(max=BINS - 1).flatten(2)  # (T, 3, cells)
    return cells, F.one_hot(bins, BINS).sum(dim=2).float() / bins.shape[2]


def _scores(features: tuple[Tensor, Tensor], a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Both scores for the pairs of frames (a, b), index tensors of one shape: each that shape."""
    cells, hist = features
    change = (cells[b] - cells[a]).abs().flatten(-3).mean(dim=-1)
    shift = (hist[b] - hist[a]).abs().sum(dim=-1).mean(dim=-1) / 2
    return change, shift
