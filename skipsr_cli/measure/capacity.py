"""The host's encoding capacity: what a whole upscale is measured against.

At 1440p and 4K the CPU's encoder, not the model, sets the speed of a whole upscale. The capacity
is the best total rate of K copies of the encode floor (the whole pipeline with bicubic in place
of the model: decode, upload, resample, colour conversion, the same encoder and settings) run at
once, for K = 1, 2, ...: each copy is a worker process with its share of the cores
(media/cpu_share.py), as `--devices` workers are. The copies start together, after each has
loaded its kernels, and the total counts every frame over the time from that start until the
last copy is done.

The same measurement with the model in place of bicubic (`Upscaler`) is what `--workers K` of one
long video does once its workers are up: K segments upscaled at once, each worker with its share of
the cores. Its best total against the capacity says how close a whole upscale comes to the host.
Each row also has the steady total: the rate over the copies' common middle, past every copy's
start and before the first is done, where a short copy's start (its encoder filling up while the
copies share the GPU) weighs nothing.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from models.skipsr import Settings
from skipsr_cli.errors import ModelError
from skipsr_cli.media.encoding import EncodeOptions
from skipsr_cli.run.chunking import CHUNK_FRAMES, OVERLAP
from skipsr_cli.run.progress import Advanced, Event

# frames a copy hands its encoder before its rate counts as steady: past x264 medium's lookahead
# and frame threads (about 48 frames); a slower preset's longer lookahead may need more
STEADY_AFTER = 64


@dataclass(frozen=True)
class Upscaler:
    """What each copy loads to run the model instead of the floor: a preset or a weights file, in
    the precision a user's run takes on that device (bf16 on CUDA)."""

    model: str = "base"
    weights: Path | None = None
    random_weights: bool = False  # the untrained network (tests)
    settings: Settings = field(default_factory=Settings)
    # encode bicubic's frames, not the model's, though the model still runs on every chunk
    # (`bench.ModelBeside`): what its presence costs the encoder, apart from its frames
    bicubic_frames: bool = False


@dataclass(frozen=True)
class CapacityRow:
    workers: int
    frames: int  # frames encoded by all copies together
    wall_s: float  # from the common start until the last copy finished
    total_fps: float
    slowest_fps: float  # the slowest copy's own rate
    # CPU time a frame, every copy together: all threads of each copy's process (decode, the
    # encoder's threads, colour, the model's launches), and its calling thread alone (where the
    # model, or the floor's bicubic, is launched on a GPU; on the CPU torch's pool runs it).
    cpu_ms_per_frame: float
    main_thread_cpu_ms_per_frame: float
    # seconds every copy together waited, by pipeline_waits' names: above all the encoder for
    # the model, time the encoder's cores could not work on this copy's frames
    waits_s: dict[str, float] = field(default_factory=dict)
    # the total rate over the run's middle, where every copy's encoder is past its start and none
    # has handed over its last frame (`steady_rate`); None where the copies are too short for one
    steady_fps: float | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def encode_capacity(
    source: Path,
    scale: int,
    options: EncodeOptions,
    devices: list[torch.device],
    counts: list[int],
    upscaler: Upscaler | None = None,
    chunks: tuple[int, int] = (CHUNK_FRAMES, OVERLAP),
) -> list[CapacityRow]:
    """One row per count in `counts`: that many copies of the floor (or, with `upscaler`, of the
    whole upscale) on `source` at once, the copies spread over `devices` in turn. `chunks` is
    every copy's (frames per chunk, overlap), as `upscale --chunk-frames --overlap` take them."""
    return [_copies_at_once(source, scale, options, devices, k, upscaler, chunks) for k in counts]


def _copies_at_once(
    source: Path,
    scale: int,
    options: EncodeOptions,
    devices: list[torch.device],
    k: int,
    upscaler: Upscaler | None,
    chunks: tuple[int, int],
) -> CapacityRow:
    ctx = mp.get_context("spawn")  # no CUDA state forked
    ready, results = ctx.Barrier(k + 1), ctx.Queue()
    each = (str(source), scale, options)
    procs = [
        ctx.Process(
            target=_copy,
            args=(*each, str(devices[i % len(devices)]), k, upscaler, chunks, ready, results),
            daemon=True,
        )
        for i in range(k)
    ]
    for proc in procs:
        proc.start()
    try:
        _wait_ready(ready, results, procs)
        start = time.perf_counter()
        done = [_next_result(results, procs) for _ in procs]
        wall = time.perf_counter() - start
    finally:
        ready.abort()  # copies still waiting to start (the run was stopped) return at once
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    frames = sum(copy.frames for copy in done)
    waits: dict[str, float] = {}
    for copy in done:
        for name, seconds in copy.waits.items():
            waits[name] = round(waits.get(name, 0.0) + seconds, 3)
    per_frame = lambda seconds: round(1000 * seconds / max(frames, 1), 3)  # noqa: E731
    return CapacityRow(
        workers=k,
        frames=frames,
        wall_s=round(wall, 3),
        total_fps=round(frames / wall, 2),
        slowest_fps=round(min(copy.frames / copy.seconds for copy in done), 2),
        cpu_ms_per_frame=per_frame(sum(copy.cpu for copy in done)),
        main_thread_cpu_ms_per_frame=per_frame(sum(copy.main_cpu for copy in done)),
        waits_s=waits,
        steady_fps=steady_rate([copy.handed for copy in done]),
    )


def steady_rate(handed: list[list[tuple[float, int]]], after: int = STEADY_AFTER) -> float | None:
    """Frames a second, every copy together, from the moment the last copy had handed its encoder
    `after` frames (x264 medium takes in about 48 before it holds one back, so until then it waits
    on the model or the floor more than it encodes) until the first copy handed over its last
    frame; None where that window is empty. `handed` holds each copy's (time, frames handed so
    far) as its progress reported them, a chunk apart; each copy's count is taken linearly between
    two reports."""
    if not handed or any(not samples or samples[-1][1] <= after for samples in handed):
        return None
    begin = max(next(t for t, n in samples if n >= after) for samples in handed)
    end = min(samples[-1][0] for samples in handed)
    if end <= begin:
        return None
    frames = sum(_count_at(samples, end) - _count_at(samples, begin) for samples in handed)
    return round(frames / (end - begin), 2)


def _count_at(samples: list[tuple[float, int]], t: float) -> float:
    """A copy's frames handed by time `t`, linear between the reports either side of it."""
    before = [(ts, n) for ts, n in samples if ts <= t]
    after = [(ts, n) for ts, n in samples if ts > t]
    if not before:
        return 0.0
    if not after:
        return float(before[-1][1])
    (t0, n0), (t1, n1) = before[-1], after[0]
    return n0 + (n1 - n0) * (t - t0) / (t1 - t0)


def _wait_ready(ready, results, procs: list) -> None:
    """Until every copy is warm and waiting; a copy that failed or died ends the measurement."""
    waiter = threading.Thread(target=_pass, args=(ready,), daemon=True)
    waiter.start()
    while waiter.is_alive():
        waiter.join(timeout=0.5)
        if waiter.is_alive() and any(p.exitcode is not None for p in procs):
            ready.abort()
            break
    if ready.broken:
        raise ModelError(f"a copy failed: {_reason(results)}")


def _pass(ready) -> None:
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()


class CopyRun(NamedTuple):
    """One copy's timed run."""

    frames: int
    seconds: float
    cpu: float  # CPU seconds of its whole process
    main_cpu: float  # of its calling thread
    waits: dict[str, float]  # its pipeline's waits
    handed: list[tuple[float, int]]  # (monotonic time, frames handed to its encoder), as reported


def _next_result(results, procs: list) -> CopyRun:
    """The next copy's run; a copy's error, or its death, ends the measurement."""
    while True:
        try:
            result = results.get(timeout=0.5)
        except queue.Empty:
            if all(p.exitcode is not None for p in procs):
                raise ModelError("a copy ended without a result") from None
            continue
        if isinstance(result, str):
            raise ModelError(f"a copy failed: {result}")
        return CopyRun(*result)


def _reason(results) -> str:
    try:
        return results.get(timeout=5)
    except queue.Empty:
        return "a copy ended before it was ready (see its messages above)"


def _copy(
    source: str,
    scale: int,
    options: EncodeOptions,
    device: str,
    workers: int,
    upscaler: Upscaler | None,
    chunks: tuple[int, int],
    ready,
    results,
) -> None:
    """One copy of the floor, or of the upscale, in its own process: its share of the cores,
    warm, then timed."""
    try:
        from skipsr_cli.measure.bench import timed_run, warm_up
        from skipsr_cli.media.cpu_share import apply_cpu_share
        from skipsr_cli.media.video_io import probe

        dev = torch.device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        apply_cpu_share(workers, dev)
        info = probe(Path(source))
        size = (info.height * scale, info.width * scale)
        network, dt, settings = _network(upscaler, dev)
        warm_up((network,), Path(source), size, settings, dev)
    except Exception as e:  # said first, then the barrier broken: the parent stops waiting
        results.put(f"{type(e).__name__}: {e}")
        ready.abort()
        return
    try:
        ready.wait()
    except threading.BrokenBarrierError:  # another copy failed, or the run was stopped
        return
    handed: list[tuple[float, int]] = []  # on CLOCK_MONOTONIC, which every process shares

    def note(event: Event) -> None:
        if isinstance(event, Advanced):
            handed.append((time.monotonic(), event.frames))

    t0, cpu0, main0 = time.perf_counter(), time.process_time(), time.thread_time()
    try:
        run = timed_run(network, Path(source), scale, settings, options, dev, dt, chunks, note)
    except Exception as e:
        results.put(f"{type(e).__name__}: {e}")
        return
    main = time.thread_time() - main0
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    results.put((run.frames, wall, cpu, main, dict(run.waits), handed))  # a CopyRun's fields


def _network(
    upscaler: Upscaler | None, dev: torch.device
) -> tuple[torch.nn.Module, torch.dtype, Settings]:
    """The copy's network, its precision and settings: bicubic for the floor, else the model."""
    from skipsr_cli.measure.bench import ModelBeside, Resampler
    from skipsr_cli.run.options import resolve_dtype
    from skipsr_cli.weights import load_model

    if upscaler is None:
        return Resampler(), torch.float32, Settings()
    dt = resolve_dtype("auto", dev)
    net = load_model(
        upscaler.model,
        upscaler.weights,
        random_weights=upscaler.random_weights,
        device=dev,
        dtype=dt,
    )
    return (ModelBeside(net) if upscaler.bicubic_frames else net), dt, upscaler.settings
