#!/usr/bin/env bash
# Train the transformer (with the guided VAE decoder) and then the mask predictor of `base`,
# starting from the selected VAE. Usage: training/train_base.sh INIT DIT_MIN MASK_MIN OUTDIR
set -euo pipefail
INIT=$1; DIT_MIN=$2; MASK_MIN=$3; OUT=$4
CONFIG=training/configs/base.json
python3 -m skipsr_cli.cli train run dit --data .carry/train --config $CONFIG --init "$INIT" \
  --out ckpt/base/dit --decoder --minutes "$DIT_MIN" --workers 14 --batch 8 --lr 5e-4
python3 -m skipsr_cli.cli train run mask --data .carry/train --config $CONFIG --init ckpt/base/dit.safetensors \
  --out ckpt/base/mask --minutes "$MASK_MIN" --workers 14 --batch 8 --lr 1e-3
for f in ckpt/base/mask/model-*.safetensors; do cp "$f" "$OUT/base-$(basename "$f")"; done
