"""Configuration of every network as frozen dataclasses, and the table of named presets.

The whole `ModelArgs` travels inside each weights file (as JSON in the safetensors metadata), so a
file always rebuilds the network it was trained as.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class VAEArgs:
    # "conv": a learned convolutional VAE (lossy; the paper's kind). "pixel": space-to-depth, exact,
    # with a learned latent-resolution decoder (models/pixel_vae.py); widths and blocks then give
    # that decoder's width and residual blocks, and optionally a second entry each for a fine
    # stage at twice the latent resolution.
    kind: str = "conv"
    spatial: int = 8  # spatial compression: 4 or 8
    temporal: int = 4  # temporal compression: 1, or 4 (causal in time)
    latent_channels: int = 16
    # channel width per resolution level, from full resolution down to the latent level;
    # len(widths) == log2(spatial) + 1
    widths: tuple[int, ...] = (32, 64, 128, 128)
    # residual blocks per level, in the order of widths; full-resolution blocks cost the most
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    # guided decoder: it also sees the bicubic fill and predicts a residual over it, so the latent
    # carries detail only and low frequencies come exactly from the input
    guided: bool = False
    # latents are multiplied by this after encoding (divided before decoding) so the transformer
    # sees them at about unit variance, the scale of its noise
    latent_scale: float = 1.0
    # time extent of the latent-level convolutions: 3 mixes the two previous latent frames (causal),
    # 1 keeps them per frame (about 3x cheaper there; the transformer's windows still mix time)
    time_kernel: int = 3
    # pixel kind only: the side of a linear branch's convolution beside the decoder (no norm, no
    # activation: a restoration filter that scales with the input's detail); 0 for none
    linear: int = 0
    # pixel kind only: frames on each side whose fill the decoder also sees at the same place
    # (early fusion in time; a clip's ends repeat its first and last frames); 0 for none
    neighbours: int = 0

    def __post_init__(self) -> None:
        if self.spatial not in (4, 8):
            raise ValueError(f"VAE spatial factor must be 4 or 8, not {self.spatial}")
        if self.kind == "pixel":
            self._check_pixel()
            return
        if self.kind != "conv":
            raise ValueError(f"VAE kind must be 'conv' or 'pixel', not {self.kind!r}")
        if self.linear or self.neighbours:
            raise ValueError("only the pixel VAE has a linear branch or sees neighbouring frames")
        if self.temporal not in (1, 4):
            raise ValueError(f"VAE temporal factor must be 1 or 4, not {self.temporal}")
        if len(self.widths) != self.spatial.bit_length():  # 4 -> 3 levels, 8 -> 4 levels
            raise ValueError(
                f"VAE widths need {self.spatial.bit_length()} entries for {self.spatial}x"
            )
        if len(self.blocks) != len(self.widths):
            raise ValueError("VAE blocks need one entry per level, like widths")
        if self.time_kernel not in (1, 3):
            raise ValueError(f"VAE time_kernel must be 1 or 3, not {self.time_kernel}")

    def _check_pixel(self) -> None:
        cells = 3 * self.spatial**2
        if self.temporal != 1 or self.guided:
            raise ValueError("the pixel VAE is per frame (temporal 1) and takes no guide")
        if self.latent_channels != cells:
            raise ValueError(f"the pixel VAE at {self.spatial}x has {cells} latent channels")
        if not 0 <= self.neighbours <= 4:
            raise ValueError(
                f"the pixel VAE sees 0-4 neighbouring frames a side, not {self.neighbours}"
            )
        if self.linear < 0 or (self.linear and self.linear % 2 == 0):
            raise ValueError(f"the pixel VAE's linear branch needs an odd side, not {self.linear}")
        if len(self.widths) not in (1, 2) or len(self.blocks) != len(self.widths):
            raise ValueError(
                "the pixel VAE's decoder takes one width and one block count per stage (1 or 2)"
            )


@dataclass(frozen=True)
class DiTArgs:
    latent_channels: int = 16
    patch: tuple[int, int, int] = (1, 2, 2)  # (t, h, w) latent cells per token
    width: int = 256
    depth: int = 4
    heads: int = 4
    head_dim: int = 64
    mlp: str = "swiglu"  # "swiglu" or "gelu"
    mlp_hidden: int = 704
    window: tuple[int, int, int] = (4, 8, 8)  # (t, h, w) tokens per attention window
    rope_theta: float = 10_000.0

    def __post_init__(self) -> None:
        if self.mlp not in ("swiglu", "gelu"):
            raise ValueError(f"mlp must be 'swiglu' or 'gelu', not {self.mlp!r}")
        if self.head_dim % 8:
            raise ValueError("head_dim must be a multiple of 8 for the 3-axis rotary embedding")

    @property
    def in_channels(self) -> int:
        """Channels of [x_t, c, 1] before patchify: noisy latent, condition latent, a constant."""
        return 2 * self.latent_channels + 1

    @property
    def patch_volume(self) -> int:
        return self.patch[0] * self.patch[1] * self.patch[2]


@dataclass(frozen=True)
class MaskArgs:
    hidden: int = 32
    layers: int = 2  # 3x3 conv layers before the per-token head


@dataclass(frozen=True)
class ModelArgs:
    vae: VAEArgs = field(default_factory=VAEArgs)
    dit: DiTArgs = field(default_factory=DiTArgs)
    mask: MaskArgs = field(default_factory=MaskArgs)
    threshold: float = (
        30.0  # default tau: predicted fill PSNR (dB) at or above which a token is skipped
    )

    def __post_init__(self) -> None:
        if self.vae.latent_channels != self.dit.latent_channels:
            raise ValueError("the VAE and the DiT disagree on latent channels")
        if self.dit.patch[0] != 1:
            raise ValueError(
                "temporal patch size must be 1 (the mask predictor scores per latent frame)"
            )

    @property
    def token_pixels(self) -> tuple[int, int, int]:
        """Output pixels (frames, height, width) that one transformer token covers."""
        p = self.dit.patch
        return (p[0] * self.vae.temporal, p[1] * self.vae.spatial, p[2] * self.vae.spatial)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelArgs:
        raw = json.loads(text)
        return cls(
            vae=_build(VAEArgs, raw["vae"]),
            dit=_build(DiTArgs, raw["dit"]),
            mask=_build(MaskArgs, raw["mask"]),
            threshold=float(raw["threshold"]),
        )


def _build(kind: type, raw: dict) -> object:
    """Rebuild a dataclass from JSON, turning lists back into tuples and refusing unknown keys."""
    known = {f.name for f in fields(kind)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


PRESETS: dict[str, ModelArgs] = {
    # Tiny, for tests: every code path, about 100k parameters.
    "debug": ModelArgs(
        vae=VAEArgs(
            spatial=8, temporal=4, latent_channels=16, widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1)
        ),
        dit=DiTArgs(width=32, depth=2, heads=2, head_dim=16, mlp_hidden=64, window=(2, 4, 4)),
        mask=MaskArgs(hidden=8, layers=1),
    ),
    # The shipped model; sized for 80+ fps at 720p->1440p on an H200. The latent is the pixel one
    # (space-to-depth at 4x, lossless): learned VAEs of this size capped quality below the bicubic
    # fill (BENCHMARKS.md). Tokens cover 8x8 output pixels per frame. Its decoder is 96 wide with
    # 4 residual blocks since 2026-11-30 (64 and 1 before: training/configs/base1.json).
    # training/configs/base.json is the same configuration.
    "base": ModelArgs(
        vae=VAEArgs(
            kind="pixel",
            spatial=4,
            temporal=1,
            latent_channels=48,
            widths=(96,),
            blocks=(4,),
            latent_scale=2.0,
        ),
        dit=DiTArgs(
            latent_channels=48,
            width=192,
            depth=4,
            heads=3,
            head_dim=64,
            mlp_hidden=512,
            window=(4, 8, 8),
        ),
        mask=MaskArgs(hidden=32, layers=2),
        threshold=40.0,  # skips 30-50% of tokens on the validation media (BENCHMARKS.md)
    ),
    # The paper's base model at full scale, random weights, for speed measurements.
    "seedvr2-3b": ModelArgs(
        vae=VAEArgs(
            spatial=8,
            temporal=4,
            latent_channels=16,
            widths=(128, 256, 512, 512),
            blocks=(2, 2, 2, 2),
        ),
        dit=DiTArgs(
            width=2560,
            depth=32,
            heads=20,
            head_dim=128,
            mlp="swiglu",
            mlp_hidden=6912,
            window=(8, 15, 27),
        ),
        mask=MaskArgs(hidden=64, layers=2),
    ),
}
