"""The pixel latent is lossless, its decoder is local and exact when sliced and tiled."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from helpers import randomize

from models import PRESETS, SkipSR, VAEArgs
from models.pixel_vae import PixelVAE

ARGS = PRESETS["base"].vae
FINE = replace(ARGS, widths=(16, 8), blocks=(1, 2))  # with a fine stage at twice the resolution
LINEAR = replace(FINE, linear=11)  # and a linear branch reaching further than the refiner
NEIGHBOURS = replace(FINE, neighbours=2)  # and the fill of two frames each side
BOTH = pytest.mark.parametrize(
    "args", [ARGS, FINE, LINEAR], ids=["one stage", "fine stage", "linear branch"]
)


@BOTH
def test_encode_then_untrained_decode_is_exact(args):
    model = SkipSR(replace(PRESETS["base"], vae=args)).double()
    model.init_weights(seed=3)  # the decoder's residual starts at zero
    x = torch.rand(2, 3, 3, 16, 24, dtype=torch.float64) * 2 - 1
    z = model.vae.encode(x)
    assert z.shape == (2, 48, 3, 4, 6)
    torch.testing.assert_close(model.vae.decode(z), x, rtol=0, atol=1e-15)


def test_latent_cells_hold_their_own_pixels():
    vae = PixelVAE(ARGS).double()
    x = torch.zeros(1, 3, 1, 8, 8, dtype=torch.float64)
    x[0, 1, 0, 5, 2] = 1.0  # one green pixel in block (1, 0)
    z = vae.encode(x)
    assert z.count_nonzero() == 1 and z[0, :, 0, 1, 0].abs().sum() == ARGS.latent_scale


@BOTH
def test_sliced_and_tiled_decode_equals_whole_decode(args):
    vae = randomize(PixelVAE(args).double(), seed=4, std=0.05)
    z = torch.randn(2, 48, 5, 13, 17, dtype=torch.float64)
    whole = vae.decode(z)
    torch.testing.assert_close(vae.decode(z, frame_slice=2, tile=5), whole, rtol=1e-12, atol=1e-12)


@BOTH
def test_decoder_sees_only_its_halo_and_its_own_frame(args):
    vae = randomize(PixelVAE(args).double(), seed=5, std=0.05)
    z = torch.randn(1, 48, 2, 32, 32, dtype=torch.float64)
    changed = z.clone()
    changed[:, :, 1, 16, 16] += 1.0
    diff = (vae.decode(changed) - vae.decode(z)).abs().amax(1)[0]  # (T, H, W)
    assert diff[0].max() == 0  # the other frame
    rows = diff[1].amax(1).nonzero().flatten() // args.spatial
    assert rows.min() == 16 - vae.halo and rows.max() == 16 + vae.halo  # the halo is tight


@pytest.mark.parametrize(
    "change, message",
    [
        ({"temporal": 4}, "temporal 1"),
        ({"latent_channels": 16}, "48 latent channels"),
        ({"widths": (32, 64, 8), "blocks": (1, 1, 1)}, "1 or 2"),
        ({"widths": (32, 64)}, "one block count per stage"),
        ({"kind": "wavelet"}, "kind"),
        ({"linear": 4}, "odd side"),
        (
            {
                "kind": "conv",
                "spatial": 8,
                "temporal": 4,
                "widths": (8, 8, 8, 8),
                "blocks": (1, 1, 1, 1),
                "linear": 3,
            },
            "only the pixel VAE",
        ),
    ],
)
def test_pixel_vae_arguments_are_checked(change, message):
    with pytest.raises(ValueError, match=message):
        VAEArgs(**{**vars(ARGS), **change})


def test_guide_is_refused():
    vae = PixelVAE(replace(ARGS))
    with pytest.raises(ValueError, match="no guide"):
        vae.decode(torch.zeros(1, 48, 1, 2, 2), guide=torch.zeros(1, 3, 1, 8, 8))


def test_linear_branch_adds_a_filter_that_scales_with_the_input():
    """With the refiner at zero, decoding adds exactly the branch's convolution of the latent, and
    twice the latent gives twice the correction: no norm between (the refiner's do not scale)."""
    vae = randomize(PixelVAE(replace(ARGS, linear=5)).double(), seed=7, std=0.05)
    for conv in (vae.decoder.conv_out, vae.linear):
        torch.nn.init.zeros_(conv.bias)
    torch.nn.init.zeros_(vae.decoder.conv_out.weight)
    z = torch.randn(1, 48, 1, 6, 6, dtype=torch.float64)

    def added(latent: torch.Tensor) -> torch.Tensor:
        return vae.decode(latent) - vae.decode(torch.zeros_like(latent)) - unfolded(latent)

    def unfolded(latent: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latent[:, :, 0] / ARGS.latent_scale, ARGS.spatial)[:, :, None]

    expected = F.pixel_shuffle(vae.linear(z[:, :, 0] / ARGS.latent_scale), ARGS.spatial)
    assert expected.abs().max() > 0.01
    torch.testing.assert_close(added(z), expected[:, :, None])
    torch.testing.assert_close(added(2 * z), 2 * added(z))
    vae.decoder.conv_out.weight.data.normal_(0, 0.05)  # the refiner on: not linear in the latent
    assert not torch.allclose(added(2 * z), 2 * added(z))


def test_a_decoder_with_neighbours_sees_the_fill_of_the_frames_around_each_one():
    """Sliced and tiled decoding stays exact; a frame's output moves with the fill of the frames
    up to `neighbours` away and with no other (the clip's ends repeat their frames); the fill is
    required."""
    vae = randomize(PixelVAE(NEIGHBOURS).double(), seed=8, std=0.05)
    z = torch.randn(1, 48, 7, 9, 11, dtype=torch.float64)
    fill = torch.rand(1, 3, 7, 36, 44, dtype=torch.float64)
    whole = vae.decode(z, context=fill)
    cut = vae.decode(z, frame_slice=3, tile=4, context=fill)
    torch.testing.assert_close(cut, whole, rtol=1e-12, atol=1e-12)
    changed = fill.clone()
    changed[:, :, 3] += 0.5
    moved = (vae.decode(z, context=changed) - whole).abs().flatten(3).amax((1, 3))[0]  # (T,)
    assert moved.nonzero().flatten().tolist() == [1, 2, 4, 5]  # not frame 3 itself: z holds it
    with pytest.raises(ValueError, match="neighbouring frames"):
        vae.decode(z)
    with pytest.raises(ValueError, match="neighbouring frames"):
        vae.decode(z, context=fill[:, :, :6])
