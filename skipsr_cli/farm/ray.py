"""Segments as Ray tasks on actors that keep the model loaded, then the stitch (`skipsr[ray]`).

`ray.init` attaches to the cluster that `address` (or RAY_ADDRESS) names, or starts a local Ray on
this machine. One actor per GPU (one per CPU worker without GPUs) loads the model once and renders
part after part from a shared queue; a task that fails, or whose actor dies, is retried (twice)
on another. Every node must see the input and the output's folder at the same paths (shared
storage), as a farm's nodes do. Parts are the same files `--segment I/N` writes, so a run that
stopped is resumed by the next: finished parts whose manifests match are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import torch

from skipsr_cli.errors import UsageError
from skipsr_cli.farm import parts as farm
from skipsr_cli.farm.segments import model_hash
from skipsr_cli.media.cpu_share import apply_cpu_share
from skipsr_cli.media.joiner import source_timestamps
from skipsr_cli.run.options import UpscaleOptions, load_network, resolve_device, resolve_dtype
from skipsr_cli.run.progress import Event, Summary

RETRIES = 2
FRAMES_PER_PART = 1200  # a part a GPU renders in well under a minute at 720p


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


def _quiet(event: object) -> None:
    pass


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
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'skipsr[ray]'") from None
    ray.init(
        address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False
    )
    gpus = int(ray.cluster_resources().get("GPU", 0))
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
