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
  git -C "$dir" show "$2:$3" > "$OUT/$4.part" && mv "$OUT/$4.part" "$OUT/$4"
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
# the copies every figure since 2026-11-30 was measured on
(cd "$OUT" && sha256sum -c --quiet) <<'SUMS'
91d703354b3bb77b42dc49152f82548668e981525c89464654cb4ca9f802fffc  bee_thistle_macro_720p.mp4
35fa0665cad9c1abfd31822c6e260c02f8d267d93038f7142a1940393c063f2d  city_architecture_1080p_hlg.mp4
35f1c95f13a5a4482e9a437ec719f9a97117baf071f9571a72d6b68e7ac806db  face_selfie_1440x1080_hevc.mp4
d5a662d831931ecd65709d420925cefbb461e9893c6aa302aa80c635123df9df  graffiti_painter_1080p60.mp4
b1dedb2e475c688b03aea83d8694650d4bf724faa70786faa9a8526df2e7dd30  laptop_magazines_text_1080p25.mp4
62b509962a118b35250a3204a234d4d85c0639892f6842fed39a369d5c153ba5  people_walking_concourse_bw_720p25.mp4
d7aca9a2477f2360adc8daa7990ef42eac7ea488db041fad722c46a86bfd7088  portrait_thumbsup_720p25.mp4
f3e5b796743693850a61b30b6ee041289409c826da7730735b86c48bd38efcee  squirrel_animal_720p.mp4
521337fca186aeb7b8b08462452e90cf3efa515ff0215f42f63aa62d738f5cf3  texture_pegboard_2160p60_portrait.mp4
SUMS
echo "the nine held-out clips are in $OUT, checked"
