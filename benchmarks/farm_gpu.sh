#!/usr/bin/env bash
# Issue 14's GPU figures in one run: one long 720p video upscaled x2 on one GPU and on two
# (`--devices 0,1`), wall time and the host memory of the whole process tree for each, the two
# outputs compared (frames, timestamps). (Whole upscales against the host's encoding capacity:
# benchmarks/capacity_gpu.sh.)
# Usage: benchmarks/farm_gpu.sh SOURCE_CLIP OUTDIR [WEIGHTS] [FRAMES]   (FRAMES: 4800 by default)
set -uo pipefail
SRC=$1; OUT=$2; W=${3:-}; FRAMES=${4:-4800}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
mkdir -p "$OUT"
python3 benchmarks/resize_clip.py "$SRC" "$OUT/in720.mp4" 1280 720 "$FRAMES"
watch() { python3 benchmarks/memwatch.py --every 2 --json "$1" -- "${@:2}" 2>&1 | tail -1; }
watch "$OUT/one.json" $S upscale "$OUT/in720.mp4" "$OUT/one.mp4" -q -y "${MODEL[@]}"
watch "$OUT/two.json" $S upscale "$OUT/in720.mp4" "$OUT/two.mp4" -q -y --devices 0,1 "${MODEL[@]}"
python3 - "$OUT" <<'PY'
import json, sys
import av
out = sys.argv[1]
def stamps(path):
    with av.open(path) as f:
        s = f.streams.video[0]
        return [p.pts for p in f.demux(s) if p.pts is not None], s.time_base, s.width, s.height
one, two = (json.load(open(f"{out}/{n}.json")) for n in ("one", "two"))
a, b = stamps(f"{out}/one.mp4"), stamps(f"{out}/two.mp4")
print(f"| one GPU | {one['wall_s']:.1f} s | host peak {one['host_peak_mib']:.0f} MiB | {len(a[0])} frames {a[2]}x{a[3]} |")
print(f"| two GPUs | {two['wall_s']:.1f} s | host peak {two['host_peak_mib']:.0f} MiB | {len(b[0])} frames {b[2]}x{b[3]} |")
print(f"speed-up {one['wall_s'] / two['wall_s']:.2f}x; same timestamps: {sorted(a[0]) == sorted(b[0]) and a[1] == b[1]}")
PY
rm -f "$OUT/one.mp4" "$OUT/two.mp4"
