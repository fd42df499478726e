"""3D window attention over the kept tokens only.

Windows are laid out on the *full* token grid (regular, or shifted by half a window), then the
skipped tokens are dropped from every window. Windows therefore have different lengths, so the kept
tokens are packed window after window and attended with variable-length attention (cumulative
sequence lengths), never padded to the longest window.

`grid_window_attention` is the dense reference: the whole grid, windows by reshape, padding masked
out. Tests hold the packed path against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class WindowLayout:
    """How the kept tokens group into windows for one window geometry."""

    perm: Tensor  # (N,) kept-token indices, sorted window after window
    cu_seqlens: Tensor  # (W + 1,) int32 offsets of each non-empty window in `perm` order
    max_len: int  # the longest window, for the flash kernel

    @cached_property
    def groups(self) -> tuple[tuple[int, Tensor], ...]:
        """(length L, (n, L) indices into packed order) per distinct length, for the exact path."""
        return _length_groups(self.cu_seqlens)

    @cached_property
    def bounds(self) -> list[int]:
        """cu_seqlens on the host, read once (every layer of this geometry needs it)."""
        return self.cu_seqlens.tolist()

    def spans(self, budget: int) -> list[tuple[Tensor, WindowLayout]]:
        """Runs of whole consecutive windows of at most `budget` tokens (or one window, if longer):
        each run's token indices and its own layout, packed from 0."""
        bounds = self.bounds
        if bounds[-1] <= budget:
            return [(self.perm, WindowLayout(_identity(self.perm), self.cu_seqlens, self.max_len))]
        runs, first = [], 0
        while first < len(bounds) - 1:
            last = first + 1
            while last < len(bounds) - 1 and bounds[last + 1] - bounds[first] <= budget:
                last += 1
            lo, hi = bounds[first], bounds[last]
            cu = self.cu_seqlens[first : last + 1] - lo
            part = WindowLayout(_identity(self.perm[lo:hi]), cu, self.max_len)
            runs.append((self.perm[lo:hi], part))
            first = last
        return runs


def _identity(perm: Tensor) -> Tensor:
    return torch.arange(perm.numel(), device=perm.device)


def window_index(
    coords: Tensor, grid: tuple[int, int, int], window: tuple[int, int, int], shifted: bool
) -> Tensor:
    """Linear window id of each token. coords: (N, 4) integer (batch, t, h, w) on the full grid.

    A shifted layout moves the partition by half a window on each axis; windows at the grid's edges
    are then partial, which variable-length attention handles without wrapping around.
    """
    wid = coords[:, 0].clone()
    for axis in range(3):
        size, win = grid[axis], min(window[axis], grid[axis])
        shift = win // 2 if shifted else 0
        count = (size + shift + win - 1) // win  # windows along this axis
        wid = wid * count + (coords[:, axis + 1] + shift) // win
    return wid


def pack_windows(
    coords: Tensor, grid: tuple[int, int, int], window: tuple[int, int, int], shifted: bool
) -> WindowLayout:
    """Sort the kept tokens by window and build the cumulative lengths of the packed sequence."""
    wid = window_index(coords, grid, window, shifted)
    wid_sorted, perm = torch.sort(wid, stable=True)
    _, lengths = torch.unique_consecutive(wid_sorted, return_counts=True)  # (W,), no empty windows
    cu = torch.zeros(lengths.numel() + 1, dtype=torch.int32, device=coords.device)
    cu[1:] = torch.cumsum(lengths, 0)
    return WindowLayout(perm, cu, int(lengths.max()) if lengths.numel() else 0)


def _length_groups(cu: Tensor) -> tuple[tuple[int, Tensor], ...]:
    """Group windows of equal length, so the exact path runs one batched attention per length."""
    starts, lengths = cu[:-1].long(), (cu[1:] - cu[:-1]).long()
    groups = []
    for length in torch.unique(lengths).tolist():
        first = starts[lengths == length]  # (n,)
        groups.append((length, first[:, None] + torch.arange(length, device=cu.device)))  # (n, L)
    return tuple(groups)


def varlen_attention(q: Tensor, k: Tensor, v: Tensor, layout: WindowLayout) -> Tensor:
    """Attention within each window of the packed sequence. q, k, v: (N, heads, head_dim), packed."""
    if _use_flash(q):
        return _flash_forward(q, k, v, layout)
    return exact_varlen_attention(q, k, v, layout)


def _use_flash(q: Tensor) -> bool:
    return (
        q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and q.shape[-1] <= 256
        and _flash_available(q.get_device())
    )


@cache
def _flash_available(device: int) -> bool:
    """Whether the flash kernels run on CUDA device `device`: a PyTorch build with them, and a GPU
    of compute capability 8.0 or newer (Ampere on), the oldest they support; older ones take the
    exact path."""
    if not torch.backends.cuda.is_flash_attention_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


def _flash_forward(q: Tensor, k: Tensor, v: Tensor, layout: WindowLayout) -> Tensor:
    """The flash-attention kernel that `torch.nn.attention.varlen.varlen_attn` wraps, called as
    ATen's own operator (it has its backward registered). The wrapper's module imports
    TorchDynamo, which nothing here needs: that import made a worker's first call on an H200
    4.42 s, against 0.76 s without it (BENCHMARKS.md)."""
    return torch.ops.aten._flash_attention_forward(
        q,
        k,
        v,
        layout.cu_seqlens,
        layout.cu_seqlens,
        layout.max_len,
        layout.max_len,
        0.0,
        False,
        False,
    )[0]


def exact_varlen_attention(q: Tensor, k: Tensor, v: Tensor, layout: WindowLayout) -> Tensor:
    """The exact fallback (CPU, fp32): one batched attention per distinct window length, no padding."""
    out = torch.empty_like(q)
    for _, idx in layout.groups:  # idx: (n, L)
        qs, ks, vs = (t[idx].transpose(1, 2) for t in (q, k, v))  # (n, heads, L, head_dim)
        o = F.scaled_dot_product_attention(qs, ks, vs)
        out[idx] = o.transpose(1, 2)  # (n, L, heads, head_dim)
    return out


def grid_window_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: tuple[int, int, int],
    shifted: bool,
    key_keep: Tensor | None,
) -> Tensor:
    """Dense reference: q, k, v are full grids (B, T, H, W, heads, head_dim).

    Pads each axis so the (possibly shifted) windows tile it, attends within every window with the
    padding (and tokens where key_keep is False) masked out as keys, then crops back.
    """
    b, t, h, w, nh, d = q.shape
    grid = (t, h, w)
    wins = tuple(min(window[i], grid[i]) for i in range(3))
    pads = []
    for size, win in zip(grid, wins, strict=True):
        front = win // 2 if shifted else 0
        back = -(size + front) % win
        pads.append((front, back))
    valid = torch.ones(b, t, h, w, dtype=torch.bool, device=q.device)
    if key_keep is not None:
        valid = valid & key_keep
    q, k, v, valid = (_pad_grid(x, pads) for x in (q, k, v, valid))
    qw, kw, vw, mw = (_to_windows(x, wins) for x in (q, k, v, valid))  # (Bw, L, ...)
    mask = mw[:, None, None, :]  # (Bw, 1, 1, L): which keys exist
    o = F.scaled_dot_product_attention(
        qw.transpose(1, 2), kw.transpose(1, 2), vw.transpose(1, 2), attn_mask=mask
    ).transpose(1, 2)  # (Bw, L, heads, head_dim)
    o = _from_windows(o, wins, q.shape[:4])
    (ft, bt), (fh, bh), (fw, bw) = pads
    return o[:, ft : ft + t, fh : fh + h, fw : fw + w]


def _pad_grid(x: Tensor, pads: list[tuple[int, int]]) -> Tensor:
    """Zero-pad dims 1..3 of a (B, T, H, W, ...) tensor."""
    (ft, bt), (fh, bh), (fw, bw) = pads
    out = x.new_zeros(
        x.shape[0], x.shape[1] + ft + bt, x.shape[2] + fh + bh, x.shape[3] + fw + bw, *x.shape[4:]
    )
    out[:, ft : ft + x.shape[1], fh : fh + x.shape[2], fw : fw + x.shape[3]] = x
    return out


def _to_windows(x: Tensor, wins: tuple[int, int, int]) -> Tensor:
    """(B, T, H, W, *rest) -> (B * nT * nH * nW, wt * wh * ww, *rest)."""
    b, t, h, w = x.shape[:4]
    rest = x.shape[4:]
    wt, wh, ww = wins
    x = x.reshape(b, t // wt, wt, h // wh, wh, w // ww, ww, *rest)
    x = x.permute(
        0, 1, 3, 5, 2, 4, 6, *range(7, 7 + len(rest))
    )  # (B, nT, nH, nW, wt, wh, ww, *rest)
    return x.reshape(-1, wt * wh * ww, *rest)


def _from_windows(x: Tensor, wins: tuple[int, int, int], shape: torch.Size) -> Tensor:
    """Inverse of `_to_windows` back to (B, T, H, W, *rest)."""
    b, t, h, w = shape
    rest = x.shape[2:]
    wt, wh, ww = wins
    x = x.reshape(b, t // wt, h // wh, w // ww, wt, wh, ww, *rest)
    x = x.permute(
        0, 1, 4, 2, 5, 3, 6, *range(7, 7 + len(rest))
    )  # (B, nT, wt, nH, wh, nW, ww, *rest)
    return x.reshape(b, t, h, w, *rest)
