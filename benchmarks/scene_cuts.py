"""How well `run/scenes.py` finds cuts: its two scores on real clips, within shots and across cuts.

Every clip (a video file, or a folder of numbered JPEGs such as DAVIS's) is read at 320x180, at
most MAX frames. Pairs within a clip are consecutive frames of one shot (camera motion, moving
subjects, lighting); a cut is made by joining the last frame of one clip to the first of another,
for every ordered pair of clips. Prints each clip's highest scores within its shot, the lowest
scores across cuts, and how many pairs the module's thresholds call a cut on either side. Then
`shot_starts` itself, which drops flashes: on 4 + 4 frames around every join, and on flashes of
1 to FLASH frames washed towards white in each clip.

With --pq, every clip is first coded as PQ (HDR10) codes the same light, SDR's white at 203 nits,
and `shot_starts` runs both on those codes as they are and told they are PQ.

Usage: python3 benchmarks/scene_cuts.py FOLDER... [--max 120] [--pq]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from skipsr_cli.run import scenes

SIZE = (180, 320)


def frames_of(path: Path, most: int, size: tuple[int, int] = SIZE) -> torch.Tensor:
    """At most `most` frames of a video or a folder of JPEGs, (T, 3, H, W) in [0, 1], each
    resized to `size` (H, W) by area."""
    if path.is_dir():
        images = []
        for file in sorted(path.glob("*.jpg"))[:most]:
            with av.open(str(file)) as image:
                images.append(next(image.decode(video=0)).to_ndarray(format="rgb24"))
    else:
        with av.open(str(path)) as container:
            images = []
            for frame in container.decode(video=0):
                images.append(frame.to_ndarray(format="rgb24"))
                if len(images) == most:
                    break
    clip = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return F.interpolate(clip, size=size, mode="area")


def clips_under(folders: list[Path]) -> list[Path]:
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if (
                path.suffix in (".mp4", ".mkv", ".avi", ".mov", ".webm")
                or path.is_dir()
                and any(path.glob("*.jpg"))
            ):
                found.append(path)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--max", type=int, default=120)
    parser.add_argument("--pq", action="store_true", help="code the clips as PQ first")
    args = parser.parse_args()
    clips = {p: frames_of(p, args.max) for p in clips_under(args.folders)}
    clips = {p: to_pq(c) if args.pq else c for p, c in clips.items() if c.shape[0] >= 2}
    print(f"{len(clips)} clips, {sum(c.shape[0] for c in clips.values())} frames")
    print("| clip | frames | highest change | highest shift | pairs called a cut |")
    print("|---|---|---|---|---|")
    false = 0
    within_change, within_shift = [], []
    for path, clip in clips.items():
        change, shift = scenes.pair_scores(clip)
        called = int(((change >= scenes.CHANGE) & (shift >= scenes.SHIFT)).sum())
        false += called
        within_change += change.tolist()
        within_shift += shift.tolist()
        name = f"{path.parent.name}/{path.name}"
        print(f"| {name} | {clip.shape[0]} | {change.max():.3f} | {shift.max():.3f} | {called} |")
    ends = [(c[-1], c[0]) for c in clips.values()]
    cut_change, cut_shift, missed = [], [], 0
    for i, (last, _) in enumerate(ends):
        for j, (_, first) in enumerate(ends):
            if i != j:
                change, shift = scenes.pair_scores(torch.stack((last, first)))
                cut_change.append(float(change[0]))
                cut_shift.append(float(shift[0]))
                missed += not (change[0] >= scenes.CHANGE and shift[0] >= scenes.SHIFT)
    q = lambda v, f: sorted(v)[int(f * (len(v) - 1))]  # noqa: E731
    margin = max(
        min(c / scenes.CHANGE, s / scenes.SHIFT)
        for c, s in zip(within_change, within_shift, strict=True)
    )
    print(
        f"pairs within shots: {len(within_change)}, called a cut: {false}; nearest to a cut: {margin:.2f} of the thresholds"
    )
    print(
        f"  change: median {statistics.median(within_change):.3f}, 99th {q(within_change, 0.99):.3f}, max {max(within_change):.3f}"
    )
    print(
        f"  shift: median {statistics.median(within_shift):.3f}, 99th {q(within_shift, 0.99):.3f}, max {max(within_shift):.3f}"
    )
    print(f"cuts made: {len(cut_change)}, missed: {missed}")
    for transfer in (None, scenes.PQ) if args.pq else (None,):
        joins, flashes = module_rule(list(clips.values()), transfer)
        print(
            f"  through shot_starts (flashes dropped; transfer {transfer}), 4 + 4 frames around "
            f"each join: {joins[0]} missed, {joins[1]} found elsewhere"
        )
        for n, (tried, cut) in flashes.items():
            print(f"flashes of {n} frame(s) washed out in each clip: {tried} made, {cut} cut")
    print(
        f"  change: min {min(cut_change):.3f}, 1st {q(cut_change, 0.01):.3f}, median {statistics.median(cut_change):.3f}"
    )
    print(
        f"  shift: min {min(cut_shift):.3f}, 1st {q(cut_shift, 0.01):.3f}, median {statistics.median(cut_shift):.3f}"
    )
    for change_t, shift_t in (
        (0.08, 0.15),
        (0.08, 0.2),
        (0.1, 0.2),
        (0.12, 0.2),
        (0.1, 0.25),
        (0.12, 0.3),
    ):
        fp = sum(
            c >= change_t and s >= shift_t for c, s in zip(within_change, within_shift, strict=True)
        )
        fn = sum(
            not (c >= change_t and s >= shift_t) for c, s in zip(cut_change, cut_shift, strict=True)
        )
        print(f"thresholds {change_t}/{shift_t}: {fp} false cuts, {fn} missed")


def to_pq(frames: torch.Tensor) -> torch.Tensor:
    """SDR-coded frames (BT.1886's gamma) as PQ codes the same light, SDR's white at 203 nits."""
    y = (frames.clamp(0, 1) ** 2.4 * scenes.REFERENCE_WHITE / 10000) ** 0.1593017578125
    return ((0.8359375 + 18.8515625 * y) / (1 + 18.6875 * y)) ** 78.84375


def module_rule(
    clips: list[torch.Tensor], transfer: int | None = None
) -> tuple[tuple[int, int], dict[int, tuple[int, int]]]:
    """`shot_starts` itself, flashes dropped, reading the clips as coded with `transfer`: on the
    last 4 frames of each clip joined to the first 4 of every other, (joins whose cut it misses,
    joins where it cuts elsewhere too); and on 16 frames of each clip with 1 .. FLASH frames from
    the 6th washed towards white, as a flash does, {frames: (flashes made, flashes it cut)}."""
    missed = elsewhere = 0
    for i, a in enumerate(clips):
        for j, b in enumerate(clips):
            if i != j:
                join = torch.cat((a[-4:], b[:4]))
                starts = scenes.shot_starts(join.transpose(0, 1)[None], transfer=transfer)
                missed += len(a[-4:]) not in starts
                elsewhere += any(s != len(a[-4:]) for s in starts)
    flashes = {}
    for n in range(1, scenes.FLASH + 1):
        made = cut = 0
        for clip in clips:
            if clip.shape[0] >= 16:
                x = clip[:16].clone()
                x[5 : 5 + n] = x[5 : 5 + n] * 0.3 + 0.7
                made += 1
                cut += bool(scenes.shot_starts(x.transpose(0, 1)[None], transfer=transfer))
        flashes[n] = (made, cut)
    return (missed, elsewhere), flashes


if __name__ == "__main__":
    main()
