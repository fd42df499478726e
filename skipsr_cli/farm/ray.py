"""Segments, or the files of a folder batch, as Ray tasks on actors that keep the model loaded
(`skipsr[ray]`).

`ray.init` attaches to the cluster that `address` (or RAY_ADDRESS) names, or starts a local Ray on
this machine. One actor per GPU (one in all without GPUs, or `--workers N`, several sharing a GPU
where N exceeds them) loads the model once and renders part after part, or file after file, from a
shared queue. Ray restarts no actor and retries no task: the driver does (`_schedule`), so that
each retry is said (a warning, and a part's `attempts` in the timeline) and bounded: a part or file
whose actor died, or whose task failed, goes to another actor, ATTEMPTS times at most. Every
node must see the input and the output's folder at the same paths (shared storage), as a farm's
nodes do. Parts are the same files `--segment I/N` writes, so a run that stopped is resumed by the
next: finished parts whose manifests match are kept, and the parts are stitched. A batch's files
are run as the local workers run them (batch/workers.py): each writes its done-record, so a rerun
skips it, and one bad file fails alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from skipsr_cli.batch.plan import BatchItem
from skipsr_cli.batch.progress import FAILED, FileResult
from skipsr_cli.batch.workers import BatchKey, check_for, load_for, parse_devices, run_item
from skipsr_cli.errors import ModelError, OutputError, SkipSRError, UsageError
from skipsr_cli.farm import parts as farm
from skipsr_cli.farm.progress import WholeRun
from skipsr_cli.farm.resume import part_count
from skipsr_cli.farm.segments import model_hash
from skipsr_cli.media.cpu_share import apply_cpu_share, host_cores
from skipsr_cli.media.joiner import source_timestamps
from skipsr_cli.run.options import UpscaleOptions, load_network, resolve_dtype
from skipsr_cli.run.progress import Event, Summary

ATTEMPTS = 3  # a part or file is sent to a fresh actor at most this many times in all
CONNECT_S = 10  # to reach a named cluster's head before Ray is asked to attach


class SegmentWorker:
    """A Ray actor (or a `--devices` worker): the model, loaded once on this actor's device, and
    parts rendered with it. It takes its share of the host's cores among the `sharing` workers on
    this host (media/cpu_share.py)."""

    def __init__(
        self, opts: UpscaleOptions, device: torch.device | None = None, sharing: int = 1
    ) -> None:
        self.opts = opts
        self.device = _take_device(opts, sharing, device)
        self.dtype = resolve_dtype(opts.dtype, self.device)
        self.model = load_network(opts, self.device, self.dtype)
        self.weights = model_hash(self.model.state_dict())

    def ready(self) -> bool:
        """Answers once the model is loaded: the driver waits for it before sending a part."""
        return True

    def render(
        self, input: str, output: str, index: int, count: int, total: int
    ) -> tuple[int, Summary | int]:
        """Part `index` of `count` of a video of `total` frames, unless it is done already:
        `index` and the part's summary, or its frames where an earlier run finished it."""
        return index, self.render_part(input, output, index, count, total)

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
        self.model = load_for(options, _take_device(options, sharing))

    def ready(self) -> bool:
        """Answers once the network is loaded: the driver waits for it before sending a file."""
        return True

    def run(self, index: int, item: BatchItem) -> tuple[int, FileResult]:
        return index, run_item(self.model, item, self.options, self.key, _quiet)


def _quiet(event: object) -> None:
    pass


def _take_device(
    options: UpscaleOptions, sharing: int, device: torch.device | None = None
) -> torch.device:
    """A worker's device (given, or an actor's: _actor_device), with its share of the host's
    cores among `sharing` workers; one alone on the CPU uses every core (Ray starts an actor of
    one CPU with torch on one thread)."""
    device = device or parse_devices(None, _actor_device(options))[0]
    if apply_cpu_share(sharing, device) is None and device.type == "cpu":
        torch.set_num_threads(host_cores())
    return device


def _actor_device(options: UpscaleOptions) -> str:
    """cpu where the run asks for it, else a GPU where the actor has one."""
    if str(options.device) == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _actor_resources(ray: ModuleType, gpus: int, count: int, cpu_only: bool) -> dict:
    """What each of `count` actors asks Ray for, so that all of them can be placed at once: a
    GPU each, or a share of one where there are more actors than GPUs; else a share of the
    cluster's CPUs (at most one each)."""
    if gpus and not cpu_only:
        return {"num_gpus": min(1.0, gpus / count), "num_cpus": 0}
    cpus = ray.cluster_resources().get("CPU", 1)
    return {"num_gpus": 0, "num_cpus": min(1.0, cpus / count)}


def _reason(text: str) -> str:
    """`text` on one line, without its line breaks, not too long."""
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _why(ray: ModuleType, error: BaseException) -> str:
    """What became of a task, from Ray's error, in a few words: the task's own exception, or
    why its actor died (Ray's first line and its worker's exit detail, not its advice)."""
    cause = getattr(error, "cause", None)
    if isinstance(error, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        return f"its Ray task failed ({_reason(f'{type(cause).__name__}: {cause}')})"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [repr(error)]
    if not isinstance(error, ray.exceptions.RayActorError):
        return f"its Ray task failed ({_reason(lines[0])})"
    if getattr(error, "actor_init_failed", False):
        return f"its Ray actor could not start ({_reason(lines[-1])})"  # the raised exception
    detail = re.search(r"Worker exit detail: (.+?\.)(\s|$)", str(error))
    said = lines[0].rstrip(".") + (f": {detail[1]}" if detail else "")
    return f"its Ray actor died ({_reason(said)})"


@dataclass(frozen=True)
class _Failed:
    """A task that ended without a result: by our own error (`own`: not retried, it would fail
    the same way), or by Ray's (an actor that died, a task that failed) on its last attempt."""

    why: str
    own: SkipSRError | None = None


class _Crew:
    """The actors of one run. Ray restarts none of them and retries none of their tasks
    (max_restarts=0, max_task_retries=0): the driver starts each one, waits until it has loaded
    its model, and replaces one whose task failed, so that every retry is seen here."""

    def __init__(self, ray: ModuleType, actor: Any, args: tuple) -> None:
        self.ray, self.actor, self.args = ray, actor, args
        self.started: list = []

    def start(self, count: int) -> list:
        """`count` fresh actors, each ready: one that cannot load the model is that error here
        (our own, such as weights its node cannot read, else a model error: exit 4), before any
        work is sent to it, not a task that fails on every retry."""
        actors = [self.actor.remote(*self.args) for _ in range(count)]
        self.started += actors
        try:
            self.ray.get([a.ready.remote() for a in actors])
        except self.ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, SkipSRError):
                raise cause from e
            raise ModelError(f"a Ray actor could not load the model: {_why(self.ray, e)}") from e
        return actors

    def drop(self, actor: Any) -> None:
        with contextlib.suppress(Exception):  # dead already
            self.ray.kill(actor, no_restart=True)

    def stop(self) -> None:
        """Kill every actor started, so that none writes after the run has ended or failed."""
        for actor in self.started:
            self.drop(actor)


def _schedule(
    crew: _Crew,
    count: int,
    jobs: list,
    call: Callable[[Any, Any], Any],
    retried: Callable[[Any, int, str], None],
) -> Iterator[tuple[Any, int, Any]]:
    """Each of `jobs` sent to one of `count` actors (`call(actor, job)`: its object ref), and
    (job, attempts, result) as each ends. A job whose actor died, or whose task failed other than
    by our own error, is sent again (`retried(job, attempt, why)` hears it first), ATTEMPTS times
    at most in all, to an actor left idle or else to a fresh one in place of the one dropped;
    after its last attempt, or on our own error, its result is _Failed."""
    ray = crew.ray
    free = crew.start(count)
    waiting = [(job, 1) for job in jobs]
    running: dict = {}
    while waiting or running:
        while waiting and (free or len(running) < count):
            job, attempt = waiting.pop(0)
            actor = free.pop() if free else crew.start(1)[0]  # one in place of an actor dropped
            running[call(actor, job)] = (actor, job, attempt)
        (done,), _ = ray.wait(list(running), num_returns=1)
        actor, job, attempt = running.pop(done)
        try:
            result = ray.get(done)
        except ray.exceptions.RayError as e:
            own = getattr(e, "cause", None)
            if isinstance(e, ray.exceptions.RayTaskError) and isinstance(own, SkipSRError):
                free.append(actor)  # the actor is well: the part or file could not be done
                yield job, attempt, _Failed(str(own), own)
                continue
            crew.drop(actor)  # dead, or in a state not to trust with more work
            why = _why(ray, e)
            if attempt >= ATTEMPTS:
                yield job, attempt, _Failed(why)
                continue
            retried(job, attempt + 1, why)
            waiting.insert(0, (job, attempt + 1))
            continue
        free.append(actor)
        yield job, attempt, result


def _start(options: UpscaleOptions, address: str | None) -> tuple[UpscaleOptions, ModuleType, int]:
    """The options for the actors (their weights checked here, before Ray starts, and named by
    absolute paths), Ray attached or started, and the GPUs of its cluster."""
    check_for(options)
    options = _weights_whole(options)
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'skipsr[ray]'") from None
    _attach(ray, address)
    return options, ray, int(ray.cluster_resources().get("GPU", 0))


def _attach(ray: ModuleType, address: str | None) -> None:
    """`ray.init`, with a cluster that cannot be reached said in one line (exit 2), not as a wait
    without end (an address where nothing listens) or a traceback (a refused connection)."""
    # "local" starts a Ray of its own; none, or "auto", may take RAY_ADDRESS's
    target = None if address == "local" else address
    target = os.environ.get("RAY_ADDRESS") if target in (None, "auto") else target
    endpoint = _host_port(target)
    if endpoint is not None:
        try:
            socket.create_connection(endpoint, timeout=CONNECT_S).close()
        except OSError as e:
            raise UsageError(f"--ray: cannot reach Ray at {target}: {e.strerror or e}") from None
    try:
        ray.init(
            address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False
        )
    except ConnectionError as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(
            f"--ray: cannot connect to Ray at {target or 'this machine'}: {reason}"
        ) from None


def runs_here(address: str | None) -> bool:
    """Whether Ray's actors surely run on this machine, so that this host's limits are theirs:
    `--ray local`, a Ray of its own here (an address or RAY_ADDRESS names a cluster, whose nodes
    may be others; none, or auto, may attach to a cluster started here with other nodes)."""
    return address == "local"


def _host_port(address: str | None) -> tuple[str, int] | None:
    """(host, port) of an address such as 10.0.0.5:6379 or ray://head:10001; None for others."""
    if not address:
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [fd00::5]:6379
    return (host, int(port)) if host and port.isdigit() else None


def _actors_per_node(ray: ModuleType, actors: int) -> int:
    """How many actors share a node, for their share of its cores: all of them on one node (a
    local Ray); spread evenly over the live nodes of a cluster (Ray places them; an estimate)."""
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return -(-actors // max(1, nodes))


def ray_address(text: str) -> str | None:
    """The address for ray.init: "local" starts a Ray of its own on this machine, also where
    one runs already; "" is none (RAY_ADDRESS's cluster, else a local Ray)."""
    return None if text == "" else text


def upscale_on_ray(
    input: Path,
    output: Path,
    opts: UpscaleOptions,
    parts: int | None = None,
    address: str | None = None,
    workers: int | None = None,
    progress: Callable[[Event], None] | None = None,
) -> Summary:
    """Render the segments on Ray and stitch them into `output`; returns the whole run's summary
    (its parts' and the stitch's warnings included), which `progress` sees at the end: the actors
    send no events while they render, so a part's start and first frames are not known here.
    `parts` defaults to the split of the parts a stopped run finished, else `resume.part_count`'s
    for its actors. Weights that cannot load are one error (exit 4) before Ray starts, not a
    failure of every actor."""
    began = time.perf_counter()
    opts, ray, gpus = _start(opts, address)
    count = workers or gpus or 1
    total = len(source_timestamps(input)[0])
    if parts is None:
        parts = farm.finished_split(input, output, opts, total) or part_count(total, count)
    parts = min(parts, total)  # no empty part
    actors = min(count, parts)
    cpu_only = _actor_device(opts) == "cpu"
    actor = _actor_class(ray, SegmentWorker, gpus, actors, cpu_only)
    run = WholeRun(progress or _quiet, input, output, total, f"Ray, {actors} actor(s)", began)
    with farm.parts_of_run(output, opts, parts) as opts:
        crew = _Crew(ray, actor, (replace(opts, segment=None), None, _actors_per_node(ray, actors)))
        jobs = [(str(input), str(output), i, parts, total) for i in range(1, parts + 1)]

        def retried(job: tuple, attempt: int, why: str) -> None:
            said = f"part {job[2]} of {parts}: {why}; rendering it again (attempt {attempt})"
            run.retried(job[2], attempt, said)

        try:
            for job, attempts, part in _schedule(
                crew, actors, jobs, lambda a, job: a.render.remote(*job), retried
            ):
                _part_ended(run, job[2], parts, attempts, part)
        finally:
            crew.stop()
        frames, warnings = farm.stitch_run(output, input, opts, parts)
    return run.finish(frames, warnings)


def _part_ended(run: WholeRun, index: int, parts: int, attempts: int, part: Any) -> None:
    """A part's end, from its actor: its summary, or its frames where an earlier run finished
    it, or its failure: our own error as it is (a size its node cannot hold, an output it cannot
    write: its one line and exit code, not Ray's wrapping of it), Ray's after the last attempt
    as an output error naming the part (exit 5)."""
    if isinstance(part, _Failed):
        if part.own is not None:
            raise part.own
        tried = f"each of its {attempts} attempts" if attempts > 1 else "its one attempt"
        raise OutputError(f"part {index} of {parts} failed on {tried}: {part.why}")
    _, result = part
    if isinstance(result, Summary):
        run.event(index, result)
    else:  # finished by an earlier run
        run.skip(result)


def files_on_ray(
    todo: list[tuple[int, BatchItem]],
    options: UpscaleOptions,
    key: BatchKey,
    emit: Callable,
    address: str | None = None,
    workers: int | None = None,
) -> Iterator[tuple[int, FileResult]]:
    """A batch's files on Ray actors (a batch/run.py Runner): (index, result) as each file ends.

    The weights are checked here first, from their files' headers (no network is loaded here),
    so that weights that cannot load are one error (exit 4), as with local workers, not a
    failure of every file; an actor that cannot load the network is that error too. Paths go to
    the actors whole (a cluster's actors do not share this working folder). A file whose actor
    died is upscaled again by a fresh actor (a warning of the file's says so), and fails alone
    after ATTEMPTS. The actors are killed before this returns or is stopped (Ctrl-C), so none
    writes into the output folder after the batch has let go of its lock."""
    options, ray, gpus = _start(options, address)
    count = min(workers or gpus or 1, len(todo))
    actor = _actor_class(ray, FileWorker, gpus, count, _actor_device(options) == "cpu")
    key = replace(key, out_dir=key.out_dir.resolve())
    crew = _Crew(ray, actor, (options, key, _actors_per_node(ray, count)))
    said: dict[int, list[str]] = {}  # file index -> the warnings of its retries

    def retried(job: tuple[int, BatchItem], attempt: int, why: str) -> None:
        said.setdefault(job[0], []).append(f"{why}; upscaling it again (attempt {attempt})")

    try:
        jobs = [_whole(task) for task in todo]
        for (index, item), tries, ended in _schedule(
            crew, count, jobs, lambda a, job: a.run.remote(*job), retried
        ):
            if isinstance(ended, _Failed):
                error = ended.why if ended.own else f"{ended.why}, on each of its {tries} attempts"
                result = FileResult(item.name, str(item.output), FAILED, error=error)
            else:
                result = ended[1]
            notes = tuple(said.pop(index, ()))
            yield index, replace(result, warnings=notes + result.warnings)
    finally:
        crew.stop()


def _actor_class(ray: ModuleType, worker: type, gpus: int, count: int, cpu_only: bool) -> Any:
    """`worker` as a Ray actor class that Ray never restarts nor retries (see _Crew)."""
    resources = _actor_resources(ray, gpus, count, cpu_only)
    return ray.remote(max_restarts=0, max_task_retries=0, **resources)(worker)


def _weights_whole(options: UpscaleOptions) -> UpscaleOptions:
    """The options with their weights files as absolute paths: an actor on another node does not
    share this process's working folder (records and manifests ignore the paths)."""
    whole = lambda path: path.resolve() if path is not None else None  # noqa: E731
    return replace(
        options, weights=whole(options.weights), denoise_weights=whole(options.denoise_weights)
    )


def _whole(task: tuple[int, BatchItem]) -> tuple[int, BatchItem]:
    index, item = task
    mask = item.mask_out.resolve() if item.mask_out is not None else None
    return index, replace(
        item, input=item.input.resolve(), output=item.output.resolve(), mask_out=mask
    )
