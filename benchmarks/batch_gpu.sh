#!/usr/bin/env bash
# Issue 13's figures in one run: 20 clips of 2 s at 720p upscaled x2 by 20 separate processes, by
# one batch on one GPU, and by one batch on two GPUs (where there are two); wall seconds each.
# Usage: benchmarks/batch_gpu.sh SOURCE_CLIP OUTDIR [WEIGHTS]
set -uo pipefail
SRC=$1; OUT=$2; W=${3:-}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
mkdir -p "$OUT/clips"
for i in $(seq -w 1 20); do  # 2 s at 25 fps each, the source resized and looped as needed
  python3 benchmarks/resize_clip.py "$SRC" "$OUT/clips/c$i.mp4" 1280 720 50
done
now() { date +%s.%N; }
t0=$(now)
for f in "$OUT"/clips/*.mp4; do $S upscale "$f" "$OUT/sep_$(basename "$f")" -q -y "${MODEL[@]}"; done
t1=$(now)
$S upscale "$OUT/clips" "$OUT/batch1" -q -y --devices 0 "${MODEL[@]}"
t2=$(now)
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
[ "$GPUS" -gt 1 ] && $S upscale "$OUT/clips" "$OUT/batch2" -q -y --devices 0,1 "${MODEL[@]}"
t3=$(now)
python3 - "$t0" "$t1" "$t2" "$t3" "$GPUS" <<'PY'
import sys
t0, t1, t2, t3, gpus = map(float, sys.argv[1:])
sep, one, two = t1 - t0, t2 - t1, t3 - t2
print(f"| 20 processes | {sep:.1f} s | {sep / 20:.2f} s a file |")
print(f"| one batch, 1 GPU | {one:.1f} s | {one / 20:.2f} s a file; saved {(sep - one) / 20:.2f} s a file |")
if gpus > 1:
    print(f"| one batch, 2 GPUs | {two:.1f} s | {two / one:.2f} of one GPU's time |")
PY
