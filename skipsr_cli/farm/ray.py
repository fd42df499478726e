"""Segments, or the files of a folder batch, as Ray tasks on actors that keep the model loaded
(`skipsr[ray]`).

`ray.init` attaches to the cluster that `address` (or RAY_ADDRESS) names, or starts a local Ray on
this machine. One actor per GPU (one per CPU worker without GPUs) loads the model once and renders
part after part, or file after file, from a shared queue; a task that fails, or whose actor dies,
is retried (twice) on another. Every node must see the input and the output's folder at the same
paths (shared storage), as a farm's nodes do. Parts are the same files `--segment I/N` writes, so a
run that stopped is resumed by the next: finished parts whose manifests match are kept, and the
parts are stitched. A batch's files are run as the local workers run them (batch/workers.py):
each writes its done-record, so a rerun skips it, and one bad file fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import torch

from skipsr_cli.batch.plan import BatchItem
from skipsr_cli.batch.progress import FAILED, FileResult
from skipsr_cli.batch.workers import BatchKey, load_for, parse_devices, run_item
from skipsr_cli.errors import UsageError
from skipsr_cli.farm import parts as farm
from skipsr_cli.farm.segments import model_hash
from skipsr_cli.media.cpu_share import apply_cpu_share
from skipsr_cli.media.joiner import source_timestamps
from skipsr_cli.run.options import UpscaleOptions, load_network, resolve_device, resolve_dtype
from skipsr_cli.run.progress import Event, Summary

RETRIES = 2
FRAMES_PER_PART = 1200  # a part a GPU renders in well under a minute at 720p
_NO_ACTOR = "no Ray actor was left to run it"


class SegmentWorker:
    """A Ray actor (or a `--devices` worker): the model, loaded once on this actor's device, and
    parts rendered with it. It takes its share of the host's cores among the `sharing` workers on
    this host (media/cpu_share.py)."""

    def __init__(
        self, opts: UpscaleOptions, device: torch.device | None = None, sharing: int = 1
    ) -> None:
        self.opts = opts
        self.device = device or resolve_device("cuda" if torch.cuda.is_available() else "cpu")
        apply_cpu_share(sharing, self.device)
        self.dtype = resolve_dtype(opts.dtype, self.device)
        self.model = load_network(opts, self.device, self.dtype)
        self.weights = model_hash(self.model.state_dict())

    def render(self, input: str, output: str, index: int, count: int, total: int) -> int:
        """Part `index` of `count` of a video of `total` frames, unless it is done already."""
        summary = self.render_part(input, output, index, count, total)
        return summary if isinstance(summary, int) else summary.frames

    def render_part(
        self,
        input: str,
        output: str,
        index: int,
        count: int,
        total: int,
        progress: Callable[[Event], None] | None = None,
    ) -> Summary | int:
        """Part `index` as `render` does, its events to `progress`: its summary, or the frames
        of the part when an earlier run finished it."""
        opts = replace(self.opts, segment=f"{index}/{count}")
        done = farm.finished_part(Path(input), Path(output), opts, self.weights)
        if done is not None:
            return done
        return farm.render_segment(
            Path(input),
            Path(output),
            opts,
            lambda: self.model,
            self.device,
            self.dtype,
            progress or _quiet,
            total,
        )


class FileWorker:
    """A Ray actor of a folder batch: the batch's network (both ends of the blend with --denoise
    auto) loaded once on this actor's device, and files upscaled with it, one at a time."""

    def __init__(self, options: UpscaleOptions, key: BatchKey, sharing: int = 1) -> None:
        self.options, self.key = options, key
        device = parse_devices(None, "cuda" if torch.cuda.is_available() else "cpu")[0]
        apply_cpu_share(sharing, device)
        self.model = load_for(options, device)

    def run(self, index: int, item: BatchItem) -> tuple[int, FileResult]:
        return index, run_item(self.model, item, self.options, self.key, _quiet)


def _quiet(event: object) -> None:
    pass


def _start(address: str | None) -> tuple[ModuleType, int]:
    """Ray, attached or started, and the GPUs of its cluster."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'skipsr[ray]'") from None
    ray.init(
        address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False
    )
    return ray, int(ray.cluster_resources().get("GPU", 0))


def _actors_per_node(ray: ModuleType, actors: int) -> int:
    """How many actors share a node, for their share of its cores: all of them on one node (a
    local Ray); spread evenly over the live nodes of a cluster (Ray places them; an estimate)."""
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return -(-actors // max(1, nodes))


def ray_address(text: str) -> str | None:
    """The address for ray.init: none (a local Ray) for "local" or ""."""
    return None if text in ("", "local") else text


def upscale_on_ray(
    input: Path,
    output: Path,
    opts: UpscaleOptions,
    parts: int | None = None,
    address: str | None = None,
    workers: int | None = None,
) -> int:
    """Render the segments on Ray and stitch them into `output`; returns the frame count.
    `parts` defaults to a part per FRAMES_PER_PART frames, at least one per worker."""
    ray, gpus = _start(address)
    from ray.util import ActorPool

    count = workers or gpus or 1
    total = len(source_timestamps(input)[0])
    if parts is None:
        parts = max(count, -(-total // FRAMES_PER_PART))
    parts = min(parts, total)  # no empty part
    actor = ray.remote(
        num_gpus=1 if gpus else 0, num_cpus=1, max_restarts=RETRIES, max_task_retries=RETRIES
    )(SegmentWorker)
    actors = min(count, parts)
    sharing = _actors_per_node(ray, actors)
    with farm.parts_of_run(output, opts, parts) as opts:
        each = replace(opts, segment=None)
        pool = ActorPool([actor.remote(each, None, sharing) for _ in range(actors)])
        jobs = [(str(input), str(output), i, parts, total) for i in range(1, parts + 1)]
        for _ in pool.map_unordered(lambda a, job: a.render.remote(*job), jobs):
            pass
        frames, _ = farm.stitch_run(output, input, opts)
    return frames


def files_on_ray(
    todo: list[tuple[int, BatchItem]],
    options: UpscaleOptions,
    key: BatchKey,
    emit: Callable,
    address: str | None = None,
    workers: int | None = None,
) -> Iterator[tuple[int, FileResult]]:
    """A batch's files on Ray actors (a batch/run.py Runner): (index, result) as each file ends.
    A file whose task failed on every retry fails alone; an actor that is gone takes no more.
    The network is loaded here first, on the CPU, so that weights that cannot load are one error
    (exit 4), as with local workers, not a failure of every file."""
    load_for(options, torch.device("cpu"))
    ray, gpus = _start(address)
    actor = ray.remote(
        num_gpus=1 if gpus else 0, num_cpus=1, max_restarts=RETRIES, max_task_retries=RETRIES
    )(FileWorker)
    count = min(workers or gpus or 1, len(todo))
    sharing = _actors_per_node(ray, count)
    free = [actor.remote(options, key, sharing) for _ in range(count)]
    waiting, running = list(todo), {}
    while waiting or running:
        while waiting and free:
            index, item = waiting.pop(0)
            worker = free.pop()
            running[worker.run.remote(index, item)] = (worker, index, item)
        if not running:  # every actor is gone
            for index, item in waiting:
                yield index, FileResult(item.name, str(item.output), FAILED, error=_NO_ACTOR)
            return
        (done,), _ = ray.wait(list(running), num_returns=1)
        worker, index, item = running.pop(done)
        try:
            result = ray.get(done)
        except ray.exceptions.RayError as e:  # retried RETRIES times already
            error = f"its Ray task failed: {str(e).splitlines()[0]}"
            result = index, FileResult(item.name, str(item.output), FAILED, error=error)
            if isinstance(e, ray.exceptions.RayActorError):
                worker = None  # the actor is gone for good
        if worker is not None:
            free.append(worker)
        yield result
