"""Pure chunk planning: frames in chunks of N with K frames of overlap, and the overlap-add blend.

Chunk i starts at i * (N - K), counted from the video's first frame whatever part of it a run
renders, so a frame range computes exactly the frames a whole run computes there. Where two chunks
overlap, the earlier fades out and the later fades in with triangular weights that sum to exactly 1
on every frame; the blend accumulates the weighted sum and the weight sum, and asserts full
coverage before it releases a frame.
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
# chunk sees fewer frames, which costs nothing measurable: a last frame run alone is within
# 0.04 dB of the same frame in a last chunk that reaches back to 16 frames (BENCHMARKS.md).
# `--overlap K` cross-fades K frames, for networks that look further in time.
CHUNK_FRAMES, OVERLAP = 16, 0


@dataclass(frozen=True)
class Chunk(Generic[T]):
    start: int  # index of the chunk's first frame in the whole video
    items: list[T]
    overlap_before: int  # frames shared with the previous chunk
    overlap_after: int  # frames shared with the next chunk (0 for the last)

    @property
    def stop(self) -> int:
        return self.start + len(self.items)

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
    """Stream chunks from an iterator of unknown length, holding at most one chunk in memory.

    `start` is the index of the first item, a chunk start on the grid (chunk_start) when a run
    begins inside the video: its chunks are then the whole run's."""
    check_plan(length, overlap)
    source = iter(items)
    buffer = list(islice(source, length))
    while buffer:
        fresh = list(islice(source, length - overlap))  # frames after this chunk, if any
        before = overlap if start > 0 else 0
        yield Chunk(start, buffer, before, overlap if fresh else 0)
        if not fresh:
            return
        buffer, start = buffer[length - overlap :] + fresh, start + length - overlap


def chunk_start(frame: int, length: int, overlap: int) -> int:
    """The start of the first chunk of the grid that holds `frame`."""
    step = length - overlap
    first = max(0, -(-(frame - length + 1) // step))  # the least i with i * step + length > frame
    return first * step


def transition_weights(chunk: Chunk) -> Tensor:
    """Per-frame weights (n,): ramps up over the leading overlap and down over the trailing one."""
    n = len(chunk.items)
    w = torch.ones(n, dtype=torch.float64)
    ramp_in = torch.arange(1, chunk.overlap_before + 1, dtype=torch.float64) / (
        chunk.overlap_before + 1
    )
    ramp_out = torch.arange(chunk.overlap_after, 0, -1, dtype=torch.float64) / (
        chunk.overlap_after + 1
    )
    w[: chunk.overlap_before] = ramp_in
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
        if chunk.start > self.next:
            raise AssertionError(
                f"chunk starting at {chunk.start} leaves frames from {self.next} uncovered"
            )
        weights = transition_weights(chunk)
        for j in range(len(chunk.items)):
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
