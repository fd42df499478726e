#!/usr/bin/env bash
# Train `base` from scratch. Phases, each time-boxed and resumable:
#   training/train_base.sh dit MINUTES        the transformer with the pixel latent's decoder; run it
#                                             until it reports step 8000 (the shipped model: 8.0 then
#                                             5.8 minutes on one H100)
#   training/train_base.sh mask MINUTES OUT   the mask predictor on the finished transformer, then
#                                             bf16 weights with the default tau in OUT/base.safetensors
set -euo pipefail
PHASE=$1; MINUTES=$2
CONFIG=training/configs/base.json
S="python3 -m skipsr_cli.cli"
case $PHASE in
  dit)
    $S train run dit --data .carry/train --config $CONFIG --decoder --out ckpt/base/dit \
      --minutes "$MINUTES" --max-steps 8000 --workers 15 --batch 16 --frames 4 --lr 5e-4 ;;
  mask)
    $S train run mask --data .carry/train --config $CONFIG --init ckpt/base/dit.safetensors \
      --out ckpt/base/mask --minutes "$MINUTES" --workers 15 --batch 16 --frames 4 --lr 1e-3
    $S train export ckpt/base/mask.safetensors "$3/base.safetensors" --threshold 36 ;;
  *) echo "usage: $0 dit MINUTES | mask MINUTES OUTDIR" >&2; exit 2 ;;
esac
