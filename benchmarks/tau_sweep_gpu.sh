#!/usr/bin/env bash
# Issue 15's skipping figures: per held-out clip and track, the tokens skipped and the PSNR cost
# against `--no-skip` at several tau, and with a fixed 30% of tokens skipped (those the mask
# predictor scores highest: how well it ranks). x2 and x4 side by side on two GPUs where there are
# two; bf16 on the GPU, as users run it.
# Usage: benchmarks/tau_sweep_gpu.sh HELDOUT_DIR OUTDIR [WEIGHTS]   (TAUS="36 38 40 42 44")
set -uo pipefail
DIR=$1; OUT=$2; W=${3:-}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
mkdir -p "$OUT"
for s in 2 4; do
  (
    export CUDA_VISIBLE_DEVICES=$(( GPUS > 1 ? s / 2 - 1 : 0 ))
    for tau in ${TAUS:-36 38 40 42 44}; do
      $S eval "$DIR" -s $s --frames 16 --json -q --threshold "$tau" "${MODEL[@]}" > "$OUT/x${s}_tau$tau.json"
    done
    $S eval "$DIR" -s $s --frames 16 --json -q --skip-fraction 0.3 "${MODEL[@]}" > "$OUT/x${s}_fixed30.json"
  ) &
done
wait
python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
for s in (2, 4):
    runs = {}
    for path in sorted(glob.glob(f"{out}/x{s}_*.json")):
        runs[os.path.basename(path)[len(f"x{s}_"):-5]] = json.load(open(path))
    keys = sorted((k for k in runs if k.startswith("tau")), key=lambda k: float(k[3:])) + ["fixed30"]
    keys = [k for k in keys if k in runs]
    print(f"\nx{s}: skipped / dB against --no-skip, per clip and track")
    print("| clip | track | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for i, clip in enumerate(runs[keys[0]]["clips"]):
        for track in ("clean", "web"):
            cells = []
            for k in keys:
                rows = {(r["track"], r["method"].split(":")[0]): r for r in runs[k]["clips"][i]["rows"]}
                m, n = rows[(track, "model")], rows[(track, "no-skip")]
                cells.append(f"{m['skip']:.0%} / {m['psnr'] - n['psnr']:+.3f}")
            print(f"| {clip['name']} | {track} | " + " | ".join(cells) + " |")
PY
