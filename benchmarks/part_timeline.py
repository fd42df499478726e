"""Where a run in parts spent its time, from its `--json` summary's `parts` timeline: when the
first frames reached an encoder (the workers' start-up), how long each part took, and for how long
at the end fewer parts ran than at the busiest (workers idle while the last parts finish).
Usage: python3 benchmarks/part_timeline.py SUMMARY_JSON"""

import json
import sys
from pathlib import Path

summary = json.loads(Path(sys.argv[1]).read_text())
parts = summary.get("parts") or []
if not parts:
    sys.exit(f"{sys.argv[1]}: no parts timeline (a run in one piece, or one made before it)")
print("| part | frames | fps | started s | first frames s | ended s |")
print("|---|---|---|---|---|---|")
for p in parts:
    print(
        f"| {p['part']} | {p['frames']} | {p['fps']:.2f} | {p['started_s']:.1f} | "
        f"{p['first_frames_s']:.1f} | {p['finished_s']:.1f} |"
    )
# parts running at once, over time: +1 at a start, -1 at an end
running, busiest = 0, 0
for _, step in sorted(
    [(p["started_s"], 1) for p in parts] + [(p["finished_s"], -1) for p in parts]
):
    running += step
    busiest = max(busiest, running)
# every part has started by the time the first of the last `busiest` ends: from then on fewer ran
ends = sorted(p["finished_s"] for p in parts)
last_full = ends[-busiest]
wall = summary["wall_seconds"]
first = min(p["first_frames_s"] for p in parts)
print(
    f"\n{len(parts)} parts, at most {busiest} at once; first frames at {first:.1f} s; "
    f"every worker busy until {last_full:.1f} s, then {ends[-1] - last_full:.1f} s with fewer; "
    f"last part ended at {ends[-1]:.1f} s of {wall:.1f} s (the rest: stitch and clean-up)"
)
