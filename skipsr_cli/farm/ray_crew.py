"""The driver's side of a run on Ray (farm/ray.py): its actors (`Crew`) and the work handed out
to them (`schedule`).

Ray restarts no actor and retries no task (max_restarts=0, max_task_retries=0): the driver does,
so that each retry is said and bounded. A fresh actor in place of one that died is started
without stopping the run: the actors left keep taking the queued work while it is placed, and
one that is not ready within PLACE_S (its node lost, and every other GPU held by a live actor of
the run) is killed, the run going on with the actors it has.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from skipsr_cli.errors import ModelError, SkipSRError

ATTEMPTS = 3  # a part or file is sent to a fresh actor at most this many times in all
PLACE_S = 120.0  # a fresh actor in place of one that died is ready within this, or given up on


def _reason(text: str) -> str:
    """`text` on one line, without its line breaks, not too long."""
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def why(ray: ModuleType, error: BaseException) -> str:
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
class Failed:
    """A task that ended without a result: by our own error (`own`: not retried, it would fail
    the same way), by Ray's (an actor that died, a task that failed) on its last attempt, or
    never run to its end because no actor was left (`stranded`: `why` says what became of the
    last fresh actor)."""

    why: str
    own: SkipSRError | None = None
    stranded: bool = False


class Crew:
    """The actors of one run: the first ones started and waited for (each loads its model), a
    fresh one in place of one dropped started without waiting (`replace`), and given up on if
    it is not ready within `place_s` seconds (PLACE_S unless given)."""

    def __init__(
        self, ray: ModuleType, actor: Any, args: tuple, place_s: float | None = None
    ) -> None:
        self.ray, self.actor, self.args = ray, actor, args
        self.place_s = PLACE_S if place_s is None else place_s
        self.started: list = []
        self.coming: dict = {}  # a fresh actor's `ready` ref -> (the actor, when to give up)
        self.lost = "its Ray actors died"  # what became of the last fresh actor given up on
        self.given_up: list[str] = []  # what became of each fresh actor given up on, in turn
        self.answers: list = []  # what the first actors' `ready` answered, in order

    def start(self, count: int) -> list:
        """`count` fresh actors, each ready: one that cannot load the model is that error here
        (our own, such as weights its node cannot read, else a model error: exit 4), before any
        work is sent to it, not a task that fails on every retry."""
        actors = [self.actor.remote(*self.args) for _ in range(count)]
        self.started += actors
        try:
            self.answers = self.ray.get([a.ready.remote() for a in actors])
        except self.ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, SkipSRError):
                raise cause from e
            raise ModelError(f"a Ray actor could not load the model: {why(self.ray, e)}") from e
        return actors

    def replace(self) -> None:
        """A fresh actor started, not waited for: its `ready` ref joins `coming`."""
        actor = self.actor.remote(*self.args)
        self.started.append(actor)
        self.coming[actor.ready.remote()] = (actor, time.monotonic() + self.place_s)

    def arrived(self, ref: Any) -> Any | None:
        """The fresh actor whose `ready` ref has ended: the actor, ready for work, or None where
        it could not start (it is dropped, and why is kept in `lost`)."""
        actor, _ = self.coming.pop(ref)
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            self.drop(actor)
            self.lost = f"a fresh Ray actor in place of one that died: {why(self.ray, e)}"
            self.given_up.append(self.lost)
            return None
        return actor

    def overdue(self) -> int:
        """The fresh actors not ready in time, killed: how many."""
        now = time.monotonic()
        late = [ref for ref, (_, due) in self.coming.items() if due <= now]
        for ref in late:
            self.drop(self.coming.pop(ref)[0])
        if late:
            self.lost = (
                f"a fresh Ray actor in place of one that died was not placed within "
                f"{self.place_s:g} s: the cluster had no room for it (a node lost?)"
            )
            self.given_up += [self.lost] * len(late)
        return len(late)

    def wait_s(self) -> float | None:
        """Seconds until the first fresh actor is due; None where none is coming."""
        if not self.coming:
            return None
        return max(0.0, min(due for _, due in self.coming.values()) - time.monotonic())

    def drop(self, actor: Any) -> None:
        with contextlib.suppress(Exception):  # dead already
            self.ray.kill(actor, no_restart=True)

    def stop(self) -> None:
        """Kill every actor started, so that none writes after the run has ended or failed."""
        for actor in self.started:
            self.drop(actor)


def schedule(
    crew: Crew,
    count: int,
    jobs: list | Callable[[list], list],
    call: Callable[[Any, Any, int], Any],
    retried: Callable[[Any, int, str], None],
    tick: tuple[Callable[[], None], float] | None = None,
) -> Iterator[tuple[Any, int, Any]]:
    """Each of `jobs` sent to one of `count` actors (`call(actor, job, attempt)`: its object ref),
    and (job, attempts, result) as each ends; with `tick` (a callback and its seconds), the
    callback runs at least that often while tasks run (their progress). `jobs` may be a function
    of what the first actors' `ready` answered (a part is left out that an earlier run finished
    with the weights they loaded), called once they are ready. A job whose actor died, or whose
    task failed other than by our own error, is sent again (`retried(job, attempt, why)` hears
    it first), ATTEMPTS times at most in all, to an actor left idle. The actor dropped is
    replaced by a fresh one (`Crew`), not waited for: the other actors keep taking the queued
    jobs meanwhile, and one not ready within the crew's `place_s` is killed, the run going on
    with one actor fewer. After a job's last attempt, or on our own error, its result is Failed;
    where no actor is left alive and none could be placed, every job still queued ends as Failed
    too, `stranded`."""
    ray = crew.ray
    free = crew.start(count)
    if callable(jobs):
        jobs = jobs(crew.answers)
    room = count  # the actors this run may have: one fewer for each fresh one given up on
    waiting = [(job, 1) for job in jobs]
    running: dict = {}
    while waiting or running:
        room -= crew.overdue()
        while waiting and free:
            job, attempt = waiting.pop(0)
            actor = free.pop()
            running[call(actor, job, attempt)] = (actor, job, attempt)
        while len(crew.coming) < len(waiting) and len(running) + len(crew.coming) < room:
            crew.replace()  # free is empty here: waiting jobs and no actor for them
        if not running and not crew.coming:  # jobs left, and no actor alive nor coming
            for job, attempt in waiting:
                yield job, attempt, Failed(crew.lost, stranded=True)
            return
        timeout = crew.wait_s()
        if tick is not None:
            timeout = tick[1] if timeout is None else min(timeout, tick[1])
        done, _ = ray.wait([*running, *crew.coming], num_returns=1, timeout=timeout)
        if tick is not None:
            tick[0]()
        if not done:
            continue  # a fresh actor is due (given up on above), or the tick's time
        if done[0] in crew.coming:
            fresh = crew.arrived(done[0])
            if fresh is None:
                room -= 1
            else:
                free.append(fresh)
            continue
        yield from _ended(crew, done[0], running, free, waiting, retried)


def _ended(
    crew: Crew,
    done: Any,
    running: dict,
    free: list,
    waiting: list,
    retried: Callable[[Any, int, str], None],
) -> Iterator[tuple[Any, int, Any]]:
    """A job's task that has ended: its result, its failure, or the job queued again (first in
    line) with its actor dropped."""
    ray = crew.ray
    actor, job, attempt = running.pop(done)
    try:
        result = ray.get(done)
    except ray.exceptions.RayError as e:
        own = getattr(e, "cause", None)
        if isinstance(e, ray.exceptions.RayTaskError) and isinstance(own, SkipSRError):
            free.append(actor)  # the actor is well: the part or file could not be done
            yield job, attempt, Failed(str(own), own)
            return
        crew.drop(actor)  # dead, or in a state not to trust with more work
        said = why(ray, e)
        if attempt >= ATTEMPTS:
            yield job, attempt, Failed(said)
            return
        retried(job, attempt + 1, said)
        waiting.insert(0, (job, attempt + 1))
        return
    free.append(actor)
    yield job, attempt, result
