"""The Python API: `load_model`, `upscale` and `upscale_batch`, what `skipsr upscale` itself calls.

    import skipsr_cli

    model = skipsr_cli.load_model("base", device="cuda")  # load once, keep it warm
    for path in clips:
        summary = skipsr_cli.upscale(path, path.with_suffix(".x2.mp4"), model=model, crf=16)
        print(summary.frames, summary.fps)

    summary = skipsr_cli.upscale_batch("season1/", "season1_x2/", recursive=True, crf=16)
    print(summary.done, summary.skipped, summary.failed)

Failures raise the typed exceptions of `skipsr_cli.errors` (InputError, ModelError, OutputError,
UsageError); the output file appears only when the whole run succeeded.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import fields, replace
from functools import partial
from pathlib import Path

import torch

from models import PRESETS, SkipSR
from skipsr_cli import weights
from skipsr_cli.batch.plan import FolderKind, folder_kind, plan_batch
from skipsr_cli.batch.progress import BatchEvent, BatchSummary
from skipsr_cli.batch.run import run_batch
from skipsr_cli.batch.workers import local_workers
from skipsr_cli.errors import InputError, ModelError, UsageError
from skipsr_cli.farm import parts as farm
from skipsr_cli.farm import resume
from skipsr_cli.farm.devices import model_bytes, upscale_on_devices, workers_per_gpu
from skipsr_cli.farm.ray import files_on_ray, ray_address, runs_here, upscale_on_ray
from skipsr_cli.farm.segments import check_stitchable
from skipsr_cli.media.cpu_share import ENV as WORKER_THREADS_ENV
from skipsr_cli.media.cpu_share import apply_cpu_share
from skipsr_cli.media.partials import forget_placements, held_stops
from skipsr_cli.run import pipeline
from skipsr_cli.run.host_memory import check_host_memory
from skipsr_cli.run.options import (
    AUTO,
    UpscaleOptions,
    check_lossless,
    check_options,
    for_loaded_model,
    job_of,
    load_network,
    parse_denoise,
    resolve_device,
    resolve_dtype,
    with_denoise_for,
)
from skipsr_cli.run.progress import Event, Summary
from skipsr_cli.run.targets import check_folder_output, check_mask_name, check_output_name

OPTION_NAMES = frozenset(f.name for f in fields(UpscaleOptions))
# the options that name files or folders (mask_out, weights, denoise_weights, parts): Path | None
PATH_OPTIONS = frozenset(f.name for f in fields(UpscaleOptions) if "Path" in str(f.type))


def load_model(
    name_or_path: str | Path = "base",
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    random_weights: bool = False,
    seed: int = 0,
    denoise: float | str = 0.0,
    denoise_weights: str | Path | None = None,
) -> SkipSR:
    """The network of a preset (its shipped weights) or of a .safetensors weights file.

    `name_or_path`: a preset name (base, debug, seedvr2-3b) or a path to weights saved by skipsr.
    `device`: auto (CUDA when there is one), cuda, cpu or a torch.device. `dtype`: auto (bf16 on
    CUDA, fp32 on the CPU), bf16, fp16, fp32 or a torch.dtype. `random_weights`: the preset's
    untrained network, initialised from `seed` (tests and benchmarks only). `denoise` (0 to 1):
    blended towards the weights for compressed sources, the preset's own or `denoise_weights`.
    """
    amount = parse_denoise(denoise)
    if amount == AUTO:
        raise UsageError("load_model takes an amount from 0 to 1: auto is worked out per input")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    other = Path(denoise_weights) if denoise_weights is not None else None
    if _is_path(name_or_path):
        if random_weights:
            raise ModelError("random weights are built from a preset name, not a file")
        return weights.load_model(
            weights=Path(name_or_path), device=dev, dtype=dt, denoise=amount, denoise_weights=other
        )
    return weights.load_model(
        str(name_or_path),
        random_weights=random_weights,
        device=dev,
        dtype=dt,
        seed=seed,
        denoise=amount,
        denoise_weights=other,
    )


def upscale(
    input: str | Path,
    output: str | Path,
    options: UpscaleOptions | None = None,
    *,
    model: SkipSR | str | Path | None = None,
    progress: Callable[[Event], None] | None = None,
    **option_fields: object,
) -> Summary:
    """Upscale one video (or image, or image sequence) into `output`; returns the run's summary.

    Options are the fields of `UpscaleOptions` (the command line's options): pass an
    `UpscaleOptions`, keywords such as `scale=4, crf=16, copy_audio=False`, or both (keywords win).
    `model` is a network from `load_model` (it runs where it is, in its own dtype, and stays
    loaded for the next call), or a preset name or weights path to load for this call only.
    `progress` receives the run's events (Started, then Advanced, then, for a run in one piece,
    Placing just before its outputs are put in place, then the Summary).
    With several local workers (`devices` naming several, "0,1", "all", "cpu,cpu", or `workers`
    processes spread round-robin over `devices`) the video is rendered in segments, one worker
    process each, and stitched. Without `workers`, a long video (one that runs in segments
    anyway) gets several workers on each GPU where the host's cores and memory hold them
    (farm/devices.py), else one per device. With `ray` (an address, "auto", or "local") it is
    rendered in segments on Ray actors (`workers` of them) and stitched; its summary holds the
    parts' figures, but `progress` sees only that summary, at the end. `segments` (N) renders a
    whole video in N parts (at most one a frame) and stitches them, on whatever workers run it;
    a rerun with the same N resumes.
    Warnings (streams the output container cannot hold) are in `summary.warnings`.
    """
    opts = _options(options, model, option_fields)
    forget_placements()  # what a stop names is this call's: kept no longer than that
    spelt, input, output = output, Path(input), Path(output)
    if input.is_dir() and folder_kind(input) is FolderKind.BATCH:
        raise UsageError(f"{input} is a folder of files to upscale one by one: use upscale_batch")
    check_options(input, opts)
    check_folder_output(spelt)  # "frames/": a folder, not a file without an extension
    if opts.segment is not None:
        check_stitchable(output, f"--segment renders a part of {output} for skipsr stitch")
    check_output_name(output, input)
    check_mask_name(opts.mask_out, output)
    if isinstance(model, SkipSR):
        opts = for_loaded_model(opts)
    opts = with_denoise_for(opts, input)  # auto: one amount for every worker and segment
    if not isinstance(model, SkipSR) and (kept := resume.finished_before(input, output, opts)):
        (progress or _ignore)(kept)  # killed as it tidied up: its output is this job's, done
        return _held_stops_acted_on(kept)
    if isinstance(model, SkipSR):
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    else:
        device = resolve_device(opts.device)
        dtype = resolve_dtype(opts.dtype, device)
    found = [device] if opts.ray is not None else _local_workers(opts.devices, opts, model, device)
    several = opts.ray is not None or len(found) > 1
    if several and opts.segment is not None:
        raise UsageError("--segment renders one part in this process: not with several workers")
    if several and (opts.frames is not None or opts.mask_out is not None):
        raise UsageError("--frames and --mask-out run in one process: not with several workers")
    plan, total = None, None
    if opts.segment is None:
        plan = pipeline.prepare(job_of(input, output, opts))  # refuses what it can before loading
        fits = partial(check_host_memory, plan.out_size, device.type == "cpu", opts.chunk_frames)
        cluster = opts.ray is not None and not runs_here(opts.ray)  # nodes that are not this host
        if not cluster:  # here, or on a Ray of its own here: before Ray is even started
            fits()
        frames = plan.info.frame_count or 0
        long = resume.resumable(input, output, opts, frames)
        asked = opts.segments is not None  # N parts, whatever the length or the workers
        can_split = resume.splittable(input, output, opts)
        if asked and not can_split:
            raise UsageError(
                "--segments renders a whole video file into mp4, mkv, mov or webm in parts: "
                "not with --frames, --mask-out, or images in or out"
            )
        splits = long or asked or (several and frames > 1 and can_split)
        if splits:
            total = resume.split_frames(input, plan.info)  # None: cut short, run in one piece
            if total == 0:
                total = None  # nothing to split: the run in one piece says there are no frames
            elif total is None and (opts.ray is not None or asked):
                named = "--ray" if opts.ray is not None else "--segments"
                raise InputError(
                    f"{input} holds fewer frames than it announces (cut short or damaged), so it "
                    f"cannot be split into parts: upscale it without {named}"
                )
        parts = opts.segments
        if total is not None and long and _default_workers(opts, model, found):
            found = found * workers_per_gpu(found, plan.out_size, model_bytes(opts))
            several = len(found) > 1
        if total is not None and several:
            if opts.ray is not None:  # there `workers` counts Ray actors
                address = ray_address(opts.ray)
                return _held_stops_acted_on(
                    upscale_on_ray(
                        input,
                        output,
                        opts,
                        opts.segments,
                        address,
                        opts.workers,
                        progress,
                        sizes=((plan.info.width, plan.info.height), plan.out_size),
                        total=total,
                    )
                )
            done = progress or _ignore
            return _held_stops_acted_on(
                upscale_on_devices(input, output, opts, found[:total], parts, done, total)
            )
        if cluster:  # not in parts on the cluster after all: in one piece, here
            fits()
    if opts.devices is not None:  # one device named, or nothing to split among several
        device, dtype = found[0], resolve_dtype(opts.dtype, found[0])
    load = (lambda: model) if isinstance(model, SkipSR) else (lambda: _load(opts, device, dtype))
    apply_cpu_share(1, device)  # all cores as the libraries pick, or SKIPSR_WORKER_THREADS's share
    if plan is None:
        return farm.render_segment(input, output, opts, load, device, dtype, progress or _ignore)
    if total is not None:  # a long video on one device
        return _held_stops_acted_on(
            resume.upscale_resumably(
                input, output, opts, load, device, dtype, progress or _ignore, total, opts.segments
            )
        )
    if (note := resume.unused_parts(output)) is not None:
        plan = replace(plan, notes=(*plan.notes, note))
    if opts.parts is not None:  # the folder of a run in parts: this one is not
        said = f"--parts {opts.parts} is for a run in parts (--segment, --segments, a long video)"
        plan = replace(plan, notes=(*plan.notes, f"{said}: this one ran in one piece"))
    return pipeline.upscale(load(), plan, device, dtype, progress or _ignore)


def stitch(
    output: str | Path,
    parts: str | Path | None = None,
    input: str | Path | None = None,
    *,
    overwrite: bool = False,
    copy_audio: bool = True,
    copy_subtitles: bool = True,
    audio_bitrate: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> int:
    """Join the parts that `upscale(..., segment="I/N")` rendered into `output` (without
    re-encoding the video; the source's audio, subtitles, chapters and tags copied once); returns
    the frame count. `parts` is the parts folder (OUTPUT.parts, where `segment` puts them, unless
    named), `input` the source where it is not at the path the parts recorded. `warn` hears what
    the output could not take as it was (a stream its container cannot hold, left out; audio
    re-encoded, at `audio_bitrate` kb/s where given), one line each."""
    check_stitchable(Path(output), f"cannot stitch into {output}")
    frames, warnings = farm.stitch(
        Path(output),
        None if parts is None else Path(parts),
        None if input is None else Path(input),
        overwrite=overwrite,
        copy_audio=copy_audio,
        copy_subtitles=copy_subtitles,
        audio_kbps=audio_bitrate,
    )
    for warning in warnings:
        (warn or _ignore)(warning)
    return frames


def _held_stops_acted_on(summary: Summary) -> Summary:
    """A run in parts holds a Ctrl-C or SIGTERM that comes once its stitch put the output in
    place, so that its tidying is whole (farm.parts_of_run); it acts now, as one after a run in
    one piece placed its output does (KeyboardInterrupt for Ctrl-C), not lost to a program that
    calls this. The command line names the output as written."""
    if held_stops:
        signal.raise_signal(held_stops[0])  # the handler in place says what it does
    return summary


def upscale_batch(
    in_dir: str | Path,
    out_dir: str | Path,
    options: UpscaleOptions | None = None,
    *,
    model: SkipSR | str | Path | None = None,
    devices: str | None = None,
    recursive: bool = False,
    glob: str | None = None,
    ext: str | None = None,
    progress: Callable[[BatchEvent], None] | None = None,
    **option_fields: object,
) -> BatchSummary:
    """Upscale every video (or still) of a folder into `out_dir`, keeping each input's name.

    `recursive` mirrors the subfolders; `glob` picks the files (e.g. "*.mkv"); `ext` (e.g. "mkv")
    sets the outputs' container, else each follows its input's (stills are written as PNG).
    `devices`: "0,1", "all" or "cpu,cpu" runs one worker process per device, each with the model
    loaded once; `workers=N` runs N of them spread round-robin over `devices` (two on one GPU:
    two encoders at once); by default the files run here, one after another, on one warm model
    (`model`, as in `upscale`). With `ray` (an address, "auto" or "local") the files run on Ray
    actors instead, one per GPU of the cluster or `workers`, each with the model loaded once.
    Files whose done-record in `out_dir/.skipsr-batch/` matches this input, options and weights
    are skipped (`overwrite=True` redoes them). One bad file never stops the batch: see each
    file's status and error in the returned summary's `files`. `mask_out` names a folder.
    """
    opts = _options(options, model, option_fields)
    forget_placements()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise UsageError(f"{in_dir} is not a folder: upscale_batch takes a folder of files")
    check_options(in_dir, opts)
    items = plan_batch(
        in_dir, out_dir, recursive=recursive, glob=glob, ext=ext, mask_dir=opts.mask_out
    )
    if opts.lossless:  # refused once, not file by file
        for path in {item.output.suffix.lower(): item.output for item in items}.values():
            check_lossless(path)
    net = model if isinstance(model, SkipSR) else None
    emit = progress or _ignore
    if opts.ray is not None:  # Ray's actors pick their devices; `workers` counts them
        if devices is not None or opts.devices is not None:
            raise UsageError(
                "--devices: Ray places a batch's actors itself (--workers N, --device)"
            )
        if opts.workers is not None and opts.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {opts.workers}")
        runner = partial(files_on_ray, address=ray_address(opts.ray), workers=opts.workers)
        cpu = [torch.device("cpu")]
        return run_batch(items, out_dir, opts, devices=cpu, model=net, emit=emit, runner=runner)
    given = devices if devices is not None else opts.devices
    found = _local_workers(given, opts, net, opts.device)
    return run_batch(items, out_dir, opts, devices=found, model=net, emit=emit)


def _default_workers(opts: UpscaleOptions, model: object, found: list[torch.device]) -> bool:
    """Whether the run picks its own number of local workers: none given, none loaded by the
    caller, no Ray or single segment, no device named twice, no core count set for a process
    sharing its node (SKIPSR_WORKER_THREADS: one worker keeps to it), and a process that may
    start processes (not a multiprocessing pool's worker)."""
    return (
        opts.workers is None
        and opts.ray is None
        and opts.segment is None
        and not isinstance(model, SkipSR)
        and len(set(found)) == len(found)
        and not os.environ.get(WORKER_THREADS_ENV, "").strip()
        and not multiprocessing.current_process().daemon  # a pool's worker may start none
    )


def _local_workers(
    devices: str | None, opts: UpscaleOptions, model: object, default: str | torch.device
) -> list[torch.device]:
    """The device of each local worker process (several: spawned ones, sharing the host's cores);
    a loaded model is the one worker, on its own device."""
    if isinstance(model, SkipSR):
        if devices is not None or (opts.workers or 1) > 1:
            raise UsageError(
                "a loaded model runs on its own device: pass devices or workers, or a model, "
                "not both"
            )
        return [next(model.parameters()).device]
    return local_workers(devices, opts.workers, default)


def _options(
    options: UpscaleOptions | None, model: object, option_fields: dict[str, object]
) -> UpscaleOptions:
    unknown = sorted(set(option_fields) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"upscale() got unknown option(s): {', '.join(unknown)}")
    if isinstance(model, str | Path):
        option_fields = {**option_fields, **_model_fields(model)}
    opts = replace(options or UpscaleOptions(), **option_fields)
    paths = {
        name: Path(value) for name in PATH_OPTIONS if (value := getattr(opts, name)) is not None
    }
    return replace(opts, **paths)  # a str given for a path ("m.gif") works as the command's does


def _model_fields(model: str | Path) -> dict[str, object]:
    return {"weights": Path(model)} if _is_path(model) else {"model": model}


def _load(opts: UpscaleOptions, device: torch.device, dtype: torch.dtype) -> SkipSR:
    return load_network(opts, device, dtype)


def _is_path(name_or_path: str | Path) -> bool:
    """A path, or a string that is no preset name and looks like a file."""
    if isinstance(name_or_path, Path):
        return True
    return name_or_path not in PRESETS and (
        Path(name_or_path).suffix != "" or "/" in name_or_path or Path(name_or_path).exists()
    )


def _ignore(event: Event | BatchEvent | str) -> None:
    pass
