"""The video VAE: frames <-> latent, with configurable spatial (4 or 8) and temporal (1 or 4) factors.

Full-resolution levels are 2D convolutions applied frame by frame; only the latent level mixes time,
with convolutions that are causal (they see the past, never the future). Normalisation is per pixel
(RMS over channels), never over the image, so every output depends on a bounded neighbourhood only.
That makes slicing exact and cheap: the full-resolution part runs in slices of frames with no
context at all, and in spatial tiles that overlap by its receptive field.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.args import VAEArgs


class PixelNorm(nn.Module):
    """RMS norm over channels at each pixel: (B, C, ...) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        # the statistics accumulate in fp32 at least, without an fp32 copy of x: the pixel
        # decoder at 1440p, bf16 on an H200, 4.51 -> 3.52 ms a frame
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True, dtype=_wide(x.dtype))
        rms = (norm.square() / x.shape[1] + 1e-6).rsqrt().to(x.dtype)
        return x * rms * self.weight.view(1, -1, *([1] * (x.dim() - 2)))


def _wide(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype.itemsize >= 4 else torch.float32


class CausalConv3d(nn.Conv3d):
    """k x 3 x 3 convolution padded with the past only along time (first frame repeated)."""

    def __init__(self, cin: int, cout: int, time_kernel: int = 3) -> None:
        super().__init__(cin, cout, (time_kernel, 3, 3), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:  # x: (B, C, T, H, W)
        past = self.kernel_size[0] - 1  # frames of causal context
        x = torch.cat((x[:, :, :1].expand(-1, -1, past, -1, -1), x), dim=2)
        return super().forward(x)


class ResBlock(nn.Module):
    """Pre-norm residual block; 2D (per frame, input (B*T, C, H, W)) or causal 3D (B, C, T, H, W)."""

    def __init__(self, channels: int, temporal: bool, time_kernel: int = 3) -> None:
        super().__init__()
        conv = (
            (lambda: CausalConv3d(channels, channels, time_kernel))
            if temporal
            else (lambda: nn.Conv2d(channels, channels, 3, padding=1))
        )
        self.norm1, self.conv1 = PixelNorm(channels), conv()
        self.norm2, self.conv2 = PixelNorm(channels), conv()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


def _frames(x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W) for per-frame 2D layers."""
    return x.transpose(1, 2).flatten(0, 1)


def _video(x: Tensor, b: int) -> Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    return x.unflatten(0, (b, -1)).transpose(1, 2)


class Encoder(nn.Module):
    def __init__(self, args: VAEArgs) -> None:
        super().__init__()
        w = args.widths
        self.args = args
        self.conv_in = nn.Conv2d(3, w[0], 3, padding=1)
        self.levels = nn.ModuleList()
        for i in range(len(w) - 1):
            blocks = [ResBlock(w[i], False) for _ in range(args.blocks[i])]
            self.levels.append(nn.Sequential(*blocks, nn.Conv2d(w[i], w[i + 1], 2, stride=2)))
        self.time_in = nn.Conv3d(
            w[-1] * args.temporal, w[-1], 1
        )  # groups of frames -> one latent frame
        self.mid = nn.Sequential(
            *(ResBlock(w[-1], True, args.time_kernel) for _ in range(args.blocks[-1]))
        )
        self.norm_out = PixelNorm(w[-1])
        self.conv_out = nn.Conv3d(w[-1], 2 * args.latent_channels, 1)  # mean and log-variance

    def forward(self, x: Tensor, frame_slice: int | None = None) -> Tensor:
        """x: (B, 3, T, H, W) in [-1, 1], T a multiple of the temporal factor -> (B, 2*C, T/ft, H/s, W/s).

        The full-resolution part runs frame by frame, so slicing it over frames is exact and bounds
        memory; only the small latent-level part sees the whole clip.
        """
        t, ft = x.shape[2], self.args.temporal
        step = frame_slice or t
        h = torch.cat([self._per_frame(x[:, :, s : s + step]) for s in range(0, t, step)], dim=2)
        h = h.unflatten(2, (-1, ft)).transpose(2, 3).flatten(1, 2)  # (B, w*ft, T/ft, h, w)
        h = self.mid(self.time_in(h))
        return self.conv_out(F.silu(self.norm_out(h)))

    def _per_frame(self, x: Tensor) -> Tensor:
        h = self.conv_in(_frames(x))
        for level in self.levels:
            h = level(h)
        return _video(h, x.shape[0])  # (B, w, T, h, w)


class Decoder(nn.Module):
    def __init__(self, args: VAEArgs) -> None:
        super().__init__()
        w = args.widths
        self.args = args
        self.conv_in = CausalConv3d(args.latent_channels, w[-1], args.time_kernel)
        self.mid = nn.Sequential(
            *(ResBlock(w[-1], True, args.time_kernel) for _ in range(args.blocks[-1]))
        )
        self.time_out = nn.Conv3d(w[-1], w[-1] * args.temporal, 1)  # one latent frame -> ft frames
        self.levels = nn.ModuleList()
        for i in reversed(range(len(w) - 1)):
            up = nn.Sequential(nn.Conv2d(w[i + 1], 4 * w[i], 1), nn.PixelShuffle(2))
            self.levels.append(
                nn.Sequential(up, *(ResBlock(w[i], False) for _ in range(args.blocks[i])))
            )
        self.norm_out = PixelNorm(w[0])
        self.conv_out = nn.Conv2d(w[0], 3, 3, padding=1)
        self.guide_in = nn.Conv2d(3, w[0], 3, padding=1) if args.guided else None

    def forward(
        self,
        z: Tensor,
        frame_slice: int | None = None,
        tile: int | None = None,
        guide: Tensor | None = None,
    ) -> Tensor:
        """z: (B, C, t, h, w) -> (B, 3, t*ft, h*s, w*s), unclamped, about [-1, 1].

        The latent-level part (causal in time) runs on the whole clip; the full-resolution part runs
        per frame, in slices of `frame_slice` frames and tiles of `tile` latent pixels (exact: tiles
        carry `space_halo` pixels of context and keep only their own outputs). A guided decoder
        needs `guide`: the fill (B, 3, T, H, W) in [-1, 1] at the output size.
        """
        if (guide is None) != (self.guide_in is None):
            raise ValueError(
                "a guided decoder needs the fill as guide, and only a guided one takes it"
            )
        ft = self.args.temporal
        h = self.mid(self.conv_in(z))
        h = (
            self.time_out(h).unflatten(1, (-1, ft)).transpose(2, 3).flatten(2, 3)
        )  # (B, w, t*ft, h, w)
        step = frame_slice or h.shape[2]
        parts = []
        for s in range(0, h.shape[2], step):
            g = guide[:, :, s : s + step] if guide is not None else None
            parts.append(self._tiled(h[:, :, s : s + step], tile, g))
        return torch.cat(parts, 2)

    def _per_frame(self, h: Tensor, guide: Tensor | None) -> Tensor:
        x = _frames(h)
        for level in self.levels:
            x = level(x)
        if guide is None:
            return _video(self.conv_out(F.silu(self.norm_out(x))), h.shape[0])
        g = _frames(guide)  # (B*T, 3, H, W)
        x = x + self.guide_in(g)
        return _video(
            g + self.conv_out(F.silu(self.norm_out(x))), h.shape[0]
        )  # residual over the fill

    def _tiled(self, h: Tensor, tile: int | None, guide: Tensor | None) -> Tensor:
        def part(latent: Tensor, window: tuple[slice, slice]) -> Tensor:
            return self._per_frame(
                latent, None if guide is None else guide[..., window[0], window[1]]
            )

        return decode_in_tiles(h, tile, self.space_halo, self.args.spatial, part)

    @property
    def space_halo(self) -> int:
        """Latent pixels of context a tile of the per-frame part needs on each side (rounded up)."""
        pixels, scale = 0.0, 1
        for level in reversed(range(len(self.args.widths) - 1)):
            scale *= 2
            pixels += 2 * self.args.blocks[level] / scale  # its 3x3 convs, in latent pixels
        return int(pixels + 2.0 / scale) + 1  # + the output and guide convs, + one for rounding


def decode_in_tiles(
    z: Tensor,
    tile: int | None,
    halo: int,
    scale: int,
    decode: Callable[[Tensor, tuple[slice, slice]], Tensor],
) -> Tensor:
    """Decode z (..., rows, cols) in square tiles of `tile` latent cells, each with `halo` cells of
    context on every side, keeping only each tile's own outputs: exact for a decoder whose receptive
    field fits in the halo. `decode(part, window)` gets a latent part and the output-pixel window it
    covers (for a full-resolution guide) and returns (..., part rows * scale, part cols * scale)."""
    rows, cols = z.shape[-2:]
    if tile is None or (rows <= tile and cols <= tile):
        return decode(z, (slice(None), slice(None)))
    s, out = scale, None
    for y in range(0, rows, tile):
        for x in range(0, cols, tile):
            y0, x0, y1, x1 = max(0, y - halo), max(0, x - halo), y + tile + halo, x + tile + halo
            part = decode(z[..., y0:y1, x0:x1], (slice(y0 * s, y1 * s), slice(x0 * s, x1 * s)))
            if out is None:
                out = part.new_empty(*part.shape[:-2], rows * s, cols * s)
            ty, tx = min(tile, rows - y), min(tile, cols - x)
            out[..., y * s : (y + ty) * s, x * s : (x + tx) * s] = part[
                ..., (y - y0) * s : (y - y0 + ty) * s, (x - x0) * s : (x - x0 + tx) * s
            ]
    return out


class VAE(nn.Module):
    def __init__(self, args: VAEArgs) -> None:
        super().__init__()
        self.args = args
        self.encoder = Encoder(args)
        self.decoder = Decoder(args)

    def encode(self, x: Tensor, frame_slice: int | None = None) -> Tensor:
        """Mean latent of x: (B, 3, T, H, W) in [-1, 1], scaled to about unit variance."""
        return self.encoder(x, frame_slice).chunk(2, dim=1)[0] * self.args.latent_scale

    def decode(
        self,
        z: Tensor,
        frame_slice: int | None = None,
        tile: int | None = None,
        guide: Tensor | None = None,
    ) -> Tensor:
        return self.decoder(z / self.args.latent_scale, frame_slice, tile, guide)
