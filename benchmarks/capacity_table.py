"""Rows of BENCHMARKS.md's capacity tables from `bench capacity --json` files (capacity_gpu.sh).

capacity_table.py FLOOR.json UPSCALE.json      one round: the floors, the upscales, the ratio
capacity_table.py --median capacity_*_rR.json  each chunk plan's median ratio over the rounds
                                               (the upscale files beside each floor file)
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def totals(report: dict) -> str:
    return " / ".join(f"{row['total_fps']:.1f}" for row in report["rows"])


def cpu(report: dict) -> str:
    """CPU ms a frame of each row, the whole process's (its calling thread's); older reports
    have none."""
    return (
        " / ".join(
            f"{row['cpu_ms_per_frame']:.1f} ({row['main_thread_cpu_ms_per_frame']:.1f})"
            for row in report["rows"]
            if "cpu_ms_per_frame" in row
        )
        or "-"
    )


def ratio(floor: dict, upscale: dict) -> tuple[float, dict]:
    """The upscale's best total over the floor's (the capacity), and the best row."""
    best = max(upscale["rows"], key=lambda row: row["total_fps"])
    return best["total_fps"] / floor["capacity_fps"], best


def best_steady(report: dict) -> float | None:
    """The best steady total of a report's rows (the runs' middles, past every copy's start);
    None in older reports and for copies too short for one."""
    return max((row["steady_fps"] for row in report["rows"] if row.get("steady_fps")), default=None)


def steady_ratio(floor: dict, upscale: dict) -> float | None:
    f, u = best_steady(floor), best_steady(upscale)
    return None if f is None or u is None else u / f


def steady(floor: dict, upscale: dict) -> str:
    f, u = best_steady(floor), best_steady(upscale)
    return "-" if f is None or u is None else f"{u / f:.3f} ({u:.1f} / {f:.1f} fps)"


def row(floor: dict, upscale: dict) -> str:
    r, best = ratio(floor, upscale)
    workers = lambda report: ",".join(str(x["workers"]) for x in report["rows"])  # noqa: E731
    return (
        f"| {floor['input']} -> {floor['output']} | floors {workers(floor)} at once: "
        f"{totals(floor)} fps | capacity {floor['capacity_fps']:.1f} | upscales "
        f"{workers(upscale)} at once: {totals(upscale)} fps | best {best['total_fps']:.1f} "
        f"({best['workers']}) | ratio {r:.3f} | steady ratio {steady(floor, upscale)} | chunks "
        f"{upscale['chunks']} | CPU ms/frame floor {cpu(floor)}, upscale {cpu(upscale)} |"
    )


def finished(path: Path) -> dict | None:
    """The report in `path`, or None where its run was cut short (an empty or partial file)."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def medians(floors: list[Path]) -> list[str]:
    """One line per chunk plan: its ratio in each round that has both files, and their median.
    A round cut short (a call's time limit) leaves an empty file; it is left out."""
    by_plan: dict[str, list[float]] = {}
    steady_by_plan: dict[str, list[float]] = {}
    for path in sorted(floors):
        stem = path.stem  # capacity_SIZE_rR
        size, round_ = stem.split("_")[1], stem.rsplit("_", 1)[1]
        if (floor := finished(path)) is None:
            continue
        for up in sorted(path.parent.glob(f"upscale_{size}_*_{round_}.json")):
            if (report := finished(up)) is not None:
                by_plan.setdefault(report["chunks"], []).append(ratio(floor, report)[0])
                if (value := steady_ratio(floor, report)) is not None:
                    steady_by_plan.setdefault(report["chunks"], []).append(value)
    return [
        f"{plan}: ratio {_median(values)}"
        + (f"; steady ratio {_median(steady_by_plan[plan])}" if plan in steady_by_plan else "")
        for plan, values in by_plan.items()
    ]


def _median(values: list[float]) -> str:
    listed = ", ".join(f"{v:.3f}" for v in values)
    return f"{statistics.median(values):.3f} median of {len(values)} round(s) ({listed})"


def main(argv: list[str]) -> None:
    if argv[:1] == ["--median"]:
        print("\n".join(medians([Path(p) for p in argv[1:]])))
    elif len(argv) == 2:
        floor, upscale = (json.loads(Path(p).read_text()) for p in argv)
        print(row(floor, upscale))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
