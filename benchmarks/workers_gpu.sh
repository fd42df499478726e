#!/usr/bin/env bash
# Worker processes against GPUs and encoders (issues 13 and 14), one run: one long 720p input
# upscaled x2 whole with each arrangement of `--devices` and `--workers` (one worker is one model
# and one encoder), with x264 medium and with a fast preset (where the CPU's encoder stops being the
# limit, so the GPUs' own scaling shows); then a batch of 20 short clips with one and two workers
# on one GPU; some runs also with each worker given all the cores (SKIPSR_WORKER_THREADS=nproc):
# a short file's encoder is bound by its start and drain, not by its share of the cores. Wall
# seconds (the whole command), fps, host memory peak of the process tree.
# Usage: benchmarks/workers_gpu.sh SOURCE_CLIP OUTDIR [FRAMES] [WEIGHTS]   (FRAMES: 2400)
set -uo pipefail
SRC=$1; OUT=$2; FRAMES=${3:-2400}; W=${4:-}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
mkdir -p "$OUT/clips"
python3 benchmarks/resize_clip.py "$SRC" "$OUT/in720.mp4" 1280 720 "$FRAMES"
row() {  # label, then upscale options
  local label=$1; shift
  python3 benchmarks/memwatch.py --every 2 --json "$OUT/m.json" -- \
    $S upscale "$OUT/in720.mp4" "$OUT/out.mp4" -q -y "${MODEL[@]}" "$@" > /dev/null 2>&1
  python3 - "$OUT/m.json" "$label" "$FRAMES" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
fps = int(sys.argv[3]) / m["wall_s"]
print(f"| {sys.argv[2]} | {m['wall_s']:.1f} s | {fps:.1f} fps | {m['host_peak_mib']:.0f} MiB | rc {m['rc']} |")
PY
  rm -f "$OUT/out.mp4"
}
echo "| $FRAMES frames 720p -> 1440p | wall | fps | host peak | |"
echo "|---|---|---|---|---|"
row "x264 medium, --devices 0" --devices 0
row "x264 medium, --devices 0 --workers 2" --devices 0 --workers 2
row "x264 medium, --devices 0,1" --devices 0,1
row "x264 medium, --devices 0,1 --workers 4" --devices 0,1 --workers 4
SKIPSR_WORKER_THREADS=$(nproc) row "x264 medium, --devices 0,1, each worker all the cores" --devices 0,1
row "x264 veryfast, --devices 0" --devices 0 --preset veryfast
row "x264 veryfast, --devices 0,1" --devices 0,1 --preset veryfast
for i in $(seq -w 1 20); do
  python3 benchmarks/resize_clip.py "$SRC" "$OUT/clips/c$i.mp4" 1280 720 50
done
echo
echo "| batch of 20 clips of 50 frames | wall | a file after the first (median) |"
echo "|---|---|---|"
for arr in "--devices 0" "--devices 0 --workers 2" "--devices 0,1" "--devices 0,1 --workers 4" \
           "--devices 0,1 ALL" "--devices 0 --workers 2 ALL"; do
  share=""; [ "${arr% ALL}" != "$arr" ] && share=$(nproc)  # ALL: each worker all the cores
  t0=$(date +%s.%N)
  SKIPSR_WORKER_THREADS=$share $S upscale "$OUT/clips" "$OUT/batch" -q -y --json ${arr% ALL} "${MODEL[@]}" \
    > "$OUT/batch.jsonl" 2>/dev/null
  t1=$(date +%s.%N)
  python3 - "$OUT/batch.jsonl" "$arr" "$t0" "$t1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
done = [r["seconds"] for r in rows if r.get("status") == "done"]
later = f"{statistics.median(done[1:]):.2f} s" if len(done) > 1 else "-"
print(f"| {sys.argv[2]} | {float(sys.argv[4]) - float(sys.argv[3]):.1f} s | {later} ({len(done)} done) |")
PY
  rm -rf "$OUT/batch"
done
