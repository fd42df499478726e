"""What part of the model's presence slows the encoder: its GPU time or its host launches.

Four copies of the encode floor at once (`bench capacity --workers 4` on one GPU), where each
copy does, beside bicubic on every chunk, one of:
- `sleep`: one kernel that holds the GPU for PRESENCE_GPU_MS (default 100 ms, about what `base`
  takes on a 16-frame 720p chunk on an H200): the model's GPU time, so other copies' work waits
  for its time slices, with a single launch;
- `launches`: PRESENCE_LAUNCHES tiny kernels (default 1,200, what one call of `base` launches),
  a wait for the device after every 100: the model's host work, with almost no GPU time;
- `floor`: nothing more (the floor itself).
The kind is PRESENCE_PROBE in the environment, which the copies (spawned, importing this file
again) inherit. Prints `bench capacity --json`'s document, so benchmarks/thread_cpu.py can wrap it.

Usage: PRESENCE_PROBE=sleep|launches|floor python3 benchmarks/presence_probe.py CLIP [DEVICE]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from skipsr_cli.measure import bench

KIND = os.environ.get("PRESENCE_PROBE", "floor")
GPU_MS = float(os.environ.get("PRESENCE_GPU_MS", "100"))
LAUNCHES = int(os.environ.get("PRESENCE_LAUNCHES", "1200"))
_plain = bench.Resampler.forward
_cycles_per_ms: list[float] = []


def cycles_per_ms(device: torch.device) -> float:
    """The GPU's sleep cycles a millisecond, measured once in this process."""
    if not _cycles_per_ms:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1_000_000)  # first launch out of the measurement
        start.record()
        torch.cuda._sleep(50_000_000)
        end.record()
        end.synchronize()
        _cycles_per_ms.append(50_000_000 / start.elapsed_time(end))
    return _cycles_per_ms[0]


def with_presence(self, lr: torch.Tensor, size: tuple[int, int], settings: object):
    result = _plain(self, lr, size, settings)
    if KIND == "sleep":
        torch.cuda._sleep(int(GPU_MS * cycles_per_ms(lr.device)))
    elif KIND == "launches":
        buf = torch.zeros(256, device=lr.device)
        for i in range(LAUNCHES):
            buf.add_(1.0)
            if i % 100 == 99:
                buf.sum().item()
    return result


if KIND != "floor":  # here and in every copy, which imports this file again as it starts
    if KIND not in ("sleep", "launches"):
        sys.exit(f"PRESENCE_PROBE is floor, sleep or launches, not {KIND!r}")
    bench.Resampler.forward = with_presence


def main() -> None:
    from skipsr_cli.measure.capacity import encode_capacity
    from skipsr_cli.media.encoding import EncodeOptions

    clip = Path(sys.argv[1])
    device = torch.device(sys.argv[2] if len(sys.argv) > 2 else "cuda:0")
    rows = encode_capacity(clip, 2, EncodeOptions(), [device], [4])
    print(json.dumps({"copies_of": f"floor with {KIND}", "rows": [r.as_dict() for r in rows]}))


if __name__ == "__main__":
    main()
