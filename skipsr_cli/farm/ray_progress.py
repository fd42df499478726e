"""The progress of the tasks of a run on Ray (a video's parts, a batch's files), as the driver
shows it while they render.

An actor's task returns only when its part or file is done, which on a long video is hours of
silence. So each task sends its events to a `Board` (a small Ray actor of the run, on no CPU)
without waiting for an answer: its start, and its frames at most once every SEND_S seconds. The
driver reads the board between the tasks' ends (`Watch`, every READ_S seconds) and passes the
events on: a video's to its WholeRun, which shows the parts as one run; a batch's to its progress,
each as its file's. Each event carries its task's attempt, so that the events of an attempt whose
actor died are not taken for those of the next.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from skipsr_cli.run.progress import Advanced, Event, Started

SEND_S = 1.0  # an actor sends a part's frames at most this often
READ_S = 1.0  # the driver reads the board at least this often while parts render


class Board:
    """A Ray actor: the events the parts' actors sent, until the driver takes them."""

    def __init__(self) -> None:
        self.events: list[tuple[int, int, Event]] = []

    def say(self, index: int, attempt: int, event: Event) -> None:
        self.events.append((index, attempt, event))

    def take(self) -> list[tuple[int, int, Event]]:
        events, self.events = self.events, []
        return events


class Sender:
    """A task's progress callback on its actor: its Started, and its Advanced at most once every
    `every` seconds, sent to the board without waiting (a board that is gone loses them)."""

    def __init__(self, board: Any, index: int, attempt: int, every: float = SEND_S) -> None:
        self.board, self.index, self.attempt, self.every = board, index, attempt, every
        self.last = float("-inf")

    def __call__(self, event: Event) -> None:
        if isinstance(event, Advanced):
            now = time.monotonic()
            if now - self.last < self.every:
                return
            self.last = now
        elif not isinstance(event, Started):
            return  # the summary comes back as the task's result; Placing stays with the actor
        with contextlib.suppress(Exception):
            self.board.say.remote(self.index, self.attempt, event)


class Watch:
    """The driver's side: the run's board, read into `deliver(index, event)` (the events of each
    task's current attempt only, until `ended(index)`), and killed at the end."""

    def __init__(
        self,
        ray: ModuleType,
        deliver: Callable[[int, Event], None],
        ended: Callable[[int], bool],
    ) -> None:
        self.ray, self.deliver, self.ended = ray, deliver, ended
        self.board = ray.remote(num_cpus=0, max_restarts=0)(Board).remote()
        self.attempts: dict[int, int] = {}  # task -> its attempt now rendering
        self.asked: Any = None  # the board's answer to come

    def sender(self, index: int, attempt: int) -> tuple[Any, int, int, float]:
        """What task `index` is given to report with (Sender's arguments), sent to its actor."""
        self.retry(index, attempt)
        return self.board, index, attempt, SEND_S

    def retry(self, index: int, attempt: int) -> None:
        """Task `index` goes on as `attempt`: from now on the events of its earlier attempts,
        sent before their actor died and read later, are dropped (not only once it is sent
        again, which waits for a free actor)."""
        self.attempts[index] = max(attempt, self.attempts.get(index, 0))

    def read(self) -> None:
        """The events sent before the last read's question was answered, passed to the run; it
        never waits: the board's answer is taken once it has come, and asked again then (a board
        that no longer answers, its node lost, shows nothing more, and the run goes on)."""
        if self.asked is None:
            self.asked = self.board.take.remote()
        ready, _ = self.ray.wait([self.asked], timeout=0)
        if not ready:
            return
        try:
            events = self.ray.get(ready[0])
        except Exception:  # noqa: BLE001 - progress is never worth failing the run over
            return
        finally:
            self.asked = self.board.take.remote()
        for index, attempt, event in events:  # not a dead attempt's, nor after the task's end
            if self.attempts.get(index) == attempt and not self.ended(index):
                self.deliver(index, event)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(self.board, no_restart=True)


def reporting(sender: tuple[Any, int, int, float] | None) -> Callable[[Event], None] | None:
    """The progress callback of a task sent with `sender` (Watch.sender's), or None."""
    return None if sender is None else Sender(*sender)
