"""The VAE's slicing is exact, and its time axis is causal."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import randomize

from models import PRESETS
from models.vae import VAE


def make_vae(name: str = "debug") -> VAE:
    return randomize(VAE(PRESETS[name].vae).double(), seed=2, std=0.1)


def test_shapes_follow_the_factors():
    vae = make_vae()
    x = torch.rand(1, 3, 8, 32, 48, dtype=torch.float64) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (1, 16, 2, 4, 6)
    assert vae.decode(z).shape == x.shape


def test_sliced_and_tiled_decode_equals_whole_decode():
    vae = make_vae()
    z = torch.randn(1, 16, 3, 9, 11, dtype=torch.float64)
    whole = vae.decode(z)
    sliced = vae.decode(z, frame_slice=3, tile=4)
    torch.testing.assert_close(sliced, whole, rtol=1e-10, atol=1e-10)


def test_sliced_encode_equals_whole_encode():
    vae = make_vae()
    x = torch.rand(1, 3, 12, 24, 32, dtype=torch.float64)
    torch.testing.assert_close(vae.encode(x, frame_slice=5), vae.encode(x), rtol=1e-10, atol=1e-10)


def test_decoder_is_causal_in_time():
    vae = make_vae()
    z = torch.randn(1, 16, 4, 5, 5, dtype=torch.float64)
    changed = z.clone()
    changed[:, :, 2:] += 1.0  # change the future from latent frame 2 on
    a, b = vae.decode(z), vae.decode(changed)
    ft = vae.args.temporal
    torch.testing.assert_close(a[:, :, : 2 * ft], b[:, :, : 2 * ft], rtol=0, atol=0)
    assert not torch.allclose(a[:, :, 2 * ft :], b[:, :, 2 * ft :])


def make_guided_vae() -> VAE:
    args = replace(PRESETS["debug"].vae, guided=True, blocks=(1, 0, 1, 2))
    return randomize(VAE(args).double(), seed=5, std=0.1)


def test_guided_decode_is_exact_when_sliced_and_tiled():
    vae = make_guided_vae()
    z = torch.randn(1, 16, 2, 9, 11, dtype=torch.float64)
    guide = torch.rand(1, 3, 8, 72, 88, dtype=torch.float64) * 2 - 1
    whole = vae.decode(z, guide=guide)
    torch.testing.assert_close(vae.decode(z, 3, 4, guide=guide), whole, rtol=1e-10, atol=1e-10)


def test_guided_decoder_needs_its_guide_and_predicts_a_residual():
    vae = make_guided_vae()
    z = torch.randn(1, 16, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="guide"):
        vae.decode(z)
    torch.nn.init.zeros_(vae.decoder.conv_out.weight)
    torch.nn.init.zeros_(vae.decoder.conv_out.bias)
    guide = torch.rand(1, 3, 4, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(vae.decode(z, guide=guide), guide)  # zero residual returns the fill


def test_time_kernel_1_keeps_latent_frames_independent():
    args = replace(PRESETS["debug"].vae, time_kernel=1)
    vae = randomize(VAE(args).double(), seed=6, std=0.1)
    z = torch.randn(1, 16, 3, 4, 4, dtype=torch.float64)
    changed = z.clone()
    changed[:, :, 1] += 1.0
    a, b = vae.decode(z), vae.decode(changed)
    ft = args.temporal
    torch.testing.assert_close(a[:, :, :ft], b[:, :, :ft], rtol=0, atol=0)
    torch.testing.assert_close(a[:, :, 2 * ft :], b[:, :, 2 * ft :], rtol=0, atol=0)
    assert not torch.allclose(a[:, :, ft : 2 * ft], b[:, :, ft : 2 * ft])
