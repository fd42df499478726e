"""What finding scene cuts costs a chunk on the device: `scenes.shot_starts` alone, and the model's
call with and without it before, as `pipeline.run_chunk` makes them.

The search pools a chunk's frames to a coarse grid on the device and reads the cut flags back,
which waits for the device once before the model's call is queued. This times, on CHUNKS chunks
of a real clip (the first, cold, left out), each chunk's search alone, then the model's call
alone and the search and the call together, in alternating order, the device drained around each
step and the host asleep while it waits, as a run's is. Medians in milliseconds.

Usage: python3 benchmarks/scene_cost.py CLIP [--chunks 12] [--frames 16] [--size WxH] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from call_cpu import clip_chunks, device_and_base, timed_chunks

from models.skipsr import Settings
from skipsr_cli.run.options import FRAME_SLICE
from skipsr_cli.run.scenes import shot_starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clip")
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", default=None, help="resize the chunks to WxH on the device")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device, model = device_and_base(args.device)
    settings = Settings(frame_slice=FRAME_SLICE)
    step = model.args.token_pixels[0]
    clips = []
    for chunk in clip_chunks(args.clip, args.chunks, args.frames):
        lr = torch.from_numpy(chunk).to(device).permute(3, 0, 1, 2).float().div(255)  # (3, T, h, w)
        if args.size:
            w, h = (int(v) for v in args.size.split("x"))
            lr = F.interpolate(lr.transpose(0, 1), size=(h, w), mode="bicubic").clamp(0, 1)
            lr = lr.transpose(0, 1)
        clips.append(lr[None].contiguous())
    h, w = clips[0].shape[-2:]
    size = (2 * h, 2 * w)

    def search(lr: torch.Tensor) -> None:
        with torch.inference_mode():
            shot_starts(lr, step)

    def call(lr: torch.Tensor) -> None:
        with torch.inference_mode():
            model(lr, size, settings)

    def both(lr: torch.Tensor) -> None:
        search(lr)
        call(lr)

    steps = {"search": search, "model": call, "both": both}

    def chunk_steps(n: int, lr: torch.Tensor) -> list[tuple[str, Callable[[], object]]]:
        order = ("search", "model", "both") if n % 2 else ("search", "both", "model")
        return [(name, partial(steps[name], lr)) for name in order]

    rows = timed_chunks(clips, ("search", "model", "both"), chunk_steps, device)
    print(f"{device}, {w}x{h} -> {size[1]}x{size[0]}, chunks of {args.frames} frames")
    print("| step | wall ms | thread CPU ms | wall ms a frame |")
    print("|---|---|---|---|")
    for name, vals in rows.items():
        wall, cpu = (statistics.median(v[i] for v in vals) * 1000 for i in range(2))
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / args.frames:.3f} |")
    added = [b[0] - m[0] for b, m in zip(rows["both"], rows["model"], strict=True)]
    print(
        f"search's cost to a chunk (both - model, paired): {statistics.median(added) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
