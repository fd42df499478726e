"""The files of a batch on one or more devices, each with its model loaded once and kept warm.

One worker: the files run one after another in this process, on one model. Several workers
(`--devices 0,1`, `all`, `cpu,cpu`, or `--workers N` spread over the devices, two on one GPU
included): each worker process (started by skipsr_cli/processes.py, so no CUDA state is forked)
loads the model once and pulls the next file from a shared queue, so a fast device simply takes
more files, with its share of the host's cores (media/cpu_share.py). Every file runs in its own
try/except: one bad file never stops the batch. A worker that dies (killed, out of host memory)
fails only the file it held.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from models import SkipSR
from skipsr_cli import processes, weights
from skipsr_cli.batch import records
from skipsr_cli.batch.plan import BatchItem
from skipsr_cli.batch.progress import FAILED, FileProgress, FileResult
from skipsr_cli.errors import ModelError, SkipSRError, UsageError
from skipsr_cli.media.cpu_share import apply_cpu_share
from skipsr_cli.media.partials import note_placing
from skipsr_cli.run import pipeline
from skipsr_cli.run.host_memory import check_host_memory
from skipsr_cli.run.options import (
    AUTO,
    UpscaleOptions,
    check_options,
    effective_denoise,
    job_of,
    load_network,
    resolve_device,
    resolve_dtype,
    with_denoise_for,
)
from skipsr_cli.run.progress import Placing, Summary

Emit = Callable[[FileProgress], None]


@dataclass(frozen=True)
class BatchKey:
    """What a done-record must match: the output-changing options and the weights' identity."""

    out_dir: Path
    options: dict
    weights: str


def parse_devices(text: str | None, default: str | torch.device = "auto") -> list[torch.device]:
    """`0,1` (CUDA indices), `cuda:0,cuda:1`, `all` (every GPU), `cpu,cpu`; None: `default`.
    Every CUDA device comes back with its index (plain `cuda` is the current one)."""
    if text is None:
        return [_indexed(resolve_device(default))]
    if text.strip() == "all":
        count = torch.cuda.device_count()
        return [torch.device(f"cuda:{i}") for i in range(count)] or [torch.device("cpu")]
    devices = []
    for part in (p.strip() for p in text.split(",")):
        name = f"cuda:{part}" if part.isdigit() else part
        try:
            device = torch.device(name)
        except RuntimeError:
            raise UsageError(f"--devices {text}: {part!r} is not a device") from None
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise UsageError(f"--devices {text}: there is no CUDA device {part}")
        devices.append(_indexed(device))
    return devices


def local_workers(
    devices: str | None, workers: int | None = None, default: str | torch.device = "auto"
) -> list[torch.device]:
    """The device of each local worker process: `workers` of them (default: one per device)
    spread round-robin over `devices` (as parse_devices reads it), so `0,1` with 4 workers is
    cuda:0, cuda:1, cuda:0, cuda:1. Several workers on one GPU run several encoders at once."""
    found = parse_devices(devices, default)
    if workers is None:
        return found
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    if workers < len(found):  # only a list of several devices: None is one
        raise UsageError(
            f"--workers {workers} is fewer than the {len(found)} devices of --devices {devices}: "
            "give at least one worker per device"
        )
    return [found[i % len(found)] for i in range(workers)]


def _indexed(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def load_for(options: UpscaleOptions, device: torch.device) -> SkipSR | weights.Blends:
    """The batch's network, loaded once on one device; with --denoise auto, both ends of the
    blend, each file then getting its own amount (`run_item`)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dtype = resolve_dtype(options.dtype, device)
    denoise = effective_denoise(options)
    if denoise != AUTO:
        return load_network(replace(options, denoise=denoise), device, dtype)
    return weights.Blends(
        options.model,
        options.weights,
        device=device,
        dtype=dtype,
        denoise_weights=options.denoise_weights,
    )


def check_for(options: UpscaleOptions) -> None:
    """The ModelError that `load_for` would raise, found without loading the network (a Ray
    driver hands files out but runs none): --denoise auto checks both ends of the blend."""
    resolve_dtype(options.dtype, torch.device("cpu"))  # a precision that is no precision
    denoise = effective_denoise(options)
    weights.check_model(
        options.model,
        options.weights,
        random_weights=options.random_weights,
        denoise=1.0 if denoise == AUTO else float(denoise),
        denoise_weights=options.denoise_weights,
    )


def run_item(
    model: SkipSR | weights.Blends,
    item: BatchItem,
    options: UpscaleOptions,
    key: BatchKey,
    emit: Callable,
) -> FileResult:
    """One file of the batch, never raising (but for Ctrl-C and SIGTERM): its result says."""
    began = time.perf_counter()
    record = records.record_path(key.out_dir, item.output)
    claim = records.claim_path(key.out_dir, item.output)
    # an output this batch made from this input (its record says so, or it is the file a killed
    # run's claim put in place) is ours to replace
    ours = records.made_from(record, item.input) or records.claimed_for(claim, item.input)
    opts = replace(options, mask_out=item.mask_out, overwrite=options.overwrite or ours)
    try:
        check_options(item.input, opts)
        opts = with_denoise_for(opts, item.input)  # auto: this file's own amount
        for path in (item.output, item.mask_out):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        plan = pipeline.prepare(job_of(item.input, item.output, opts))
        net = model.at(opts.denoise) if isinstance(model, weights.Blends) else model
        param = next(net.parameters())
        check_host_memory(plan.out_size, param.device.type == "cpu", opts.chunk_frames)
        outputs = [p for p in (item.output, item.mask_out) if p is not None]
        run = lambda events: pipeline.upscale(net, plan, param.device, param.dtype, events)  # noqa: E731
        summary = _claimed(claim, item, key, run, emit)
        made = records.make_record(item.input, outputs, key.options, key.weights)
        records.write_record(record, made)
        claim.unlink(missing_ok=True)
        return FileResult.of(item.name, summary)
    except SkipSRError as e:
        error = str(e)
    except Exception as e:  # a bug on one file: said plainly, and the batch goes on
        error = f"internal error: {type(e).__name__}: {e}"
    seconds = round(time.perf_counter() - began, 3)
    return FileResult(item.name, str(item.output), FAILED, seconds=seconds, error=error)


def _claimed(
    claim: Path,
    item: BatchItem,
    key: BatchKey,
    upscale: Callable[[Callable], Summary],
    emit: Callable,
) -> Summary:
    """`upscale(events)` with its outputs claimed. Just before the pipeline puts them in place it
    says what they will be there (`Placing`), and the claim takes that down, so a rerun after a
    kill can tell them (`records.claim_holds`). A run that fails or is stopped leaves a claim
    that holds nothing of another's: the batch removes it when it lets go of its lock."""
    held = records.held_outputs(claim)  # a killed run's outputs, ours until replaced
    records.write_record(claim, records.claim_record(item.input, key.options, key.weights, held))

    def events(event: object) -> None:
        if isinstance(event, Placing):
            records.place_claim(claim, event.outputs)
        emit(event)

    return upscale(events)


def run_inline(
    model: SkipSR | weights.Blends,
    items: list[tuple[int, BatchItem]],
    options: UpscaleOptions,
    key: BatchKey,
    emit: Emit,
) -> Iterator[tuple[int, FileResult]]:
    """Every file in this process, one after another, on one warm model."""
    for index, item in items:
        forward = _forwarder(emit, index, item.name)
        yield index, run_item(model, item, options, key, forward)


def _forwarder(emit: Emit, index: int, name: str) -> Callable:
    return lambda event: emit(FileProgress(index, name, event))


def run_pool(
    devices: list[torch.device],
    items: list[tuple[int, BatchItem]],
    options: UpscaleOptions,
    key: BatchKey,
    emit: Emit,
) -> Iterator[tuple[int, FileResult]]:
    """One spawned worker per entry of `devices` (a device may repeat) pulls the next file;
    results come back as they finish."""
    ctx = processes.context()
    began = time.time_ns()
    tasks, results = ctx.Queue(), ctx.Queue()
    for task in items:
        tasks.put(task)
    for _ in devices:
        tasks.put(None)  # one stop sign per worker
    tie = (os.getpid(), dict(os.environ))
    workers = [
        ctx.Process(
            target=_worker,
            args=(str(device), options, key, tasks, results, *tie, len(devices)),
            name=f"skipsr-worker-{i}",
            daemon=True,
        )
        for i, device in enumerate(devices)
    ]
    for worker in workers:
        worker.start()
    ended = False
    try:
        yield from _collect(workers, dict(items), results, emit)
        ended = True
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: its writers remove their partial files
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()  # stuck: the next batch clears what it left
                worker.join()
        _drain(results, dict(items))
        if not ended:  # stopped: what a worker put in place after its last message
            note_claimed(key, dict(items), began)


def _note_placing(payload: object, items: dict[int, BatchItem]) -> None:
    """A worker's outputs about to go into place, kept in this process's `partials.placements`
    too: a batch stopped afterwards names the files its workers wrote, not only its own."""
    if not isinstance(payload, FileProgress) or not isinstance(payload.event, Placing):
        return
    ids = payload.event.outputs
    item = items.get(payload.index)
    shown = [] if item is None else [p for p in (item.output, item.mask_out) if p is not None]
    note_placing(ids, shown if len(shown) == len(ids) else None)


def _drain(results: mp.Queue, items: dict[int, BatchItem]) -> None:
    """The workers' last messages, read once they are gone, for the outputs a stopped worker put
    in place after the batch stopped reading (its stop waits until they are all in place)."""
    while True:
        try:
            _, kind, payload = results.get_nowait()
        except (queue.Empty, OSError, EOFError, ValueError):
            return
        if kind == "event":
            _note_placing(payload, items)


CLOCK_SLACK_NS = 2_000_000_000  # a file system with a coarse clock stamps a file up to this early


def note_claimed(
    key: BatchKey,
    items: dict[int, BatchItem],
    since: int,
    shown: dict[int, BatchItem] | None = None,
) -> None:
    """The outputs in place that the workers' claims took down (`records.place_claim`, on disk
    before the renames) and whose record never came: a message can be lost as a stopped worker
    exits, a claim cannot. A claim goes once its file's record is written; one that an earlier,
    killed batch left holds outputs written before `since` (the batch's start, ns), which are not
    this batch's. `shown` gives each file's outputs as the batch named them (default: `items`')."""
    since -= CLOCK_SLACK_NS
    for index, item in items.items():
        claim = records.claim_path(key.out_dir, item.output)
        held = [h for h in records.held_outputs(claim) if h[3] >= since]
        if held:
            named = (shown or items)[index]
            paths = zip((item.output, item.mask_out), (named.output, named.mask_out), strict=True)
            names = {str(p.parent.resolve() / p.name): n for p, n in paths if p is not None}
            note_placing([tuple(h) for h in held], [names.get(h[0], h[0]) for h in held])


def _collect(
    workers: list, items: dict[int, BatchItem], results: mp.Queue, emit: Emit
) -> Iterator[tuple[int, FileResult]]:
    """Messages from the workers until every file has a result, or no worker is left."""
    holding: dict[str, int] = {}  # worker name -> the file it works on
    left = set(items)
    while left:
        try:
            name, kind, payload = results.get(timeout=0.5)
        except queue.Empty:
            for worker in workers:
                if not worker.is_alive() and worker.name in holding:
                    index = holding.pop(worker.name)
                    left.discard(index)
                    error = f"the worker died (exit code {worker.exitcode}) during this file"
                    yield index, _failed(items[index], error)
            if not any(w.is_alive() for w in workers) and results.empty():
                for index in sorted(left):
                    yield index, _failed(items[index], "no worker was left to run it")
                return
            continue
        if kind == "fatal":
            raise ModelError(payload)
        if kind == "start":
            holding[name] = payload
        elif kind == "event":
            _note_placing(payload, items)
            emit(payload)
        elif kind == "result":
            index, result = payload
            holding.pop(name, None)
            left.discard(index)
            yield index, result


def _failed(item: BatchItem, error: str) -> FileResult:
    return FileResult(item.name, str(item.output), FAILED, error=error)


def _worker(
    device: str,
    options: UpscaleOptions,
    key: BatchKey,
    tasks: mp.Queue,
    results: mp.Queue,
    parent: int,
    environ: dict[str, str],
    sharing: int,
) -> None:
    """A worker process, one of `sharing` on this host: take its share of the host's cores, load
    the model once, then upscale files until the stop sign."""
    processes.begin_worker(parent, environ)
    signal.signal(signal.SIGTERM, lambda *_: _stop(results))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the batch, which stops us
    name = mp.current_process().name
    try:
        apply_cpu_share(sharing, device)
        model = load_for(options, torch.device(device))
    except SkipSRError as e:
        results.put((name, "fatal", f"{device}: {e}"))
    else:
        for index, item in iter(tasks.get, None):
            if not processes.parent_alive(parent):
                break  # the batch is gone: nobody would read the result
            results.put((name, "start", index))
            forward = _forwarder(lambda e: results.put((name, "event", e)), index, item.name)
            results.put((name, "result", (index, run_item(model, item, options, key, forward))))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # nothing left to clean: a late stop just ends


def _stop(results: mp.Queue) -> None:
    """SIGTERM from the batch: unwind (the writers remove their partial files) and exit, without
    waiting to flush messages the batch no longer reads. A second SIGTERM (the group's, then the
    batch's own) is ignored while it unwinds."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    results.cancel_join_thread()
    sys.exit(143)
