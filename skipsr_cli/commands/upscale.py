"""`skipsr upscale`: the command-line face of `skipsr_cli.upscale` (one file) and
`skipsr_cli.upscale_batch` (a folder of files), options grouped by panel."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from skipsr_cli import api
from skipsr_cli.batch.plan import FolderKind, folder_kind
from skipsr_cli.batch.progress import (
    BatchEvent,
    BatchSummary,
    FileResult,
    make_batch_renderer,
    summary_table,
)
from skipsr_cli.commands.common import (
    DebugOpt,
    DenoiseOpt,
    DenoiseWeightsOpt,
    DeviceChoice,
    DeviceOpt,
    DtypeChoice,
    DtypeOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    RandomOpt,
    WeightsOpt,
    exit_codes,
    in_panel,
    run_state,
)
from skipsr_cli.errors import PartialFailure, UsageError
from skipsr_cli.run.chunking import CHUNK_FRAMES, OVERLAP
from skipsr_cli.run.options import AUTO, UpscaleOptions, parse_denoise
from skipsr_cli.run.progress import Summary, make_renderer

IO = "Input and output"
MODEL = "Model"
QUALITY = "Quality and speed"
ENCODING = "Encoding"
STREAMS = "Streams"
BATCH = "Folders (batch)"
MESSAGES = "Messages"


# Input and output
InputArg = Annotated[
    Path,
    typer.Argument(
        metavar="INPUT",
        help="Video to upscale (any container and codec FFmpeg reads), an image, a numbered "
        "image pattern, or a folder (see the rule above).",
        readable=False,  # an unreadable input is an input error (exit 3), not a usage error
    ),
]
OutputArg = Annotated[
    str,  # as spelt: a trailing slash says a folder (Path would drop it)
    typer.Argument(
        metavar="OUTPUT",
        help="Where to write the result; the container follows the extension. For a batch, a "
        "folder (made if missing).",
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", "-y", help="Replace an existing output file.", rich_help_panel=IO),
]
FramesOpt = Annotated[
    str | None,
    typer.Option(
        "--frames",
        metavar="START:END",
        help="Render only these frames (0-based, END exclusive; START: runs to the end), exactly as a whole run renders them; video only.",
        rich_help_panel=IO,
    ),
]
SegmentOpt = Annotated[
    str | None,
    typer.Option(
        "--segment",
        metavar="I/N",
        help="Render part I of N (1-based) into the parts folder, for `skipsr stitch`; auto takes I (and N) from SLURM, Kubernetes or AWS Batch array variables.",
        rich_help_panel=IO,
    ),
]
SegmentsOpt = Annotated[
    int | None,
    typer.Option(
        "--segments",
        min=1,
        help="Parts to split the video into: N for --segment auto where the scheduler does not say it; else the video is rendered in N parts (by this machine's workers, or Ray's) and stitched, and a rerun with the same N resumes from the finished ones.",
        rich_help_panel=IO,
    ),
]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Render on a Ray cluster (its address, auto, or local to start Ray on this machine), on actors that keep the model loaded: one video in segments, then stitched, or the files of a folder batch; needs skipsr\\[ray]. --segments sets a video's parts, --workers the actors.",
        rich_help_panel=IO,
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Worker processes on this machine, spread round-robin over --devices (2 on one GPU run two encoders at once) \\[default: one per device; for one long video (3,600 frames or more) on GPUs, a worker per 4 cores, at most 4 a GPU, as the GPUs' and host's memory allow: see the README].\n\nWith --ray: Ray actors \\[default: one per GPU of the cluster].",
        rich_help_panel=BATCH,
    ),
]
PartsOpt = Annotated[
    Path | None,
    typer.Option(
        help="The parts folder, kept \\[default: OUTPUT.parts for --segment; for a run of several "
        "workers, Ray or a long input, a hidden folder beside OUTPUT, removed after the stitch].",
        rich_help_panel=IO,
    ),
]
MaskOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--mask-out",
        help="Also write a video with skipped regions tinted blue (for a batch: a folder).",
        rich_help_panel=IO,
    ),
]

StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Fail (exit 3, no output) on a damaged input instead of writing the frames that decode.",
        rich_help_panel=IO,
    ),
]

# Quality and speed
ScaleOpt = Annotated[
    int, typer.Option("--scale", "-s", help="Upscale factor: 2 or 4.", rich_help_panel=QUALITY)
]
SizeOpt = Annotated[
    str | None,
    typer.Option(help="Target size WIDTHxHEIGHT (overrides --scale).", rich_help_panel=QUALITY),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        help="tau in dB: skip tokens whose plain upsample is predicted at least this good. Higher keeps more (slower, closer to --no-skip).",
        rich_help_panel=QUALITY,
    ),
]
NoSkipOpt = Annotated[
    bool,
    typer.Option(
        "--no-skip", help="Keep every token: the dense baseline.", rich_help_panel=QUALITY
    ),
]
NoSceneCutsOpt = Annotated[
    bool,
    typer.Option(
        "--no-scene-cuts",
        help="Let the model look across scene cuts. By default a chunk is split where its shot "
        "changes, so one shot never bleeds into the next.",
        rich_help_panel=QUALITY,
    ),
]
StepsOpt = Annotated[
    int,
    typer.Option(
        min=1, max=1000, help="Flow-matching steps; 1 is one-step.", rich_help_panel=QUALITY
    ),
]
SeedOpt = Annotated[
    int,
    typer.Option(
        help="Seed of the sampling noise (and of --random-weights).", rich_help_panel=QUALITY
    ),
]
ChunkFramesOpt = Annotated[
    int,
    typer.Option(min=1, help="Frames per chunk (memory grows with it).", rich_help_panel=QUALITY),
]
OverlapOpt = Annotated[
    int,
    typer.Option(
        min=0, help="Frames shared by neighbouring chunks, cross-faded.", rich_help_panel=QUALITY
    ),
]
TileOpt = Annotated[
    int | None,
    typer.Option(
        min=4,
        help="Decode in tiles of this many latent pixels to bound memory.",
        rich_help_panel=QUALITY,
    ),
]

# Encoding
CodecOpt = Annotated[
    str | None,
    typer.Option(
        help="Video encoder, e.g. libx264, libx265, libvpx-vp9, ffv1 \\[default: libx264; libvpx-vp9 for .webm, gif for .gif].",
        rich_help_panel=ENCODING,
    ),
]
CrfOpt = Annotated[
    int | None,
    typer.Option(
        help="Constant rate factor (quality) for x264/x265/vpx.", rich_help_panel=ENCODING
    ),
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset", help="Encoder preset, e.g. medium, slow, veryfast.", rich_help_panel=ENCODING
    ),
]
PixFmtOpt = Annotated[
    str | None,
    typer.Option(
        "--pix-fmt", help="Output pixel format, e.g. yuv420p, yuv444p.", rich_help_panel=ENCODING
    ),
]
LosslessOpt = Annotated[
    bool,
    typer.Option(
        "--lossless",
        help="Lossless encoding: FFV1 (RGB) in mkv, x264 4:4:4 qp 0 in mp4/mov, VP9 in webm.",
        rich_help_panel=ENCODING,
    ),
]

# Streams
NoAudioOpt = Annotated[
    bool,
    typer.Option("--no-audio", help="Leave the audio streams out.", rich_help_panel=STREAMS),
]
AudioBitrateOpt = Annotated[
    int | None,
    typer.Option(
        "--audio-bitrate",
        min=8,
        help="kb/s for audio the output container cannot hold as it is, which is re-encoded \\[default: 64 a channel for Opus, 96 for AAC]. Audio that fits is copied untouched.",
        rich_help_panel=STREAMS,
    ),
]
NoSubtitlesOpt = Annotated[
    bool,
    typer.Option("--no-subtitles", help="Leave the subtitle streams out.", rich_help_panel=STREAMS),
]

# Folders
RecursiveOpt = Annotated[
    bool,
    typer.Option(
        "--recursive", "-r", help="Go into subfolders; OUTPUT mirrors them.", rich_help_panel=BATCH
    ),
]
GlobOpt = Annotated[
    str | None,
    typer.Option(
        "--glob",
        help="Which files of the folder, e.g. '*.mkv' \\[default: every video or image].",
        rich_help_panel=BATCH,
    ),
]
ExtOpt = Annotated[
    str | None,
    typer.Option(
        "--ext",
        help="Container of the outputs, e.g. mkv \\[default: each input's own; PNG for stills].",
        rich_help_panel=BATCH,
    ),
]
DevicesOpt = Annotated[
    str | None,
    typer.Option(
        "--devices",
        help="Devices of the worker processes, each with the model loaded once: 0,1 (GPUs), all, cpu,cpu; one worker per device unless --workers. A batch: each worker pulls the next file; one video: each renders the next segment, then they are stitched.",
        rich_help_panel=BATCH,
    ),
]

# The options every model command shares, shown here in their panels.
ModelNameOpt = in_panel(ModelOpt, MODEL)
ModelWeightsOpt = in_panel(WeightsOpt, MODEL)
RandomWeightsOpt = in_panel(RandomOpt, MODEL)
ModelDenoiseOpt = in_panel(DenoiseOpt, MODEL)
ModelDenoiseWeightsOpt = in_panel(DenoiseWeightsOpt, MODEL)
ModelDeviceOpt = in_panel(DeviceOpt, MODEL)
ModelDtypeOpt = in_panel(DtypeOpt, MODEL)
QuietMessagesOpt = in_panel(QuietOpt, MESSAGES)
JsonMessagesOpt = in_panel(JsonOpt, MESSAGES)
DebugMessagesOpt = in_panel(DebugOpt, MESSAGES)


@exit_codes
def upscale_command(
    input: InputArg,
    output: OutputArg,
    overwrite: OverwriteOpt = False,
    mask_out: MaskOutOpt = None,
    frames: FramesOpt = None,
    segment: SegmentOpt = None,
    segments: SegmentsOpt = None,
    parts: PartsOpt = None,
    ray: RayOpt = None,
    strict: StrictOpt = False,
    model: ModelNameOpt = "base",
    weights: ModelWeightsOpt = None,
    random_weights: RandomWeightsOpt = False,
    denoise: ModelDenoiseOpt = AUTO,
    denoise_weights: ModelDenoiseWeightsOpt = None,
    device: ModelDeviceOpt = DeviceChoice.auto,
    dtype: ModelDtypeOpt = DtypeChoice.auto,
    scale: ScaleOpt = 2,
    size: SizeOpt = None,
    threshold: ThresholdOpt = None,
    no_skip: NoSkipOpt = False,
    steps: StepsOpt = 1,
    seed: SeedOpt = 0,
    chunk_frames: ChunkFramesOpt = CHUNK_FRAMES,
    overlap: OverlapOpt = OVERLAP,
    no_scene_cuts: NoSceneCutsOpt = False,
    tile: TileOpt = None,
    codec: CodecOpt = None,
    crf: CrfOpt = 18,
    preset: PresetOpt = "medium",
    pix_fmt: PixFmtOpt = None,
    lossless: LosslessOpt = False,
    no_audio: NoAudioOpt = False,
    audio_bitrate: AudioBitrateOpt = None,
    no_subtitles: NoSubtitlesOpt = False,
    recursive: RecursiveOpt = False,
    glob: GlobOpt = None,
    ext: ExtOpt = None,
    devices: DevicesOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietMessagesOpt = False,
    json_out: JsonMessagesOpt = False,
    debug: DebugMessagesOpt = False,
) -> None:
    """Upscale a video (`skipsr upscale in.mp4 out.mp4`) or a folder (`skipsr upscale IN_DIR OUT_DIR`).

    A folder INPUT is one clip or a batch, by one rule:

    - all its files are numbered images (shot_0001.png, ...): one image sequence, written to the OUTPUT file;
    - it holds videos: a batch, each video upscaled into the OUTPUT folder under its own name, the model loaded once;
    - images that are not all numbered (photos): a batch of stills, one PNG each;
    - videos beside numbered images: an error; choose the videos with --glob '*.mp4', or the images by their pattern ('shots/shot_%04d.png');
    - --glob and --recursive always mean a batch.

    A rerun skips the files a batch finished before (records in OUTPUT/.skipsr-batch/). A batch goes on past a bad file and exits with code 6 when any file failed.
    """
    run_state["debug"] = debug
    options = UpscaleOptions(
        model=model,
        weights=weights,
        random_weights=random_weights,
        denoise=parse_denoise(denoise),
        denoise_weights=denoise_weights,
        device=device.value,
        dtype=dtype.value,
        scale=scale,
        size=size,
        threshold=threshold,
        skip=not no_skip,
        steps=steps,
        seed=seed,
        chunk_frames=chunk_frames,
        overlap=overlap,
        scene_cuts=not no_scene_cuts,
        tile=tile,
        codec=codec,
        crf=crf,
        preset=preset,
        pix_fmt=pix_fmt,
        lossless=lossless,
        copy_audio=not no_audio,
        copy_subtitles=not no_subtitles,
        audio_bitrate=audio_bitrate,
        overwrite=overwrite,
        mask_out=mask_out,
        frames=frames,
        segment=segment,
        segments=segments,
        parts=parts,
        ray=ray,
        workers=workers,
        strict=strict,
    )
    batch = dict(recursive=recursive, glob=glob, ext=ext, devices=devices)
    if input.is_dir() and folder_kind(input, recursive, glob) is FolderKind.BATCH:
        if segment or segments:
            raise UsageError(
                "--segment and --segments split one video; a folder batch takes --devices or --ray"
            )
        report_batch(run_folder(input, Path(output), options, batch, quiet, json_out), quiet)
        return
    options = replace(options, devices=devices)  # one video on several devices: in segments
    given = [f"--{name}" for name, value in batch.items() if value and name != "devices"]
    if given:
        raise UsageError(f"{', '.join(given)}: only for a folder batch (the input is one clip)")
    report(run(input, output, options, quiet), json_out)


def run(input: Path, output: str, options: UpscaleOptions, quiet: bool) -> Summary:
    """The library call, drawn on the terminal (a bar, plain lines, or nothing with --quiet)."""
    renderer = make_renderer(quiet)
    try:
        return api.upscale(input, output, options, progress=renderer)
    finally:
        renderer.close()


def report(summary: Summary, json_out: bool) -> None:
    for warning in summary.warnings:  # shown even with --quiet: something was left out
        print(f"skipsr: warning: {warning}", file=sys.stderr, flush=True)
    if json_out:
        print(json.dumps(summary.as_dict()), flush=True)


def run_folder(
    input: Path, output: Path, options: UpscaleOptions, batch: dict, quiet: bool, json_out: bool
) -> BatchSummary:
    """The batch, drawn on the terminal; with --json, one line per file as it ends."""
    renderer = make_batch_renderer(quiet)

    def progress(event: BatchEvent) -> None:
        renderer(event)
        if json_out and isinstance(event, FileResult):
            print(json.dumps(event.as_dict()), flush=True)

    try:
        summary = api.upscale_batch(input, output, options, progress=progress, **batch)
    finally:
        renderer.close()
    if json_out:
        print(json.dumps(summary.as_dict()), flush=True)
    return summary


def report_batch(summary: BatchSummary, quiet: bool) -> None:
    """The table of every file on stderr; exit code 6 naming the files that failed."""
    for f in summary.files:
        for warning in f.warnings:
            print(f"skipsr: warning: {f.file}: {warning}", file=sys.stderr, flush=True)
    if not quiet:
        Console(stderr=True).print(summary_table(summary))
    failed = [f for f in summary.files if f.status == "failed"]
    for f in failed:  # shown even with --quiet: a scheduler's log must say which and why
        print(f"skipsr: error: {f.file}: {f.error}", file=sys.stderr, flush=True)
    if failed:
        raise PartialFailure(f"{len(failed)} of {len(summary.files)} files failed")
