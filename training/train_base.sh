#!/usr/bin/env bash
# Train `base` from scratch: the transformer with the pixel latent's decoder, then the mask predictor.
# Resumable: run it again with the same STEPS to go on where it stopped (each run is time-boxed).
# Usage: training/train_base.sh DIT_MIN MASK_MIN STEPS OUTDIR
set -euo pipefail
DIT_MIN=$1; MASK_MIN=$2; STEPS=$3; OUT=$4
CONFIG=training/configs/base.json
python3 -m skipsr_cli.cli train run dit --data .carry/train --config $CONFIG --decoder \
  --out ckpt/base/dit --minutes "$DIT_MIN" --max-steps "$STEPS" --workers 15 --batch 16 --frames 4 --lr 5e-4
python3 -m skipsr_cli.cli train run mask --data .carry/train --config $CONFIG --init ckpt/base/dit.safetensors \
  --out ckpt/base/mask --minutes "$MASK_MIN" --workers 15 --batch 16 --frames 4 --lr 1e-3
cp ckpt/base/mask.safetensors "$OUT/base.safetensors"
