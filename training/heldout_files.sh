#!/usr/bin/env bash
# Writes the nine held-out clips of training/HELDOUT.md into OUTDIR, byte for byte, from clones
# (or bare mirrors) of their five repositories, each found as CLONES/OWNER+NAME.
# Usage: training/heldout_files.sh CLONES OUTDIR
set -euo pipefail
CLONES=$1; OUT=$2
mkdir -p "$OUT"
show() {  # repository commit path file (a bare mirror may sit in the repository's repo/ folder)
  local dir="$CLONES/$1"
  [ -d "$dir/repo" ] && dir="$dir/repo"
  git -C "$dir" show "$2:$3" > "$OUT/$4"
}
A=2bc207851df311340767e913931ca7b28cab1794; P=libraries/test_data/src/test/assets/media/mp4
M=ece8a1f99726a364509be9d07835a69ef65d3e35
show androidx+media $A $P/mv_with_2_top_shots.mp4 face_selfie_1440x1080_hevc.mp4
show androidx+media $A $P/portrait_4k60.mp4 texture_pegboard_2160p60_portrait.mp4
show androidx+media $A $P/sample_edit_list.mp4 city_architecture_1080p_hlg.mp4
show androidx+media $A $P/video_dovi_1920x1080_60fps_dvav_09.mp4 graffiti_painter_1080p60.mp4
show mobiusml+aana_sdk 75f494dc63a14ed8b0897f8fbafcd098ee2a1527 \
  aana/tests/files/videos/squirrel_no_audio.mp4 squirrel_animal_720p.mp4
show google-ai-edge+mediapipe-samples $M \
  examples/image_classification/android/app/src/androidTest/assets/test_video.mp4 laptop_magazines_text_1080p25.mp4
show google-ai-edge+mediapipe-samples $M \
  examples/gesture_recognizer/android/app/src/androidTest/assets/test_video.mp4 portrait_thumbsup_720p25.mp4
show flutter+assets-for-api-docs fba3b82dd70ac2f340629bcc65e4a57c0952a202 assets/videos/bee.mp4 \
  bee_thistle_macro_720p.mp4
show roboflow+supervision a59e4dfe7304edd3b5fd35c592d5d998dab14ddc docs/tracker/walking.mp4 \
  people_walking_concourse_bw_720p25.mp4
ls -l "$OUT"
