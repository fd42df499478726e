"""The token scorer: a small CNN over the condition latent, one score per transformer token.

The score regresses the quality of the skip fill (the decoded condition latent) against the target,
as a PSNR in dB over the token's pixels. A token whose predicted fill PSNR reaches the threshold tau
is skipped, so raising tau keeps more tokens, and tau moves at inference without retraining.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.args import MaskArgs


class MaskPredictor(nn.Module):
    def __init__(self, args: MaskArgs, latent_channels: int, patch: tuple[int, int, int]) -> None:
        super().__init__()
        self.patch = patch
        convs, cin = [], latent_channels
        for _ in range(args.layers):
            convs += [nn.Conv2d(cin, args.hidden, 3, padding=1), nn.SiLU()]
            cin = args.hidden
        self.features = nn.Sequential(*convs)
        self.to_token = nn.Conv2d(
            cin, args.hidden, patch[1:], stride=patch[1:]
        )  # one cell per token
        self.head = nn.Conv2d(args.hidden, 1, 1)

    def forward(self, c: Tensor) -> Tensor:
        """c: (B, C, T, H, W) condition latent -> scores (B, T, H/ph, W/pw), predicted fill PSNR in dB."""
        b = c.shape[0]
        h = self.features(c.transpose(1, 2).flatten(0, 1))  # (B*T, hidden, H, W)
        h = self.head(F.silu(self.to_token(h)))  # (B*T, 1, H/ph, W/pw)
        return h.squeeze(1).unflatten(0, (b, -1)).float()

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=5**0.5, generator=generator)
                nn.init.zeros_(module.bias)
        nn.init.constant_(
            self.head.bias, 30.0
        )  # a typical fill PSNR, so an untrained net is neutral


def keep_mask(scores: Tensor, threshold: float) -> Tensor:
    """Tokens whose predicted fill PSNR is below tau are kept for the transformer."""
    return scores < threshold


def keep_ranked(scores: Tensor, fraction: float) -> Tensor:
    """Every token but the `fraction` (rounded to whole tokens) whose predicted fill PSNR is
    highest: a fixed share skipped, whatever tau would say."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    count = round(fraction * scores.numel())
    if count:
        keep.view(-1)[scores.flatten().topk(count).indices] = False
    return keep
