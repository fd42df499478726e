"""CUDA checks (skipped without a GPU): bf16 on CUDA against fp32 on the CPU, flash varlen kernels."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize

from models import PRESETS, SkipSR
from models.attention import _use_flash, exact_varlen_attention, pack_windows, varlen_attention
from models.skipsr import Settings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm())


@pytest.fixture
def pair() -> tuple[SkipSR, SkipSR]:
    cpu = randomize(SkipSR(PRESETS["debug"]), seed=4, std=0.1).eval()
    gpu = randomize(SkipSR(PRESETS["debug"]), seed=4, std=0.1).eval().to("cuda", torch.bfloat16)
    return cpu, gpu


@torch.inference_mode()
def test_bf16_cuda_matches_fp32_cpu_dense(pair):
    cpu, gpu = pair
    lr = torch.rand(1, 3, 8, 40, 56, generator=torch.Generator().manual_seed(0))
    settings = Settings(skip=False)
    ref = cpu(lr, (80, 112), settings).frames
    out = gpu(lr.to("cuda", torch.bfloat16), (80, 112), settings).frames
    err = rel_err(out, ref)
    print(f"bf16 CUDA vs fp32 CPU, dense: relative error {err:.2e}")
    assert err < 2e-2


@torch.inference_mode()
def test_bf16_cuda_matches_fp32_cpu_with_a_mask(pair):
    """Same random keep mask on both devices (the predictor's threshold could flip in bf16)."""
    cpu, gpu = pair
    lr = torch.rand(1, 3, 8, 40, 56, generator=torch.Generator().manual_seed(1))
    fill = cpu._pad(cpu.upsample(lr, (80, 112)))
    c = cpu.condition(fill)
    keep = (
        torch.rand(
            1,
            c.shape[2],
            c.shape[3] // 2,
            c.shape[4] // 2,
            generator=torch.Generator().manual_seed(2),
        )
        < 0.5
    )
    ref = cpu.vae.decode(cpu.refine(c, keep, Settings()))
    c_gpu = gpu.condition(fill.to("cuda", torch.bfloat16))
    out = gpu.vae.decode(gpu.refine(c_gpu, keep.cuda(), Settings()))
    err = rel_err(out, ref)
    print(f"bf16 CUDA vs fp32 CPU, random mask: relative error {err:.2e}")
    assert err < 2e-2


@pytest.mark.parametrize("shifted", [False, True])
def test_flash_varlen_matches_exact_attention(shifted):
    gen = torch.Generator().manual_seed(0)
    grid = (4, 30, 54)
    keep = torch.rand(1, *grid, generator=gen) < 0.5
    coords = keep.nonzero().cuda()
    n, heads, dim = len(coords), 4, 64
    q, k, v = (torch.randn(n, heads, dim, generator=gen).cuda() for _ in range(3))
    layout = pack_windows(coords, grid, (4, 15, 27), shifted)
    qb, kb, vb = (t[layout.perm].bfloat16() for t in (q, k, v))
    assert _use_flash(qb), "flash varlen attention is not available on this CUDA build"
    out = varlen_attention(qb, kb, vb, layout)
    ref = exact_varlen_attention(q[layout.perm], k[layout.perm], v[layout.perm], layout)
    err = rel_err(out, ref)
    print(f"flash varlen bf16 vs exact fp32: relative error {err:.2e}")
    assert err < 2e-2
