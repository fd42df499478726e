"""Where the pixel decoder's time goes on the GPU: the shipped `base` decoder at 1440p (a latent of
16 x 48 x 360 x 640, bf16) as it runs now, and with the earlier RMS-norm formulation (an fp32
copy of the activations) in NCHW and in channels-last layout. Prints ms per frame.

    PYTHONPATH=. python3 benchmarks/decoder_layouts.py
"""

import time

import torch
import torch.nn.functional as F

from skipsr_cli.weights import load_model

torch.backends.cudnn.benchmark = True
model = load_model(device="cuda", dtype=torch.bfloat16)
decoder = model.vae.decoder
z = torch.randn(16, 48, 360, 640, device="cuda", dtype=torch.bfloat16)


def ms_per_frame(fn, repeats: int = 10) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1000 / z.shape[0]


def earlier_norm(module, x):  # statistics from an fp32 copy of x, as up to 2026-11-30
    rms = x.float().pow(2).mean(1, keepdim=True).add(1e-6).rsqrt().to(x.dtype)
    return x * rms * module.weight.view(1, -1, 1, 1)


def refine(x, norm):
    h = decoder.conv_in(x)
    for block in decoder.blocks:
        y = block.conv1(F.silu(norm(block.norm1, h)))
        h = h + block.conv2(F.silu(norm(block.norm2, y)))
    return decoder.conv_out(F.silu(norm(decoder.norm_out, h)))


shipped = lambda module, x: module(x)  # noqa: E731
zc = z.contiguous(memory_format=torch.channels_last)
runs = [
    ("decoder as shipped (channels-last input)", lambda: decoder(z)),
    ("earlier norm, NCHW", lambda: refine(z, earlier_norm)),
    ("current norm, NCHW", lambda: refine(z, shipped)),
    ("earlier norm, channels-last", lambda: refine(zc, earlier_norm)),
    ("current norm, channels-last", lambda: refine(zc, shipped)),
]
with torch.inference_mode():
    for name, fn in runs:
        print(f"{name:42s} {ms_per_frame(fn):.3f} ms a frame")
