#!/usr/bin/env bash
# Issue 14's second figure: a whole upscale against the host's encoding capacity, at 720p -> 1440p
# and 1080p -> 2160p (FRAMES frames each, x264 medium CRF 18). `bench capacity` runs K copies of
# the encode floor (the pipeline with bicubic in place of the model) at once, each with its share
# of the cores, spread over the GPUs: the capacity is the best total. `bench capacity --upscale`
# runs K copies of the whole upscale the same way (what `upscale --workers K` does once its
# workers are up): its best total over the capacity is the ratio. RUN=1 adds `bench run` (one
# upscale against one floor, every stage timed alone).
# Usage: benchmarks/capacity_gpu.sh SOURCE_CLIP OUTDIR [WEIGHTS]
#   SIZES="WxH ..." FRAMES=N FLOORS=1,2,3,4 UPSCALES=1,2,3,4 to change; CHUNKS="16/0 16/4" runs
#   the upscale copies once for each plan in each round (frames per chunk / overlap),
#   upscale_SIZE_N-K_rR.json each (the floor keeps the default plan, 16/0: its bicubic costs next
#   to nothing, so its chunks do not move the capacity).
#   ROUNDS=R repeats floor and upscales R times, alternating (the floor first in odd rounds, the
#   upscales first in even ones), and ends with each plan's median ratio over the rounds: each
#   round's ratio compares runs made minutes apart, which matters on a host whose encoding speed
#   swings between sessions and within one (BENCHMARKS.md). Give it an empty OUTDIR: the medians
#   read every round's files there.
set -uo pipefail
SRC=$1; OUT=$2; W=${3:-}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
for chunks in ${CHUNKS:-16/0}; do
  case $chunks in */*) ;; *) echo "CHUNKS entries are FRAMES/OVERLAP, not $chunks" >&2; exit 2 ;; esac
done
case ${ROUNDS:-1} in ''|*[!0-9]*|0) echo "ROUNDS is a whole number of at least 1, not ${ROUNDS}" >&2; exit 2 ;; esac
mkdir -p "$OUT"
floors() {  # the floor copies into $1; a failed run leaves no file
  $S bench capacity "$OUT/in.mp4" --scale 2 --workers "${FLOORS:-1,2,3,4}" --devices all --json > "$1" \
    || { echo "the floor copies failed ($size, round $round)" >&2; rm -f "$1"; return 1; }
}
for size in ${SIZES:-1280x720 1920x1080}; do
  python3 benchmarks/resize_clip.py "$SRC" "$OUT/in.mp4" "${size%x*}" "${size#*x}" "${FRAMES:-600}"
  [ -n "${RUN:-}" ] && $S bench run "$OUT/in.mp4" --scale 2 --frames 64 --json "${MODEL[@]}" > "$OUT/run_$size.json"
  for round in $(seq "${ROUNDS:-1}"); do
    cap="$OUT/capacity_${size}_r$round.json"
    # odd rounds run the floor first, even rounds last: a run made second in a pair may be
    # slower for that alone (BENCHMARKS.md, seventh session), and the order then cancels out
    [ $((round % 2)) = 1 ] && { floors "$cap" || continue; }
    for chunks in ${CHUNKS:-16/0}; do
      up="$OUT/upscale_${size}_${chunks/\//-}_r$round.json"
      $S bench capacity "$OUT/in.mp4" --scale 2 --workers "${UPSCALES:-1,2,3,4}" --devices all --upscale --json \
        --chunk-frames "${chunks%/*}" --overlap "${chunks#*/}" "${MODEL[@]}" > "$up" \
        || { echo "the upscale copies failed ($size, chunks $chunks, round $round)" >&2; rm -f "$up"; }
    done
    [ $((round % 2)) = 0 ] && { floors "$cap" || continue; }
    for chunks in ${CHUNKS:-16/0}; do
      up="$OUT/upscale_${size}_${chunks/\//-}_r$round.json"
      [ -f "$up" ] && python3 benchmarks/capacity_table.py "$cap" "$up"
    done
  done
  python3 benchmarks/capacity_table.py --median "$OUT"/capacity_"${size}"_r*.json
done
rm -f "$OUT/in.mp4"
