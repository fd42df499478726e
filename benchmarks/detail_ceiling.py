"""How much of each held-out reference a low-resolution grid can carry at all, next to what lanczos
and the model reach (issue 15's question: is the target within reach on every clip?).

For every clip of one or more `skipsr eval --json` results, the reference's first frames are
band-limited to the low-resolution grid's Nyquist frequency (mirror-extended, so the frame's
borders do not ring): the "in-band" picture, what a perfect restoration of every frequency the
input can hold would give. Its PSNR against the reference is a ceiling for restoration alone;
above it, an upscaler must predict detail that the input does not contain (a learned prior can,
within limits: edges, text, aliasing that folded detail into the band). Prints one row per clip,
scale and track: lanczos, the in-band ceiling, each model, and the share of the room between
lanczos and the ceiling each model took. Runs on the CPU.

    PYTHONPATH=. python3 benchmarks/detail_ceiling.py OUT/eval_x2.json OUT/eval_x4.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from skipsr_cli.measure import metrics
from skipsr_cli.measure.evaluate import find_sources, load_reference


def in_band(frame: torch.Tensor, scale: int) -> torch.Tensor:
    """(3, H, W) -> the same frame with every frequency above 1 / (2 * scale) cycles a pixel
    removed (a separable ideal low-pass over the frame mirrored both ways)."""
    h, w = frame.shape[-2:]
    mirrored = torch.cat((frame, frame.flip(-1)), -1)
    mirrored = torch.cat((mirrored, mirrored.flip(-2)), -2).double()  # (3, 2H, 2W): even, no seams
    spectrum = torch.fft.rfft2(mirrored)
    fy = torch.fft.fftfreq(2 * h, d=1 / (2 * h)).abs()[:, None]  # whole cycles over 2H
    fx = torch.fft.rfftfreq(2 * w, d=1 / (2 * w))[None, :]
    spectrum *= (fy <= h / scale) & (fx <= w / scale)  # the LR grid's Nyquist: H / scale cycles
    return torch.fft.irfft2(spectrum, s=(2 * h, 2 * w))[..., :h, :w].float()


def ceiling(path: Path, name: str, scale: int, frames: int | None) -> tuple[float, float]:
    """(in-band PSNR, the share of the reference's variance above the band) of one clip."""
    (source,) = find_sources([path])
    ref = load_reference(replace(source, name=name), scale, frames).frames
    banded = torch.stack([in_band(f, scale) for f in ref])
    above = (ref - banded).double().square().sum()
    variance = (ref - ref.mean((-2, -1), keepdim=True)).double().square().sum()
    return metrics.psnr(banded.clamp(0, 1), ref), (above / variance).item()


def main(paths: list[str]) -> None:
    print(
        "| clip | scale | track | lanczos | in-band ceiling (room) | variance above band |"
        " model: PSNR (gain, share of room) |"
    )
    print("|---|---|---|---|---|---|---|")
    for path in paths:
        result = json.loads(Path(path).read_text())
        scale = result["scale"]
        for clip in result["clips"]:
            top, above = ceiling(Path(clip["path"]), clip["name"], scale, clip["frames"])
            for track in dict.fromkeys(r["track"] for r in clip["rows"]):
                rows = {r["method"]: r["psnr"] for r in clip["rows"] if r["track"] == track}
                base = rows["lanczos"]
                models = [
                    f"{m.split(':')[-1]} {v:.2f} ({v - base:+.2f}, {(v - base) / (top - base):.0%})"
                    for m, v in rows.items()
                    if m.startswith("model")
                ]
                print(
                    f"| {clip['name']} | x{scale} | {track} | {base:.2f} | {top:.2f} "
                    f"({top - base:+.2f}) | {above:.2%} | {'; '.join(models)} |"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
