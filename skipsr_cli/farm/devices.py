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
from dataclasses import replace
from pathlib import Path

import torch

from skipsr_cli.batch.workers import _die_with_parent
from skipsr_cli.errors import ModelError, OutputError, SkipSRError
from skipsr_cli.farm import parts as farm
from skipsr_cli.farm.ray import FRAMES_PER_PART, SegmentWorker
from skipsr_cli.media.joiner import source_timestamps
from skipsr_cli.run.options import UpscaleOptions


def upscale_on_devices(
    input: Path,
    output: Path,
    opts: UpscaleOptions,
    devices: list[torch.device],
    parts: int | None = None,
) -> int:
    """Render the segments on `devices`, a worker per entry (a device may repeat), and stitch them
    into `output`; returns the frame count."""
    total = len(source_timestamps(input)[0])
    parts = min(total, parts or max(len(devices), -(-total // FRAMES_PER_PART)))  # none empty
    devices = devices[:parts]
    with farm.parts_of_run(output, opts, parts) as opts:
        _render(input, output, opts, devices, parts, total)
        frames, _ = farm.stitch_run(output, input, opts)
    return frames


def _render(
    input: Path,
    output: Path,
    opts: UpscaleOptions,
    devices: list[torch.device],
    parts: int,
    total: int,
) -> None:
    """The parts not yet done, a worker process per entry of `devices` pulling the next."""
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for index in range(1, parts + 1):
        tasks.put(index)
    for _ in devices:
        tasks.put(None)
    each = replace(opts, segment=None, devices=None, workers=None)
    args = (each, str(input), str(output), parts, total, len(devices))
    workers = [
        ctx.Process(target=_worker, args=(str(d), *args, tasks, results, os.getpid()), daemon=True)
        for d in devices
    ]
    for worker in workers:
        worker.start()
    try:
        _collect(workers, results, parts)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # its writers remove their partial files
            worker.join(timeout=30)


def _collect(workers: list, results: mp.Queue, parts: int) -> None:
    done = 0
    while done < parts:
        try:
            kind, payload = results.get(timeout=0.5)
        except queue.Empty:
            if not any(w.is_alive() for w in workers) and results.empty():
                raise OutputError(f"the workers stopped with {parts - done} part(s) left") from None
            continue
        if kind == "fatal":
            raise ModelError(payload)
        if kind == "error":
            raise OutputError(payload)
        done += 1


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
) -> None:
    """Load the model once on `device`, with this worker's share of the host's cores among
    `sharing` workers, then render parts until the stop sign."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(device)  # as a batch's worker: the current device is its own
    try:
        worker = SegmentWorker(opts, torch.device(device), sharing)
    except SkipSRError as e:
        results.put(("fatal", f"{device}: {e}"))
        return
    for index in iter(tasks.get, None):
        try:
            results.put(("done", worker.render(input, output, index, parts, total)))
        except SkipSRError as e:
            results.put(("error", f"part {index} of {parts}: {e}"))
            return
