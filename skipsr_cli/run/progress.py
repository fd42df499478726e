"""Events of a run, the statistics they carry, and the renderers that draw them.

The pipeline only emits events; the command line picks a renderer: a rich progress bar on a
terminal, plain lines when output goes to a file or a pipe, or nothing with --quiet.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn


@dataclass(frozen=True)
class Started:
    input: Path
    output: Path
    total_frames: int | None  # from the container; None when it does not say
    in_size: tuple[int, int]  # (width, height)
    out_size: tuple[int, int]
    device: str


@dataclass(frozen=True)
class Advanced:
    frames: int  # frames written so far
    total_frames: int | None
    elapsed: float  # seconds
    skip_ratio: float  # skipped tokens / all tokens so far

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if not self.total_frames or not self.frames:
            return None
        return max(0.0, (self.total_frames - self.frames) / self.fps)


@dataclass(frozen=True)
class Summary:
    input: str
    output: str
    frames: int
    wall_seconds: float
    fps: float
    skip_ratio: float  # mean over all tokens of the run
    peak_gpu_bytes: int | None
    peak_host_bytes: int
    device: str
    out_width: int
    out_height: int
    status: str = "ok"  # "kept": a farm part an earlier run finished, not rendered again
    warnings: tuple[str, ...] = ()  # e.g. streams the output container cannot hold, left out
    frames_lost: int = 0  # frames of a damaged input that were lost or could not be decoded
    denoise: float | None = None  # the --denoise blend the network ran with (None: not known)
    # seconds each side of the pipeline waited for another (overlapped runs): which one set the pace
    waits: dict[str, float] = field(default_factory=dict, compare=False)  # Summary stays hashable
    # a run in parts: each part rendered now (farm/progress.py WholeRun.timeline)
    parts: tuple[dict, ...] = field(default=(), compare=False)
    # CPU seconds of every thread of the process(es) that rendered (decoder, network's launches,
    # encoder; a run in parts: its parts', less any attempt that died on Ray): set beside the
    # host's capacity, it says what the run cost the CPU; None: not known
    cpu_seconds: float | None = field(default=None, compare=False)

    def as_dict(self) -> dict:
        """Its fields as JSON takes them; `parts` only where the run was in parts."""
        fields = asdict(self)
        if not self.parts:
            del fields["parts"]
        return fields


@dataclass(frozen=True)
class Placing:
    """The outputs are complete under their partial names and are about to be put in place: each
    one's (path, st_ino, size, mtime_ns) once there (a rename keeps them), so a batch can later
    tell a file it put there from one put there by somebody else."""

    outputs: tuple[tuple[str, int, int, int], ...]


Event = Started | Advanced | Placing | Summary


@dataclass
class RunStats:
    """Counts that make the progress and the summary."""

    device: torch.device
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)  # all of this process's threads
    frames: int = 0
    tokens: int = 0
    kept: int = 0
    waits: dict[str, float] = field(default_factory=dict)

    def add_tokens(self, total: int, kept: int) -> None:
        self.tokens += total
        self.kept += kept

    @property
    def skip_ratio(self) -> float:
        return 1.0 - self.kept / self.tokens if self.tokens else 0.0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def advanced(self, total: int | None) -> Advanced:
        return Advanced(self.frames, total, self.elapsed, self.skip_ratio)

    def summary(
        self,
        started: Started,
        warnings: tuple[str, ...] = (),
        frames_lost: int = 0,
        denoise: float | None = None,
    ) -> Summary:
        gpu = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        wall = self.elapsed
        return Summary(
            str(started.input),
            str(started.output),
            self.frames,
            round(wall, 3),
            round(self.frames / wall, 3) if wall else 0.0,
            round(self.skip_ratio, 4),
            gpu,
            host,
            str(self.device),
            *started.out_size,
            warnings=warnings,
            frames_lost=frames_lost,
            denoise=denoise,
            waits={k: round(v, 3) for k, v in self.waits.items()},
            cpu_seconds=round(time.process_time() - self.cpu_started, 3),
        )


class QuietRenderer:
    def __call__(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass


class PlainRenderer:
    """One line per update at most every `interval` seconds, for logs and render farms."""

    def __init__(self, stream: TextIO | None = None, interval: float = 2.0) -> None:
        # sys.stderr as it is now, not as it was on import (a test's capture, a redirect since)
        self.stream = sys.stderr if stream is None else stream
        self.interval, self._last = interval, 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            total = event.total_frames if event.total_frames is not None else "?"
            self._line(
                f"upscaling {event.input} ({event.in_size[0]}x{event.in_size[1]}, {total} frames) -> "
                f"{event.output} ({event.out_size[0]}x{event.out_size[1]}) on {event.device}"
            )
        elif isinstance(event, Advanced):
            now = time.monotonic()
            if now - self._last >= self.interval or event.frames == event.total_frames:
                self._last = now
                self._line(_progress_text(event))
        elif isinstance(event, Summary):
            self._line(summary_text(event))

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichRenderer:
    """A live bar on the terminal: frames done of total, fps, ETA, running skip ratio."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bar = Progress(
            TextColumn("[bold]upscaling"),
            BarColumn(),
            TextColumn("{task.completed}/{task.fields[total_text]}"),
            TextColumn("{task.fields[fps]:.2f} fps"),
            TextColumn("skip {task.fields[skip]:.0%}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task: TaskID | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self.console.print(
                f"{event.input} {event.in_size[0]}x{event.in_size[1]} -> {event.output} "
                f"{event.out_size[0]}x{event.out_size[1]} on {event.device}"
            )
            self.bar.start()
            total = event.total_frames
            self.task = self.bar.add_task(
                "upscale", total=total, total_text=total or "?", fps=0.0, skip=0.0
            )
        elif isinstance(event, Advanced) and self.task is not None:
            total = event.total_frames  # a run of parts learns of those done before as it goes
            self.bar.update(
                self.task,
                completed=event.frames,
                total=total,
                total_text=total or "?",
                fps=event.fps,
                skip=event.skip_ratio,
            )
        elif isinstance(event, Summary):
            self.close()
            self.console.print(summary_text(event))

    def close(self) -> None:
        self.bar.stop()


def _progress_text(event: Advanced) -> str:
    total = event.total_frames if event.total_frames is not None else "?"
    eta = f"{event.eta:.0f}s" if event.eta is not None else "?"
    return f"frames {event.frames}/{total}  {event.fps:.2f} fps  eta {eta}  skip {event.skip_ratio:.1%}"


def summary_text(s: Summary) -> str:
    lost = f", {s.frames_lost} input frame(s) lost" if s.frames_lost else ""
    denoise = f", denoise {s.denoise:.2f}" if s.denoise else ""
    gpu = f", peak GPU {s.peak_gpu_bytes / 2**30:.2f} GiB" if s.peak_gpu_bytes is not None else ""
    if s.status == "kept":  # a part an earlier run finished
        return f"kept: {s.frames} frames rendered before with these options -> {s.output}"
    return (
        f"done: {s.frames} frames in {s.wall_seconds:.1f}s ({s.fps:.2f} fps), skipped {s.skip_ratio:.1%} "
        f"of tokens{denoise}, peak host {s.peak_host_bytes / 2**30:.2f} GiB{gpu}{lost} -> {s.output}"
    )


def make_renderer(quiet: bool) -> QuietRenderer | PlainRenderer | RichRenderer:
    if quiet:
        return QuietRenderer()
    if sys.stdout.isatty() and sys.stderr.isatty():
        return RichRenderer()
    return PlainRenderer()
