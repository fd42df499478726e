"""Segments, or the files of a folder batch, as Ray tasks on actors that keep the model loaded
(`skipsr[ray]`).

`ray.init` attaches to the cluster that `address` (or RAY_ADDRESS) names, or starts a local Ray on
this machine. One actor per GPU (one in all without GPUs, or `--workers N`, several sharing a GPU
where N exceeds them) loads the model once and renders part after part, or file after file, from a
shared queue. Ray restarts no actor and retries no task: the driver does (farm/ray_crew.py), so
that each retry is said (a warning, and a part's `attempts` in the timeline) and bounded: a part
or file whose actor died, or whose task failed, goes to another actor, ATTEMPTS times at most.
The actor that died is replaced without stopping the run: the actors left keep taking the queued
work while the fresh one is placed, and one not ready within PLACE_S (120 s; its node lost, and
every other GPU held by the run's live actors) is killed, the run going on with the actors it
has. Only where no actor is left alive and none can be placed does the run fail, naming the parts
not rendered (exit 5), or each file not upscaled failing alone, with why. Every
node must see the input and the output's folder at the same paths (shared storage), as a farm's
nodes do. Parts are the same files `--segment I/N` writes, so a run that stopped is resumed by the
next: finished parts whose manifests match are kept, and the parts are stitched. A batch's files
are run as the local workers run them (batch/workers.py): each writes its done-record, so a rerun
skips it, and one bad file fails alone.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from skipsr_cli.batch.plan import BatchItem
from skipsr_cli.batch.progress import DONE, FAILED, FileProgress, FileResult
from skipsr_cli.batch.workers import (
    BatchKey,
    check_for,
    load_for,
    note_claimed,
    parse_devices,
    run_item,
)
from skipsr_cli.errors import OutputError, UsageError
from skipsr_cli.farm import parts as farm
from skipsr_cli.farm import ray_progress
from skipsr_cli.farm.progress import WholeRun
from skipsr_cli.farm.ray_crew import Crew, Failed, schedule
from skipsr_cli.farm.ray_progress import Watch, reporting
from skipsr_cli.farm.resume import part_count
from skipsr_cli.farm.segments import model_hash
from skipsr_cli.media.cpu_share import apply_cpu_share, host_cores
from skipsr_cli.media.partials import identity, note_placing
from skipsr_cli.run.options import UpscaleOptions, load_network, resolve_dtype
from skipsr_cli.run.progress import Advanced, Event, Started, Summary

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

    def ready(self) -> str:
        """Answers once the model is loaded, with its weights' hash: the driver waits for it
        before sending a part, and leaves out those an earlier run finished with them."""
        return self.weights

    def render(
        self,
        input: str,
        output: str,
        index: int,
        count: int,
        total: int,
        sender: tuple[Any, int, int, float] | None = None,
    ) -> tuple[int, Summary | int]:
        """Part `index` of `count` of a video of `total` frames, unless it is done already:
        `index` and the part's summary, or its frames where an earlier run finished it. Its
        progress goes to the run's board where `sender` names it (farm/ray_progress.py)."""
        return index, self.render_part(input, output, index, count, total, reporting(sender))

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

    def run(
        self, index: int, item: BatchItem, sender: tuple[Any, int, int, float] | None = None
    ) -> tuple[int, FileResult, Started | None]:
        """File `index` of the batch, its progress to the run's board where `sender` names it:
        `index`, its result and its Started (None where it did not start), which the driver shows
        where the board's copy comes after the result (a short file's does)."""
        report, began = reporting(sender) or _quiet, []

        def progress(event: Event) -> None:
            if isinstance(event, Started):
                began.append(event)
            report(event)

        result = run_item(self.model, item, self.options, self.key, progress)
        return index, result, began[0] if began else None


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
    *,
    sizes: tuple[tuple[int, int], tuple[int, int]],
    total: int,
) -> Summary:
    """Render the segments on Ray and stitch them into `output`; returns the whole run's summary
    (its parts' and the stitch's warnings included). `progress` sees the run as one while its
    parts render (their actors' events, read from the run's board every READ_S seconds:
    farm/ray_progress.py), then the summary. `sizes` (the input's and the output's, width by
    height) and `total` (the input's frames, counted by its packets) are the caller's, who
    probed and counted the input already.
    `parts` defaults to the split of the parts a stopped run finished, else `resume.part_count`'s
    for its actors. Weights that cannot load are one error (exit 4) before Ray starts, not a
    failure of every actor."""
    began = time.perf_counter()
    opts, ray, gpus = _start(opts, address)
    count = workers or gpus or 1
    if parts is None:
        parts = farm.finished_split(input, output, opts, total) or part_count(total, count)
    parts = min(parts, total)  # no empty part
    actors = min(count, parts)
    cpu_only = _actor_device(opts) == "cpu"
    actor = _actor_class(ray, SegmentWorker, gpus, actors, cpu_only)
    run = WholeRun(progress or _quiet, input, output, total, f"Ray, {actors} actor(s)", began)
    with farm.parts_of_run(output, opts, parts) as opts:
        crew = Crew(ray, actor, (replace(opts, segment=None), None, _actors_per_node(ray, actors)))
        watch = Watch(ray, run.event, lambda index: index in run.summaries)

        def jobs(weights: list[str]) -> list[tuple]:
            """The parts left, once the actors have loaded their weights: the frames of those
            an earlier run finished are left out of the run's total before any part starts."""
            todo, done = farm.parts_left(input, output, opts, parts, weights[0])
            run.skip(done)
            if todo:  # now, not with a part's own Started: those come late on Ray
                run.begin(*sizes)
            return [(str(input), str(output), i, parts, total) for i in todo]

        def send(actor: Any, job: tuple, attempt: int) -> Any:
            return actor.render.remote(*job, watch.sender(job[2], attempt))

        def retried(job: tuple, attempt: int, why: str) -> None:
            said = f"part {job[2]} of {parts}: {why}; rendering it again (attempt {attempt})"
            watch.retry(job[2], attempt)
            run.retried(job[2], attempt, said)

        stranded: list[int] = []  # parts left when no actor was
        try:
            for job, attempts, part in schedule(
                crew, actors, jobs, send, retried, (watch.read, ray_progress.READ_S)
            ):
                if isinstance(part, Failed) and part.stranded:
                    stranded.append(job[2])
                    continue
                _part_ended(run, job[2], parts, attempts, part)
        finally:
            crew.stop()
            watch.stop()
        if stranded:
            raise OutputError(_unrendered(stranded, parts, crew.lost))
        frames, warnings = farm.stitch_run(output, input, opts, parts)
    went_on = [f"{lost}; the run went on with the actors left" for lost in crew.given_up]
    return run.finish(frames, [*went_on, *warnings])


def _part_ended(run: WholeRun, index: int, parts: int, attempts: int, part: Any) -> None:
    """A part's end, from its actor: its summary, or its frames where an earlier run finished
    it, or its failure: our own error as it is (a size its node cannot hold, an output it cannot
    write: its one line and exit code, not Ray's wrapping of it), Ray's after the last attempt
    as an output error naming the part (exit 5)."""
    if isinstance(part, Failed):
        if part.own is not None:
            raise part.own
        tried = f"each of its {attempts} attempts" if attempts > 1 else "its one attempt"
        raise OutputError(f"part {index} of {parts} failed on {tried}: {part.why}")
    _, result = part
    if isinstance(result, Summary):
        run.event(index, result)
    else:  # finished by an earlier run
        run.skip(result)


def _unrendered(indices: list[int], parts: int, why: str) -> str:
    """The parts that no actor was left to render, and why, in words."""
    if len(indices) == 1:
        said = f"part {indices[0]} of {parts} was"
    else:
        listed = ", ".join(str(i) for i in indices[:-1])
        said = f"parts {listed} and {indices[-1]} of {parts} were"
    it = "it" if len(indices) == 1 else "them"
    return f"{said} not rendered: no Ray actor was left to render {it}; {why}"


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
    died is upscaled again by another actor (a warning of the file's says so), and fails alone
    after ATTEMPTS; one left when no actor is alive and none can be placed fails alone, saying so.
    Each finished file's outputs are kept as placed here (`partials.placements`), so that a batch
    stopped afterwards names them as written. The actors are killed before this returns or is
    stopped (Ctrl-C), so none writes into the output folder after the batch has let go of its
    lock."""
    options, ray, gpus = _start(options, address)
    count = min(workers or gpus or 1, len(todo))
    actor = _actor_class(ray, FileWorker, gpus, count, _actor_device(options) == "cpu")
    key = replace(key, out_dir=key.out_dir.resolve())
    crew = Crew(ray, actor, (options, key, _actors_per_node(ray, count)))
    said: dict[int, list[str]] = {}  # file index -> the warnings of its retries

    def retried(job: tuple[int, BatchItem], attempt: int, why: str) -> None:
        said.setdefault(job[0], []).append(f"{why}; upscaling it again (attempt {attempt})")
        watch.retry(job[0], attempt)  # the frames its last attempt made are lost
        emit(FileProgress(job[0], given[job[0]].name, Advanced(0, None, 0.0, 0.0)))

    began = time.time_ns()  # an output in place written since is this batch's
    told = 0  # fresh actors given up on, and said so
    jobs = [_whole(task) for task in todo]
    given = dict(todo)  # each file's item as the batch named its outputs
    finished: set[int] = set()
    named: set[int] = set()  # files whose Started was shown

    def show(index: int, event: Event) -> None:
        if isinstance(event, Started):
            named.add(index)
        emit(FileProgress(index, given[index].name, event))

    watch = Watch(ray, show, finished.__contains__)

    def send(actor: Any, job: tuple[int, BatchItem], attempt: int) -> Any:
        return actor.run.remote(*job, watch.sender(job[0], attempt))

    ended = False
    try:
        for (index, item), tries, outcome in schedule(
            crew, count, jobs, send, retried, (watch.read, ray_progress.READ_S)
        ):
            finished.add(index)
            result, started = _ended(item, tries, outcome)
            if started is not None and index not in named:  # the board's copy comes late
                show(index, started)
            _note_written(item, given[index], result)
            notes = tuple(said.pop(index, ()))
            went_on = crew.given_up[told:]  # said once, with the file that ended next
            told = len(crew.given_up)
            notes += tuple(f"{lost}; the batch went on with the actors left" for lost in went_on)
            yield index, replace(result, warnings=notes + result.warnings)
        ended = True
    finally:
        crew.stop()
        watch.stop()
        if not ended:  # stopped: what an actor put in place after the last result read here
            note_claimed(key, dict(jobs), began, given)


def _ended(item: BatchItem, tries: int, outcome: object) -> tuple[FileResult, Started | None]:
    """How file `item` ended on Ray after `tries` attempts: its result, and the Started its task
    answered with (None where it failed without an answer)."""
    if not isinstance(outcome, Failed):
        return outcome[1], outcome[2]
    if outcome.stranded:
        error = f"no Ray actor was left to upscale it; {outcome.why}"
    else:
        error = outcome.why if outcome.own else f"{outcome.why}, on each of its {tries} attempts"
    return FileResult(item.name, str(item.output), FAILED, error=error), None


def _note_written(item: BatchItem, given: BatchItem, result: FileResult) -> None:
    """A file an actor finished: its outputs (`item`'s, whole paths) as they are now, kept in
    this process's `partials.placements` under the names the batch gave them (`given`), as
    batch/workers.py keeps its workers': a batch stopped afterwards names them as written. The
    actor's own record of them stays in its process; the storage is shared, so they are read
    here."""
    if result.status != DONE:
        return
    ids, shown = [], []
    for path, name in ((item.output, given.output), (item.mask_out, given.mask_out)):
        if path is None:
            continue
        try:
            ids.append(identity(path, path))
        except OSError:  # not there (a mask the run did not write): nothing to name
            continue
        shown.append(name)
    note_placing(ids, shown)


def _actor_class(ray: ModuleType, worker: type, gpus: int, count: int, cpu_only: bool) -> Any:
    """`worker` as a Ray actor class that Ray never restarts nor retries (see farm/ray_crew.py)."""
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
