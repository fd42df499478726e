"""The pixel latent: space-to-depth of the frames, lossless by construction, and a learned decoder.

Encoding folds every s x s block of pixels into one latent cell of 3 * s * s channels (scaled to
about unit variance): nothing is lost, so the latent never caps quality, and it costs no
multiply-adds. Decoding adds a learned residual at latent resolution (3x3 convolutions mixing
neighbouring cells, which hides seams between transformer tokens and skipped ones) before unfolding
the blocks. An optional second stage does the same at twice the latent resolution (cells of
s/2 x s/2 pixels), where convolutions see finer detail than whole cells. An optional linear
branch (one k x k convolution of the latent, no norm and no activation) adds a plain restoration
filter whose output scales with the input's detail. The refiner's per-cell norms take that scale
away, a likely reason why `base` restores dense texture worse than a plain linear filter does
(BENCHMARKS.md); the branch is there to test it.
With every residual at zero, decode(encode(x)) == x.

Optionally the decoder also sees the encoded fill of `neighbours` frames on each side at the same
place (early fusion in time: extra input channels of its first convolution, starting at zero).
Apart from that everything is per frame (the transformer's windows mix time), so slicing over
frames and tiling over space are exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.args import VAEArgs
from models.vae import PixelNorm, ResBlock, _frames, _video, decode_in_tiles


class Refiner(nn.Module):
    """Latent-resolution residual: (N, C, h, w) -> (N, C, h, w); starts at zero."""

    def __init__(self, channels: int, width: int, blocks: int, extra: int = 0) -> None:
        super().__init__()
        # its input: the C channels it refines, then `extra` more it only looks at
        self.conv_in = nn.Conv2d(channels + extra, width, 3, padding=1)
        self.blocks = nn.Sequential(*(ResBlock(width, temporal=False) for _ in range(blocks)))
        self.norm_out = PixelNorm(width)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        if z.is_cuda:  # cuDNN's channels-last kernels: 3.55 -> 3.09 ms a 1440p frame on an H200
            z = z.contiguous(memory_format=torch.channels_last)
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(z)))))

    @property
    def halo(self) -> int:
        """Latent cells of context each output needs on every side (one per 3x3 convolution)."""
        return 2 + 2 * len(self.blocks)


class PixelVAE(nn.Module):
    def __init__(self, args: VAEArgs) -> None:
        super().__init__()
        self.args = args
        extra = 2 * args.neighbours * args.latent_channels  # the neighbouring frames' fill
        self.decoder = Refiner(args.latent_channels, args.widths[0], args.blocks[0], extra)
        # the fine stage, at twice the latent resolution; None without a second width
        self.fine = (
            Refiner(3 * (args.spatial // 2) ** 2, args.widths[1], args.blocks[1])
            if len(args.widths) > 1
            else None
        )
        # the linear branch at latent resolution; None when args.linear is 0
        c, k = args.latent_channels, args.linear
        self.linear = nn.Conv2d(c, c, k, padding=k // 2) if k else None

    def encode(self, x: Tensor, frame_slice: int | None = None) -> Tensor:
        """x: (B, 3, T, H, W) in [-1, 1] -> (B, 3*s*s, T, H/s, W/s). Exact; frame_slice is unused."""
        return _video(F.pixel_unshuffle(_frames(x), self.args.spatial), x.shape[0]) * (
            self.args.latent_scale
        )

    def decode(
        self,
        z: Tensor,
        frame_slice: int | None = None,
        tile: int | None = None,
        guide: Tensor | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        """z: (B, C, T, h, w) -> (B, 3, T, h*s, w*s), in slices of frames and tiles of latent cells.
        `context` is the fill (B, 3, T, h*s, w*s) in [0, 1], which a decoder with neighbours needs."""
        if guide is not None:
            raise ValueError("the pixel latent's decoder takes no guide")
        b, t = z.shape[0], z.shape[2]
        if self.args.neighbours:
            pixels = (*z.shape[:1], 3, t, *(n * self.args.spatial for n in z.shape[-2:]))
            if context is None or tuple(context.shape) != pixels:
                raise ValueError(f"this decoder sees neighbouring frames: pass their fill {pixels}")
        step, out = frame_slice or t, None
        for s in range(0, t, step):
            cells = _frames(z[:, :, s : s + step]) / self.args.latent_scale  # in pixel units
            if self.args.neighbours:  # beside z's cells, so that tiles cut both alike
                cells = torch.cat((cells, self._neighbours(context, s, min(s + step, t))), 1)
            part = _video(self._tiled(cells, tile), b)
            if out is None:  # filled slice by slice: no list of parts and no concatenated copy
                out = part.new_empty(*part.shape[:2], t, *part.shape[3:])
            out[:, :, s : s + step] = part
        return out

    def _neighbours(self, fill: Tensor, start: int, stop: int) -> Tensor:
        """The cells (in pixel units, as z's) of the fill's frames around each of start .. stop-1,
        the clip's ends repeated: (B * (stop - start), 2 * n * C, h, w), in the order -1, +1, -2,
        +2, ...: those of n frames a side are a prefix of those of n + 1."""
        last = fill.shape[2] - 1
        frames = torch.arange(start, stop, device=fill.device)
        parts = []
        for d in range(1, self.args.neighbours + 1):
            for at in ((frames - d).clamp(0, last), (frames + d).clamp(0, last)):
                parts.append(F.pixel_unshuffle(_frames(fill[:, :, at]) * 2 - 1, self.args.spatial))
        return torch.cat(parts, 1)

    def _decode_frames(self, cells: Tensor) -> Tensor:
        z = cells[:, : self.args.latent_channels]  # the rest: the neighbours' cells, seen only
        refined = z + self.decoder(cells)
        if self.linear is not None:
            refined = refined + self.linear(z)
        pixels = F.pixel_shuffle(refined, self.args.spatial)
        if self.fine is None:
            return pixels
        half = self.args.spatial // 2
        y = F.pixel_unshuffle(pixels, half)
        return F.pixel_shuffle(y + self.fine(y), half)

    @property
    def halo(self) -> int:
        """Latent cells of context each decoded cell needs on every side, both stages together."""
        fine = 0 if self.fine is None else -(-self.fine.halo // 2)  # fine cells are half a cell
        linear = 0 if self.linear is None else self.args.linear // 2
        return max(self.decoder.halo, linear) + fine

    def _tiled(self, z: Tensor, tile: int | None) -> Tensor:
        part = lambda latent, _window: self._decode_frames(latent)  # noqa: E731
        return decode_in_tiles(z, tile, self.halo, self.args.spatial, part)
