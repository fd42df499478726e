"""Host memory of one process that encodes part after part, as a worker of a long run does
(issue 14: host memory stays flat with the input's length). Each part is a fresh x264 writer
(`VideoWriter`, stitchable, the defaults: medium, CRF 18) fed from an encoder thread
(`BackgroundWriter`, as the pipeline's) with FRAMES frames: SOURCE's first 16 frames, doubled
in size by pixel repetition. No model runs, so the encoder's own memory shows alone. For each
part it prints the peak resident memory while it ran (VmHWM, reset before the part through
/proc/self/clear_refs) and the resident memory once its writer is gone. With --trim, glibc's
malloc_trim returns the freed memory to the system after each part. Linux only.

Usage: python3 benchmarks/part_memory.py SOURCE [--parts 6] [--frames 60] [--trim]
"""

import argparse
import ctypes
import gc
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from skipsr_cli.media.encoding import EncodeOptions
from skipsr_cli.media.video_writer import VideoWriter
from skipsr_cli.run.overlap import BackgroundWriter


def status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the kernel's peak resident size starts again from the current one


def encode_part(path: Path, frames: list[np.ndarray], count: int) -> None:
    height, width = frames[0].shape[0] * 2, frames[0].shape[1] * 2
    options = EncodeOptions(stitchable=True)
    with VideoWriter(
        path, width=width, height=height, rate=Fraction(25), time_base=None, options=options
    ) as writer:
        sink = BackgroundWriter(writer.write, 16, name="part-encode")
        for i in range(count):
            small = frames[i % len(frames)]
            sink.put(np.repeat(np.repeat(small, 2, axis=0), 2, axis=1))
        sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--parts", type=int, default=6)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--trim", action="store_true")
    args = parser.parse_args()
    with av.open(str(args.source)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 16:
                break
    height, width = frames[0].shape[0] * 2, frames[0].shape[1] * 2
    trim = ctypes.CDLL("libc.so.6").malloc_trim if args.trim else None
    print(f"{width}x{height}, {args.frames} frames a part, trim {'on' if trim else 'off'}")
    print(f"before the first part: {status_mib('VmRSS'):.0f} MiB resident")
    print("| part | peak while it ran, MiB | resident after, MiB | seconds |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for part in range(args.parts):
            began = time.perf_counter()
            reset_peak()
            path = Path(folder) / f"part{part}.mkv"
            encode_part(path, frames, args.frames)
            path.unlink()
            gc.collect()
            if trim is not None:
                trim(0)
            print(
                f"| {part + 1} | {status_mib('VmHWM'):.0f} | {status_mib('VmRSS'):.0f} | "
                f"{time.perf_counter() - began:.1f} |"
            )


if __name__ == "__main__":
    main()
