"""Run `skipsr` with its worker processes started as before the fork server: each spawned as a
fresh interpreter that imports torch itself, once the main process has imported its own. For
measuring what the preloaded, early-started fork server (skipsr_cli/processes.py) saves, in the
same call as the default. Usage: python3 benchmarks/spawned_workers.py upscale IN OUT [OPTIONS]"""

from __future__ import annotations

import multiprocessing as mp

from skipsr_cli import cli, processes

processes.context = lambda: mp.get_context("spawn")  # the workers' modules read it when called
processes.start_early = lambda argv: False

if __name__ == "__main__":
    cli.main()
