"""The SkipSR networks: torch only. Nothing in this package reads files, prints or keeps time."""

from models.args import PRESETS, DiTArgs, MaskArgs, ModelArgs, VAEArgs
from models.skipsr import SkipSR

__all__ = ["PRESETS", "DiTArgs", "MaskArgs", "ModelArgs", "SkipSR", "VAEArgs"]
