#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md, in one run: GPU tests, model-only stage times of `base` at the
# issue's sizes, the transformer's scaling with the kept fraction, and end-to-end upscales.
# Usage: benchmarks/gpu.sh WEIGHTS CLIP OUTDIR   (CLIP: a real video, e.g. bedroom.mp4)
set -uo pipefail
W=$1; CLIP=$2; OUT=$3
S="python3 -m skipsr_cli.cli"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 -m pytest -q tests/test_gpu.py 2>&1 | tail -1
for size in 1280x720 1920x1080; do
  $S bench model "$CLIP" --weights "$W" --size $size --scale 2 --frames 16
  $S bench model "$CLIP" --weights "$W" --size $size --scale 2 --frames 16 --no-skip
done
for k in 0.75 0.5 0.25; do
  $S bench model "$CLIP" --weights "$W" --size 1280x720 --scale 2 --frames 16 --kept $k --json
done
$S bench transformer --model base --size 1280x720 --frames 16 --repeats 20 --warmup 5
$S bench transformer --model base --size 2560x1440 --frames 16 --repeats 20 --warmup 5
# End to end (decode, model, x264 CRF 18 medium, mux) on 600-frame inputs (the clip resized, played
# again from its start): `bench run` warms the model first, then runs the upscale and its floor.
$S upscale "$CLIP" "$OUT/e2e.mp4" --weights "$W" -y --json -q --crf 18
python3 benchmarks/resize_clip.py "$CLIP" "$OUT/in720.mp4" 1280 720 600
$S bench run "$OUT/in720.mp4" --weights "$W" --scale 2 --frames 64
$S bench run "$OUT/in720.mp4" --weights "$W" --scale 2 --frames 64 --no-skip
python3 benchmarks/resize_clip.py "$CLIP" "$OUT/in1080.mp4" 1920 1080 600
$S bench run "$OUT/in1080.mp4" --weights "$W" --scale 2 --frames 64
rm -f "$OUT/e2e.mp4" "$OUT/in720.mp4" "$OUT/in1080.mp4"
