"""The masked diffusion transformer (DiT) of SkipSR.

Only kept tokens exist inside the transformer: they are patchified from the latent grid, embedded,
attended window by window (variable length), and projected out. Skipped tokens get no embedding, no
attention (not even as keys or values), no MLP and no output projection.

Symbols follow the paper: x_t the noisy latent, c the condition latent, t the flow-matching time
(t = 1 is pure noise). The network predicts the clean latent x_0 as a residual over c, so an
untrained output layer (zero-initialised) returns the condition.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.args import DiTArgs
from models.attention import WindowLayout, grid_window_attention, pack_windows, varlen_attention
from models.rope import Rope3D, apply_rope

SPAN_TOKENS = 1 << 17  # tokens per run of windows through a block (working memory bound)


@dataclass(frozen=True)
class TokenSet:
    """The kept tokens of a batch: where they sit on the full grid and how they pack into windows."""

    coords: Tensor  # (N, 4) long: (batch, t, h, w) on the full token grid, in packed order
    grid: tuple[int, int, int]  # full token grid (T, H, W)
    batch: int
    layouts: tuple[WindowLayout, WindowLayout]  # regular, shifted

    @classmethod
    def from_keep(cls, keep: Tensor, window: tuple[int, int, int]) -> TokenSet:
        """keep: (B, T, H, W) bool. Tokens are ordered as keep.nonzero() orders them."""
        coords = keep.nonzero()  # (N, 4)
        grid = tuple(keep.shape[1:])
        layouts = (
            pack_windows(coords, grid, window, False),
            pack_windows(coords, grid, window, True),
        )
        return cls(coords, grid, keep.shape[0], layouts)


def patchify(z: Tensor, patch: tuple[int, int, int]) -> Tensor:
    """(B, C, T, H, W) -> token grid (B, T/pt, H/ph, W/pw, C * pt * ph * pw)."""
    b, c, t, h, w = z.shape
    pt, ph, pw = patch
    z = z.reshape(b, c, t // pt, pt, h // ph, ph, w // pw, pw)
    z = z.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, T', H', W', C, pt, ph, pw)
    return z.reshape(b, t // pt, h // ph, w // pw, c * pt * ph * pw)


def unpatchify(tokens: Tensor, patch: tuple[int, int, int], channels: int) -> Tensor:
    """Token grid (B, T', H', W', C * pt * ph * pw) -> (B, C, T, H, W)."""
    b, t, h, w, _ = tokens.shape
    pt, ph, pw = patch
    z = tokens.reshape(b, t, h, w, channels, pt, ph, pw)
    z = z.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, T', pt, H', ph, W', pw)
    return z.reshape(b, channels, t * pt, h * ph, w * pw)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled to [0, 1000]), (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angle = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat((angle.cos(), angle.sin()), dim=-1)


class MLP(nn.Module):
    def __init__(self, args: DiTArgs) -> None:
        super().__init__()
        self.gated = args.mlp == "swiglu"
        self.fc1 = nn.Linear(args.width, args.mlp_hidden * (2 if self.gated else 1))
        self.fc2 = nn.Linear(args.mlp_hidden, args.width)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return self.fc2(h)


class Block(nn.Module):
    """Pre-norm transformer block with adaLN modulation, QK-norm and rotary attention."""

    def __init__(self, args: DiTArgs) -> None:
        super().__init__()
        self.heads, self.head_dim = args.heads, args.head_dim
        inner = args.heads * args.head_dim
        self.norm1 = nn.LayerNorm(args.width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(args.width, 3 * inner)
        self.q_norm = nn.RMSNorm(args.head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(args.head_dim, eps=1e-6)
        self.proj = nn.Linear(inner, args.width)
        self.norm2 = nn.LayerNorm(args.width, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(args)
        self.modulation = nn.Parameter(
            torch.zeros(6, args.width)
        )  # per-block offset (adaLN-single)

    def forward(
        self, x: Tensor, mod: Tensor, rope: tuple[Tensor, Tensor], attend: Callable
    ) -> Tensor:
        """x: (N, width); mod: (N or 1, 6, width); rope: (N, head_dim/2) cos and sin tables."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod + self.modulation).unbind(-2)
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = (
            self.qkv(h).unflatten(-1, (3, self.heads, self.head_dim)).unbind(-3)
        )  # (N, heads, hd)
        q = apply_rope(self.q_norm(q), *rope)
        k = apply_rope(self.k_norm(k), *rope)
        x = x + gate1 * self.proj(attend(q, k, v).flatten(-2))
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class DiT(nn.Module):
    def __init__(self, args: DiTArgs) -> None:
        super().__init__()
        self.args = args
        token_in = args.in_channels * args.patch_volume
        token_out = args.latent_channels * args.patch_volume
        self.embed = nn.Linear(token_in, args.width)
        self.t_embed = nn.Sequential(
            nn.Linear(256, args.width), nn.SiLU(), nn.Linear(args.width, args.width)
        )
        self.t_mod = nn.Linear(args.width, 6 * args.width)
        self.rope = Rope3D(args.head_dim, args.rope_theta)
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.depth))
        self.norm_out = nn.LayerNorm(args.width, elementwise_affine=False, eps=1e-6)
        self.out_mod = nn.Linear(args.width, 2 * args.width)
        self.out = nn.Linear(args.width, token_out)

    def forward(
        self, x_t: Tensor, c: Tensor, t: Tensor, tokens: TokenSet, span_tokens: int = SPAN_TOKENS
    ) -> Tensor:
        """Packed kept tokens in, predicted clean tokens out.

        x_t, c: (N, C * patch_volume) kept tokens of the noisy and condition latents, in the order of
        tokens.coords; t: (B,) flow time per batch item. Returns x_0 for the kept tokens, (N, C * pv).

        Every block runs window by window: windows partition the tokens, so a block's output for the
        tokens of some windows depends on those tokens alone. Runs of whole windows of at most
        `span_tokens` tokens go through each block in turn, which bounds the working memory (a 4K
        clip has millions of tokens) without changing the result.
        """
        pv = self.args.patch_volume
        h = torch.cat(  # embedded in runs: the features are twice the size of the latents
            [
                self.embed(
                    _token_features(x_t[lo : lo + span_tokens], c[lo : lo + span_tokens], pv)
                )
                for lo in range(0, x_t.shape[0], span_tokens)
            ]
        )  # (N, width)
        temb = F.silu(self.t_embed(timestep_embedding(t, 256).to(h.dtype)))  # (B, width)
        mod = self.t_mod(temb).unflatten(-1, (6, -1))  # (B, 6, width)
        batch_of = tokens.coords[:, 0] if tokens.batch > 1 else None
        cos, sin = self.rope(tokens.coords[:, 1:])
        for i, block in enumerate(self.blocks):
            layout = tokens.layouts[i % 2]  # regular and shifted windows alternate by layer
            out = None
            for idx, part in layout.spans(span_tokens):
                attend = lambda q, k, v, part=part: varlen_attention(q, k, v, part)  # noqa: E731
                m = mod if batch_of is None else mod[batch_of[idx]]
                y = block(h[idx], m, (cos[idx], sin[idx]), attend)
                if out is None:  # the block's dtype (under autocast it may differ from h's)
                    out = y.new_empty(h.shape[0], y.shape[1])
                out.index_copy_(0, idx, y)
            h = out
        return self._out(h, c, temb, batch_of)

    def forward_dense(
        self, x_t: Tensor, c: Tensor, t: Tensor, key_keep: Tensor | None = None
    ) -> Tensor:
        """Reference path on the whole grid: x_t, c (B, T, H, W, C * pv) token grids.

        Windows by reshape with padding; tokens where key_keep (B, T, H, W) is False are masked out
        as keys. Returns the x_0 grid (B, T, H, W, C * pv).
        """
        b, tt, hh, ww, _ = x_t.shape
        grid = torch.stack(
            torch.meshgrid(
                *(torch.arange(n, device=x_t.device) for n in (b, tt, hh, ww)), indexing="ij"
            ),
            -1,
        ).reshape(-1, 4)  # (B*T*H*W, 4)
        rope = self.rope(grid[:, 1:])

        def attend(q: Tensor, k: Tensor, v: Tensor, layer: int) -> Tensor:
            shape = (b, tt, hh, ww, *q.shape[1:])
            q, k, v = (z.reshape(shape) for z in (q, k, v))
            out = grid_window_attention(q, k, v, self.args.window, layer % 2 == 1, key_keep)
            return out.reshape(-1, *out.shape[4:])

        x_t, c = x_t.reshape(-1, x_t.shape[-1]), c.reshape(-1, c.shape[-1])
        h = self.embed(_token_features(x_t, c, self.args.patch_volume))  # (N, width)
        temb = F.silu(self.t_embed(timestep_embedding(t, 256).to(h.dtype)))  # (B, width)
        mod = self.t_mod(temb).unflatten(-1, (6, -1))[grid[:, 0]]  # (N, 6, width)
        for i, block in enumerate(self.blocks):
            h = block(h, mod, rope, lambda q, k, v, i=i: attend(q, k, v, i))
        return self._out(h, c, temb, grid[:, 0]).reshape(b, tt, hh, ww, -1)

    def _out(self, h: Tensor, c: Tensor, temb: Tensor, batch_of: Tensor | None) -> Tensor:
        shift, scale = self.out_mod(temb).unflatten(-1, (2, -1)).unbind(-2)  # (B, width) each
        if batch_of is not None:
            shift, scale = shift[batch_of], scale[batch_of]
        return c + self.out(self.norm_out(h) * (1 + scale) + shift)  # x_0 as a residual over c

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Xavier for the linear maps; zero for the output layer, so an untrained net returns c."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.RMSNorm):
                nn.init.ones_(module.weight)
        for block in self.blocks:
            nn.init.zeros_(block.modulation)
        nn.init.zeros_(self.out.weight)


def _token_features(x_t: Tensor, c: Tensor, pv: int) -> Tensor:
    """Features of [x_t, c, 1] per token, ordered as patchify of the concatenated latents would be:
    channel-major, then patch cells. x_t, c: (N, C * pv) -> (N, (2C + 1) * pv)."""
    ones = torch.ones_like(c[:, :pv])
    parts = (x_t.unflatten(-1, (-1, pv)), c.unflatten(-1, (-1, pv)), ones.unflatten(-1, (1, pv)))
    return torch.cat(parts, dim=-2).flatten(-2)
