"""`skipsr stitch OUTPUT`: join the parts that `upscale --segment I/N` rendered into OUTPUT."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from skipsr_cli.commands.common import DebugOpt, JsonOpt, exit_codes, run_state


@exit_codes
def stitch_command(
    output: Annotated[
        Path, typer.Argument(metavar="OUTPUT", help="The file the parts were rendered for.")
    ],
    parts: Annotated[
        Path | None,
        typer.Option(help="The parts folder \\[default: OUTPUT.parts beside OUTPUT]."),
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input", help="The source video, where it is not at the path the parts recorded."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", "-y", help="Replace an existing output file.")
    ] = False,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Leave the audio out.")] = False,
    no_subtitles: Annotated[
        bool, typer.Option("--no-subtitles", help="Leave the subtitles out.")
    ] = False,
    audio_bitrate: Annotated[
        int | None,
        typer.Option(
            "--audio-bitrate",
            min=8,
            help="kb/s for audio OUTPUT's container cannot hold as it is, which is re-encoded "
            "\\[default: 64 a channel for Opus, 96 for AAC]. Audio that fits is copied untouched.",
        ),
    ] = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check every part (present, complete, unchanged since it was written where its manifest
    records its size and hash, same input, options and weights, frame count), then join them
    without re-encoding and copy the source's audio, subtitles and chapters once."""
    from skipsr_cli import api

    run_state["debug"] = debug
    warnings: list[str] = []
    frames = api.stitch(
        output,
        parts,
        input,
        overwrite=overwrite,
        copy_audio=not no_audio,
        copy_subtitles=not no_subtitles,
        audio_bitrate=audio_bitrate,
        warn=warnings.append,
    )
    for warning in warnings:  # as upscale says them: something was left out or re-encoded
        print(f"skipsr: warning: {warning}", file=sys.stderr, flush=True)
    if json_out:
        print(
            json.dumps({"output": str(output), "frames": frames, "warnings": warnings}), flush=True
        )
