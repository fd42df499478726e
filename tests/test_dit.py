"""The masked transformer against its dense reference: all-keep, random masks, mask-aware RoPE."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize

from models import PRESETS, attention
from models.attention import exact_varlen_attention, pack_windows, window_index
from models.dit import DiT, TokenSet, patchify, unpatchify
from models.skipsr import Settings, compose

ARGS = PRESETS["debug"].dit
GRID = (3, 6, 7)  # token grid (T, H, W): windows (2, 4, 4) do not divide it, so edges are partial


def make_inputs(batch: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    dim = ARGS.latent_channels * ARGS.patch_volume
    x = torch.randn(batch, *GRID, dim, generator=gen)
    c = torch.randn(batch, *GRID, dim, generator=gen)
    t = torch.rand(batch, generator=gen)
    return x, c, t


@pytest.fixture
def dit() -> DiT:
    return randomize(DiT(ARGS).double(), seed=1)


def run_masked(dit: DiT, x, c, t, keep):
    tokens = TokenSet.from_keep(keep, ARGS.window)
    return dit(x[keep], c[keep], t, tokens)


def test_all_keep_equals_dense(dit):
    x, c, t = (z.double() for z in make_inputs())
    keep = torch.ones(x.shape[:4], dtype=torch.bool)
    masked = run_masked(dit, x, c, t, keep)
    dense = dit.forward_dense(x, c, t)
    torch.testing.assert_close(masked, dense[keep], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_mask_attends_only_kept_tokens_of_its_window_at_original_positions(dit, seed):
    x, c, t = (z.double() for z in make_inputs(seed=seed))
    keep = torch.rand(x.shape[:4], generator=torch.Generator().manual_seed(seed)) < 0.5
    masked = run_masked(dit, x, c, t, keep)
    # Reference: every token of the full grid at its grid position, skipped tokens masked out as keys.
    reference = dit.forward_dense(x, c, t, key_keep=keep)[keep]
    torch.testing.assert_close(masked, reference, rtol=1e-9, atol=1e-9)


def test_positions_from_packed_order_would_be_wrong(dit):
    """The test above has teeth: RoPE from the packed order instead of the grid gives another answer."""
    x, c, t = (z.double() for z in make_inputs())
    keep = torch.rand(x.shape[:4], generator=torch.Generator().manual_seed(3)) < 0.5
    tokens = TokenSet.from_keep(keep, ARGS.window)
    right = dit(x[keep], c[keep], t, tokens)
    packed = tokens.coords.clone()
    packed[:, 1:] = 0
    packed[:, 3] = torch.arange(len(packed))  # positions recomputed from the packed sequence
    wrong_tokens = TokenSet(packed, tokens.grid, tokens.batch, tokens.layouts)
    wrong = dit(x[keep], c[keep], t, wrong_tokens)
    assert (right - wrong).abs().max() > 1e-3


def test_skipped_tokens_take_the_condition_latent_exactly():
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(1, 16, 2, 12, 14, generator=gen)
    grid = patchify(c, ARGS.patch)
    keep = torch.rand(grid.shape[:4], generator=gen) < 0.5
    x0 = torch.randn(int(keep.sum()), grid.shape[-1], generator=gen)
    z = patchify(compose(grid, keep, x0, ARGS.patch, 16), ARGS.patch)
    assert torch.equal(z[~keep], grid[~keep])
    assert torch.equal(z[keep], x0)


def test_skipped_tokens_are_exact_through_the_model(debug_model):
    """End to end in the model: skipped regions of the composed latent are bit-identical to c."""
    lr = torch.rand(1, 3, 4, 16, 24, generator=torch.Generator().manual_seed(0))
    fill = debug_model._pad(debug_model.upsample(lr, (32, 48)))
    c = debug_model.condition(fill)
    grid = patchify(c, ARGS.patch)
    keep = torch.rand(grid.shape[:4], generator=torch.Generator().manual_seed(1)) < 0.5
    z = patchify(debug_model.refine(c, keep, Settings()), ARGS.patch)
    assert torch.equal(z[~keep], grid[~keep])
    assert not torch.allclose(z[keep], grid[keep])  # the transformer did change the kept ones


def test_patchify_round_trip():
    z = torch.randn(2, 16, 3, 8, 10)
    assert torch.equal(unpatchify(patchify(z, (1, 2, 2)), (1, 2, 2), 16), z)


@pytest.mark.parametrize("shifted", [False, True])
def test_varlen_attention_equals_dense_attention_under_window_block_mask(shifted):
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(2, *GRID, generator=gen) < 0.6
    coords = keep.nonzero()
    n, heads, dim = len(coords), 2, 8
    q, k, v = (torch.randn(n, heads, dim, generator=gen, dtype=torch.float64) for _ in range(3))
    layout = pack_windows(coords, GRID, ARGS.window, shifted)
    out = torch.empty_like(q)
    out[layout.perm] = exact_varlen_attention(
        q[layout.perm], k[layout.perm], v[layout.perm], layout
    )
    wid = window_index(coords, GRID, ARGS.window, shifted)
    block = wid[:, None] == wid[None, :]  # (N, N): same batch item and same window
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=block
    ).transpose(0, 1)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    lengths = (layout.cu_seqlens[1:] - layout.cu_seqlens[:-1]).tolist()
    assert len(set(lengths)) > 1  # windows really have different lengths: nothing was padded
    assert sum(lengths) == n


@pytest.mark.parametrize(("capability", "flash"), [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_gpus_older_than_ampere_take_the_exact_path(monkeypatch, capability, flash):
    """The flash kernels need compute capability 8.0 or newer: a T4 or V100 attends exactly."""
    monkeypatch.setattr(torch.backends.cuda, "is_flash_attention_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    assert attention._flash_available.__wrapped__(0) is flash


def test_shifted_windows_differ_from_regular():
    coords = torch.ones(*GRID, dtype=torch.bool)[None].nonzero()
    regular = window_index(coords, GRID, ARGS.window, False)
    shifted = window_index(coords, GRID, ARGS.window, True)
    assert not torch.equal(
        regular.unique(return_inverse=True)[1], shifted.unique(return_inverse=True)[1]
    )


def test_token_noise_is_normal_and_keyed_by_place_not_by_mask():
    from models.skipsr import token_noise

    keep = torch.rand(2, 3, 20, 30, generator=torch.Generator().manual_seed(0)) < 0.5
    noise = token_noise(keep, 48, seed=7, dtype=torch.float64)
    assert noise.shape == (int(keep.sum()), 48)
    assert abs(noise.mean().item()) < 0.01 and abs(noise.std().item() - 1) < 0.01
    more = keep.clone()
    more[0, 0] = True  # keep more tokens: the ones kept before keep their noise
    again = token_noise(more, 48, seed=7, dtype=torch.float64)
    before = keep.flatten()[more.flatten().nonzero().squeeze(1)]
    assert torch.equal(again[before], noise)
    other = token_noise(keep, 48, seed=8, dtype=torch.float64)
    assert abs(torch.corrcoef(torch.stack((noise.flatten(), other.flatten())))[0, 1]) < 0.01


def test_token_noise_is_fixed_in_time_and_by_absolute_place():
    """Every frame draws the same noise at the same place (no flicker from the flow's start), so a
    run that starts at another frame, or a frame range, draws what a whole run draws there."""
    from models.skipsr import token_noise

    keep = torch.ones(2, 4, 6, 7, dtype=torch.bool)
    noise = token_noise(keep, 16, seed=1, dtype=torch.float64).view(2, 4, 6, 7, 16)
    assert torch.equal(noise[:, 1:], noise[:, :1].expand(-1, 3, -1, -1, -1))
    late = token_noise(keep[:, 2:], 16, seed=1, dtype=torch.float64).view(2, 2, 6, 7, 16)
    assert torch.equal(late, noise[:, 2:])
    assert not torch.equal(noise[0], noise[1])  # batch items (training clips) differ
    flat = noise[:, 0].flatten(0, 2)  # (places, 16): no two places share their noise
    assert flat.unique(dim=0).shape[0] == flat.shape[0]


@pytest.mark.parametrize("budget", [1, 17, 64])
def test_blocks_run_window_by_window_with_the_same_result(dit, budget):
    """Runs of whole windows through each block (the memory bound for 4K) change nothing."""
    x, c, t = (z.double() for z in make_inputs(seed=4))
    keep = torch.rand(x.shape[:4], generator=torch.Generator().manual_seed(4)) < 0.6
    tokens = TokenSet.from_keep(keep, ARGS.window)
    whole = dit(x[keep], c[keep], t, tokens)
    runs = dit(x[keep], c[keep], t, tokens, span_tokens=budget)
    torch.testing.assert_close(runs, whole, rtol=1e-12, atol=1e-12)
    for layout in tokens.layouts:
        spans = layout.spans(budget)
        assert len(spans) > 1
        covered = torch.cat([idx for idx, _ in spans])
        assert torch.equal(covered, layout.perm)  # every token once, in window order
        longest = int((layout.cu_seqlens[1:] - layout.cu_seqlens[:-1]).max())
        assert all(len(idx) <= max(budget, longest) for idx, _ in spans)


def test_rope_tables_and_noise_made_in_runs_equal_one_pass(monkeypatch):
    import models.rope
    import models.skipsr
    from models.rope import Rope3D
    from models.skipsr import token_noise

    keep = torch.rand(1, 4, 9, 11, generator=torch.Generator().manual_seed(5)) < 0.7
    coords = keep.nonzero()[:, 1:]
    rope = Rope3D(ARGS.head_dim)
    cos, sin = rope(coords)
    noise = token_noise(keep, 48, seed=3, dtype=torch.float32)
    monkeypatch.setattr(models.rope, "_RUN", 13)
    monkeypatch.setattr(models.skipsr, "_NOISE_RUN", 13)
    assert all(torch.equal(a, b) for a, b in zip(rope(coords), (cos, sin), strict=True))
    assert torch.equal(token_noise(keep, 48, seed=3, dtype=torch.float32), noise)


def test_masked_forward_trains_under_autocast():
    """Training runs the DiT under bf16 autocast with gradients: the window runs must allow both."""
    dit = randomize(DiT(ARGS), seed=2)
    x, c, t = make_inputs()
    keep = torch.rand(x.shape[:4], generator=torch.Generator().manual_seed(6)) < 0.7
    tokens = TokenSet.from_keep(keep, ARGS.window)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dit(x[keep], c[keep], t, tokens, span_tokens=20)
    out.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in dit.blocks.parameters())
