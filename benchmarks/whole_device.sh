#!/usr/bin/env bash
# benchmarks/whole_gpu.sh as the sixteenth session ran it on the lent H200 (BENCHMARKS.md): PyAV
# from a carried wheel (.whl/), bytecode written once and kept (the image sets
# PYTHONDONTWRITEBYTECODE, which made every process compile torch again), tests/test_gpu.py first
# where GPUTEST is set, the rounds under a time limit, then the table and a tarball of the results
# (the looped videos left out) in $OUT.
# Usage: [GPUTEST=1] [ROUNDS=2] [THREADS=1] [FLOOR_FRAMES=N] [WORKERS=default] [LIMIT=540] \
#   benchmarks/whole_device.sh SOURCE_CLIP WIDTHxHEIGHT FRAMES
set -uo pipefail
[ $# -eq 3 ] || { echo "usage: $0 SOURCE_CLIP WIDTHxHEIGHT FRAMES" >&2; exit 2; }
SRC=$1; SIZE=$2; FRAMES=$3
. benchmarks/device_env.sh
[ -n "${GPUTEST:-}" ] && python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -3
D=/tmp/w_$SIZE
export ROUNDS=${ROUNDS:-2} WORKERS=${WORKERS:-default}  # FLOOR_FRAMES, THREADS go along
timeout "${LIMIT:-540}" bash benchmarks/whole_gpu.sh "$SRC" "$D" "$SIZE" "$FRAMES"
echo "whole_gpu.sh: exit $?"
python3 benchmarks/whole_table.py "$D" "$SIZE"
rm -f "$D"/*.mp4
[ -n "${OUT:-}" ] && tar czf "$OUT/w_$SIZE.tgz" -C /tmp "w_$SIZE"
