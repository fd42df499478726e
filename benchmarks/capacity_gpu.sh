#!/usr/bin/env bash
# Issue 14's second figure: a whole upscale against the host's encoding capacity, at 720p -> 1440p
# and 1080p -> 2160p (600 frames each, x264 medium CRF 18). `bench run` times the upscale and one
# encode floor (the pipeline with bicubic in place of the model); `bench capacity` runs 1-4 copies
# of that floor at once, each with its share of the cores, spread over the GPUs; the capacity is
# the best total.
# Usage: benchmarks/capacity_gpu.sh SOURCE_CLIP OUTDIR [WEIGHTS]   (SIZES="WxH ..." FRAMES=N to change)
set -uo pipefail
SRC=$1; OUT=$2; W=${3:-}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
mkdir -p "$OUT"
for size in ${SIZES:-1280x720 1920x1080}; do
  python3 benchmarks/resize_clip.py "$SRC" "$OUT/in.mp4" "${size%x*}" "${size#*x}" "${FRAMES:-600}"
  $S bench run "$OUT/in.mp4" --scale 2 --frames 64 --json "${MODEL[@]}" > "$OUT/run_$size.json"
  $S bench capacity "$OUT/in.mp4" --scale 2 --workers 1,2,3,4 --devices all --json > "$OUT/capacity_$size.json"
  python3 - "$OUT/run_$size.json" "$OUT/capacity_$size.json" <<'PY'
import json, sys
run, cap = (json.load(open(p)) for p in sys.argv[1:3])
rows = ", ".join(f"{r['workers']}: {r['total_fps']:.1f}" for r in cap["rows"])
print(f"| {run['input']} -> {run['output']} | {run['end_to_end_fps']:.1f} fps | floor {run['floor_fps']:.1f} | "
      f"copies at once {rows} | capacity {cap['capacity_fps']:.1f} | ratio {run['end_to_end_fps'] / cap['capacity_fps']:.3f} |")
PY
done
rm -f "$OUT/in.mp4"
