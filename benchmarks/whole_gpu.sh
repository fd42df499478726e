#!/usr/bin/env bash
# Issue 14's acceptance as a user meets it: one whole `skipsr upscale` of a long video (default
# workers, resumable parts, stitch and all, timed from the command's start to its end) against the
# host's encoding capacity, measured just before and just after it (FLOORS copies of the encode
# floor at once on a part-length clip of the same footage: a rate, so its length need not match).
# Usage: benchmarks/whole_gpu.sh SOURCE_CLIP OUTDIR WIDTHxHEIGHT FRAMES [WEIGHTS]
#   e.g. 1280x720 4800 (about 6 min on one H200), 1920x1080 2400 (about 7 min); FLOORS=4 by default.
set -uo pipefail
SRC=$1; OUT=$2; SIZE=$3; FRAMES=$4; W=${5:-}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
mkdir -p "$OUT"
python3 benchmarks/resize_clip.py "$SRC" "$OUT/long.mp4" "${SIZE%x*}" "${SIZE#*x}" "$FRAMES"
python3 benchmarks/resize_clip.py "$SRC" "$OUT/part.mp4" "${SIZE%x*}" "${SIZE#*x}" $((FRAMES / 4))
floor() {
  $S bench capacity "$OUT/part.mp4" --scale 2 --workers "${FLOORS:-4}" --devices all --json > "$OUT/$1.json" \
    || { echo "the floor copies failed" >&2; rm -f "$OUT/$1.json"; }
}
floor floor_before
python3 benchmarks/memwatch.py --every 2 --json "$OUT/whole.json" -- \
  $S upscale "$OUT/long.mp4" "$OUT/out.mp4" -q -y "${MODEL[@]}" > /dev/null 2>&1
floor floor_after
python3 - "$OUT" "$SIZE" "$FRAMES" <<'PY'
import json, sys
from pathlib import Path
out, size, frames = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
whole = json.loads((out / "whole.json").read_text())
fps = frames / whole["wall_s"]
floors = [json.loads(p.read_text())["capacity_fps"] for p in (out / "floor_before.json", out / "floor_after.json") if p.exists()]
ratios = ", ".join(f"{fps / f:.3f}" for f in floors)
print(f"| {size} x2, {frames} frames | whole upscale {whole['wall_s']:.1f} s, {fps:.2f} fps (rc {whole['rc']}, host peak {whole['host_peak_mib']:.0f} MiB) "
      f"| floor before / after {' / '.join(f'{f:.2f}' for f in floors)} fps | ratio to each {ratios} |")
PY
rm -f "$OUT/out.mp4"
