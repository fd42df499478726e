"""Tables of a held-out evaluation (`skipsr eval --json`, e.g. from benchmarks/heldout_gpu.sh), as
the model card and BENCHMARKS.md give them: for each weights file in the run, per clip and track
its PSNR against lanczos's, SSIM, flicker, the tokens skipped and the cost of skipping (against
`--no-skip`); then a summary line per weights and track (mean and smallest gain over lanczos, the
cells where flicker is above lanczos's or SSIM below).

    python3 benchmarks/heldout_table.py OUT/eval_x2.json OUT/eval_x4.json [--only NAME]
"""

from __future__ import annotations

import json
import statistics
import sys


def weights_names(clip: dict) -> list[str]:
    return list(
        dict.fromkeys(r["method"][6:] for r in clip["rows"] if r["method"].startswith("model:"))
    )


def table(run: dict, only: str | None) -> None:
    names = [n for n in weights_names(run["clips"][0]) if only in (None, n)]
    for name in names:
        print(f"\n### x{run['scale']}, {name}\n")
        print(
            "| clip | track | PSNR / lanczos (gain) | SSIM / lanczos | flicker / lanczos | skipped | cost of skipping |"
        )
        print("|---|---|---|---|---|---|---|")
        summary: dict[str, list[tuple[float, float, float, float, float]]] = {}
        for clip in run["clips"]:
            rows = {(r["track"], r["method"]): r for r in clip["rows"]}
            for track in ("clean", "web"):
                m, n = rows[(track, f"model:{name}")], rows[(track, f"no-skip:{name}")]
                lz = rows[(track, "lanczos")]
                gain, cost = m["psnr"] - lz["psnr"], m["psnr"] - n["psnr"]
                summary.setdefault(track, []).append(
                    (gain, m["skip"], cost, m["flicker"] - lz["flicker"], m["ssim"] - lz["ssim"])
                )
                print(
                    f"| {clip['name']} | {track} | {m['psnr']:.2f} / {lz['psnr']:.2f} ({gain:+.2f}) "
                    f"| {m['ssim']:.4f} / {lz['ssim']:.4f} | {m['flicker']:.2f} / {lz['flicker']:.2f} "
                    f"| {m['skip']:.0%} | {cost:+.2f} |"
                )
        print()
        for track, cells in summary.items():
            gains = [c[0] for c in cells]
            print(
                f"x{run['scale']} {track} {name}: gain mean {statistics.mean(gains):+.2f} "
                f"min {min(gains):+.2f}; skipped {statistics.mean(c[1] for c in cells):.0%}; "
                f"cost of skipping mean {statistics.mean(c[2] for c in cells):+.3f} "
                f"worst {min(c[2] for c in cells):+.2f}; flicker above lanczos on "
                f"{sum(c[3] > 0 for c in cells)} of {len(cells)}; SSIM below on "
                f"{sum(c[4] < 0 for c in cells)}"
            )


def main(argv: list[str]) -> None:
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    paths = [a for a in argv if a.endswith(".json")]
    for path in paths:
        with open(path) as f:
            table(json.load(f), only)


if __name__ == "__main__":
    main(sys.argv[1:])
