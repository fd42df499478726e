"""One folder batch end to end: lock OUT_DIR, skip what is done, run the rest, summarise.

take OUT_DIR's lock (and clear partial files of killed runs)
-> skip the files whose done-record matches (unless overwriting)
-> run the others on the devices, the model loaded once per device (or on a runner the caller
   gives, such as Ray actors: farm/ray.py)
-> one FileResult per file, then the BatchSummary
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from models import SkipSR
from skipsr_cli.batch import records
from skipsr_cli.batch.plan import BatchItem
from skipsr_cli.batch.progress import (
    SKIPPED,
    BatchEvent,
    BatchStarted,
    BatchSummary,
    FileResult,
)
from skipsr_cli.batch.workers import BatchKey, load_for, run_inline, run_pool
from skipsr_cli.errors import OutputError, SkipSRError, UsageError
from skipsr_cli.media.cpu_share import apply_cpu_share
from skipsr_cli.media.image_io import IMAGE_SUFFIXES
from skipsr_cli.media.video_io import probe
from skipsr_cli.run.options import UpscaleOptions, for_loaded_model

Indexed = list[tuple[int, BatchItem]]
# Runs the files elsewhere (Ray): (files, options, key, emit) -> (index, result) as each ends.
Runner = Callable[[Indexed, UpscaleOptions, "BatchKey", Callable], Iterator[tuple[int, FileResult]]]


def run_batch(
    items: list[BatchItem],
    out_dir: Path,
    options: UpscaleOptions,
    *,
    devices: list[torch.device],
    model: SkipSR | None = None,
    emit: Callable[[BatchEvent], None],
    runner: Runner | None = None,
) -> BatchSummary:
    """Upscale every item not already done; one bad file never stops the others. `runner` runs
    the files instead of local workers on `devices` (Ray's actors, which load their own model)."""
    began = time.perf_counter()
    if model is not None and (len(devices) > 1 or runner is not None):
        raise UsageError(
            "a loaded model runs on its own device: pass devices or a model, not both, and name "
            "the weights for Ray's actors to load"
        )
    if model is not None:
        options = for_loaded_model(options)
    masks = [options.mask_out] if options.mask_out is not None else []
    # the folders this batch makes: those it leaves empty (stopped before their files) go again
    outputs = (p for item in items for p in (item.output, item.mask_out) if p is not None)
    made = records.missing_folders([out_dir, *masks, *(p.parent for p in outputs)])
    key = BatchKey(out_dir, records.options_key(options), weights_identity(options, model))
    for folder, what in ((out_dir, "output"), *((m, "mask") for m in masks)):
        try:  # an output that cannot be written (README, "Exit codes": 5)
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            records.remove_empty(made)  # the output folder, made before a mask folder failed
            raise OutputError(f"cannot make the {what} folder {folder}: {e.strerror or e}") from e
    results: dict[int, FileResult] = {}
    with records.batch_lock(out_dir, *masks, made=made):
        todo: Indexed = []
        for index, item in enumerate(items):
            if not options.overwrite and is_done(item, key):
                results[index] = FileResult(item.name, str(item.output), SKIPPED)
            else:
                todo.append((index, item))
        emit(BatchStarted(len(items), len(todo), total_frames(todo)))
        for result in results.values():
            emit(result)
        ran = (
            run_files(todo, options, devices, model, key, emit)
            if runner is None
            else (runner(todo, options, key, emit) if todo else iter(()))
        )
        for index, result in ran:
            results[index] = result
            emit(result)
    summary = BatchSummary(
        tuple(results[i] for i in range(len(items))), time.perf_counter() - began
    )
    emit(summary)
    return summary


def run_files(
    todo: Indexed,
    options: UpscaleOptions,
    devices: list[torch.device],
    model: SkipSR | None,
    key: BatchKey,
    emit: Callable,
) -> Iterator[tuple[int, FileResult]]:
    """The files to do: in this process on one device, else one worker process per device."""
    if not todo:
        return  # nothing to do: no model is even loaded
    devices = devices[: len(todo)]  # a worker per file at most: no model loaded for nothing
    if model is None and len(devices) > 1:
        yield from run_pool(devices, todo, options, key, emit)
        return
    apply_cpu_share(1, devices[0])  # alone: the libraries' choice, or SKIPSR_WORKER_THREADS's share
    net = model if model is not None else load_for(options, devices[0])
    yield from run_inline(net, todo, options, key, emit)


def is_done(item: BatchItem, key: BatchKey) -> bool:
    outputs = [p for p in (item.output, item.mask_out) if p is not None]
    record = records.record_path(key.out_dir, item.output)
    return records.is_done(record, item.input, outputs, key.options, key.weights)


def total_frames(todo: Indexed) -> int | None:
    """Frames of the files to do, as their containers say, a still's one (unreadable files count
    nothing); None where a video does not say, as a part of the total would end below the
    frames done."""
    total = 0
    for _, item in todo:
        if item.input.suffix.lower() in IMAGE_SUFFIXES:
            total += 1
            continue
        try:
            count = probe(item.input).frame_count
        except SkipSRError:
            continue
        if count is None:
            return None
        total += count
    return total or None


def weights_identity(options: UpscaleOptions, model: SkipSR | None) -> str:
    """What made the outputs: the weights file or random preset of the options, or, for a network
    loaded by the caller, a SHA-256 of its configuration and every parameter."""
    if model is None:
        return records.weights_identity(options)
    digest = hashlib.sha256(model.args.to_json().encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(
            tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes()
        )
    return f"model:{digest.hexdigest()}"
