#!/usr/bin/env bash
# The shipped `base` (2026-11-30): base1's transformer and mask predictor (the previous release,
# training/train_base.sh) with a wider pixel decoder (width 96, 4 residual blocks;
# training/configs/base.json), fine-tuned with DDP on two GPUs, a temporal loss and the train2
# media. Run from the repository root on a machine with the GPUs; each phase is resumable (run it
# again until it reports its last step).
#   skipsr train pack ../shared/data/train ../shared/data/train2 .carry/pack --max-side 1024 \
#       --native-crops 1 --crop-side 384 --sequence-crf 17
#       (then the 2026-11-30 pack left out two clips: rm .carry/pack/videos/*big_buck_bunny_0_30.webm
#        .carry/pack/videos/*vtest_t000.avi; 58.4 MB, 240 sources)
#   git show 9792999:skipsr_cli/weights/base.safetensors > ckpt/base1.safetensors   (base1)
#   training/train_base2.sh init           base1's tensors that fit, fresh decoder (seed 0), bf16
#   training/train_base2.sh ft1 MINUTES    7,014 of 14,000 steps on 2 GPUs, batch 32 each (10.5 min)
#   training/train_base2.sh ft2 MINUTES    4,500 steps from ft1's bf16 export, lr 1e-4 (6.6 min)
#   training/train_base2.sh ft3 MINUTES    1,537 of 1,600 steps from ft2's export, lr 5e-5, on the
#                                          unbiased colour round trips and weaker noise (2.4 min)
#   training/train_base2.sh mask3 MINUTES  the mask predictor for this decoder, 617 of 700 (0.8 min)
#   training/train_base2.sh ft4 MINUTES    5,000 steps from mask3's export (the afternoon's release),
#                                          lr 1e-4, on clean inputs only (--degrade clean) (8.0 min)
#   training/train_base2.sh mask4 MINUTES  the mask predictor for ft4, 700 steps, --degrade video (1.1 min)
#   training/train_base2.sh ft5a MINUTES   4,500 steps on one GPU from mask4's export (ft4m, the shipped
#                                          base) on exact photo pans (--photo-moves exact), lr 1e-4, clean
#   training/train_base2.sh ft5b MINUTES   the same with --video-fraction 0.5 (the two ran at once, one GPU
#                                          each; not yet evaluated)
#   training/train_base2.sh ft6a MINUTES   base_denoise: 4,500 steps on one GPU from ft4m on compressed
#                                          inputs (--degrade delivery), lr 1e-4, seed 61 (6 min)
#   training/train_base2.sh nb1 MINUTES    the shipped base with one neighbouring frame's fill each side at
#                                          the pixel decoder's input (base_neighbours1.json), ft5a's recipe,
#                                          one GPU; 2,840 of 5,000 steps (3.9 min) did worse than base
#   training/train_base2.sh vf1 MINUTES    the shipped base fine-tuned on the pack's real videos alone
#                                          (--video-fraction 1.0), ft5a's recipe on a 3,200-step schedule,
#                                          one GPU (4.5 min); the same as base on the means (2026-12-01)
#   training/train_base2.sh export TAU OUT bf16 weights with default tau in OUT/base.safetensors
#                                          (OUT/base.safetensors from mask4; FROM=ft5a exports ft5a)
# Phases up to mask4 made their photo clips by bicubic moves (--photo-moves resampled, the only
# kind then); ft5 on is trained on whole-pixel pans, whose targets keep the photos' finest detail.
set -euo pipefail
PHASE=$1
CONFIG=training/configs/base.json
S="python3 -m skipsr_cli.cli"
GPUS=${GPUS:-2}
ddp() { torchrun --nproc_per_node "$GPUS" -m skipsr_cli.cli train run dit --decoder --config $CONFIG \
          --data .carry/pack --frames 4 --batch 32 --workers 14 --reuse 2 "$@"; }
OLD="--photo-moves resampled"  # how photos became clips until ft4m
case $PHASE in
  init) mkdir -p ckpt/base2; python3 -c "
from pathlib import Path
from models import ModelArgs, SkipSR
from skipsr_cli.train.loop import fitting_tensors
from skipsr_cli.weights import load_model, save_model
model = SkipSR(ModelArgs.from_json(Path('$CONFIG').read_text()))
model.init_weights(0)
base1 = load_model(weights=Path('ckpt/base1.safetensors'))
model.load_state_dict(fitting_tensors(model, base1.state_dict()), strict=False)
save_model(model, Path('ckpt/base2/init.safetensors'), stage='init', step='0')"
        $S train export ckpt/base2/init.safetensors ckpt/base2/init.bf16.safetensors --threshold 40 ;;
  ft1) ddp --init ckpt/base2/init.bf16.safetensors --out ckpt/base2/ft1 --minutes "$2" \
          --max-steps 14000 --stop-at 7014 -s 2 -s 2 -s 4 --lr 2e-4 --seed 21 --temporal 1.0 $OLD
       $S train export ckpt/base2/ft1.safetensors ckpt/base2/ft1.bf16.safetensors --threshold 40 ;;
  ft2) ddp --init ckpt/base2/ft1.bf16.safetensors --out ckpt/base2/ft2 --minutes "$2" \
          --max-steps 4500 -s 2 -s 2 -s 4 --lr 1e-4 --seed 22 --temporal 1.0 $OLD ;;
  ft3) $S train export ckpt/base2/ft2.safetensors ckpt/base2/ft2.bf16.safetensors --threshold 40
       ddp --init ckpt/base2/ft2.bf16.safetensors --out ckpt/base2/ft3 --minutes "$2" \
          --max-steps 1600 --stop-at 1537 -s 2 -s 2 -s 4 --lr 5e-5 --seed 24 --temporal 1.0 $OLD ;;
  mask3) torchrun --nproc_per_node "$GPUS" -m skipsr_cli.cli train run mask --config $CONFIG \
          --data .carry/pack --frames 4 --batch 16 --workers 14 --init ckpt/base2/ft3.safetensors \
          --out ckpt/base2/mask3 --minutes "$2" --max-steps 700 --stop-at 617 --lr 3e-4 --seed 25 \
          -s 2 -s 2 -s 4 $OLD ;;
  ft4) $S train export ckpt/base2/mask3.safetensors ckpt/base2/ft3m.bf16.safetensors --threshold 40
       ddp --init ckpt/base2/ft3m.bf16.safetensors --out ckpt/base2/ft4 --minutes "$2" \
          --max-steps 5000 -s 2 -s 2 -s 4 --lr 1e-4 --seed 41 --temporal 1.0 --degrade clean $OLD ;;
  mask4) torchrun --nproc_per_node "$GPUS" -m skipsr_cli.cli train run mask --config $CONFIG \
          --data .carry/pack --frames 4 --batch 16 --workers 14 --init ckpt/base2/ft4.safetensors \
          --out ckpt/base2/mask4 --minutes "$2" --max-steps 700 --lr 3e-4 --seed 45 \
          -s 2 -s 2 -s 4 --degrade video $OLD ;;
  ft5a|ft5b) [ -f ckpt/base2/ft4m.bf16.safetensors ] || \
         $S train export ckpt/base2/mask4.safetensors ckpt/base2/ft4m.bf16.safetensors --threshold 40
       MORE=(); [ "$PHASE" = ft5b ] && MORE=(--video-fraction 0.5)
       $S train run dit --decoder --config $CONFIG --data .carry/pack --frames 4 --batch 32 \
          --workers 14 --reuse 2 --init ckpt/base2/ft4m.bf16.safetensors --out "ckpt/base2/$PHASE" --minutes "$2" \
          --max-steps 4500 -s 2 -s 2 -s 4 --lr 1e-4 --seed 51 --temporal 1.0 --degrade clean \
          --photo-moves exact "${MORE[@]}" ;;
  ft6a) $S train run dit --decoder --config $CONFIG --data .carry/pack --frames 4 --batch 32 \
          --workers 14 --reuse 2 --init ckpt/base2/ft4m.bf16.safetensors --out ckpt/base2/ft6a --minutes "$2" \
          --max-steps 4500 -s 2 -s 2 -s 4 --lr 1e-4 --seed 61 --temporal 1.0 --degrade delivery \
          --photo-moves exact
       $S train export ckpt/base2/ft6a.safetensors ckpt/base2/ft6a.bf16.safetensors --threshold 40 ;;
  nb1) $S train run dit --decoder --config training/configs/base_neighbours1.json --data .carry/pack \
          --frames 4 --batch 32 --workers 14 --reuse 2 --init skipsr_cli/weights/base.safetensors \
          --init-partial --out ckpt/base2/nb1 --minutes "$2" --max-steps 5000 -s 2 -s 2 -s 4 --lr 1e-4 \
          --seed 81 --temporal 1.0 --degrade clean --photo-moves exact
       $S train export ckpt/base2/nb1.safetensors ckpt/base2/nb1.bf16.safetensors --threshold 40 ;;
  vf1) $S train run dit --decoder --config $CONFIG --data .carry/pack --frames 4 --batch 32 \
          --workers 14 --reuse 2 --init skipsr_cli/weights/base.safetensors --out ckpt/base2/vf1 \
          --minutes "$2" --max-steps 3200 -s 2 -s 2 -s 4 --lr 1e-4 --seed 91 --temporal 1.0 \
          --degrade clean --photo-moves exact --video-fraction 1.0
       $S train export ckpt/base2/vf1.safetensors ckpt/base2/vf1.bf16.safetensors --threshold 40 ;;
  export) $S train export "ckpt/base2/${FROM:-mask4}.safetensors" "$3/base.safetensors" --threshold "$2" ;;
  *) echo "usage: $0 init | ft1 | ft2 | ft3 | mask3 | ft4 | mask4 | ft5a | ft5b | ft6a | nb1 | vf1 MINUTES | export TAU OUTDIR" >&2; exit 2 ;;
esac
