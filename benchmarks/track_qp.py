"""The mean H.264 QP that `--denoise auto` reads, on the evaluation's own inputs: each reference
downscaled (antialiased bicubic) and encoded by x264 medium at several CRFs, as `skipsr eval`'s
tracks are (clean: CRF 12, web: CRF 28). Where `weights.QP_CLEAN` and `QP_WEB` come from.
Runs on the CPU; x264's output, and so its QP, varies a little with its thread count.

    PYTHONPATH=. python3 benchmarks/track_qp.py HELDOUT_DIR [--frames 16] [--crf 12 18 23 28]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from skipsr_cli.measure.evaluate import find_sources, load_reference
from skipsr_cli.media.quantiser import mean_qp
from skipsr_cli.train.degrade import h264_encode, resize
from skipsr_cli.weights import auto_denoise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--crf", type=int, nargs="+", default=[12, 18, 23, 28])
    args = parser.parse_args()
    cells = [f"x{s} CRF {c}" for s in (2, 4) for c in args.crf]
    print("| clip | " + " | ".join(cells) + " |")
    print("|---|" + "---|" * len(cells))
    for source in find_sources([args.folder]):
        row = []
        for scale in (2, 4):
            ref = load_reference(source, scale, args.frames).frames  # cropped as eval crops it
            h, w = ref.shape[-2:]
            lr = resize(ref, (round(h / scale), round(w / scale)), "bicubic")
            for crf in args.crf:
                qp = mean_qp(h264_encode(lr, crf))
                row.append("-" if qp is None else f"{qp:.1f} ({auto_denoise(qp):.2f})")
        print(f"| {source.name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
