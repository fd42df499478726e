#!/usr/bin/env bash
# VAE selection (device run): train each candidate VAE for MIN minutes on the training pack, then
# measure its round-trip PSNR on the held-out media. Usage: training/vae_select.sh MIN OUTDIR
set -euo pipefail
MIN=${1:-2.3}
OUT=${2:-out}
for name in s4t4 s4t1 s8t4; do
  python3 -m skipsr_cli.cli train run vae --data .carry/train --config training/configs/$name.json \
    --out ckpt/$name/vae --minutes "$MIN" --workers 14 --batch 8 --lr 5e-4
  python3 -m skipsr_cli.cli train vae-check ckpt/$name/vae.safetensors --val .carry/val
  for f in ckpt/$name/vae/model-*.safetensors; do cp "$f" "$OUT/$name-$(basename "$f")"; done
done
