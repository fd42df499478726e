"""The Typer application: every command group, side by side. The only module that imports them."""

from __future__ import annotations

import torch
import typer

from skipsr_cli import __version__
from skipsr_cli.commands.bench import bench_app
from skipsr_cli.commands.eval import eval_command
from skipsr_cli.commands.stitch import stitch_command
from skipsr_cli.commands.train import train_app
from skipsr_cli.commands.upscale import upscale_command

app = typer.Typer(
    name="skipsr",
    help="Video super-resolution with SkipSR: detailed regions go through the transformer, flat ones skip it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("upscale")(upscale_command)
app.command("eval")(eval_command)
app.command("stitch")(stitch_command)
app.add_typer(bench_app, name="bench")
app.add_typer(train_app, name="train")


@app.command("version")
def version_command() -> None:
    """Print the version."""
    print(f"skipsr {__version__} (torch {torch.__version__})")
