"""The driver's reading of a Ray run's progress board (farm/ray_progress.py), in the order that
farm/ray_crew.py's `schedule` reads it, on a stand-in for Ray that runs each call at once: the
events of an attempt whose actor died, read after it, are dropped, and a retried part counts
neither the frames nor the times of its dead attempt."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from skipsr_cli.farm.progress import WholeRun
from skipsr_cli.farm.ray_progress import Sender, Watch
from skipsr_cli.run.progress import Advanced, Placing, Started, Summary


class Ref:
    def __init__(self, value: object) -> None:
        self.value = value


class Handle:
    """An actor: each method's `.remote(...)` runs it now, its answer a Ref."""

    def __init__(self, instance: object) -> None:
        self.instance = instance

    def __getattr__(self, name: str) -> SimpleNamespace:
        method = getattr(self.instance, name)
        return SimpleNamespace(remote=lambda *args: Ref(method(*args)))


class InstantRay:
    """What Watch uses of Ray, every call answered at once."""

    def remote(self, **options: object):
        return lambda cls: SimpleNamespace(remote=lambda *args: Handle(cls(*args)))

    def wait(self, refs: list[Ref], timeout: float) -> tuple[list[Ref], list[Ref]]:
        return refs, []

    def get(self, ref: Ref, timeout: float | None = None) -> object:
        return ref.value

    def kill(self, actor: object, no_restart: bool = True) -> None:
        pass


def started() -> Started:
    return Started(Path("in.mp4"), Path("part.mkv"), 30, (64, 48), (128, 96), "cpu")


def summary(frames: int) -> Summary:
    return Summary("in.mp4", "part.mkv", frames, 1.0, 30.0, 0.5, None, 0, "cpu", 128, 96)


def test_a_dead_attempts_events_read_after_the_retry_are_dropped():
    events: list = []
    run = WholeRun(events.append, Path("in.mp4"), Path("out.mkv"), 60)
    watch = Watch(InstantRay(), run.event, lambda index: index in run.summaries)
    report = Sender(*watch.sender(1, 1)[:3], every=0.0)
    report(started())
    report(Advanced(10, 30, 1.0, 0.5))
    watch.read()  # asks the board: what was sent so far comes with the next read
    watch.read()
    assert run.advanced().frames == 10
    report(Advanced(20, 30, 2.0, 0.5))  # sent just before its actor died, not yet read
    watch.retry(1, 2)  # schedule hears of the death first...
    run.retried(1, 2, "part 1 of 2: its Ray actor died; rendering it again (attempt 2)")
    assert run.advanced().frames == 0
    watch.read()  # ...then reads the board while the part waits for a fresh actor
    watch.read()
    assert run.advanced().frames == 0  # the dead attempt's 20 frames did not come back
    time.sleep(0.01)  # the fresh actor starts later: its times are the part's now
    again = Sender(*watch.sender(1, 2)[:3], every=0.0)
    again(started())
    again(Advanced(5, 30, 0.5, 0.5))
    watch.read()
    watch.read()
    assert run.advanced().frames == 5
    run.event(1, summary(30))
    (part,) = run.timeline()
    assert part["attempts"] == 2
    assert 0 <= part["started_s"] <= part["first_frames_s"] <= part["finished_s"]
    again(Advanced(30, 30, 1.0, 0.5))  # after its end: dropped
    watch.read()
    watch.read()
    assert run.advanced().frames == 30
    assert sum(isinstance(e, Started) for e in events) == 1


def test_a_sender_sends_the_start_and_frames_at_most_once_a_period():
    board: list = []
    handle = SimpleNamespace(say=SimpleNamespace(remote=lambda *args: board.append(args)))
    send = Sender(handle, 3, 1, every=3600.0)
    send(started())
    send(Advanced(8, 30, 1.0, 0.5))
    send(Advanced(16, 30, 2.0, 0.5))  # within the period: not sent
    send(Placing(()))  # stays with the actor
    send(summary(30))  # comes back as the task's result
    assert [(i, a, type(e).__name__) for i, a, e in board] == [
        (3, 1, "Started"),
        (3, 1, "Advanced"),
    ]
    assert board[1][2].frames == 8


def test_the_run_is_named_once_though_every_parts_start_is_read_after_its_end():
    """A short part ends before the driver reads its Started from the board (so it is dropped);
    the driver's own `begin`, before any part starts, names the run all the same, with the frames
    left after an earlier run's parts."""
    events: list = []
    run = WholeRun(events.append, Path("in.mp4"), Path("out.mkv"), 60, "Ray, 2 actor(s)")
    watch = Watch(InstantRay(), run.event, lambda index: index in run.summaries)
    run.skip(20)  # an earlier run finished a part
    run.begin((64, 48), (128, 96))
    for index in (2, 3):
        Sender(*watch.sender(index, 1)[:3], every=0.0)(started())
        run.event(index, summary(20))  # the part's result comes before the board is read
    watch.read()
    watch.read()
    (named,) = [e for e in events if isinstance(e, Started)]
    assert named == Started(
        Path("in.mp4"), Path("out.mkv"), 40, (64, 48), (128, 96), "Ray, 2 actor(s)"
    )
    assert events[0] is named
