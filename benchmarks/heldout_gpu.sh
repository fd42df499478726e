#!/usr/bin/env bash
# Held-out quality of one or more weights files in one run (the same degraded inputs for all), x2
# and x4 side by side on two GPUs where there are two, then each file's model-only speed at the
# issue's sizes. bf16 on the GPU, as users run it.
# Usage: benchmarks/heldout_gpu.sh HELDOUT_DIR OUTDIR WEIGHTS [WEIGHTS...]
#   (HELDOUT_DIR: the clips of training/HELDOUT.md; OUTDIR gets eval_x2.json, eval_x4.json, speed.txt;
#   benchmarks/heldout_table.py makes the tables of the model card from the two JSON files)
set -uo pipefail
DIR=$1; OUT=$2; shift 2
S="python3 -m skipsr_cli.cli"
W=(); for w in "$@"; do W+=(--weights "$w"); done
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
for s in 2 4; do
  gpu=$(( GPUS > 1 ? s / 2 - 1 : 0 ))
  CUDA_VISIBLE_DEVICES=$gpu $S eval "$DIR" -s $s --frames 16 --json -q "${W[@]}" > "$OUT/eval_x$s.json" &
done
wait
CLIP=$(ls "$DIR"/*.mp4 | head -1)
for w in "$@"; do
  for size in 1280x720 1920x1080; do
    echo "$w $size: $($S bench model "$CLIP" --weights "$w" --size $size --scale 2 --frames 16 | tail -1)"
  done
  echo "$w 1280x720 dense: $($S bench model "$CLIP" --weights "$w" --size 1280x720 --scale 2 --frames 16 --no-skip | tail -1)"
done | tee "$OUT/speed.txt"
