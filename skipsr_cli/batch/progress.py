"""Events of a folder batch, its per-file results and summary, and the renderers that draw them.

A batch emits BatchStarted, then for each file its own run's events wrapped in FileProgress (the
Started, Advanced and Summary of `progress`), then a FileResult, and at the end the BatchSummary.
The renderers show the whole batch (files done of total, frames, overall ETA) and the current file:
two bars on a terminal, plain lines for a pipe, nothing with --quiet.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from skipsr_cli.run.progress import Advanced, Event, Started, Summary

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class BatchStarted:
    files: int  # every file of the batch
    todo: int  # those not already done
    frames: int | None  # frames of the files to do, when every container says


@dataclass(frozen=True)
class FileProgress:
    index: int  # the file's place in the batch
    name: str
    event: Event


@dataclass(frozen=True)
class FileResult:
    """How one file of the batch ended."""

    file: str  # its path relative to IN_DIR
    output: str
    status: str  # done, skipped or failed
    frames: int = 0
    fps: float = 0.0
    skip_ratio: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, file: str, summary: Summary) -> FileResult:
        return cls(
            file,
            summary.output,
            DONE,
            summary.frames,
            summary.fps,
            summary.skip_ratio,
            summary.wall_seconds,
            warnings=summary.warnings,
        )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BatchSummary:
    files: tuple[FileResult, ...]
    wall_seconds: float

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def done(self) -> int:
        return self.count(DONE)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files if f.status == DONE)

    def as_dict(self) -> dict:
        return {
            "summary": True,
            "files": len(self.files),
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "frames": self.frames,
            "wall_seconds": round(self.wall_seconds, 3),
            "failed_files": [f.file for f in self.files if f.status == FAILED],
        }


BatchEvent = BatchStarted | FileProgress | FileResult | BatchSummary


@dataclass
class BatchCounter:
    """Frames and files of the whole batch, from its events; the files in flight count too."""

    files: int = 0
    ended: int = 0
    frames: int | None = None
    finished_frames: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)  # frames written, by file
    started: float = field(default_factory=time.perf_counter)

    def update(self, event: BatchEvent) -> None:
        if isinstance(event, BatchStarted):
            self.files, self.frames = event.todo, event.frames
        elif isinstance(event, FileProgress) and isinstance(event.event, Advanced):
            self.in_flight[event.name] = event.event.frames
        elif isinstance(event, FileResult) and event.status != SKIPPED:
            self.ended += 1
            self.finished_frames += event.frames
            self.in_flight.pop(event.file, None)

    @property
    def frames_done(self) -> int:
        return self.finished_frames + sum(self.in_flight.values())

    @property
    def eta(self) -> float | None:
        done, elapsed = self.frames_done, time.perf_counter() - self.started
        if not self.frames or not done:
            return None
        return max(0.0, (self.frames - done) * elapsed / done)

    def text(self) -> str:
        total = self.frames if self.frames is not None else "?"
        eta = f"{self.eta:.0f}s" if self.eta is not None else "?"
        return f"files {self.ended}/{self.files}  frames {self.frames_done}/{total}  eta {eta}"


class QuietBatchRenderer:
    def __call__(self, event: BatchEvent) -> None:
        pass

    def close(self) -> None:
        pass


class PlainBatchRenderer:
    """Lines for logs and farms: each file as it starts and ends, progress every `interval` s."""

    def __init__(self, stream: TextIO | None = None, interval: float = 2.0) -> None:
        # sys.stderr as it is now, not as it was on import (a test's capture, a redirect since)
        self.stream = sys.stderr if stream is None else stream
        self.interval, self._last = interval, 0.0
        self.counter = BatchCounter()

    def __call__(self, event: BatchEvent) -> None:
        self.counter.update(event)
        if isinstance(event, BatchStarted):
            done = event.files - event.todo
            self._line(f"batch: {event.files} files, {done} already done, {event.todo} to do")
        elif isinstance(event, FileProgress) and isinstance(event.event, Started):
            self._line(f"[{self.counter.ended + 1}/{self.counter.files}] {event.name}")
        elif isinstance(event, FileProgress) and isinstance(event.event, Advanced):
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                e = event.event
                self._line(f"{self.counter.text()}  |  {event.name} {e.frames} frames")
        elif isinstance(event, FileResult) and event.status != SKIPPED:
            self._line(
                f"{event.status}: {event.file}" + (f": {event.error}" if event.error else "")
            )

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichBatchRenderer:
    """Two bars on the terminal: the whole batch in frames (with files done), the current file."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.counter = BatchCounter()
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.fields[total_text]} frames"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.batch = self.bar.add_task("batch", total=None, total_text="?")
        self.file = self.bar.add_task("", total=None, total_text="?", visible=False)

    def __call__(self, event: BatchEvent) -> None:
        self.counter.update(event)
        c = self.counter
        if isinstance(event, BatchStarted):
            self.bar.start()
            self.bar.update(self.batch, total=c.frames, total_text=c.frames or "?")
        elif isinstance(event, FileProgress) and isinstance(event.event, Started):
            total = event.event.total_frames
            self.bar.reset(self.file, total=total, total_text=total or "?", visible=True)
            self.bar.update(self.file, description=event.name)
        elif isinstance(event, FileProgress) and isinstance(event.event, Advanced):
            self.bar.update(self.file, completed=event.event.frames)
        elif isinstance(event, FileResult) and event.status == FAILED:
            self.console.print(f"[red]failed[/red] {event.file}: {event.error}")
        self.bar.update(
            self.batch, completed=c.frames_done, description=f"files {c.ended}/{c.files}"
        )

    def close(self) -> None:
        self.bar.stop()


def make_batch_renderer(quiet: bool) -> QuietBatchRenderer | PlainBatchRenderer | RichBatchRenderer:
    if quiet:
        return QuietBatchRenderer()
    if sys.stdout.isatty() and sys.stderr.isatty():
        return RichBatchRenderer()
    return PlainBatchRenderer()


def summary_table(summary: BatchSummary) -> Table:
    """File, status, frames, fps, skip ratio, time and error of every file, and the totals."""
    table = Table(title="skipsr batch", title_justify="left")
    for column in ("file", "status", "frames", "fps", "skip", "time", "error"):
        table.add_column(column, justify="right" if column in ("frames", "fps", "time") else "left")
    colour = {DONE: "green", SKIPPED: "dim", FAILED: "red"}
    for f in summary.files:
        busy = f.status == DONE
        table.add_row(
            f.file,
            f"[{colour[f.status]}]{f.status}[/]",
            str(f.frames) if busy else "",
            f"{f.fps:.2f}" if busy else "",
            f"{f.skip_ratio:.1%}" if busy else "",
            f"{f.seconds:.1f}s" if f.status != SKIPPED else "",
            f.error or "",
        )
    table.caption = (
        f"{summary.done} done, {summary.skipped} skipped, {summary.failed} failed; "
        f"{summary.frames} frames in {summary.wall_seconds:.1f}s"
    )
    return table
