#!/usr/bin/env bash
# Issue 14's second figure: a whole upscale against the host's encoding capacity, at 720p -> 1440p
# and 1080p -> 2160p (FRAMES frames each, x264 medium CRF 18). `bench capacity` runs K copies of
# the encode floor (the pipeline with bicubic in place of the model) at once, each with its share
# of the cores, spread over the GPUs: the capacity is the best total. `bench capacity --upscale`
# runs K copies of the whole upscale the same way (what `upscale --workers K` does once its
# workers are up): its best total over the capacity is the ratio. RUN=1 adds `bench run` (one
# upscale against one floor, every stage timed alone).
# Usage: benchmarks/capacity_gpu.sh SOURCE_CLIP OUTDIR [WEIGHTS]
#   SIZES="WxH ..." FRAMES=N FLOORS=1,2,3,4 UPSCALES=1,2,3,4 to change; CHUNKS="16/4 32/4" runs
#   the upscale copies once for each (frames per chunk / overlap), upscale_SIZE_N-K.json each (the
#   floor keeps 16/4: its bicubic costs next to nothing, so its chunks do not move the capacity)
set -uo pipefail
SRC=$1; OUT=$2; W=${3:-}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
for chunks in ${CHUNKS:-16/4}; do
  case $chunks in */*) ;; *) echo "CHUNKS entries are FRAMES/OVERLAP, not $chunks" >&2; exit 2 ;; esac
done
mkdir -p "$OUT"
for size in ${SIZES:-1280x720 1920x1080}; do
  python3 benchmarks/resize_clip.py "$SRC" "$OUT/in.mp4" "${size%x*}" "${size#*x}" "${FRAMES:-600}"
  [ -n "${RUN:-}" ] && $S bench run "$OUT/in.mp4" --scale 2 --frames 64 --json "${MODEL[@]}" > "$OUT/run_$size.json"
  $S bench capacity "$OUT/in.mp4" --scale 2 --workers "${FLOORS:-1,2,3,4}" --devices all --json > "$OUT/capacity_$size.json"
  for chunks in ${CHUNKS:-16/4}; do
    $S bench capacity "$OUT/in.mp4" --scale 2 --workers "${UPSCALES:-1,2,3,4}" --devices all --upscale --json \
      --chunk-frames "${chunks%/*}" --overlap "${chunks#*/}" "${MODEL[@]}" > "$OUT/upscale_${size}_${chunks/\//-}.json" \
      || { echo "the upscale copies failed ($size, chunks $chunks)" >&2; continue; }
    python3 - "$OUT/capacity_$size.json" "$OUT/upscale_${size}_${chunks/\//-}.json" <<'PY'
import json, sys
cap, up = (json.load(open(p)) for p in sys.argv[1:3])
def rows(r):
    return " / ".join(f"{row['total_fps']:.1f}" for row in r["rows"])
best = max(up["rows"], key=lambda row: row["total_fps"])
print(f"| {cap['input']} -> {cap['output']} | floors {','.join(str(r['workers']) for r in cap['rows'])} at once: "
      f"{rows(cap)} fps | capacity {cap['capacity_fps']:.1f} | upscales "
      f"{','.join(str(r['workers']) for r in up['rows'])} at once: {rows(up)} fps | best {best['total_fps']:.1f} "
      f"({best['workers']}) | ratio {best['total_fps'] / cap['capacity_fps']:.3f} | chunks {up['chunks']} |")
PY
  done
done
rm -f "$OUT/in.mp4"
