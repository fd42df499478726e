"""Host memory: what a run at an output size takes at a time, and what this host has free.

A run holds about a chunk of frames at the output's size at a time (in the queues, the encoder's
look-ahead, and on the CPU the model's own tensors), so its host memory grows with the output's
pixels. A size that cannot fit (`--size 16384x16384` on a small input) is refused before any work,
as a usage error that says so, rather than ending as the kernel's out-of-memory kill (exit 137).
The figures only refuse what surely cannot fit: each is a slope measured on one machine, without
the fixed part (libraries, the network) that every run takes besides.
"""

from __future__ import annotations

from skipsr_cli.errors import UsageError

GIB = 2**30
# Host bytes a run takes per output megapixel, with 16-frame chunks:
# - the model on a GPU: 3.42 GiB at 2560x1440 and 5.74 at 3840x2160, one worker (BENCHMARKS.md,
#   2026-11-30), so 0.50 GiB a megapixel;
# - the model on the CPU (`debug`, a 32x32 clip): peaks of 1.71 GB at 1024x1024 and 5.13 GB at
#   2048x2048 (/usr/bin/time, 2026-12-02), so 1.09 GB (1.01 GiB) a megapixel.
GPU_BYTES_PER_MEGAPIXEL = int(0.50 * GIB)
CPU_BYTES_PER_MEGAPIXEL = int(1.01 * GIB)
MEASURED_CHUNK = 16


def host_bytes_available() -> int | None:
    """MemAvailable of /proc/meminfo; None where there is none (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def host_bytes_needed(out_size: tuple[int, int], on_cpu: bool, chunk_frames: int) -> int:
    """The host memory a run at `out_size` (width, height) takes at a time, at least: the part
    that grows with the output's pixels and the frames of a chunk."""
    per = CPU_BYTES_PER_MEGAPIXEL if on_cpu else GPU_BYTES_PER_MEGAPIXEL
    return int(out_size[0] * out_size[1] / 1e6 * per * chunk_frames / MEASURED_CHUNK)


def check_host_memory(
    out_size: tuple[int, int], on_cpu: bool, chunk_frames: int, available: int | None = None
) -> None:
    """Refuse an output size whose run cannot fit in the host's available memory."""
    available = host_bytes_available() if available is None else available
    need = host_bytes_needed(out_size, on_cpu, chunk_frames)
    if available is None or need <= available:
        return
    width, height = out_size
    raise UsageError(
        f"an output of {width}x{height} needs at least {need / GIB:.1f} GiB of host memory at a "
        f"time ({chunk_frames}-frame chunks{', the model on the CPU' if on_cpu else ''}); this "
        f"host has {available / GIB:.1f} GiB available: choose a smaller --size or --scale"
    )
