#!/usr/bin/env bash
# Issue 14's acceptance as a user meets it: one whole `skipsr upscale` of a long video (default
# workers, resumable parts, stitch and all, timed from the command's start to its end) against the
# host's encoding capacity, measured just before and just after it (FLOORS copies of the encode
# floor at once on a shorter clip of the same footage: a rate, so its length need not match;
# FLOOR_FRAMES frames a copy, a quarter of FRAMES unless given; FLOORS=1,2,3,4 takes the best of
# 1-4 as the issue defines the capacity, 4 alone is quicker). WORKERS="4 6" runs one whole upscale
# for each entry between the same two floors, with `--workers N` (`default`: none given; `spawn`:
# none given, the workers spawned fresh as before the fork server, benchmarks/spawned_workers.py;
# `NtK`: N workers, each given K cores by SKIPSR_WORKER_THREADS, so that its x264 runs 1.5 K
# threads; `tK` alone is a process given K cores, which keeps to one worker, as a farm task does).
# ROUNDS=R repeats the runs R times, a floor between rounds (each run has its own floors before and
# after; benchmarks/whole_table.py gives each entry's median over the rounds, as the floors swing).
# FLOOR_THREADS=K measures each floor a second time with K cores a copy (floorK_R.json).
# THREADS=1 adds one whole upscale and one floor measured by thread (after the rounds).
# Usage: [ROUNDS=R] [THREADS=1] [FLOORS=4] [FLOOR_FRAMES=N] [WORKERS="default 6"] benchmarks/whole_gpu.sh SOURCE_CLIP OUTDIR WIDTHxHEIGHT FRAMES [WEIGHTS]
#   e.g. 1280x720 4800, or 1920x1080 3600. A FLOOR_FRAMES below FRAMES / 4 saves device time but
#   favours the ratio: a short floor copy's start and end weigh more in its rate than a part's do.
set -uo pipefail
[ $# -ge 4 ] || { echo "usage: $0 SOURCE_CLIP OUTDIR WIDTHxHEIGHT FRAMES [WEIGHTS]" >&2; exit 2; }
SRC=$1; OUT=$2; SIZE=$3; FRAMES=$4; W=${5:-}
S="python3 -m skipsr_cli.cli"
MODEL=(); [ -n "$W" ] && MODEL=(--weights "$W")
mkdir -p "$OUT"
# a work folder an earlier, stopped invocation left would make the timed run a resume
rm -rf "$OUT/.out.mp4.skipsr-work" "$OUT/out.mp4" "$OUT"/floor_*.json "$OUT"/whole_*.json "$OUT"/summary_*.json "$OUT"/whole_*.log
# the source resized once (at most the floor's length), then played again and again by stream
# copy (seconds, where encoding FRAMES frames took minutes of the device's time): FRAMES rounds up
# to whole plays, and the copies carry loop_clip's AAC tone, which the stitch copies in
FLOOR_FRAMES=${FLOOR_FRAMES:-$((FRAMES / 4))}
python3 benchmarks/resize_clip.py "$SRC" "$OUT/one.mp4" "${SIZE%x*}" "${SIZE#*x}" "$FLOOR_FRAMES" || exit 1
seconds() {
  python3 -c "import av, sys; s = av.open(sys.argv[1]).streams.video[0]; print($1 / float(s.average_rate))" "$OUT/one.mp4"
}
python3 benchmarks/loop_clip.py "$OUT/one.mp4" "$OUT/long.mp4" "$(seconds "$FRAMES")" || exit 1
python3 benchmarks/loop_clip.py "$OUT/one.mp4" "$OUT/part.mp4" "$(seconds "$FLOOR_FRAMES")" || exit 1
floor() {
  $S bench capacity "$OUT/part.mp4" --scale 2 --workers "${FLOORS:-4}" --devices all --json > "$OUT/$1.json" \
    || { echo "the floor copies ($1) failed" >&2; rm -f "$OUT/$1.json"; }
  # FLOOR_THREADS=K: the same copies again, each given K cores (x264 threads 1.5 K) beside it in
  # floorK_*.json, for encoders given more threads than their share of the cores
  [ -n "${FLOOR_THREADS:-}" ] && SKIPSR_WORKER_THREADS=$FLOOR_THREADS $S bench capacity "$OUT/part.mp4" \
    --scale 2 --workers "${FLOORS:-4}" --devices all --json > "$OUT/floor${FLOOR_THREADS}_${1#floor_}.json"
  return 0
}
WORKERS=${WORKERS:-default}
for n in $WORKERS; do
  [[ $n =~ ^(default|spawn|[1-9][0-9]?|[1-9][0-9]?t[1-9][0-9]?|t[1-9][0-9]?)$ ]] \
    || { echo "WORKERS entries are default, spawn, N, tK or NtK, not $n" >&2; exit 2; }
done
# every Python module compiled once before the clock (a run's first import of a module with no
# bytecode compiles it: 841 of them, 1.8-2.6 s a process, where torch ships none; this writes it,
# unless PYTHONDONTWRITEBYTECODE is set, as on the device's image: unset it there)
$S --help > /dev/null
ROUNDS=${ROUNDS:-1}
floor floor_0
for r in $(seq 1 "$ROUNDS"); do
  i=0
  for n in $WORKERS; do
    i=$((i + 1))  # runs are numbered, so that an entry given twice keeps both runs' files
    rm -rf "$OUT/.out.mp4.skipsr-work" "$OUT/out.mp4"
    ARGS=(); SHARE=(); count=$n
    if [[ $n =~ ^([0-9]*)t([0-9]+)$ ]]; then
      count=${BASH_REMATCH[1]}; SHARE=(env "SKIPSR_WORKER_THREADS=${BASH_REMATCH[2]}")
    fi
    case $count in default|spawn|'') ;; *) ARGS=(--workers "$count") ;; esac
    RUN=$S; [ "$n" = spawn ] && RUN="python3 benchmarks/spawned_workers.py"
    "${SHARE[@]}" python3 benchmarks/memwatch.py --every 2 --json "$OUT/whole_${r}_${i}_$n.json" -- \
      $RUN upscale "$OUT/long.mp4" "$OUT/out.mp4" -q -y --json "${MODEL[@]}" "${ARGS[@]}" \
      > "$OUT/summary_${r}_${i}_$n.json" 2> "$OUT/whole_${r}_${i}_$n.log"
  done
  floor "floor_$r"
done
# THREADS=1: one more whole upscale and one more floor, each with its CPU a frame by thread group
# (benchmarks/thread_cpu.py): where the run's CPU beyond the floor's goes
if [ -n "${THREADS:-}" ]; then
  rm -rf "$OUT/.out.mp4.skipsr-work" "$OUT/out.mp4"
  python3 benchmarks/thread_cpu.py --whole --label "whole upscale" --save "$OUT/summary_threads.json" -- \
    $S upscale "$OUT/long.mp4" "$OUT/out.mp4" -q -y --json "${MODEL[@]}" > "$OUT/threads_whole.md"
  python3 benchmarks/thread_cpu.py --label "floor, ${FLOORS:-4} copies" -- \
    $S bench capacity "$OUT/part.mp4" --scale 2 --workers "${FLOORS:-4}" --devices all --json \
    > "$OUT/threads_floor.md"
  cat "$OUT/threads_whole.md" "$OUT/threads_floor.md"
fi
python3 benchmarks/whole_table.py "$OUT" "$SIZE"
status=$?
for f in "$OUT"/summary_*.json; do
  echo; echo "${f##*/}:"
  python3 benchmarks/part_timeline.py "$f"
done
rm -rf "$OUT/.out.mp4.skipsr-work" "$OUT/out.mp4" "$OUT/one.mp4" "$OUT/long.mp4" "$OUT/part.mp4"
exit $status
