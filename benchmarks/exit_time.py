"""Where the seconds outside a run go: the command's start before the run's clock, and its exit
after the summary, for one `skipsr ... --json` command (issue 14's "outside the run").
Runs COMMAND, reads its JSON summary (the first line on stdout) as it comes, and prints the total,
the run's own clock, the time before the summary less that clock (interpreter start, imports,
probing), and the time from the summary to the process's end (the interpreter's exit).
Usage: python3 benchmarks/exit_time.py [--repeat N] -- COMMAND..."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time


def once(command: list[str]) -> tuple[float, float, float, float]:
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    said = time.monotonic()
    if proc.wait() != 0 or not line:
        sys.exit(f"the command failed with exit code {proc.returncode}")
    end = time.monotonic()
    clock = json.loads(line)["wall_seconds"]
    return end - start, clock, said - start - clock, end - said


def main(argv: list[str]) -> None:
    repeat = 1
    if argv[:1] == ["--repeat"]:
        repeat, argv = int(argv[1]), argv[2:]
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        sys.exit(__doc__)
    rows = [once(command) for _ in range(repeat)]
    print(
        "| run | total s | run's clock s | before it s | summary to exit s |\n|---|---|---|---|---|"
    )
    for i, row in enumerate(rows, 1):
        print(f"| {i} | " + " | ".join(f"{x:.2f}" for x in row) + " |")
    if repeat > 1:
        medians = [statistics.median(column) for column in zip(*rows, strict=True)]
        print("| median | " + " | ".join(f"{x:.2f}" for x in medians) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
