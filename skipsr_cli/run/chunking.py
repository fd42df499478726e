"""Pure chunk planning: frames in chunks of N with K frames of overlap, and the overlap-add blend.

Chunk i starts at i * (N - K), counted from the video's first frame whatever part of it a run
renders, so a frame range computes exactly the frames a whole run computes there. Where two chunks
overlap, the earlier fades out and the later fades in with triangular weights that sum to exactly 1
on every frame; the blend accumulates the weighted sum and the weight sum, and asserts full coverage
before it releases a frame.

The video's last chunk is short when its length leaves a remainder. Rather than run those few
frames alone (one frame would see no other), it reaches back: it holds the N frames that end the
video, and the frames before its place on the grid are context only, their outputs dropped. It is
known to be the last when the frames run out, so no run needs the input's frame count first; a
run that starts inside the video reads one grid step before its first chunk (read_start), so that
its last chunk can reach back as a whole run's does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Generic, TypeVar

import torch
from torch import Tensor

T = TypeVar("T")

# The default plan: chunks of 16 frames, none shared. Every frame a chunk shares with the next is
# run through the model twice (N / (N - K) frames of model work for each frame out: 1.33 at 16/4),
# and the shipped network gains nothing from it: measured on six held-out clips, chunks of 16
# without overlap give the frames of a one-call run to within 85-91 dB, as close as 16/4 does
# (BENCHMARKS.md, benchmarks/chunk_plans.py). Its decoder sees one frame, and its transformer
# looks 2-4 frames around each one (windows of 4, shifted by 2 every other layer). A short last
# chunk reaches back to whole (module docstring; BENCHMARKS.md measures what that buys).
# `--overlap K` cross-fades K frames, for networks that look further in time.
CHUNK_FRAMES, OVERLAP = 16, 0


# How the last chunk is laid (module docstring): recorded with a farm's parts, so that parts made
# by a version that ran a short last chunk alone are not joined to, or resumed as, this one's.
LAST_CHUNK = "reaches back"


@dataclass(frozen=True)
class Chunk(Generic[T]):
    start: int  # index of the chunk's first frame in the whole video
    items: list[T]
    overlap_before: int  # frames shared with the previous chunk, after the context
    overlap_after: int  # frames shared with the next chunk (0 for the last)
    context: int = 0  # leading frames a short last chunk reached back for: outputs dropped

    @property
    def stop(self) -> int:
        return self.start + len(self.items)

    @property
    def grid_start(self) -> int:
        """The chunk's place on the grid: its first frame whose output is kept or blended."""
        return self.start + self.context

    @property
    def final_upto(self) -> int:
        """Frames before this index receive no more contributions once this chunk is blended."""
        return self.stop - self.overlap_after


def check_plan(length: int, overlap: int) -> None:
    if length < 1:
        raise ValueError(f"chunk length must be at least 1, not {length}")
    if not 0 <= 2 * overlap < length:
        raise ValueError(
            f"overlap must be at least 0 and less than half the chunk ({length}), not {overlap}"
        )


def iter_chunks(
    items: Iterable[T], length: int, overlap: int, start: int = 0
) -> Iterator[Chunk[T]]:
    """Stream chunks from an iterator of unknown length, holding one chunk and the next one's fresh
    frames at most.

    `start` is the index of the first item, a chunk start on the grid (read_start) when a run
    begins inside the video: its chunks are then the whole run's. A short last chunk reaches back
    to `length` frames where the frames before it allow (module docstring)."""
    check_plan(length, overlap)
    source = iter(items)
    buffer, context = list(islice(source, length)), 0
    while buffer:
        fresh = list(islice(source, length - overlap))  # frames after this chunk, if any
        before = overlap if start + context > 0 else 0
        yield Chunk(start, buffer, before, overlap if fresh else 0, context)
        if not fresh:
            return
        # the next chunk: this one's last `overlap` frames and the fresh ones, and where the fresh
        # ones fall short (the video's end), earlier frames of this one as its context
        context = length - overlap - len(fresh)
        buffer, start = (buffer + fresh)[-length:], start + len(fresh)


def chunk_start(frame: int, length: int, overlap: int) -> int:
    """The start of the first chunk of the grid that holds `frame`."""
    step = length - overlap
    first = max(0, -(-(frame - length + 1) // step))  # the least i with i * step + length > frame
    return first * step


def read_start(frame: int, length: int, overlap: int) -> int:
    """Where a run that renders from `frame` starts reading: one grid step before the first chunk
    that holds it, whose frames are decoded, not upscaled, unless the video's last chunk turns out
    to be the run's first and reaches back into them."""
    return max(0, chunk_start(frame, length, overlap) - (length - overlap))


def transition_weights(chunk: Chunk) -> Tensor:
    """Per-frame weights (n,): 0 over the context, then ramps up over the leading overlap and down
    over the trailing one."""
    n, lead = len(chunk.items), chunk.context
    w = torch.ones(n, dtype=torch.float64)
    ramp_in = torch.arange(1, chunk.overlap_before + 1, dtype=torch.float64) / (
        chunk.overlap_before + 1
    )
    ramp_out = torch.arange(chunk.overlap_after, 0, -1, dtype=torch.float64) / (
        chunk.overlap_after + 1
    )
    w[:lead] = 0.0
    w[lead : lead + chunk.overlap_before] = ramp_in
    if chunk.overlap_after:
        w[n - chunk.overlap_after :] = ramp_out
    return w


class OverlapAdd:
    """Blends chunk outputs (n, ...) into finished frames, released in order.

    Only frames in [first, last) are kept: a frame range takes the chunks that touch it, whole, and
    drops what they hold outside it (frames there would lack a neighbour's share)."""

    def __init__(self, first: int = 0, last: int | None = None) -> None:
        self._sum: dict[int, Tensor] = {}
        self._weight: dict[int, float] = {}
        self.next = first  # the next frame index to release
        self.last = last

    def add(self, chunk: Chunk, outputs: Tensor) -> Iterator[tuple[int, Tensor]]:
        """Accumulate one chunk's outputs; yield (index, frame) for every frame now complete."""
        if chunk.grid_start > self.next:
            raise AssertionError(
                f"chunk starting at {chunk.grid_start} leaves frames from {self.next} uncovered"
            )
        weights = transition_weights(chunk)
        for j in range(chunk.context, len(chunk.items)):  # the context's outputs are dropped
            index = chunk.start + j
            if index < self.next or (self.last is not None and index >= self.last):
                continue
            w = float(weights[j])
            # A frame of weight 1 is final at once: kept as it is (no copy), released below.
            part = outputs[j] if w == 1.0 else outputs[j] * w
            if index in self._sum:
                self._sum[index] = self._sum[index] + part
                self._weight[index] += w
            else:
                self._sum[index], self._weight[index] = part, w
        upto = chunk.final_upto if self.last is None else min(chunk.final_upto, self.last)
        while self.next < upto:
            yield self.next, self._release(self.next)
            self.next += 1

    def _release(self, index: int) -> Tensor:
        total, weight = self._sum.pop(index), self._weight.pop(index)
        if abs(weight - 1.0) > 1e-9:
            raise AssertionError(
                f"frame {index} has weight {weight}, not 1: chunks do not cover it"
            )
        return total if weight == 1.0 else total / weight

    def close(self) -> None:
        """Assert every accumulated frame was released."""
        if self._sum:
            raise AssertionError(f"frames {sorted(self._sum)[:5]} were never completed")
