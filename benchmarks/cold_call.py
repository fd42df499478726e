"""A worker's first call of the model, forked from a parent that has imported torch (as the fork
server's workers are), with and without the parent having loaded cuDNN's libraries first.

cuDNN 9 loads its sub-libraries (engines, heuristics, ops) with dlopen on its first use, which
in a worker is inside the first call of the model; a parent that never touches CUDA can load
them beforehand (`ctypes.CDLL`, no call into them), and every child it forks inherits them.
The parent imports what the fork server imports (with --preload, then cuDNN's libraries) and forks
CHILDREN children at once, as a long video's workers start; each creates its CUDA context, loads
`base` (bf16) and times its first and second calls on FRAMES frames of WIDTHxHEIGHT noise, x2.
Prints a row per child: CUDA's start, the model's load, the first call, the second call (s).
Usage: python3 benchmarks/cold_call.py [--preload] [--children 4] [--size 1280x720] [--frames 16]
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import statistics
import sys
import time
from pathlib import Path

import torch


def cudnn_libraries() -> list[str]:
    """cuDNN's shared libraries as PyTorch's wheels install them (site-packages/nvidia/cudnn)."""
    found = []
    for base in sys.path:
        found += glob.glob(os.path.join(base, "nvidia", "cudnn", "lib", "libcudnn*.so*"))
    return sorted(set(found))


def child(size: tuple[int, int], frames: int, out) -> None:
    from models.skipsr import Settings
    from skipsr_cli.run.options import FRAME_SLICE
    from skipsr_cli.weights import load_model

    t0 = time.perf_counter()
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    t1 = time.perf_counter()
    net = load_model("base", device=torch.device("cuda"), dtype=torch.bfloat16)
    t2 = time.perf_counter()
    g = torch.Generator(device="cuda").manual_seed(0)
    lr = torch.rand(1, 3, frames, size[1], size[0], device="cuda", generator=g)
    times = []
    for _ in range(2):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            net(lr, (size[1] * 2, size[0] * 2), Settings(frame_slice=FRAME_SLICE))
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    out.write(f"{t1 - t0:.3f} {t2 - t1:.3f} {times[0]:.3f} {times[1]:.3f}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preload", action="store_true", help="load cuDNN's libraries first")
    parser.add_argument("--children", type=int, default=4, help="forked at once, as workers")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    import skipsr_cli.farm.devices  # noqa: F401  what the fork server preloads

    mode = "cudnn loaded" if args.preload else "plain"
    if args.preload:
        libs = cudnn_libraries()
        t = time.perf_counter()
        for lib in libs:
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        names = ", ".join(Path(p).name for p in libs) or "none found"
        print(
            f"the parent loaded {len(libs)} cuDNN libraries in {time.perf_counter() - t:.3f} s: {names}"
        )
    children = []
    for _ in range(args.children):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            with os.fdopen(write, "w") as out:
                child(size, args.frames, out)
            os._exit(0)
        os.close(write)
        children.append((pid, read))
    rows = []
    for pid, read in children:
        with os.fdopen(read) as got:
            rows.append([float(v) for v in got.read().split()])
        os.waitpid(pid, 0)
    for i, row in enumerate(rows):
        print(f"| {mode} | child {i + 1} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    cols = list(zip(*rows, strict=True))
    print(f"median {mode}: " + ", ".join(f"{statistics.median(c):.3f}" for c in cols))


if __name__ == "__main__":
    main()
