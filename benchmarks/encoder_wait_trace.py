"""When the encoders wait for the model, frame by frame, for issue 14.

A run's summary sums the encoder's waits (`waits_s`); this says when they fall. It copies the
project's packages into a temporary folder, adds a line to that copy's encoder thread
(`BackgroundWriter._run` in run/overlap.py) that reports each wait longer than OVER seconds on
stderr (the process, seconds since the thread's first wait began, the item it waited for, the wait),
runs `skipsr bench capacity ARGS...` from the copy, and prints every such wait by copy. The
project's own files are not touched.

Usage: python3 benchmarks/encoder_wait_trace.py [--over 0.01] -- IN.mp4 --scale 2 --workers 4
       --devices all --upscale
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WAITED = """            item = self._queue.get()
            self.idle += time.perf_counter() - began
"""
REPORT = """            _trace(self, began, time.perf_counter() - began)
"""
TRACE = '''

def _trace(writer, began, waited):
    """Added by benchmarks/encoder_wait_trace.py: report a long wait on stderr."""
    writer._trace_start = getattr(writer, "_trace_start", began)
    writer._trace_items = getattr(writer, "_trace_items", 0) + 1
    if waited > {over}:
        import os
        print(f"WAIT {{os.getpid()}} {{began - writer._trace_start:.3f}} {{writer._trace_items}} "
              f"{{waited:.3f}}", file=sys.stderr, flush=True)
'''
LINE = re.compile(r"WAIT (\d+) ([\d.]+) (\d+) ([\d.]+)")


def traced_tree(folder: Path, over: float) -> None:
    """A copy of the packages whose encoder thread reports its long waits."""
    for package in ("models", "skipsr_cli"):
        shutil.copytree(ROOT / package, folder / package)
    overlap = folder / "skipsr_cli" / "run" / "overlap.py"
    text = overlap.read_text()
    if WAITED not in text:
        sys.exit("run/overlap.py has changed: update WAITED in this script")
    overlap.write_text(text.replace(WAITED, WAITED + REPORT) + TRACE.format(over=over))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--over", type=float, default=0.01, help="report waits over this, s")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then bench capacity's args")
    args = parser.parse_args()
    bench = args.args[1:] if args.args[:1] == ["--"] else args.args
    with tempfile.TemporaryDirectory() as tmp:
        traced_tree(Path(tmp), args.over)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")])}
        # -P: the copy, not the working folder's packages, on the path first
        command = [sys.executable, "-P", "-m", "skipsr_cli.cli", "bench", "capacity", *bench]
        run = subprocess.run(command, env=env, capture_output=True, text=True)
    print(run.stdout, end="")
    if run.returncode != 0:
        sys.exit(f"bench capacity failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
    waits: dict[str, list[tuple[float, int, float]]] = collections.defaultdict(list)
    for pid, at, item, waited in LINE.findall(run.stderr):
        waits[pid].append((float(at), int(item), float(waited)))
    print(f"waits over {args.over} s, by copy: (seconds into its run, item, seconds waited)")
    for n, (_, found) in enumerate(sorted(waits.items()), 1):
        total = sum(w for _, _, w in found)
        listed = ", ".join(f"({at:.2f}, {item}, {w:.3f})" for at, item, w in found)
        print(f"copy {n}: {len(found)} waits, {total:.2f} s: {listed}")


if __name__ == "__main__":
    main()
