"""`skipsr upscale`: the command-line face of `skipsr_cli.upscale`, options grouped by panel."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from skipsr_cli import api
from skipsr_cli.commands.common import (
    DebugOpt,
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
from skipsr_cli.run.options import UpscaleOptions
from skipsr_cli.run.progress import Summary, make_renderer

IO = "Input and output"
MODEL = "Model"
QUALITY = "Quality and speed"
ENCODING = "Encoding"
STREAMS = "Streams"
MESSAGES = "Messages"

# Input and output
InputArg = Annotated[
    Path,
    typer.Argument(
        metavar="INPUT",
        help="Video to upscale (any container and codec FFmpeg reads).",
        readable=False,  # an unreadable input is an input error (exit 3), not a usage error
    ),
]
OutputArg = Annotated[
    Path,
    typer.Argument(
        metavar="OUTPUT",
        help="Where to write the result; the container follows the extension.",
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", "-y", help="Replace an existing output file.", rich_help_panel=IO),
]
MaskOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--mask-out",
        help="Also write a video with skipped regions tinted blue.",
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

# The options every model command shares, shown here in their panels.
ModelNameOpt = in_panel(ModelOpt, MODEL)
ModelWeightsOpt = in_panel(WeightsOpt, MODEL)
RandomWeightsOpt = in_panel(RandomOpt, MODEL)
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
    strict: StrictOpt = False,
    model: ModelNameOpt = "base",
    weights: ModelWeightsOpt = None,
    random_weights: RandomWeightsOpt = False,
    device: ModelDeviceOpt = DeviceChoice.auto,
    dtype: ModelDtypeOpt = DtypeChoice.auto,
    scale: ScaleOpt = 2,
    size: SizeOpt = None,
    threshold: ThresholdOpt = None,
    no_skip: NoSkipOpt = False,
    steps: StepsOpt = 1,
    seed: SeedOpt = 0,
    chunk_frames: ChunkFramesOpt = 16,
    overlap: OverlapOpt = 4,
    tile: TileOpt = None,
    codec: CodecOpt = None,
    crf: CrfOpt = 18,
    preset: PresetOpt = "medium",
    pix_fmt: PixFmtOpt = None,
    lossless: LosslessOpt = False,
    no_audio: NoAudioOpt = False,
    audio_bitrate: AudioBitrateOpt = None,
    no_subtitles: NoSubtitlesOpt = False,
    quiet: QuietMessagesOpt = False,
    json_out: JsonMessagesOpt = False,
    debug: DebugMessagesOpt = False,
) -> None:
    """Upscale a video: `skipsr upscale in.mp4 out.mp4`."""
    run_state["debug"] = debug
    options = UpscaleOptions(
        model=model,
        weights=weights,
        random_weights=random_weights,
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
        strict=strict,
    )
    report(run(input, output, options, quiet), json_out)


def run(input: Path, output: Path, options: UpscaleOptions, quiet: bool) -> Summary:
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
