"""What x264 spends on the model's frames against bicubic's, for issue 14's ratio.

The capacity (`bench capacity`) encodes bicubic frames; a whole upscale encodes the model's. At
the same CRF the encoder's work depends on what it codes, so the two may cost it different CPU
however fast the rest of the pipeline is. This renders both versions of SOURCE through the real
pipeline into lossless 4:2:0 files (FFV1: the exact frames the encoder would get), reads each into
memory, then times the encoder alone on each, ROUNDS times, in alternating order (bicubic first in
odd rounds, the model first in even ones): CPU time a frame (every encoder thread), wall time, and
the stream's size.

Usage: python3 benchmarks/encode_cost.py SOURCE [--scale 2] [--rounds 3] [--device auto]
       [--model base] [--preset medium] [--crf 18] [--threads 0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import torch

from models.skipsr import Settings
from skipsr_cli.measure.bench import Resampler
from skipsr_cli.media.encoding import EncodeOptions
from skipsr_cli.run.options import FRAME_SLICE, resolve_device, resolve_dtype
from skipsr_cli.run.pipeline import UpscaleJob, prepare, upscale
from skipsr_cli.weights import load_model


def render(network, source: Path, out: Path, scale: int, dev, dt) -> None:
    """SOURCE through the pipeline with `network`, into a lossless yuv420p FFV1 file."""
    job = UpscaleJob(
        source,
        out,
        scale=scale,
        settings=Settings(frame_slice=FRAME_SLICE),
        encode=EncodeOptions(codec="ffv1", crf=None, preset=None, pix_fmt="yuv420p"),
        copy_audio=False,
        copy_subtitles=False,
    )
    upscale(network, prepare(job), dev, dt, emit=lambda e: None)


def frames_of(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as inp:
        return [f.reformat(format="yuv420p") for f in inp.decode(video=0)]


def encode(frames: list[av.VideoFrame], args) -> tuple[float, float, int]:
    """(CPU s, wall s, bytes) of one x264 run over `frames`; the CPU is the whole process's,
    so the encoder's own threads count, and nothing else runs meanwhile."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"crf": str(args.crf), "preset": args.preset, "threads": str(args.threads)}
    size = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i, frame in enumerate(frames):
        frame.pts, frame.time_base = i, ctx.time_base
        size += sum(p.size for p in ctx.encode(frame))
    size += sum(p.size for p in ctx.encode(None))
    return time.process_time() - cpu0, time.perf_counter() - wall0, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="base")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--threads", type=int, default=0, help="x264 threads; 0: its own choice")
    args = parser.parse_args()
    dev = resolve_device(args.device)
    dt = resolve_dtype("auto", dev)
    versions = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, net, precision in (  # each in the precision its capacity copies run in
            ("bicubic", Resampler(), torch.float32),
            ("model", load_model(args.model, device=dev, dtype=dt), dt),
        ):
            path = Path(folder) / f"{name}.mkv"
            render(net.to(dev), args.source, path, args.scale, dev, precision)
            versions[name] = frames_of(path)
    n = len(versions["bicubic"])
    w, h = versions["bicubic"][0].width, versions["bicubic"][0].height
    print(f"{n} frames at {w}x{h}, x264 {args.preset} crf {args.crf}, threads {args.threads}")
    print(
        "| round | bicubic CPU ms/frame | model CPU ms/frame | model / bicubic | "
        "bicubic fps | model fps | bicubic kbit/frame | model kbit/frame |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for r in range(1, args.rounds + 1):
        order = ("bicubic", "model") if r % 2 else ("model", "bicubic")
        timed = {k: encode(versions[k], args) for k in order}
        (cb, wb, sb), (cm, wm, sm) = timed["bicubic"], timed["model"]
        ratios.append(cm / cb)
        print(
            f"| {r} | {1000 * cb / n:.1f} | {1000 * cm / n:.1f} | {cm / cb:.3f} | "
            f"{n / wb:.1f} | {n / wm:.1f} | {8 * sb / n / 1000:.0f} | {8 * sm / n / 1000:.0f} |"
        )
    print(f"model / bicubic CPU: median {statistics.median(ratios):.3f} of {args.rounds} rounds")


if __name__ == "__main__":
    main()
