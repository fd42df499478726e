#!/usr/bin/env bash
# Issue 14: is the CPU that a whole upscale spends beyond its floor the model's presence in each
# process (its launches, its waits for the GPU) or its frames? Four copies at once (`bench
# capacity --workers 4`) of three kinds, each measured by thread (benchmarks/thread_cpu.py): the
# floor (bicubic), the upscale (the model), and the model beside bicubic (`--bicubic-frames`: the
# model runs on every chunk, bicubic's frames are encoded). ROUNDS rounds, alternating the order
# (floor, upscale, beside; then beside, upscale, floor), as the host's speed drifts. The lent
# machine's set-up is benchmarks/device_env.sh's. KINDS picks the kinds and their
# order in odd rounds (even rounds run them in reverse); besides the three, `switch` is the upscale
# with Python's switch interval at 0.5 ms in every process (a sitecustomize on PYTHONPATH): whether
# the threads that feed the encoder wait for the GIL while the calling thread launches the model.
# `sleep` and `launches` are the floor with one half of the model's presence each
# (benchmarks/presence_probe.py): a GPU-holding kernel as long as its call, or as many launches.
# Usage: [ROUNDS=2] [KINDS="floor upscale beside"] [LIMIT=540] benchmarks/presence_gpu.sh SOURCE_CLIP WIDTHxHEIGHT FRAMES
set -uo pipefail
[ $# -eq 3 ] || { echo "usage: $0 SOURCE_CLIP WIDTHxHEIGHT FRAMES" >&2; exit 2; }
SRC=$1; SIZE=$2; FRAMES=$3
. benchmarks/device_env.sh
D=$(mktemp -d)
python3 benchmarks/resize_clip.py "$SRC" "$D/in.mp4" "${SIZE%x*}" "${SIZE#*x}" "$FRAMES" || exit 1
S="python3 -m skipsr_cli.cli"
$S --help > /dev/null
mkdir -p "$D/switch" && echo "import sys; sys.setswitchinterval(0.0005)" > "$D/switch/sitecustomize.py"
one() {  # one kind's four copies, by thread
  local flags=() path=$PYTHONPATH
  local cmd=($S bench capacity "$D/in.mp4" --scale 2 --workers 4 --devices all --json)
  case $1 in
    floor) ;;
    upscale) flags=(--upscale) ;;
    beside) flags=(--upscale --bicubic-frames) ;;
    switch) flags=(--upscale); path=$D/switch:$PYTHONPATH ;;
    sleep|launches) cmd=(env PRESENCE_PROBE="$1" python3 benchmarks/presence_probe.py "$D/in.mp4")
      path=$PWD:$PYTHONPATH ;;
    *) echo "KINDS entries are floor, upscale, beside, switch, sleep or launches, not $1" >&2; return 2 ;;
  esac
  PYTHONPATH=$path python3 benchmarks/thread_cpu.py --label "$1 (round $2)" -- "${cmd[@]}" "${flags[@]}"
}
rounds() {
  local kinds=(${KINDS:-floor upscale beside})
  for r in $(seq "${ROUNDS:-2}"); do
    order=("${kinds[@]}")
    [ $((r % 2)) = 0 ] && for ((i = ${#kinds[@]} - 1, j = 0; i >= 0; i--, j++)); do order[j]=${kinds[i]}; done
    for kind in "${order[@]}"; do one "$kind" "$r"; echo; done
  done
}
export -f one rounds; export D S
# the log also goes to $OUT (the lent machine's result folder) where it is set: a long log's
# head falls outside the tail that the device's reply shows
timeout "${LIMIT:-540}" bash -c rounds 2>&1 | tee "${OUT:-.}/presence.log"
echo "presence_gpu.sh: exit ${PIPESTATUS[0]}"
rm -rf "$D"
