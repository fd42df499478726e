"""One long video on several local workers (`--devices 0,1`, or `--workers N` spread over the
devices, two on one GPU included): each worker process loads the model once, with its share of the
host's cores (media/cpu_share.py), and renders the next segment; the parts are then stitched.

The parts are those of `--segment I/N` (farm/parts.py), in the hidden work folder beside the
output (removed once the output is in place) or in `--parts DIR` (kept), so the result equals a
one-device run, and a run that stopped is resumed by the next: finished parts whose manifests match
are kept. A part that fails ends the run with its error; the finished parts stay for the rerun.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from skipsr_cli import processes
from skipsr_cli.batch.workers import _stop
from skipsr_cli.errors import OutputError, SkipSRError
from skipsr_cli.farm import parts as farm
from skipsr_cli.farm.progress import WholeRun
from skipsr_cli.farm.ray import SegmentWorker
from skipsr_cli.farm.resume import part_count
from skipsr_cli.media.cpu_share import host_cores
from skipsr_cli.media.joiner import source_timestamps
from skipsr_cli.run.host_memory import host_bytes_available
from skipsr_cli.run.options import UpscaleOptions
from skipsr_cli.run.progress import Event, Summary

# Workers per GPU for one long video when --workers is not given. At 1440p and 4K the CPU's
# encoders, not the GPU, set the pace, and more of them at once use cores one leaves idle. On one
# H200 with 16 cores, a whole upscale of 4,800 frames at 720p -> 1440p (x264 medium) made
# 55.4 fps with 4 workers against 44.3 with 3 and 45.1 with 5, run in that order; run 3 then 4,
# 5,000 frames made 38.7 and 38.3 fps (BENCHMARKS.md, 2026-12-02): 3 and 4 are about equal once
# the parts are a multiple of the workers. Against 6 workers, in two calls of 3,600 frames run in
# both orders, 4 made 0.877 and 0.947 of the host's capacity and 6 made 0.971 and 0.910 (the
# second run of each call the faster). So a worker per 4 cores, at most 4 a GPU, as far as the
# GPU's memory and the host's available memory hold them (gpu_bytes_per_worker,
# host_bytes_per_worker).
CORES_PER_WORKER = 4
MOST_PER_GPU = 4
GIB = 2**30


def gpu_bytes_per_worker(out_size: tuple[int, int], model: int = 0) -> int:
    """GPU memory one worker may take at this output size (width, height) with a network of
    `model` bytes, with a margin: its CUDA context, the network (three times: a --denoise blend
    holds two sets while it makes the third), then its buffers, which grow with the pixels."""
    megapixels = out_size[0] * out_size[1] / 1e6
    return int(1.25 * ((1.0 + 1.1 * megapixels) * GIB + 3 * model))


def host_bytes_per_worker(out_size: tuple[int, int]) -> int:
    """Host memory one worker may take at this output size (width, height): its libraries and
    network, then its frames in flight, which grow with the pixels. Fitted to one process's peaks
    on one H200 host: 3.42 GiB at 2560x1440 and 5.74 GiB at 3840x2160 (BENCHMARKS.md,
    2026-11-30), above the 2.68 GiB a worker of a whole run took at 2560x1440 (2026-12-02)."""
    megapixels = out_size[0] * out_size[1] / 1e6
    return int((1.5 + 0.5 * megapixels) * GIB)


def model_bytes(opts: UpscaleOptions) -> int:
    """The network's weights in bytes: its file's size, or for random weights its parameters in
    bf16 (built on the meta device: no memory, no time)."""
    from models import PRESETS, SkipSR
    from skipsr_cli.weights import shipped_path

    if opts.weights is not None:
        return opts.weights.stat().st_size if opts.weights.is_file() else 0
    shipped = shipped_path(opts.model)
    if not opts.random_weights and shipped.is_file():
        return shipped.stat().st_size
    if opts.model not in PRESETS:
        return 0  # the loader names the error
    with torch.device("meta"):
        network = SkipSR(PRESETS[opts.model])
    return 2 * sum(p.numel() for p in network.parameters())


def workers_per_gpu(
    gpus: list[torch.device],
    out_size: tuple[int, int],
    model: int = 0,
    *,
    cores: int | None = None,
    gpu: int | None = None,
    host: int | None = None,
) -> int:
    """How many workers each of `gpus` takes by default (1 where any device is not CUDA) for a
    network of `model` bytes at this output size. The host's cores, the smallest GPU's memory and
    the host's available memory are read unless given."""
    if not gpus or any(d.type != "cuda" for d in gpus):
        return 1
    cores = host_cores() if cores is None else cores
    if gpu is None:  # a device query: no CUDA context in this process, which runs no model
        gpu = min(torch.cuda.get_device_properties(d).total_memory for d in gpus)
    host = host_bytes_available() if host is None else host
    most = min(MOST_PER_GPU, cores // (CORES_PER_WORKER * len(gpus)))
    most = min(most, gpu // gpu_bytes_per_worker(out_size, model))
    if host is not None:
        most = min(most, host // (host_bytes_per_worker(out_size) * len(gpus)))
    return max(1, most)


def upscale_on_devices(
    input: Path,
    output: Path,
    opts: UpscaleOptions,
    devices: list[torch.device],
    parts: int | None = None,
    progress: Callable[[Event], None] | None = None,
    total: int | None = None,
) -> Summary:
    """Render the segments on `devices`, a worker per entry (a device may repeat), and stitch them
    into `output`; `progress` sees it as one run (farm/progress.py). Returns its summary. `parts`
    defaults to the split of the parts a stopped run finished, else `resume.part_count`'s for
    these workers; `total` is the input's frame count where the caller counted it already."""
    began = time.perf_counter()
    total = len(source_timestamps(input)[0]) if total is None else total
    parts = (
        parts or farm.finished_split(input, output, opts, total) or part_count(total, len(devices))
    )
    parts = min(total, parts)  # none empty
    devices = devices[:parts]
    run = WholeRun(progress or _ignore, input, output, total, device_text(devices), began)
    with farm.parts_of_run(output, opts, parts) as opts:
        _render(input, output, opts, devices, parts, total, run)
        frames, warnings = farm.stitch_run(output, input, opts, parts)
    return run.finish(frames, warnings)


def device_text(devices: list[torch.device]) -> str:
    """The workers' devices in a word: "cuda:0 x3", "cuda:0, cuda:1"."""
    counts = Counter(str(d) for d in devices)
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in counts.items())


def _render(
    input: Path,
    output: Path,
    opts: UpscaleOptions,
    devices: list[torch.device],
    parts: int,
    total: int,
    run: WholeRun,
) -> None:
    """The parts not yet done, a worker process per entry of `devices` pulling the next. The
    parts are handed out once the first worker has loaded its weights: those an earlier run
    finished with the same weights are left out, so the run's total is the frames left."""
    ctx = processes.context()
    tasks, results = ctx.Queue(), ctx.Queue()
    each = replace(opts, segment=None, devices=None, workers=None)
    args = (each, str(input), str(output), parts, total, len(devices))
    tie = (os.getpid(), dict(os.environ))
    workers = [
        ctx.Process(target=_worker, args=(str(d), *args, tasks, results, *tie), daemon=True)
        for d in devices
    ]

    def hand_out(weights: str) -> int:
        todo, done = farm.parts_left(input, output, opts, parts, weights)
        run.skip(done)
        for index in todo:
            tasks.put(index)
        for _ in workers:
            tasks.put(None)
        return len(todo)

    try:
        for worker in workers:  # inside: a stop while they start stops those started
            worker.start()
        _collect(workers, results, hand_out, run)
    finally:
        _stop_workers([w for w in workers if w.pid is not None])


def _stop_workers(workers: list, seconds: float = 30.0) -> None:
    """SIGTERM each worker still running, again until it ends (one that had not yet set its
    handler may have missed the first), then SIGKILL those left after `seconds`. Each unwinds
    on SIGTERM: its writer removes its partial file."""
    deadline = time.monotonic() + seconds
    while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(timeout=0.2)
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join()


def _collect(
    workers: list, results: mp.Queue, hand_out: Callable[[str], int], run: WholeRun
) -> None:
    """The workers' messages until every part handed out is done: the first worker's weights
    hand the parts out, a part's events go to `run`, a part's error ends the run with its kind
    (a damaged input is exit 3), and a worker that dies ends it at once."""
    left = None  # parts not yet done; None until they are handed out
    while left != 0:
        try:
            kind, index, payload = results.get(timeout=0.5)
        except queue.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if dead or not any(w.is_alive() for w in workers) and results.empty():
                raise OutputError(
                    f"a worker process ended (exit code {dead[0] if dead else 0}) with parts left"
                ) from None
            continue
        if kind == "ready":
            if left is None:
                left = hand_out(payload)
        elif kind == "event":
            run.event(index, payload)
        elif kind == "error":
            cls, message = payload
            raise cls(message)
        else:  # "done"
            left -= 1


def _worker(
    device: str,
    opts: UpscaleOptions,
    input: str,
    output: str,
    parts: int,
    total: int,
    sharing: int,
    tasks: mp.Queue,
    results: mp.Queue,
    parent: int,
    environ: dict[str, str],
) -> None:
    """Load the model once on `device`, with this worker's share of the host's cores among
    `sharing` workers, say so with its weights' hash, then render parts until the stop sign,
    their events sent to the parent."""
    processes.begin_worker(parent, environ)
    signal.signal(signal.SIGTERM, lambda *_: _stop(results))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(device)  # as a batch's worker: the current device is its own
    try:
        worker = SegmentWorker(opts, torch.device(device), sharing)
    except SkipSRError as e:
        results.put(("error", 0, (type(e), f"{device}: {e}")))
        return
    results.put(("ready", 0, worker.weights))
    for index in iter(tasks.get, None):
        try:
            events = partial(_send, results, index)
            result = worker.render_part(input, output, index, parts, total, events)
        except SkipSRError as e:
            results.put(("error", index, (type(e), f"part {index} of {parts}: {e}")))
            return
        except Exception as e:  # a bug: exit 1, named, instead of a silent worker's death
            results.put(("error", index, (SkipSRError, f"part {index}: {type(e).__name__}: {e}")))
            return
        results.put(("done", index, result))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # nothing left to clean: a late stop just ends


def _send(results: mp.Queue, index: int, event: Event) -> None:
    results.put(("event", index, event))


def _ignore(event: Event) -> None:
    pass
