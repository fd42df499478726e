"""PSNR, SSIM and flicker against known values and a plain loop implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skipsr_cli.measure import metrics


def clip(t: int = 3, h: int = 20, w: int = 23, seed: int = 0) -> torch.Tensor:
    """Random frames (T, 3, H, W) in [0.2, 0.8], so offsets of +-0.1 stay inside [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(t, 3, h, w, generator=gen)


def test_psnr_of_identical_frames_is_capped():
    x = clip()
    assert metrics.psnr(x, x) == metrics.PSNR_CAP == 100.0


def test_psnr_of_a_constant_offset():
    x = clip().double()  # exact offsets; in float32 the sums round at about 1e-6 dB
    assert metrics.psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-9)
    assert metrics.psnr(x - 0.01, x) == pytest.approx(40.0, abs=1e-9)
    x = clip()
    assert metrics.psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-4)


def test_psnr_is_the_mean_of_per_frame_psnr():
    x = clip(t=2)
    out = x + torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)  # 20 dB and 40 dB
    assert metrics.psnr_per_frame(out, x).tolist() == pytest.approx([20.0, 40.0])
    assert metrics.psnr(out, x) == pytest.approx(30.0)


def test_luma_uses_bt601_weights():
    x = torch.zeros(1, 3, 1, 1)
    x[0, :, 0, 0] = torch.tensor([1.0, 0.5, 0.25])
    assert metrics.luma(x).item() == pytest.approx(0.299 + 0.587 * 0.5 + 0.114 * 0.25)


def test_ssim_of_identical_frames_is_one():
    x = clip()
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-12)


def test_ssim_decreases_with_noise():
    x = clip(t=2, h=32, w=32)
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=gen)
    scores = [metrics.ssim((x + s * noise).clamp(0, 1), x) for s in (0.0, 0.02, 0.05, 0.2)]
    assert scores[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
    assert scores[-1] < 0.8


def reference_ssim(out: np.ndarray, ref: np.ndarray) -> float:
    """SSIM of one RGB frame (3, H, W) the slow way: every 11x11 window, weighted statistics."""
    weights = np.array([0.299, 0.587, 0.114])
    x = np.tensordot(weights, out.astype(np.float64), axes=1)  # (H, W)
    y = np.tensordot(weights, ref.astype(np.float64), axes=1)
    g = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            ma, mb = (window * a).sum(), (window * b).sum()
            va = (window * (a - ma) ** 2).sum()
            vb = (window * (b - mb) ** 2).sum()
            cov = (window * (a - ma) * (b - mb)).sum()
            values.append(
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(values))


def test_ssim_matches_a_plain_loop_implementation():
    ref = clip(t=2, h=19, w=24, seed=2)
    out = (ref + 0.1 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(3))).clamp(
        0, 1
    )
    expected = [reference_ssim(out[i].numpy(), ref[i].numpy()) for i in range(2)]
    assert metrics.ssim_per_frame(out, ref).tolist() == pytest.approx(expected, abs=1e-6)
    assert metrics.ssim(out, ref) == pytest.approx(np.mean(expected), abs=1e-6)


def test_flicker_is_zero_without_temporal_error():
    x = clip(t=4)
    assert metrics.flicker(x, x) == 0.0
    assert metrics.flicker(x + 0.1, x) == pytest.approx(0.0, abs=1e-4)  # a constant error
    assert metrics.flicker(x.double() + 0.1, x.double()) == pytest.approx(0.0, abs=1e-9)


def test_flicker_of_alternating_offsets_in_code_values():
    x = clip(t=4)
    out = x + torch.tensor([0.0, 0.1, 0.0, 0.1]).view(4, 1, 1, 1)  # every change is off by 0.1
    assert metrics.flicker(out, x) == pytest.approx(25.5, rel=1e-6)


def test_flicker_is_positive_for_random_per_frame_offsets():
    x = clip(t=5)
    offsets = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(4)) * 0.1
    assert metrics.flicker(x + offsets, x) > 0.5


def test_flicker_needs_two_frames():
    with pytest.raises(ValueError, match="two frames"):
        metrics.flicker(clip(t=1), clip(t=1))


def test_mismatched_clips_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        metrics.psnr(clip(h=20), clip(h=21))


def test_chunked_figures_equal_whole_clip_figures(monkeypatch):
    """Tiny chunks (one frame at a time) must give the same figures as one big chunk."""
    ref = clip(t=5, seed=5)
    out = (ref + 0.05 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(6))).clamp(
        0, 1
    )
    whole = (metrics.psnr(out, ref), metrics.ssim(out, ref), metrics.flicker(out, ref))
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 1)
    chunked = (metrics.psnr(out, ref), metrics.ssim(out, ref), metrics.flicker(out, ref))
    assert chunked == pytest.approx(whole, rel=1e-12)
    assert all(math.isfinite(v) for v in chunked)


def test_small_frames_shrink_the_ssim_window():
    x = clip(h=6, w=9)
    assert metrics.ssim(x, x) == pytest.approx(1.0)
    assert 0 < metrics.ssim(x.flip(-1), x) < 1
