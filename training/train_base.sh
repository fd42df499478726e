#!/usr/bin/env bash
# Train `base` from scratch, as the shipped weights were trained. Each phase is resumable: run it
# again (each run stops after MINUTES, at most 10 on one H100) until it reports its last step.
#   skipsr train pack shared/data/train .carry/train           the pack (validation held out)
#   training/train_base.sh dit1 MINUTES    8,000 steps, no augmentation (8.0 + 5.8 min)
#   training/train_base.sh mask1 MINUTES   1,487 steps of the mask predictor on it (1.5 min)
#   training/train_base.sh dit2 MINUTES    3,264 steps, augmented, from mask1 (7.0 min)
#   training/train_base.sh dit3 MINUTES    3,000 steps, augmented, from dit2 (6.2 min)
#   training/train_base.sh mask MINUTES    1,056 steps of the mask predictor on dit3 (1.2 min)
#   training/train_base.sh export TAU OUT  bf16 weights with default tau in OUT/base.safetensors
# Then, on packs with full-scale crops of the large photos (from the export above, each phase from
# the previous one's bf16 export, as it travelled to the GPU; the mask predictor is kept):
#   skipsr train pack shared/data/train .carry/native1 --native-crops 1 --crop-side 512
#   skipsr train pack shared/data/train .carry/native2 --native-crops 2 --crop-side 512
#   training/train_base.sh ft1 MINUTES     6,000 steps on native1, from the first export (7.5 min)
#   training/train_base.sh ft2 MINUTES     5,756 of 6,600 steps on native2, from ft1 (8.4 min)
#   training/train_base.sh ft3 MINUTES     6,000 steps on native2, from ft2, x2 weighted 3:1 (7.8 min)
#   training/train_base.sh shipped TAU OUT the shipped weights: ft3 in bf16 with default tau
# The learning rate follows a cosine over --max-steps; --stop-at ends a phase where the shipped run
# ran out of time. Batches are a function of (seed, step), so worker counts do not change them.
set -euo pipefail
PHASE=$1
CONFIG=training/configs/base1.json
S="python3 -m skipsr_cli.cli"
run() { $S train run "$@" --data .carry/train --config $CONFIG --workers 15 --frames 4 --photo-moves resampled; }
tune() { $S train run dit --decoder --config $CONFIG --workers 15 --frames 4 --batch 32 --reuse 2 --photo-moves resampled "$@"; }
bf16() { $S train export "ckpt/base/$1.safetensors" "ckpt/base/$1.bf16.safetensors"; }
case $PHASE in
  dit1) run dit --decoder --out ckpt/base/dit1 --minutes "$2" --max-steps 8000 --batch 16 \
          --lr 5e-4 --no-augment ;;
  mask1) run mask --init ckpt/base/dit1.safetensors --out ckpt/base/mask1 --minutes "$2" \
          --batch 16 --lr 1e-3 --no-augment --stop-at 1487 ;;
  dit2) run dit --decoder --init ckpt/base/mask1.safetensors --out ckpt/base/dit2 --minutes "$2" \
          --max-steps 3500 --stop-at 3264 --batch 32 --lr 2e-4 --seed 7 ;;
  dit3) run dit --decoder --init ckpt/base/dit2.safetensors --out ckpt/base/dit3 --minutes "$2" \
          --max-steps 3000 --batch 32 --lr 1.5e-4 --seed 8 ;;
  mask) run mask --init ckpt/base/dit3.safetensors --out ckpt/base/mask --minutes "$2" \
          --batch 16 --lr 1e-3 --seed 8 --stop-at 1056 ;;
  export) $S train export ckpt/base/mask.safetensors "$3/base.safetensors" --threshold "$2" ;;
  ft1) bf16 mask; tune --data .carry/native1 --init ckpt/base/mask.bf16.safetensors --out ckpt/base/ft1 \
          --minutes "$2" --max-steps 6000 -s 2 -s 2 -s 4 --lr 1.5e-4 --seed 9 ;;
  ft2) bf16 ft1; tune --data .carry/native2 --init ckpt/base/ft1.bf16.safetensors --out ckpt/base/ft2 \
          --minutes "$2" --max-steps 6600 --stop-at 5756 -s 2 -s 2 -s 4 --lr 1.2e-4 --seed 10 ;;
  ft3) bf16 ft2; tune --data .carry/native2 --init ckpt/base/ft2.bf16.safetensors --out ckpt/base/ft3 \
          --minutes "$2" --max-steps 6000 -s 2 -s 2 -s 2 -s 4 --lr 1e-4 --seed 11 ;;
  shipped) $S train export ckpt/base/ft3.safetensors "$3/base.safetensors" --threshold "$2" ;;
  *) echo "usage: $0 dit1|mask1|dit2|dit3|mask|ft1|ft2|ft3 MINUTES | export|shipped TAU OUTDIR" >&2
     exit 2 ;;
esac
