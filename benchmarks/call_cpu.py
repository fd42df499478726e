"""The host CPU one chunk costs the calling thread, alone on an idle host: the model's call
against bicubic's, and the colour conversion and download of its frames.

A long video's workers spend more CPU a frame than the encode floor's copies, part of it in the
thread that calls the model (BENCHMARKS.md, eighteenth session). This measures that thread's own
CPU time (`time.thread_time`) and the whole process's (`time.process_time`: the driver's threads
too) for each step of a chunk, with the host asleep while it waits for the device as a run is, on
CHUNKS chunks of a real clip; then profiles one model call and prints the operators that spend
the most CPU, and how many kernels the call launches; last, the CPU of each stage of the model,
each drained on both sides.

Usage: python3 benchmarks/call_cpu.py CLIP [--chunks 12] [--frames 16] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import av
import numpy as np
import torch

from models.skipsr import Settings
from skipsr_cli.media.colour import ColourInfo, output_colour, rgb_to_planes
from skipsr_cli.run.host_waits import sleep_while_waiting
from skipsr_cli.run.options import FRAME_SLICE
from skipsr_cli.weights import load_model

T = TypeVar("T")


def clip_chunks(path: str, chunks: int, frames: int) -> list[np.ndarray]:
    """CHUNKS chunks of FRAMES RGB frames each, (T, H, W, 3) uint8, from the start of the clip."""
    out, held = [], []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            held.append(frame.to_ndarray(format="rgb24"))
            if len(held) == frames:
                out.append(np.stack(held))
                held = []
                if len(out) == chunks:
                    break
    return out


def timed(step: Callable[[], object], device: torch.device) -> tuple[float, float, float]:
    """Wall, calling thread's CPU and process CPU of one step, the device drained after it."""
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    w, t, p = time.perf_counter(), time.thread_time(), time.process_time()
    step()
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    return time.perf_counter() - w, time.thread_time() - t, time.process_time() - p


def timed_chunks(
    chunks: Sequence[T],
    names: Sequence[str],
    steps_of: Callable[[int, T], Iterable[tuple[str, Callable[[], object]]]],
    device: torch.device,
) -> dict[str, list[tuple[float, float, float]]]:
    """Each chunk's steps `timed` (`steps_of(n, chunk)`: (name, step) pairs, in the order they
    run), per name of `names` in that order; the cold first chunk is left out of them all."""
    rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for n, chunk in enumerate(chunks):
        for name, step in steps_of(n, chunk):
            rows[name].append(timed(step, device))
        if n == 0:
            for v in rows.values():
                v.clear()
    return rows


def staged(model: torch.nn.Module, device: torch.device) -> dict[str, list[float]]:
    """Wrap the model's stages so each call records its calling thread's CPU, the device drained
    on both sides; the forward's own steps (padding, the output's frames) are the rest."""
    times: dict[str, list[float]] = {}
    for name in ("upsample", "condition", "predict_keep", "refine", "decode", "forward"):
        times[name] = []
        setattr(model, name, _recording(getattr(model, name), times[name], device))
    return times


def _recording(inner: Callable, record: list[float], device: torch.device) -> Callable:
    def call(*args: object, **kwargs: object) -> object:
        out = []
        record.append(timed(lambda: out.append(inner(*args, **kwargs)), device)[1])
        return out[0]

    return call


def device_and_base(name: str) -> tuple[torch.device, torch.nn.Module]:
    """The device named (a GPU made current, its host asleep while it waits, as a run's) and
    `base` on it in the precision a run takes there."""
    device = torch.device(name)
    if device.type == "cuda":
        device = torch.device("cuda", device.index or 0)
        torch.cuda.set_device(device)
        sleep_while_waiting(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, load_model("base", device=device, dtype=dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clip")
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device, model = device_and_base(args.device)
    chunks = clip_chunks(args.clip, args.chunks, args.frames)
    h, w = chunks[0].shape[1:3]
    size = (2 * h, 2 * w)
    settings = Settings(frame_slice=FRAME_SLICE)
    colour = output_colour(ColourInfo(), size[0])
    state: dict[str, object] = {}

    def upload(chunk: np.ndarray) -> Callable[[], object]:
        def step() -> None:
            clip = torch.from_numpy(chunk).to(device, non_blocking=True)
            state["lr"] = clip.permute(3, 0, 1, 2)[None].float().div(255)

        return step

    def network() -> None:
        with torch.inference_mode():
            state["out"] = model(state["lr"], size, settings).frames

    def bicubic() -> None:
        with torch.inference_mode():
            state["out"] = model.upsample(state["lr"], size)

    def finish() -> None:
        frames = state["out"][0]
        for i in range(frames.shape[1]):
            rgb_to_planes(frames[:, i], colour, "yuv420p").cpu().numpy()

    def steps(n: int, chunk: np.ndarray) -> list[tuple[str, Callable[[], object]]]:
        steps = [("upload", upload(chunk)), ("model", network), ("bicubic", bicubic)]
        return [*steps, ("finish", finish)]  # bicubic's frames, as large as the model's

    rows = timed_chunks(chunks, ("upload", "model", "bicubic", "finish"), steps, device)
    print(f"{args.device}, {w}x{h} -> {size[1]}x{size[0]}, chunks of {args.frames} frames")
    print("| step | wall ms | thread CPU ms | process CPU ms | thread CPU ms a frame |")
    print("|---|---|---|---|---|")
    for name, vals in rows.items():
        med = [statistics.median(v[i] for v in vals) * 1000 for i in range(3)]
        print(
            f"| {name} | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.1f} | {med[1] / args.frames:.2f} |"
        )

    state["lr"] = torch.from_numpy(chunks[0]).to(device).permute(3, 0, 1, 2)[None].float() / 255
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        network()
        torch.cuda.synchronize(device) if device.type == "cuda" else None
    events = prof.key_averages()
    kernels = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    print(f"one model call: {ops} aten operator calls (nested included), {kernels} kernels")
    print(events.table(sort_by="self_cpu_time_total", row_limit=20))

    stages = staged(model, device)  # each stage drained on both sides: a last pass
    for chunk in chunks:
        upload(chunk)()
        network()
    print("| model stage (drained around it) | thread CPU ms, median a call |")
    print("|---|---|")
    for name, vals in stages.items():
        print(f"| {name} | {statistics.median(vals) * 1000:.1f} |")


if __name__ == "__main__":
    main()
