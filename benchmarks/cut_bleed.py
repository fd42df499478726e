"""What a scene cut costs the frames beside it when the model looks across it.

Joins FRAMES frames of clip A to FRAMES frames of clip B (each read at WIDTHxHEIGHT, the
reference), shrinks the join by SCALE (area), and upscales it as one chunk with the model twice:
whole (`--no-scene-cuts`) and a shot at a time (the default, run/scenes.py). Prints each frame's
PSNR against the reference, for both and for bicubic, and the largest change of a pixel between
the two: the frames next to the cut show what the other shot bleeds into them.

Usage: python3 benchmarks/cut_bleed.py A B [--frames 8] [--size 1280x720] [--scale 2] [--device cpu]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from scene_cuts import frames_of  # benchmarks/, this script's own folder

from models.skipsr import Settings
from skipsr_cli.run.memory import run_in_pieces
from skipsr_cli.run.options import FRAME_SLICE
from skipsr_cli.run.scenes import shot_starts
from skipsr_cli.weights import load_model


def psnr(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    mse = ((a.clamp(0, 1) - b) ** 2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(1 / mse)).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ref = torch.cat([frames_of(Path(p), args.frames, (h, w)) for p in (args.a, args.b)])
    lr = F.interpolate(ref, scale_factor=1 / args.scale, mode="area")
    clip = lr.transpose(0, 1)[None].to(device)  # (1, 3, T, h, w)
    model = load_model("base", device=device, dtype=dtype)
    settings = Settings(frame_slice=FRAME_SLICE)

    def run(piece: torch.Tensor, first: int) -> object:
        with torch.inference_mode():
            return model(piece, (h, w), settings)

    starts = shot_starts(clip, model.args.token_pixels[0])
    whole = run(clip, 0).frames[0].transpose(0, 1).float().cpu()
    apart = run_in_pieces(run, clip, starts).frames[0].transpose(0, 1).float().cpu()
    bicubic = F.interpolate(lr, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    rows = zip(psnr(bicubic, ref), psnr(whole, ref), psnr(apart, ref), strict=True)
    print(f"cut found at {starts} of {ref.shape[0]} frames; PSNR dB against the reference")
    print(
        "| frame | bicubic | model, chunk whole | model, a shot at a time | difference | "
        "largest change of a pixel between the two (8-bit levels) |"
    )
    print("|---|---|---|---|---|---|")
    largest = ((whole.clamp(0, 1) - apart.clamp(0, 1)).abs().amax(dim=(1, 2, 3)) * 255).tolist()
    for i, ((b, one, two), most) in enumerate(zip(rows, largest, strict=True)):
        print(f"| {i} | {b:.2f} | {one:.2f} | {two:.2f} | {two - one:+.2f} | {most:.1f} |")


if __name__ == "__main__":
    main()
