"""Out of GPU memory: the ladder of smaller settings a chunk is retried with, and the rung a run keeps.

A chunk that runs out of GPU memory is retried, after the cache is freed, one rung lower: first the
settings that give the same output (the decoder one frame at a time, in spatial tiles: the same
arithmetic, though kernels picked by shape may round an ulp apart), then fewer
frames per model call (the chunk's frames in sub-clips run apart and joined in time, which changes
the picture slightly: a sub-clip's attention windows and causal context stop at its edges). The
rung that worked is kept for the rest of the run, so a run pays for its out-of-memory once, and
one warning at the end names what was lowered. Only when the lowest rung fails too is it an error.

At 4K nearly every tensor of a call grows with its frames (the fp32 fill of (1, 3, T, 2160, 3840)
is 100 MB a frame, the condition latent and the transformer's tokens as much again), so fewer
frames is the rung that bounds memory; the decoder's tiles bound only its own activations.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from models.skipsr import Result, Settings
from skipsr_cli.errors import ModelError

TILE = 128  # latent pixels per decode tile on the exact rung (512 output pixels at 4x)

# One model call: low-resolution frames (1, 3, T, h, w) and the output size (H, W) -> its result.
Model = Callable[[Tensor, tuple[int, int], Settings], Result]


@dataclass(frozen=True)
class Rung:
    """One setting of the ladder: the model's settings and how many frames one call gets."""

    settings: Settings
    frames: int | None = None  # frames per model call; None: the whole chunk
    exact: bool = True  # gives the same output as the run's own settings

    def describe(self, chunk_frames: int) -> str:
        tile = self.settings.decode_tile
        slices = f"the decoder one frame at a time in tiles of {tile} latent pixels"
        if self.frames is None:
            return slices
        return f"{self.frames} frame(s) per model call (of {chunk_frames} a chunk) and {slices}"


def ladder(settings: Settings, chunk_frames: int, step: int) -> list[Rung]:
    """The run's own settings, then lower and lower ones; `step` is the model's temporal factor
    (a sub-clip holds a multiple of it, so the token masks of the sub-clips join)."""
    tile = min(settings.decode_tile or TILE, TILE)
    small = replace(settings, frame_slice=1, decode_tile=tile)
    rungs = [Rung(settings)]
    if small != settings:
        rungs.append(Rung(small))
    frames = chunk_frames
    while frames > step:
        frames = max(step, -(-(frames // 2) // step) * step)  # halved, rounded up to a step
        rungs.append(Rung(small, frames, exact=False))
    return rungs


class MemoryLadder:
    """Runs each chunk at the lowest rung reached so far; lowers it when a chunk runs out."""

    def __init__(self, settings: Settings, chunk_frames: int, step: int) -> None:
        self.rungs = ladder(settings, chunk_frames, step)
        self.chunk_frames = chunk_frames
        self.level = 0
        self.lowered_at: list[int] = []  # the first frame of each chunk that lowered the rung

    def run(self, model: Model, lr: Tensor, size: tuple[int, int], first: int) -> Result:
        """lr (1, 3, T, h, w) through the model; `first` is its first frame, for the warning."""
        while True:
            try:
                return run_rung(model, lr, size, self.rungs[self.level])
            except RuntimeError as e:  # torch.cuda.OutOfMemoryError is one
                if not out_of_memory(e):
                    raise
                if self.level + 1 == len(self.rungs):
                    raise ModelError(self.failure(first, lr.shape[2])) from e
            # Out of the except block: the failed call's tensors, held by its traceback, are gone.
            free_cache()
            self.lower(lr.shape[2])
            if first not in self.lowered_at:
                self.lowered_at.append(first)

    def lower(self, frames: int) -> None:
        """One rung down, past those that would run a chunk of `frames` as the failed one did
        (sub-clips as long as the chunk are the whole chunk)."""
        failed = self.rungs[self.level]
        self.level += 1
        while self.level + 1 < len(self.rungs) and same_call(
            failed, self.rungs[self.level], frames
        ):
            self.level += 1

    def failure(self, first: int, frames: int) -> str:
        lowest = self.rungs[-1].describe(self.chunk_frames)
        return (
            f"out of GPU memory on frames {first}-{first + frames - 1} even with {lowest}: "
            "free the GPU, or lower --scale, --size or --dtype (bf16 halves the networks)"
        )

    @property
    def warnings(self) -> list[str]:
        """One line naming what was lowered, or none when the run's own settings fitted."""
        if not self.lowered_at:
            return []
        rung = self.rungs[self.level]
        at = ", then at frame ".join(str(f) for f in self.lowered_at)
        effect = (
            "the same output, to float rounding"
            if rung.exact
            else "sub-clips run apart, which changes the picture slightly"
        )
        return [
            f"out of GPU memory at frame {at}: from there on ran with "
            f"{rung.describe(self.chunk_frames)} ({effect})"
        ]


def same_call(a: Rung, b: Rung, frames: int) -> bool:
    """Whether two rungs run a chunk of `frames` frames alike."""
    return a.settings == b.settings and min(a.frames or frames, frames) == min(
        b.frames or frames, frames
    )


def run_rung(model: Model, lr: Tensor, size: tuple[int, int], rung: Rung) -> Result:
    """One chunk at one rung: whole, or in sub-clips of `rung.frames` joined in time."""
    starts = range(rung.frames, lr.shape[2], rung.frames) if rung.frames else ()
    return run_in_pieces(lambda clip, _: model(clip, size, rung.settings), lr, starts)


def run_in_pieces(
    run: Callable[[Tensor, int], Result], lr: Tensor, starts: Sequence[int], first: int = 0
) -> Result:
    """lr (1, 3, T, h, w) through `run(piece, its first frame)` in pieces that begin at `starts`
    (frames of lr, each a multiple of the model's frames a token), joined in time: their frames,
    their token masks, and the kept fraction over all. No starts: one call, as it is."""
    if not starts:
        return run(lr, first)
    bounds = [0, *starts, lr.shape[2]]
    frames, keeps = None, []
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece = run(lr[:, :, a:b], first + a)
        if frames is None:  # filled piece by piece: at 4K a chunk's frames are gigabytes
            shape = piece.frames.shape
            frames = piece.frames.new_empty(*shape[:2], lr.shape[2], *shape[3:])
        frames[:, :, a:b] = piece.frames
        keeps.append(piece.keep)  # (1, T' of the piece, H', W'): each starts on a whole token
        del piece
    keep = torch.cat(keeps, dim=1)
    return Result(frames, keep, keep.float().mean().item())


def out_of_memory(error: RuntimeError) -> bool:
    """The allocator's own error, or a library's (cuBLAS, cuDNN) that could not get memory."""
    text = str(error)
    return isinstance(error, torch.cuda.OutOfMemoryError) or any(
        sign in text for sign in ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED")
    )


def free_cache() -> None:
    """Give the caching allocator's free blocks back, so the next rung starts from a clean pool."""
    gc.collect()  # a reference cycle may still hold a failed call's tensors
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
