"""SkipSR: condition -> mask -> masked transformer -> compose -> decode.

Input is low-resolution frames in [0, 1]; output is the upscaled frames in [0, 1]. Sizes that do not
divide by the token size are padded inside (edge replicate) and cropped back; clips whose length does
not divide by the VAE's temporal factor are padded with the last frame and trimmed after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.args import ModelArgs
from models.dit import DiT, TokenSet, patchify, unpatchify
from models.mask_predictor import MaskPredictor, keep_mask, keep_ranked
from models.pixel_vae import PixelVAE
from models.vae import VAE


@dataclass(frozen=True)
class Settings:
    """Per-call inference settings."""

    threshold: float | None = None  # tau in dB; None -> the model's default
    skip: bool = True  # False: the dense baseline, every token kept
    steps: int = 1  # Euler steps of the flow; 1 = one-step
    seed: int = 0
    frame_slice: int | None = None  # frames per full-resolution VAE slice (memory bound)
    decode_tile: int | None = None  # latent pixels per VAE decode tile (memory bound)
    # skip this fraction of each call's tokens, those the predictor scores highest, instead of
    # using tau: a fixed skip ratio that measures how well the predictor ranks (evaluation only;
    # the ranking is per call, so unlike tau it depends on where a chunk starts)
    skip_fraction: float | None = None


@dataclass(frozen=True)
class Result:
    frames: Tensor  # (B, 3, T, H, W) in [0, 1]
    keep: Tensor  # (B, T', H', W') bool token mask on the padded grid
    kept_fraction: float


class SkipSR(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.vae = PixelVAE(args.vae) if args.vae.kind == "pixel" else VAE(args.vae)
        self.mask_predictor = MaskPredictor(args.mask, args.dit.latent_channels, args.dit.patch)
        self.dit = DiT(args.dit)

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Random weights (for tests and benchmarks); the DiT's output layer starts at zero."""
        gen = torch.Generator(device=next(self.parameters()).device).manual_seed(seed)
        for module in self.vae.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                nn.init.kaiming_uniform_(module.weight, a=5**0.5, generator=gen)
                nn.init.zeros_(module.bias)
        for module in self.vae.modules():
            if hasattr(module, "weight") and module.__class__.__name__ == "PixelNorm":
                nn.init.ones_(module.weight)
        if self.args.vae.guided or self.args.vae.kind == "pixel":
            # an untrained guided decoder returns the fill, an untrained pixel one its latent, exactly
            nn.init.zeros_(self.vae.decoder.conv_out.weight)
            if getattr(self.vae, "fine", None) is not None:
                nn.init.zeros_(self.vae.fine.conv_out.weight)
            if getattr(self.vae, "linear", None) is not None:
                nn.init.zeros_(self.vae.linear.weight)
        self.mask_predictor.init_weights(gen)
        self.dit.init_weights(gen)

    def upsample(self, lr: Tensor, size: tuple[int, int]) -> Tensor:
        """Bicubic, antialiased when shrinking: (B, 3, T, h, w) -> (B, 3, T, H, W), clamped to [0, 1]."""
        b, t = lr.shape[0], lr.shape[2]
        frames = lr.transpose(1, 2).flatten(0, 1)  # (B*T, 3, h, w)
        up = F.interpolate(frames, size=size, mode="bicubic", align_corners=False, antialias=True)
        return up.clamp_(0, 1).unflatten(0, (b, t)).transpose(1, 2)

    def condition(self, hr_fill: Tensor, frame_slice: int | None = None) -> Tensor:
        """Condition latent c of the upsampled frames (B, 3, T, H, W) in [0, 1]."""
        return self.vae.encode(hr_fill * 2 - 1, frame_slice)

    def forward(self, lr: Tensor, size: tuple[int, int], settings: Settings = Settings()) -> Result:
        """Upscale lr (B, 3, T, h, w) in [0, 1] to `size` = (H, W)."""
        t = lr.shape[2]
        # The fill is made in fp32 and the networks run in their own precision (bf16 on a GPU);
        # the output gets back the fill's rounding, so a low-precision model changes the picture
        # only where it means to (10-bit inputs keep their levels). In fp32 this adds exactly 0.
        # Intermediates are dropped as soon as they are used: at 4K each one is gigabytes.
        exact = self._pad(self.upsample(lr.float(), size))  # (B, 3, T', H', W'), whole tokens
        fill = exact.to(self.dit.embed.weight.dtype)
        c = self.condition(fill, settings.frame_slice)
        keep = self.predict_keep(c, settings)
        z = self.refine(c, keep, settings)
        del c
        hr = self.decode(z, fill, settings.frame_slice, settings.decode_tile)
        del z
        for i in range(hr.shape[2]):  # the output overwrites the exact fill, frame by frame
            frame = exact[:, :, i]
            frame.copy_((hr[:, :, i].float() + 1) / 2 + (frame - fill[:, :, i].float()))
        del hr, fill
        out = exact.clamp_(0, 1)[:, :, :t, : size[0], : size[1]]
        return Result(out, keep, keep.float().mean().item())

    def decode(
        self, z: Tensor, fill: Tensor, frame_slice: int | None = None, tile: int | None = None
    ) -> Tensor:
        """The latent back to frames in [-1, 1], given the padded fill in [0, 1]: a guided decoder
        sees the fill, a pixel decoder with neighbours the fill of the frames around each one."""
        if self.args.vae.kind == "pixel":
            context = fill if self.args.vae.neighbours else None
            return self.vae.decode(z, frame_slice, tile, context=context)
        return self.vae.decode(z, frame_slice, tile, self.guide(fill))

    def guide(self, fill: Tensor) -> Tensor | None:
        """What a guided decoder sees besides the latent: the fill in [-1, 1]."""
        return fill * 2 - 1 if self.args.vae.guided else None

    def predict_keep(self, c: Tensor, settings: Settings) -> Tensor:
        scores = self.mask_predictor(c)  # (B, T', H', W') predicted fill PSNR
        if not settings.skip:
            return torch.ones_like(scores, dtype=torch.bool)
        if settings.skip_fraction is not None:
            return keep_ranked(scores, settings.skip_fraction)
        tau = self.args.threshold if settings.threshold is None else settings.threshold
        return keep_mask(scores, tau)

    def refine(self, c: Tensor, keep: Tensor, settings: Settings) -> Tensor:
        """Flow-matching sampling on the kept tokens only, then compose onto the condition latent."""
        patch = self.args.dit.patch
        c_grid = patchify(c, patch)  # (B, T', H', W', C*pv)
        if not bool(keep.any()):
            return c
        tokens = TokenSet.from_keep(keep, self.args.dit.window)
        x = token_noise(keep, c_grid.shape[-1], settings.seed, c_grid.dtype)  # x at t = 1
        x0 = sample(self.dit, x, c_grid[keep], tokens, settings.steps)  # c in keep.nonzero() order
        return compose(c_grid, keep, x0, patch, c.shape[1], in_place=True)

    def _pad(self, x: Tensor) -> Tensor:
        """Replicate-pad time to the VAE's temporal factor and space to whole tokens."""
        ft, hp, wp = self.args.token_pixels
        t, h, w = x.shape[2:]
        pt, ph, pw = -t % ft, -h % hp, -w % wp
        if ph or pw:
            x = F.pad(x.transpose(1, 2).flatten(0, 1), (0, pw, 0, ph), mode="replicate")
            x = x.unflatten(0, (-1, t)).transpose(1, 2)
        if pt:
            x = torch.cat((x, x[:, :, -1:].expand(-1, -1, pt, -1, -1)), dim=2)
        return x


def token_noise(keep: Tensor, dim: int, seed: int, dtype: torch.dtype) -> Tensor:
    """Standard normal noise (N, dim) for the kept tokens of `keep` (B, T', H', W'), in
    keep.nonzero() order, computed on keep's device.

    Each pair of values is a hash of (seed, its token's place in the frame (batch item, row,
    column), the pair's channel) turned normal by Box-Muller (16-bit uniforms: tails end at 4.9
    sigma). The place leaves out the frame: every frame of a video gets the same noise at the same
    place, so the flow's starting point does not flicker, and a token's noise depends on neither
    where a chunk, a segment or a frame range starts nor which other tokens are kept. Every device
    draws the same numbers (up to the rounding of log and cos), with no host-side generator.
    """
    half = (dim + 1) // 2
    _, _, rows, cols = keep.shape
    coords = keep.nonzero()  # (N, 4): batch item, frame, row, column
    places = (coords[:, 0] * rows + coords[:, 2]) * cols + coords[:, 3]  # (N,) frame left out
    del coords
    out = torch.empty(places.numel(), dim, dtype=dtype, device=keep.device)
    channel = torch.arange(half, device=keep.device)
    for lo in range(0, places.numel(), _NOISE_RUN):  # int64 temporaries for a run of tokens only
        pairs = places[lo : lo + _NOISE_RUN, None] * half + channel  # (n, half) int64
        bits = _hash32((pairs + seed * 0x9E3779B1) & _MASK32)
        u1 = ((bits >> 16).float() + 0.5) / 2**16
        angle = ((bits & 0xFFFF).float() + 0.5) * (2 * torch.pi / 2**16)
        radius = torch.sqrt(-2 * torch.log(u1))
        normal = torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), dim=-1)
        out[lo : lo + _NOISE_RUN] = normal.flatten(1)[:, :dim]
    return out


_NOISE_RUN = 1 << 16


_MASK32 = 0xFFFFFFFF


def _hash32(x: Tensor) -> Tensor:
    """Mix 32-bit values held in int64 (multipliers under 2**31, so no product overflows)."""
    for mult in (0x7FEB352D, 0x2C1B3C6D):
        x = ((x ^ (x >> 16)) * mult) & _MASK32
    return x ^ (x >> 16)


def sample(dit: DiT, x: Tensor, c: Tensor, tokens: TokenSet, steps: int) -> Tensor:
    """Euler steps of the flow x_t = (1 - t) x_0 + t noise from t = 1 to 0; returns x_0."""
    times = torch.linspace(1.0, 0.0, steps + 1, device=x.device)
    for i in range(steps):
        x0 = dit(x, c, times[i].expand(tokens.batch), tokens)
        if i + 1 < steps:  # the last step lands on t = 0, where x is the predicted x0 itself
            velocity = (x - x0) / times[i]  # d x_t / dt, from the predicted clean latent
            x = x + (times[i + 1] - times[i]) * velocity
    return x0


def compose(
    c_grid: Tensor,
    keep: Tensor,
    x0: Tensor,
    patch: tuple[int, int, int],
    channels: int,
    in_place: bool = False,
) -> Tensor:
    """Kept tokens take the transformer's x_0, skipped tokens the condition latent, exactly.
    `in_place` writes into c_grid (a caller that owns it saves a copy)."""
    z = c_grid if in_place else c_grid.clone()
    z[keep] = x0.to(z.dtype)
    return unpatchify(z, patch, channels)
