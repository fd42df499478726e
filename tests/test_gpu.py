"""CUDA checks (skipped without a GPU): bf16 on CUDA against fp32 on the CPU, flash varlen kernels,
a 4K run that runs out of memory and lowers its settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import randomize
from media import make_clip

from models import PRESETS, SkipSR
from models.attention import _use_flash, exact_varlen_attention, pack_windows, varlen_attention
from models.skipsr import Settings
from skipsr_cli.media.video_io import probe

ROOT = Path(__file__).resolve().parents[1]

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


def test_flash_varlen_gradients_match_exact_attention():
    """Training runs the same kernel backwards: ATen's flash operator with its own backward."""
    gen = torch.Generator().manual_seed(1)
    grid = (4, 30, 54)
    coords = (torch.rand(1, *grid, generator=gen) < 0.5).nonzero().cuda()
    layout = pack_windows(coords, grid, (4, 15, 27), True)
    n, heads, dim = len(layout.perm), 4, 64
    q, k, v = (torch.randn(n, heads, dim, generator=gen).cuda() for _ in range(3))
    up = torch.randn(n, heads, dim, generator=gen).cuda()
    qb, kb, vb = (t.bfloat16().requires_grad_() for t in (q, k, v))
    assert _use_flash(qb)
    (varlen_attention(qb, kb, vb, layout).float() * up).sum().backward()
    qf, kf, vf = (t.clone().requires_grad_() for t in (q, k, v))
    (exact_varlen_attention(qf, kf, vf, layout) * up).sum().backward()
    for name, got, ref in zip("qkv", (qb, kb, vb), (qf, kf, vf), strict=True):
        err = rel_err(got.grad, ref.grad)
        print(f"flash varlen bf16 vs exact fp32, gradient of {name}: relative error {err:.2e}")
        assert err < 3e-2


# A model's whole call on the GPU in a fresh process, then which modules it imported.
FIRST_CALL = """
import sys, torch
from models import PRESETS, SkipSR
from models.skipsr import Settings
model = SkipSR(PRESETS["debug"]).eval().to("cuda", torch.bfloat16)
with torch.inference_mode():
    model(torch.rand(1, 3, 4, 64, 96, device="cuda"), (128, 192), Settings(skip=False))
torch.cuda.synchronize()
print("torch._dynamo" in sys.modules)
"""


def test_a_model_call_on_the_gpu_does_not_import_torchdynamo():
    """TorchDynamo's import is seconds of every worker's first call; nothing here needs it."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", FIRST_CALL], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# One CLI run in its own process, its GPU memory capped at a fraction of the card (0: no cap).
CAPPED = """
import sys, torch
if float(sys.argv[1]):
    torch.cuda.set_per_process_memory_fraction(float(sys.argv[1]))
from skipsr_cli.cli import main
main(sys.argv[2:])
"""


def capped_upscale(fraction: float, *args: str | Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-c", CAPPED, str(fraction), "upscale", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_out_of_memory_at_4k_lowers_the_settings_and_finishes(tmp_path):
    """1080p x2 with `base` in bf16: the default run's peak is measured, then a run capped at 60% of
    it must run out of memory, lower its settings, say so once, and write every frame."""
    src = make_clip(tmp_path / "in.mp4", width=1920, height=1080, frames=8, audio=False)
    common = ["--device", "cuda", "--preset", "ultrafast", "--json", "-q"]
    free = capped_upscale(0, src, tmp_path / "free.mp4", *common)
    assert free.returncode == 0, free.stderr
    peak = json.loads(free.stdout)["peak_gpu_bytes"]
    fraction = 0.6 * peak / torch.cuda.get_device_properties(0).total_memory
    capped = capped_upscale(fraction, src, tmp_path / "capped.mp4", *common)
    assert capped.returncode == 0, capped.stderr
    warnings = [w for w in capped.stderr.splitlines() if w.startswith("skipsr: warning:")]
    assert len(warnings) == 1 and "out of GPU memory at frame 0" in warnings[0], capped.stderr
    summary = json.loads(capped.stdout)
    print(
        f"4K: default peak {peak / 2**30:.2f} GiB; capped at {0.6 * peak / 2**30:.2f} GiB: "
        f"peak {summary['peak_gpu_bytes'] / 2**30:.2f} GiB; {warnings[0]}"
    )
    assert probe(tmp_path / "capped.mp4").frame_count == summary["frames"] == 8
    assert (summary["out_width"], summary["out_height"]) == (3840, 2160)
    assert summary["peak_gpu_bytes"] < 0.6 * peak


def test_a_batch_and_a_rotated_clip_on_the_default_gpu(tmp_path):
    """No --devices: the batch loads its model on the default GPU (whose device has no index
    until one is given), and 8-bit frames are converted on the GPU, rotated ones too, with the
    values the host conversion gives."""
    import numpy as np

    from skipsr_cli.media.video_io import read_frames
    from skipsr_cli.run.device_frames import frames_to_device

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        make_clip(folder / f"{name}.mp4", width=66, height=50, frames=6, audio=False)
    cmd = [sys.executable, "-m", "skipsr_cli.cli", "upscale", str(folder), str(tmp_path / "out")]
    r = subprocess.run([*cmd, "--model", "debug", "--random-weights", "-q"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["a.mp4", "b.mp4"]
    frames = list(read_frames(folder / "a.mp4"))
    for turns in range(4):  # a quarter turn more each time
        for f in frames:
            f.ycbcr = f.ycbcr.rotated(1) if turns else f.ycbcr
        host = np.stack([g.ycbcr.rgb() for g in frames])
        gpu = frames_to_device(frames, torch.device("cuda"))[0].permute(1, 2, 3, 0)
        assert np.array_equal(gpu.mul(255).round().byte().cpu().numpy(), host)


def test_base_parts_on_the_gpu_stitch_into_the_whole_run_bit_for_bit(tmp_path):
    """Issue 14's acceptance on the GPU: `base` in bf16, lossless output, one process; three
    parts rendered in reverse order and stitched decode to the frames of a whole run, bit for
    bit, with the same timestamps and audio."""
    import av
    import numpy as np

    from skipsr_cli import api

    src = make_clip(tmp_path / "in.mp4", width=320, height=180, frames=41, audio=True)
    model = api.load_model("base", device="cuda")
    run = dict(model=model, lossless=True, chunk_frames=16, overlap=4)
    api.upscale(src, tmp_path / "whole.mkv", **run)
    for i in (3, 2, 1):
        api.upscale(src, tmp_path / "out.mkv", segment=f"{i}/3", **run)
    assert api.stitch(tmp_path / "out.mkv") == 41

    def decoded(path: Path) -> tuple[list[np.ndarray], list[float], float]:
        with av.open(str(path)) as f:
            frames = [(fr.to_ndarray(format="rgb24"), fr.time) for fr in f.decode(video=0)]
        with av.open(str(path)) as f:  # the audio's end: its last packet's
            stream = f.streams.audio[0]
            ends = [(p.pts + p.duration) * stream.time_base for p in f.demux(stream) if p.size]
        return [a for a, _ in frames], [t for _, t in frames], float(max(ends))

    whole, stitched = decoded(tmp_path / "whole.mkv"), decoded(tmp_path / "out.mkv")
    assert len(stitched[0]) == len(whole[0]) == 41
    assert all(np.array_equal(a, b) for a, b in zip(whole[0], stitched[0], strict=True))
    assert stitched[1] == pytest.approx(whole[1]) and stitched[2] == pytest.approx(whole[2])


def test_the_host_sleeps_while_it_waits_for_the_gpu():
    """After sleep_while_waiting (which every run calls), a thread that waits for the device
    holds no core: it used to spin on one for the whole of the model's GPU time, the encoder's
    cores at 720p -> 1440p. The context is already in use when the setting changes, as in a run."""
    import time

    from skipsr_cli.run.host_waits import sleep_while_waiting

    dev = torch.device("cuda")
    a = torch.randn(4096, 4096, device=dev)
    torch.cuda.synchronize()
    assert sleep_while_waiting(dev) and sleep_while_waiting(dev)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(200):  # well over a second of GPU work, queued in a few milliseconds
        a = torch.tanh(a @ a)
    torch.cuda.synchronize()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert wall > 0.3 and cpu < 0.3 * wall, (cpu, wall)


def test_two_workers_forked_from_the_preloaded_server_render_the_whole_run(tmp_path):
    """`--workers 2` on one GPU: the workers fork from the fork server, which imported torch and
    the model code but never touched CUDA, so each starts CUDA afresh; their stitched parts decode
    to a one-process whole run's frames, bit for bit (base, bf16, lossless)."""
    import av
    import numpy as np

    from skipsr_cli import api

    src = make_clip(tmp_path / "in.mp4", width=320, height=180, frames=41, audio=False)
    api.upscale(src, tmp_path / "whole.mkv", model="base", lossless=True)
    # the command line, with the early start taken for a long video's (this clip is short)
    code = (
        "import atexit, sys\nfrom skipsr_cli import cli, processes\n"
        "processes._wants_workers = lambda argv: True\n"
        "atexit.register(lambda: print('started', processes.context().get_start_method()))\n"
        "cli.main()\n"
    )
    cmd = [sys.executable, "-c", code, "upscale", str(src), str(tmp_path / "out.mkv")]
    cmd += ["--model", "base", "--lossless", "--workers", "2", "--segments", "3", "-q", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "started forkserver"
    assert json.loads(r.stdout.splitlines()[-2])["frames"] == 41

    def decoded(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as f:
            return [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]

    whole, split = decoded(tmp_path / "whole.mkv"), decoded(tmp_path / "out.mkv")
    assert len(whole) == len(split) == 41
    assert all(np.array_equal(a, b) for a, b in zip(whole, split, strict=True))


def test_base_on_the_gpu_never_looks_across_a_cut(tmp_path):
    """Scene cuts as users run them (base, bf16, the cut found in fp32): two clips whose first
    shots differ render the second shot's frames bit for bit the same, where a run that does
    not look for cuts lets the first shot reach the frames beside the cut."""
    import av
    import numpy as np
    from test_scenes import CUT, write_two_shots

    from skipsr_cli import api

    model = api.load_model("base", device="cuda")
    decoded = {}
    for flip in (False, True):
        src = write_two_shots(tmp_path / f"in{flip}.mp4", (180, 320), flip_first=flip)
        for cuts in (True, False):
            out = tmp_path / f"out{flip}{cuts}.mkv"
            api.upscale(src, out, model=model, lossless=True, scene_cuts=cuts)
            with av.open(str(out)) as f:
                decoded[flip, cuts] = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert all(len(v) == 24 for v in decoded.values())
    same = lambda cuts, i: np.array_equal(decoded[False, cuts][i], decoded[True, cuts][i])  # noqa: E731
    assert all(same(True, i) for i in range(CUT, 24))
    assert not any(same(True, i) for i in range(CUT))
    assert not all(same(False, i) for i in range(CUT, 16))  # the chunk [0, 16) holds the cut
