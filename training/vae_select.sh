#!/usr/bin/env bash
# VAE selection (device run): train each candidate VAE for MIN minutes on the training pack, then
# measure its round-trip PSNR on the held-out media. Usage: training/vae_select.sh MIN OUTDIR NAME...
set -euo pipefail
MIN=${1:-2.3}
OUT=${2:-out}
shift 2 || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(gs4t4 gs4t1)
for name in "${names[@]}"; do
  python3 -m skipsr_cli.cli train run vae --data .carry/train --config training/configs/$name.json --photo-moves resampled \
    --out ckpt/$name/vae --minutes "$MIN" --workers 14 --batch 8 --lr 5e-4
  python3 -m skipsr_cli.cli train vae-check ckpt/$name/vae.safetensors --val .carry/val
  for f in ckpt/$name/vae/model-*.safetensors; do cp "$f" "$OUT/$name-$(basename "$f")"; done
done
