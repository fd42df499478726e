"""skipsr: the command line, media pipeline and Python API around the SkipSR models in `models/`.

The Python API (documented in `skipsr_cli.api`):

    import skipsr_cli

    model = skipsr_cli.load_model("base")  # a preset name or a .safetensors path
    summary = skipsr_cli.upscale("in.mp4", "out.mp4", model=model, scale=2, crf=16)

`upscale` takes the command line's options as keywords (or an `UpscaleOptions`) and returns the
run's `Summary`; `upscale_batch(in_dir, out_dir, **options)` does a folder and returns a
`BatchSummary`; errors are the typed exceptions of `skipsr_cli.errors`.

The package, by room: `media/` (PyAV: decode, encode, streams, images, colour), `run/` (one
streaming upscale), `train/`, `measure/` (evaluation and benchmarks), `commands/` (the `skipsr`
command line). `weights` loads networks; `errors` holds the exceptions and exit codes. The API is
imported on first use, so `import skipsr_cli` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = [
    "BatchSummary", "Summary", "UpscaleOptions", "load_model", "stitch", "upscale", "upscale_batch",
]  # fmt: skip

_LAZY = {
    "load_model": "skipsr_cli.api",
    "upscale": "skipsr_cli.api",
    "upscale_batch": "skipsr_cli.api",
    "stitch": "skipsr_cli.api",
    "BatchSummary": "skipsr_cli.batch.progress",
    "UpscaleOptions": "skipsr_cli.run.options",
    "Summary": "skipsr_cli.run.progress",
}

if TYPE_CHECKING:
    from skipsr_cli.api import load_model, stitch, upscale, upscale_batch
    from skipsr_cli.batch.progress import BatchSummary
    from skipsr_cli.run.options import UpscaleOptions
    from skipsr_cli.run.progress import Summary


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skipsr_cli' has no attribute {name!r}")
