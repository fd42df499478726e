"""What a chunk plan does to the picture: the held-out clips upscaled with chunks of N frames and K
of overlap, blended as `upscale` blends them (`skipsr_cli.run.chunking`), against the reference and
against the clip upscaled in one chunk (no seam at all).

Fewer frames of overlap, or longer chunks, cost the model less work per output frame (N / (N - K)
frames of model work for each frame out), which matters where the GPU sets a run's pace (issue 14);
this says what that costs in PSNR and flicker. Each clip's first FRAMES frames, cropped to CROP
(W x H, at the centre, at the clip's own resolution) so that the CPU can run it; the input is
eval's track (an antialiased bicubic downscale, then x264 at the track's CRF).

    PYTHONPATH=. python3 benchmarks/chunk_plans.py CLIP [CLIP...] [--plan 16/0 --plan 16/4]
        [--frames 48] [--crop 640x352] [--scale 2] [--track clean] [--weights W] [--device cpu]

Prints one row per clip and plan: PSNR and flicker against the reference (lanczos's too), and the
PSNR of the plan's output against the one-chunk output (how far the seams move the picture), over
the clip and on its worst frame (a seam, or a short last chunk whose frames see fewer others), and
the PSNR of the last chunk's frames against the reference, beside the one-chunk output's on the
same frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.linear_oracle import degrade
from models.skipsr import Settings, SkipSR
from skipsr_cli.measure import metrics
from skipsr_cli.measure.evaluate import find_sources, load_reference, upscale_classic
from skipsr_cli.run.chunking import OverlapAdd, check_plan, iter_chunks
from skipsr_cli.weights import load_model


def upscale_in_chunks(
    model: SkipSR, lr: torch.Tensor, scale: int, length: int, overlap: int
) -> torch.Tensor:
    """lr (T, 3, h, w) -> (T, 3, h*s, w*s) as the pipeline makes it: chunks of `length` frames,
    `overlap` of them shared with the next chunk, cross-faded by OverlapAdd."""
    size = (lr.shape[-2] * scale, lr.shape[-1] * scale)
    param = next(model.parameters())
    blend, out = OverlapAdd(), [None] * lr.shape[0]
    for chunk in iter_chunks(list(range(lr.shape[0])), length, overlap):
        x = lr[chunk.items].to(param.device, param.dtype)[None].transpose(1, 2)
        with torch.inference_mode():
            frames = model(x, size, Settings()).frames[0].transpose(0, 1).float()
        for index, frame in blend.add(chunk, frames):
            out[index] = frame.cpu()
    blend.close()
    return torch.stack(out)


def centre_crop(clip: torch.Tensor, width: int, height: int) -> torch.Tensor:
    h, w = clip.shape[-2:]
    top, left = max(0, (h - height) // 2), max(0, (w - width) // 2)
    return clip[..., top : top + height, left : left + width].contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", type=Path, nargs="+")
    parser.add_argument("--plan", action="append", default=[], help="FRAMES/OVERLAP")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--crop", default="640x352")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--track", default="clean")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--device", default="cpu")
    opts = parser.parse_args()
    plans = [tuple(int(v) for v in p.split("/")) for p in opts.plan or ["16/0", "16/4"]]
    for length, overlap in plans:
        check_plan(length, overlap)
    width, height = (int(v) for v in opts.crop.split("x"))
    if width % opts.scale or height % opts.scale:
        parser.error(f"--crop {opts.crop}: both sides must divide by the scale {opts.scale}")
    device = torch.device(opts.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = load_model(weights=opts.weights, device=device, dtype=dtype)
    print(
        "| clip | plan | model frames a frame out | PSNR | flicker | to one chunk | worst frame "
        "| last chunk's frames |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for source in find_sources(opts.clips):
        ref = centre_crop(load_reference(source, opts.scale, opts.frames).frames, width, height)
        lr = degrade(ref, opts.scale, opts.track)
        t = ref.shape[0]
        lanczos = upscale_classic(lr, tuple(ref.shape[-2:]), "lanczos")
        print(
            f"| {source.name} | lanczos | | {metrics.psnr(lanczos, ref):.3f} | "
            f"{metrics.flicker(lanczos, ref):.3f} | | | |"
        )
        whole = upscale_in_chunks(model, lr, opts.scale, t, 0)
        print(
            f"| {source.name} | {t}/0 (one chunk) | 1.00 | {metrics.psnr(whole, ref):.3f} | "
            f"{metrics.flicker(whole, ref):.3f} | | | |"
        )
        for length, overlap in plans:
            out = upscale_in_chunks(model, lr, opts.scale, length, overlap)
            chunks = list(iter_chunks(list(range(t)), length, overlap))
            work = sum(len(c.items) for c in chunks) / t
            tail = chunks[-1].start  # the last chunk's frames: PSNR to the reference, ours and
            ours, one = (metrics.psnr(x[tail:], ref[tail:]) for x in (out, whole))  # one chunk's
            print(
                f"| {source.name} | {length}/{overlap} | {work:.2f} | "
                f"{metrics.psnr(out, ref):.3f} | {metrics.flicker(out, ref):.3f} | "
                f"{metrics.psnr(out, whole):.2f} | "
                f"{metrics.psnr_per_frame(out, whole).min().item():.2f} | "
                f"{tail}-{t - 1}: {ours:.3f} (one chunk {one:.3f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
