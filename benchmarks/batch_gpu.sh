#!/usr/bin/env bash
# Issue 13's figures in one run: 20 clips of 2 s at 720p upscaled x2 by SEPARATE separate processes
# (20 by default), by one batch on one GPU, and by one batch on two GPUs (where there are two); wall
# seconds each, each file's seconds inside the batch (--json), and a warm `bench run` of one clip
# for the time the upscale itself takes, so what is left of a file's time in the batch is overhead.
# Usage: benchmarks/batch_gpu.sh SOURCE_CLIP OUTDIR [WEIGHTS] [SEPARATE]
set -uo pipefail
SRC=$1; OUT=$2; W=${3:-}; SEP=${4:-20}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
mkdir -p "$OUT/clips"
for i in $(seq -w 1 20); do  # 2 s at 25 fps each, the source resized and looped as needed
  python3 benchmarks/resize_clip.py "$SRC" "$OUT/clips/c$i.mp4" 1280 720 50
done
now() { date +%s.%N; }
t0=$(now)
for f in $(ls "$OUT"/clips/*.mp4 | head -"$SEP"); do
  $S upscale "$f" "$OUT/sep_$(basename "$f")" -q -y "${MODEL[@]}"
done
t1=$(now)
$S upscale "$OUT/clips" "$OUT/batch1" -q -y --devices 0 --json "${MODEL[@]}" > "$OUT/batch1.jsonl"
t2=$(now)
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
[ "$GPUS" -gt 1 ] && $S upscale "$OUT/clips" "$OUT/batch2" -q -y --devices 0,1 --json "${MODEL[@]}" > "$OUT/batch2.jsonl"
t3=$(now)
$S bench run "$OUT/clips/c01.mp4" --scale 2 --frames 16 --json "${MODEL[@]}" > "$OUT/bench_run.json"
python3 - "$t0" "$t1" "$t2" "$t3" "$GPUS" "$SEP" "$OUT" <<'PY'
import json, statistics, sys
t0, t1, t2, t3, gpus, sep = map(float, sys.argv[1:7])
out = sys.argv[7]
per_sep, one, two = (t1 - t0) / sep, t2 - t1, t3 - t2
rows = [json.loads(l) for l in open(f"{out}/batch1.jsonl") if l.strip()]
files = [r for r in rows if r.get("status") == "done"]
times = [r["seconds"] for r in files]
bench = json.load(open(f"{out}/bench_run.json"))
work = bench["frames"] / bench["end_to_end_fps"]
print(f"| {int(sep)} separate processes | {per_sep:.2f} s a file |")
print(f"| one batch of 20, 1 GPU | {one:.1f} s in all, {one / 20:.2f} s a file |")
if times:
    later = statistics.median(times[1:])
    print(f"| inside the batch | first file {times[0]:.2f} s, later files median {later:.2f} s |")
    if work:
        print(f"| warm upscale of one clip (bench run) | {work:.2f} s; overhead a file {later - work:.2f} s |")
if gpus > 1:
    print(f"| one batch of 20, 2 GPUs | {two:.1f} s | {two / one:.2f} of one GPU's time |")
PY
