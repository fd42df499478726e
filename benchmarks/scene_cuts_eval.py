"""Scene cuts on `skipsr eval`'s own inputs: the low-resolution clips its tracks make from each
reference, in the chunks it runs, read by `scenes.shot_starts` as eval reads them (fp32).

`benchmarks/scene_cuts.py` set the thresholds on clips resized to 320x180. Eval's inputs are
smaller still at x4 and carry a codec's damage on the web track; a false cut there would split a
chunk and move the model's figures. This prints, for every clip, scale and track, the highest
scores of any pair within a chunk and the cuts found (none expected: the clips are single shots).

Usage: python3 benchmarks/scene_cuts_eval.py CLIP_FOLDER [--frames 16] [--chunk-frames 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from skipsr_cli.measure.evaluate import find_sources, load_reference
from skipsr_cli.run.scenes import CHANGE, SHIFT, pair_scores, shot_starts
from skipsr_cli.train.degrade import TRACKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--chunk-frames", type=int, default=16)
    args = parser.parse_args()
    print(f"thresholds: change {CHANGE}, histogram shift {SHIFT} (a cut needs both)")
    print("| clip | scale | track | input | pairs | highest change | highest shift | cuts |")
    print("|---|---|---|---|---|---|---|---|")
    pairs = cuts = 0
    for source in find_sources([args.folder]):
        for scale in (2, 4):
            ref = load_reference(source, scale, args.frames).frames
            for track in TRACKS.values():
                lr = track.apply(ref, scale)  # (T, 3, h, w), as eval makes it
                top_change = top_shift = 0.0
                found, n = [], 0
                for start in range(0, lr.shape[0], args.chunk_frames):
                    chunk = lr[start : start + args.chunk_frames]
                    if chunk.shape[0] < 2:
                        continue
                    change, shift = pair_scores(chunk)
                    top_change = max(top_change, change.max().item())
                    top_shift = max(top_shift, shift.max().item())
                    n += chunk.shape[0] - 1
                    starts = shot_starts(chunk.transpose(0, 1)[None])
                    found += [start + s for s in starts]
                pairs, cuts = pairs + n, cuts + len(found)
                h, w = lr.shape[-2:]
                print(
                    f"| {source.name} | x{scale} | {track.name} | {w}x{h} | {n} | "
                    f"{top_change:.3f} | {top_shift:.3f} | {found or 'none'} |"
                )
    print(f"\n{pairs} pairs within chunks, {cuts} cuts found")


if __name__ == "__main__":
    main()
