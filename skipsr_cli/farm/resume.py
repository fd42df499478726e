"""Resume for everyone: a long video is upscaled in segments inside a hidden work folder beside
the output, so a run that dies (a crash, Ctrl-C, SIGKILL, a lost node) is continued by the same
command from its finished segments, and the output is the file an uninterrupted run makes.

The segments are those of `--segment I/N` (farm/parts.py): each is written atomically with its
manifest, and a rerun keeps every part whose manifest matches the input, the options and the
weights. The work folder is removed once the stitched output is in place. Inputs shorter than
RESUME_FRAMES run in one piece: they lose little to a crash and need not pay for the stitch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from models import SkipSR
from skipsr_cli.farm import parts as farm
from skipsr_cli.farm.ray import FRAMES_PER_PART
from skipsr_cli.farm.segments import model_hash
from skipsr_cli.media.image_io import is_image_output
from skipsr_cli.media.joiner import source_timestamps
from skipsr_cli.run.options import UpscaleOptions
from skipsr_cli.run.progress import Event, Summary

RESUME_FRAMES = 3 * FRAMES_PER_PART  # shorter inputs run in one piece
RESUMABLE = frozenset({".mp4", ".mkv", ".mov", ".webm"})


def splittable(input: Path, output: Path, opts: UpscaleOptions) -> bool:
    """A whole video into a video container, with nothing a segment cannot carry (a mask video,
    a frame range of its own): what can be rendered in parts and stitched."""
    return (
        output.suffix.lower() in RESUMABLE
        and not is_image_output(output)
        and opts.mask_out is None
        and opts.frames is None
        and input.is_file()
    )


def resumable(input: Path, output: Path, opts: UpscaleOptions, frames: int | None) -> bool:
    """A long video that can be split (`splittable`): it runs in parts, and resumes."""
    return frames is not None and frames >= RESUME_FRAMES and splittable(input, output, opts)


def upscale_resumably(
    input: Path,
    output: Path,
    opts: UpscaleOptions,
    load: Callable[[], SkipSR],
    device: torch.device,
    dtype: torch.dtype,
    progress: Callable[[Event], None],
) -> Summary:
    """The segments not yet done, then the stitch, then the work folder removed."""
    began = time.perf_counter()
    total = len(source_timestamps(input)[0])
    count = max(1, -(-total // FRAMES_PER_PART))
    model = load()
    weights = model_hash(model.state_dict())
    summaries = []
    with farm.parts_of_run(output, opts, count) as opts:
        for index in range(1, count + 1):
            part = replace(opts, segment=f"{index}/{count}", segments=None)
            if farm.finished_part(input, output, part, weights) is None:
                summaries.append(
                    farm.render_segment(
                        input, output, part, lambda: model, device, dtype, progress, total
                    )
                )
        frames, warnings = farm.stitch_run(output, input, opts)
    return _summary(input, output, frames, time.perf_counter() - began, summaries, warnings)


def _summary(
    input: Path, output: Path, frames: int, wall: float, parts: list[Summary], warnings: list[str]
) -> Summary:
    """One summary for the whole run: the parts rendered now (none when all were done before)."""
    rendered = sum(p.frames for p in parts)
    first = parts[0] if parts else None
    return Summary(
        input=str(input),
        output=str(output),
        frames=frames,
        wall_seconds=wall,
        fps=rendered / wall if wall > 0 else 0.0,
        skip_ratio=sum(p.skip_ratio * p.frames for p in parts) / rendered if rendered else 0.0,
        peak_gpu_bytes=max((p.peak_gpu_bytes or 0 for p in parts), default=None),
        peak_host_bytes=max((p.peak_host_bytes for p in parts), default=0),
        device=first.device if first else "",
        out_width=first.out_width if first else 0,
        out_height=first.out_height if first else 0,
        warnings=tuple(dict.fromkeys(w for p in parts for w in p.warnings if "video only" not in w))
        + tuple(warnings),
        frames_lost=sum(p.frames_lost for p in parts),
        denoise=first.denoise if first else None,
        waits={k: round(sum(p.waits.get(k, 0.0) for p in parts), 3) for k in _wait_keys(parts)},
    )


def _wait_keys(parts: list[Summary]) -> list[str]:
    return list(dict.fromkeys(k for p in parts for k in p.waits))
