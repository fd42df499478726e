#!/usr/bin/env bash
# Issue 16's soak: a long 720p input (a short clip's video looped by stream copy, with an AAC tone)
# upscaled in one run while host and GPU memory are sampled every minute; then the output is
# checked against the input: video frame count, every timestamp, audio length.
# Usage: benchmarks/soak.sh SOURCE_CLIP OUTDIR [SECONDS] [UPSCALE OPTIONS...]   (SECONDS: 3600)
# LIMIT=S stops the upscale with Ctrl-C after S seconds (a device call's time limit): the same
# command then resumes it from its finished segments; each run's memory trace is kept apart
# (soak-1.json, soak-2.json, ...), and the output is checked once it is complete.
set -uo pipefail
SRC=$1; OUT=$2; SECONDS_LONG=${3:-3600}; shift $(( $# < 3 ? $# : 3 ))
mkdir -p "$OUT"
if [ ! -f "$OUT/long.mp4" ]; then  # a new soak: no traces of an earlier one
  rm -f "$OUT"/soak-*.json
  python3 benchmarks/loop_clip.py "$SRC" "$OUT/long.mp4" "$SECONDS_LONG"
fi
n=1; while [ -f "$OUT/soak-$n.json" ]; do n=$((n + 1)); done
python3 benchmarks/memwatch.py --every 60 ${LIMIT:+--limit "$LIMIT"} --json "$OUT/soak-$n.json" -- \
  python3 -m skipsr_cli.cli upscale "$OUT/long.mp4" "$OUT/out.mp4" -q "$@"
rc=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['rc'])" "$OUT/soak-$n.json")
if [ "$rc" = 130 ]; then echo "run $n stopped at the limit: run the same command again"; exit 3; fi
[ "$rc" = 0 ] || { echo "run $n failed with exit $rc"; exit 1; }
python3 - "$OUT" <<'PY'
import json, sys
import av
out = sys.argv[1]
def streams(path):
    with av.open(path) as f:
        v, a = f.streams.video[0], f.streams.audio[0]
        vt, at = [], 0
        for p in f.demux(v, a):
            if p.pts is None:
                continue
            if p.stream.type == "video":
                vt.append(float(p.pts * v.time_base))
            else:
                at = max(at, float((p.pts + (p.duration or 0)) * a.time_base))
        return sorted(vt), at, (v.width, v.height)
(vi, ai, si), (vo, ao, so) = streams(f"{out}/long.mp4"), streams(f"{out}/out.mp4")
import glob
runs = [json.load(open(p)) for p in sorted(glob.glob(f"{out}/soak-*.json"), key=lambda p: int(p.rsplit("-", 1)[1][:-5]))]
print(f"| input | {len(vi)} frames {si[0]}x{si[1]} | audio {ai:.3f} s |")
print(f"| output | {len(vo)} frames {so[0]}x{so[1]} | audio {ao:.3f} s |")
same = len(vi) == len(vo) and max(abs(x - y) for x, y in zip(vi, vo)) < 1e-6
print(f"same timestamps: {same}; runs {len(runs)}; wall {sum(r['wall_s'] for r in runs):.0f} s; "
      f"rc {[r['rc'] for r in runs]}")
for i, r in enumerate(runs, 1):
    print(f"run {i} host MiB per minute: {[round(s[1] / 2**20) for s in r['trace']]}")
    print(f"run {i} GPU MiB per minute: {[s[2] for s in r['trace']]}")
PY
rm -f "$OUT/long.mp4" "$OUT/out.mp4"  # the memory traces stay
