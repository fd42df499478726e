#!/usr/bin/env bash
# Issue 16's soak: a long 720p input (a short clip's video looped by stream copy, with an AAC tone)
# upscaled in one run while host and GPU memory are sampled every minute; then the output is
# checked against the input: video frame count, every timestamp, audio length.
# Usage: benchmarks/soak.sh SOURCE_CLIP OUTDIR [SECONDS] [UPSCALE OPTIONS...]   (SECONDS: 3600)
set -uo pipefail
SRC=$1; OUT=$2; SECONDS_LONG=${3:-3600}; shift $(( $# < 3 ? $# : 3 ))
mkdir -p "$OUT"
python3 benchmarks/loop_clip.py "$SRC" "$OUT/long.mp4" "$SECONDS_LONG"
python3 benchmarks/memwatch.py --every 60 --json "$OUT/soak.json" -- \
  python3 -m skipsr_cli.cli upscale "$OUT/long.mp4" "$OUT/out.mp4" -q -y "$@"
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
soak = json.load(open(f"{out}/soak.json"))
host = [round(s[1] / 2**20) for s in soak["trace"]]
gpu = [s[2] for s in soak["trace"]]
print(f"| input | {len(vi)} frames {si[0]}x{si[1]} | audio {ai:.3f} s |")
print(f"| output | {len(vo)} frames {so[0]}x{so[1]} | audio {ao:.3f} s |")
same = len(vi) == len(vo) and max(abs(x - y) for x, y in zip(vi, vo)) < 1e-6
print(f"same timestamps: {same}; wall {soak['wall_s']:.0f} s; rc {soak['rc']}")
print(f"host MiB per minute: {host}")
print(f"GPU MiB per minute: {gpu}")
PY
rm -f "$OUT/long.mp4" "$OUT/out.mp4"
