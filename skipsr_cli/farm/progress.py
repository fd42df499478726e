"""A run made of segments, shown as one run: one Started for the whole video, frames counted over
every part that is rendered (by one process in turn, or by several workers at once), and one
Summary at the end with every part's warnings.

Each part's pipeline emits its own Started, Advanced and Summary; `WholeRun.part(index)` is the
callback a part reports to, and the caller's progress sees only the whole run. Parts finished by
an earlier run are not rendered again, so the total is the frames left to render: the rate and
the time left are those of this run. A part rendered again (on Ray, after its actor died) says so
in a warning of the summary and in its `attempts` in the timeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from skipsr_cli.run.progress import Advanced, Event, Started, Summary


class WholeRun:
    """The progress of the parts of one video, as one run."""

    def __init__(
        self,
        progress: Callable[[Event], None],
        input: Path,
        output: Path,
        to_render: int,
        device: str | None = None,
        began: float | None = None,
    ) -> None:
        self.progress = progress
        self.input, self.output = input, output
        self.to_render = to_render
        self.device = device  # what Started names (e.g. "cuda:0 x3"); None: the first part's
        self.began = time.perf_counter() if began is None else began  # the run's start
        self.started = False
        self.frames: dict[int, tuple[int, float]] = {}  # part -> (frames written, skip ratio)
        self.summaries: dict[int, Summary] = {}
        # part -> seconds into the run when it started, passed its first frames on, and ended
        self.times: dict[int, list[float | None]] = {}
        self.attempts: dict[int, int] = {}  # part -> its attempts, where it took more than one
        self.retries: list[str] = []  # a warning for each part sent again

    def part(self, index: int) -> Callable[[Event], None]:
        """The callback of part `index`'s own run."""
        return lambda event: self.event(index, event)

    def event(self, index: int, event: Event) -> None:
        now = round(time.perf_counter() - self.began, 3)
        times = self.times.setdefault(index, [None, None, None])
        if isinstance(event, Started):
            times[0] = now
            self.begin(event.in_size, event.out_size, event.device)
        elif isinstance(event, Advanced):
            if times[1] is None and event.frames > 0:
                times[1] = now
            self.frames[index] = (event.frames, event.skip_ratio)
            self.progress(self.advanced())
        elif isinstance(event, Summary):
            times[2] = now
            self.summaries[index] = event
            self.frames[index] = (event.frames, event.skip_ratio)

    def begin(self, in_size: tuple[int, int], out_size: tuple[int, int], device: str = "") -> None:
        """The whole run's Started, shown once: by its driver before any part starts, where the
        parts' own Started may come late or not at all (on Ray, a short part's can be read after
        its end and dropped), else with the first part's."""
        if self.started:
            return
        self.started = True
        device = self.device or device
        self.progress(Started(self.input, self.output, self.to_render, in_size, out_size, device))

    def retried(self, index: int, attempt: int, warning: str) -> None:
        """Part `index` is sent again, as its attempt `attempt`; `warning` says why, among the
        summary's warnings. The frames its last attempt had made are lost: they count no more,
        and its times in the timeline are the next attempt's."""
        self.attempts[index] = attempt
        self.retries.append(warning)
        self.times.pop(index, None)
        if self.frames.pop(index, None) is not None:
            self.progress(self.advanced())

    def skip(self, frames: int) -> None:
        """A part an earlier run finished: its frames are not to render."""
        self.to_render -= frames

    def advanced(self) -> Advanced:
        frames = sum(f for f, _ in self.frames.values())
        skipped = sum(f * s for f, s in self.frames.values())
        return Advanced(
            frames,
            self.to_render,
            time.perf_counter() - self.began,
            skipped / frames if frames else 0.0,
        )

    @property
    def parts(self) -> list[Summary]:
        """The summaries of the parts rendered in this run, in part order."""
        return [self.summaries[i] for i in sorted(self.summaries)]

    def finish(self, frames: int, warnings: list[str]) -> Summary:
        """The whole run's summary (`frames` stitched), shown and returned."""
        wall = time.perf_counter() - self.began
        warnings = [*self.retries, *warnings]
        summary = whole_summary(self.input, self.output, frames, wall, self.parts, warnings)
        summary = replace(summary, parts=self.timeline())
        if self.device is not None:
            summary = replace(summary, device=self.device)
        self.progress(summary)
        return summary

    def timeline(self) -> tuple[dict, ...]:
        """Each part rendered in this run, in part order: its frames and rate, and the seconds
        into the run when its start, its first frames passed to the encoder and its end (before
        its manifest is written) reached this process; they show a worker's start-up and the
        parts that ran alone at the end. `cpu_s` is the CPU its process spent on it, all threads
        (None: not known). `attempts` is 1 but for a part sent again (Ray)."""
        return tuple(
            {
                "part": i,
                "frames": self.summaries[i].frames,
                "fps": self.summaries[i].fps,
                "started_s": self.times[i][0],
                "first_frames_s": self.times[i][1],
                "finished_s": self.times[i][2],
                "cpu_s": self.summaries[i].cpu_seconds,
                "attempts": self.attempts.get(i, 1),
            }
            for i in sorted(self.summaries)
        )


def whole_summary(
    input: Path, output: Path, frames: int, wall: float, parts: list[Summary], warnings: list[str]
) -> Summary:
    """One summary for the whole run: the parts rendered now (none when all were done before).
    The rate is of the frames rendered now over the whole run's time, stitch included."""
    rendered = sum(p.frames for p in parts)
    first = parts[0] if parts else None
    gpu = [p.peak_gpu_bytes for p in parts if p.peak_gpu_bytes is not None]
    skipped = sum(p.skip_ratio * p.frames for p in parts)
    return Summary(
        input=str(input),
        output=str(output),
        frames=frames,
        wall_seconds=round(wall, 3),
        fps=round(rendered / wall, 3) if wall > 0 else 0.0,
        skip_ratio=round(skipped / rendered, 4) if rendered else 0.0,
        peak_gpu_bytes=max(gpu, default=None),  # None: no part ran on a GPU
        peak_host_bytes=max((p.peak_host_bytes for p in parts), default=0),
        device=first.device if first else "",
        out_width=first.out_width if first else 0,
        out_height=first.out_height if first else 0,
        warnings=tuple(dict.fromkeys(w for p in parts for w in p.warnings if "video only" not in w))
        + tuple(warnings),
        frames_lost=sum(p.frames_lost for p in parts),
        denoise=first.denoise if first else None,
        waits={k: round(sum(p.waits.get(k, 0.0) for p in parts), 3) for k in _wait_keys(parts)},
        cpu_seconds=_total_cpu(parts),
    )


def _total_cpu(parts: list[Summary]) -> float | None:
    """The CPU the parts rendered now cost their processes; None where a part's is not known."""
    cpu = [p.cpu_seconds for p in parts]
    return round(sum(cpu), 3) if parts and None not in cpu else None


def _wait_keys(parts: list[Summary]) -> list[str]:
    return list(dict.fromkeys(k for p in parts for k in p.waits))
