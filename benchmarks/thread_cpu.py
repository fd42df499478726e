"""CPU time a frame by thread, over the timed part of one `bench capacity` row, for issue 14.

Runs COMMAND (a `skipsr bench capacity ... --json` with one count of copies), samples every
thread of the copies it spawns (its multiprocessing children) from /proc every EVERY seconds while
it runs, then reads its JSON row and sums each thread's CPU over the row's last `wall_s` seconds:
the timed part, after the copies have loaded and warmed up (to within a sample's interval). Threads group by the names they carry (overlap.py names the
pipeline's helper threads): `calling thread` is each copy's main thread (the model's or bicubic's
launches and the frames' conversion), `skipsr-decode` and FFmpeg's `av:h264:df*` the decoder,
`skipsr-encode` the thread that hands frames to the encoder, and `python` the rest of the threads
that keep the process's name: x264's own threads and torch's pool, listed apart by how busy each
is. Linux only.

With --whole, COMMAND is a whole `skipsr upscale ... --json` instead: every process of its tree
is sampled (the command, its fork server and the workers forked from it), each thread's CPU is
counted from its birth to its last sample, and the frames are the summary's. A long video's
workers render in their main threads, so `calling thread` there is the model's launches and the
frames' conversion, as in a copy (with the command's and the server's own main threads, which
mostly wait).

Usage: python3 benchmarks/thread_cpu.py [--every 0.2] [--label TEXT] [--whole] [--save OUT.json] -- COMMAND...
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
Series = dict[str, tuple[str, list[tuple[float, float]]]]  # "pid/tid": (group, [(t, cpu s)])


def copies(root: int) -> list[int]:
    """The live copies `root` started: its children that multiprocessing spawned, less its
    resource tracker (which outlives the copies)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == root and b"spawn_main" in command and b"resource_tracker" not in command:
                found.append(int(entry.name))
    return found


def tree(root: int) -> list[int]:
    """`root` and every live process under it, at any depth."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def sample(series: Series, pids: list[int], now: float) -> None:
    """Each thread's CPU seconds so far (user and system), and its group."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                name = Path(f"{base}/comm").read_text().strip()
                fields = Path(f"{base}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            group = "calling thread" if tid == str(pid) else name.rstrip("0123456789")
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            series.setdefault(f"{pid}/{tid}", (group, []))[1].append((now, cpu))


def _spent(samples: list[tuple[float, float]], start: float) -> float | None:
    """A thread's CPU seconds from `start` (-inf: from its birth) to its last sample; None where
    it was not sampled from then on."""
    inside = [cpu for t, cpu in samples if t >= start]
    if not inside:
        return None
    before = [cpu for t, cpu in samples if t < start]
    return inside[-1] - (before[-1] if before else 0.0 if start == float("-inf") else inside[0])


def by_group(series: Series, start: float) -> tuple[dict[str, float], dict[str, int]]:
    """CPU seconds each group spent from `start` to each thread's last sample, and its threads."""
    seconds: dict[str, float] = collections.Counter()
    threads: dict[str, int] = collections.Counter()
    for group, samples in series.values():
        spent = _spent(samples, start)
        if spent is not None:
            seconds[group] += spent
            threads[group] += 1
    return seconds, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--label", default="", help="a name for the table")
    parser.add_argument("--whole", action="store_true", help="COMMAND is a whole upscale")
    parser.add_argument("--save", type=Path, help="write the command's own output (its JSON) here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the bench command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    series: Series = {}
    began = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    while proc.poll() is None:
        pids = tree(proc.pid) if args.whole else copies(proc.pid)
        sample(series, pids, time.monotonic())
        time.sleep(args.every)
    ended = time.monotonic()  # to within a sample's interval
    out = proc.stdout.read() if proc.stdout else ""
    if args.save:
        args.save.write_text(out)
    if proc.returncode != 0:
        sys.exit(f"the command failed with exit code {proc.returncode}")
    if not series:
        sys.exit("no copies were sampled: is the command a `bench capacity` run?")
    end = max(t for _, samples in series.values() for t, _ in samples)
    if args.whole:
        said = json.loads(out.strip().splitlines()[-1])
        start = float("-inf")  # each thread from its birth: the whole run
        frames, what = said["frames"], f"the whole run of {said['wall_seconds']} s"
        print(
            f"{args.label or ' '.join(command)}: {said['fps']} fps in-run, end to end "
            f"{ended - began:.1f} s",
            end=", ",
        )
    else:
        row = json.loads(out)["rows"][0]
        start, frames = end - row["wall_s"], row["frames"]
        what = f"the timed {row['wall_s']} s"
        print(
            f"{args.label or ' '.join(command)}: {row['workers']} copies, {row['total_fps']} fps",
            end=", ",
        )
    seconds, threads = by_group(series, start)
    total = sum(seconds.values())
    print(f"{1000 * total / frames:.1f} CPU ms a frame over {what}")
    if not args.whole:
        print(f"steady rate {row.get('steady_fps')} fps; waits, s: {row.get('waits_s')}")
    print("| thread group | CPU ms a frame | threads |\n|---|---|---|")
    for group, spent in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"| {group} | {1000 * spent / frames:.1f} | {threads[group]} |")
    ranks = python_by_rank(series, start)
    print(
        "`python` threads of a copy, busiest first, CPU ms a frame of all copies (mean over "
        "copies): "
        + ", ".join(
            f"{1000 * spent / frames:.1f}" for spent in ranks if 1000 * spent / frames >= 0.1
        )
    )


def python_by_rank(series: Series, start: float) -> list[float]:
    """The `python` group's threads in each copy sorted busiest first, each rank's CPU seconds
    averaged over the copies: x264's frame threads and lookahead, torch's pool and the rest, which
    carry one name, come apart by how busy each is."""
    per_copy: dict[str, list[float]] = collections.defaultdict(list)
    for key, (group, samples) in series.items():
        spent = _spent(samples, start)
        if group == "python" and spent is not None:
            per_copy[key.split("/")[0]].append(spent)
    if not per_copy:
        return []
    ranked = [sorted(spent, reverse=True) for spent in per_copy.values()]
    width = max(len(spent) for spent in ranked)
    return [sum(s[i] for s in ranked if i < len(s)) / len(ranked) for i in range(width)]


if __name__ == "__main__":
    main()
