"""The table of benchmarks/whole_gpu.sh: every whole upscale against the encode floors measured
just before and just after it, then, over the rounds, each WORKERS entry's median ratio.
Usage: python3 benchmarks/whole_table.py OUTDIR WIDTHxHEIGHT
Reads OUTDIR/whole_{round}_{i}_{entry}.json (memwatch: wall seconds, host peak, exit code),
summary_{round}_{i}_{entry}.json (the upscale's --json) and floor_{k}.json (bench capacity --json),
where floor k comes before round k + 1 and after round k."""

import json
import re
import statistics
import sys
from pathlib import Path

RESUME_FRAMES = 3600  # farm.resume: shorter inputs run in one piece


def floor(out: Path, k: int) -> dict | None:
    """Floor k's best row (the capacity): its total rate over the copies' whole wall time, its
    steady rate over their common middle, and frames a copy."""
    path = out / f"floor_{k}.json"
    try:  # a floor the time limit stopped left no file or a cut one
        report = json.loads(path.read_text())
        row = next(r for r in report["rows"] if r["total_fps"] == report["capacity_fps"])
    except (OSError, ValueError, KeyError, StopIteration):
        return None
    return {
        "fps": row["total_fps"],
        "steady": row.get("steady_fps"),
        "per_copy": row["frames"] / row["workers"],
        "cpu_ms": row.get("cpu_ms_per_frame"),
    }


def mean_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def rendering_rate(parts: list[dict]) -> float | None:
    """The parts' total rate while they rendered, start-up and stitch left out: frames over the
    parts' own wall time, times as many as ran at once at the busiest."""
    if not parts:
        return None
    events = sorted([(p["started_s"], 1) for p in parts] + [(p["finished_s"], -1) for p in parts])
    running = busiest = 0
    for _, step in events:
        running += step
        busiest = max(busiest, running)
    frames = sum(p["frames"] for p in parts)
    return busiest * frames / sum(p["frames"] / p["fps"] for p in parts)


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(out: Path, size: str) -> int:
    runs = []
    for path in out.glob("whole_*.json"):
        match = re.fullmatch(r"whole_(\d+)_(\d+)_(\w+)\.json", path.name)
        if match:
            runs.append((int(match[1]), int(match[2]), match[3]))
    if not runs:
        sys.exit(f"{out}: no whole_ROUND_I_ENTRY.json files")
    status = 0
    ratios: dict[tuple[int, str], list[tuple[float, float | None, float | None]]] = {}
    print(
        "| round | run | frames (parts) | whole upscale | outside the run | first frames | "
        "floor before / after | ratio to before / after / mean | "
        "floors' steady rate before / after | ratio to its mean | host peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    short = []
    for r, i, entry in sorted(runs):
        name = f"{r}_{i}_{entry}"
        whole = json.loads((out / f"whole_{name}.json").read_text())
        if whole["rc"] != 0:
            print(
                f"round {r} run {i} failed (exit {whole['rc']}): see whole_{name}.log",
                file=sys.stderr,
            )
            status = 1
            continue
        summary = json.loads((out / f"summary_{name}.json").read_text())
        frames, parts = summary["frames"], summary.get("parts") or []
        fps = frames / whole["wall_s"]
        floors = [floor(out, r - 1), floor(out, r)]
        before, after = (None if f is None else f["fps"] for f in floors)
        mean = mean_of([before, after])
        ratio = [None if f is None else fps / f for f in (before, after, mean)]
        steady = [None if f is None else f["steady"] for f in floors]
        steady_mean = mean_of(steady)
        per_part = frames / max(len(parts), 1)
        if parts:  # a run in one piece has no part to set a floor's copy beside
            short += [f["per_copy"] / per_part for f in floors if f and f["per_copy"] < per_part]
        ratios.setdefault((i, entry), []).append((ratio[2], ratio[0], ratio[1]))
        first = min((p["first_frames_s"] for p in parts), default=None)
        pieces = f"{len(parts)} parts" if parts else "ran in one piece"
        print(
            f"| {r} | {i}: workers {entry} | {frames} ({pieces}) | {whole['wall_s']:.1f} s, {fps:.2f} fps | "
            f"{whole['wall_s'] - summary['wall_seconds']:.1f} s | {fmt(first)}{'' if first is None else ' s'} | "
            f"{fmt(before)} / {fmt(after)} fps | {' / '.join(fmt(x, 3) for x in ratio)} | "
            f"{fmt(steady[0])} / {fmt(steady[1])} fps | "
            f"{fmt(None if steady_mean is None else fps / steady_mean, 3)} | "
            f"{whole['host_peak_mib']:.0f} MiB |"
        )
        rendering = rendering_rate(parts)
        if rendering is not None:
            to_steady = (
                ""
                if steady_mean is None
                else f", {rendering / steady_mean:.3f} of the floors' steady mean"
            )
            print(
                f"round {r} run {i}: its parts rendered at {rendering:.2f} fps in all while they "
                f"ran (their own rates, as many at once as ran at the busiest){to_steady}",
                file=sys.stderr,
            )
        cpu = [p.get("cpu_s") for p in parts]
        if parts and None not in cpu:
            floor_cpu = " / ".join(fmt(None if f is None else f["cpu_ms"], 1) for f in floors)
            print(
                f"round {r} run {i}: its parts' processes spent "
                f"{1000 * sum(cpu) / sum(p['frames'] for p in parts):.1f} ms "
                f"of CPU a frame (all threads, while rendering), the floors before / after "
                f"{floor_cpu}",
                file=sys.stderr,
            )
        if frames < RESUME_FRAMES:
            print(
                f"note: {frames} frames ran in one piece, without parts or workers", file=sys.stderr
            )
    if short:
        print(
            f"\nnote: the floors' copies were {min(short):.2f}-{max(short):.2f} of a part's length: "
            "their own start and end weigh more in their total rate than the run's do in its, "
            "which favours the ratio (FLOOR_FRAMES below FRAMES / 4); the steady rate leaves "
            "both out of the floor, which disfavours it"
        )
    print(f"\n{size} x2, over {max(r for r, _, _ in runs)} round(s):")
    for (i, entry), rows in sorted(ratios.items()):
        means = [m for m, _, _ in rows if m is not None]
        each = [x for _, b, a in rows for x in (b, a) if x is not None]
        if not means:
            print(f"- run {i} (workers {entry}): no floor measured")
            continue
        print(
            f"- run {i} (workers {entry}): median ratio to the mean floor {statistics.median(means):.3f} "
            f"(range {min(means):.3f}-{max(means):.3f}, {len(means)} rounds); median ratio to each "
            f"floor {statistics.median(each):.3f} (range {min(each):.3f}-{max(each):.3f})"
        )
    return status


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
