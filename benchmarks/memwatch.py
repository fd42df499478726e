"""Run a command and sample the memory of its whole process tree: host RSS summed over the tree
(from /proc) and, where nvidia-smi is present, the GPU memory in use. Prints one line per sample
and a summary (wall seconds, peak and first/last-quarter medians), then exits with the command's
status. With --limit, the command gets SIGINT (a user's Ctrl-C) once it has run that long, so a
run longer than a session's time stops as a user would stop it and can be resumed. The --json
report is rewritten (atomically) after every sample, with "rc": null while the command runs, so a
watch killed with its command still leaves the trace up to its last minute.
Usage: python3 benchmarks/memwatch.py [--every SECONDS] [--limit SECONDS] [--json PATH] -- CMD..."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time


def tree_rss(root: int) -> int:
    """Bytes of resident memory of `root` and every descendant (one pass over /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/statm") as f:
                resident = int(f.read().split()[1])
        except OSError:
            continue
        parents[int(name)] = int(fields[1])
        rss[int(name)] = resident * page
    total, todo = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def gpu_used() -> int | None:
    """MiB in use over all GPUs, or None without nvidia-smi."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(int(x) for x in out.split())


def summarise(
    command: list[str], rc: int | None, wall: float, samples: list[tuple[float, int, int | None]]
) -> dict:
    """Wall seconds, peaks and first/last-quarter medians of the samples so far."""
    hosts = [s[1] / 2**20 for s in samples] or [0.0]
    gpus = [s[2] for s in samples if s[2] is not None]
    quarter = max(1, len(hosts) // 4)
    return {
        "command": command,
        "rc": rc,
        "wall_s": round(wall, 2),
        "samples": len(samples),
        "host_peak_mib": round(max(hosts), 1),
        "host_first_quarter_median_mib": round(statistics.median(hosts[:quarter]), 1),
        "host_last_quarter_median_mib": round(statistics.median(hosts[-quarter:]), 1),
        "gpu_peak_mib": max(gpus) if gpus else None,
        "gpu_first_quarter_median_mib": statistics.median(gpus[:quarter]) if gpus else None,
        "gpu_last_quarter_median_mib": statistics.median(gpus[-quarter:]) if gpus else None,
    }


def write_report(path: str, summary: dict, samples: list[tuple[float, int, int | None]]) -> None:
    """The summary and the whole trace, replaced in one rename: never half written."""
    part = f"{path}.part"
    with open(part, "w") as f:
        json.dump({**summary, "trace": samples}, f)
    os.replace(part, path)


def main(argv: list[str]) -> int:
    every, report, limit = 1.0, None, None
    while argv and argv[0] != "--":
        flag, value, argv = argv[0], argv[1], argv[2:]
        every = float(value) if flag == "--every" else every
        report = value if flag == "--json" else report
        limit = float(value) if flag == "--limit" else limit
    command = argv[1:]
    start = time.monotonic()
    proc = subprocess.Popen(command)
    samples: list[tuple[float, int, int | None]] = []
    while proc.poll() is None:
        samples.append((time.monotonic() - start, tree_rss(proc.pid), gpu_used()))
        t, host, gpu = samples[-1]
        print(f"memwatch: {t:8.1f} s host {host / 2**20:9.1f} MiB gpu {gpu} MiB", file=sys.stderr)
        if report:
            write_report(report, summarise(command, None, t, samples), samples)
        deadline = time.monotonic() + every
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(min(0.2, every))
            if limit is not None and time.monotonic() - start > limit:
                proc.send_signal(signal.SIGINT)
                limit = None  # once: the command stops by itself, as after a Ctrl-C
    summary = summarise(command, proc.returncode, time.monotonic() - start, samples)
    print("memwatch: " + json.dumps(summary), file=sys.stderr)
    if report:
        write_report(report, summary, samples)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
