"""A worker's share of this host's CPU, when several worker processes run on one host.

An upscale runs three pools of CPU threads: the decoder's, the encoder's and torch's intra-op
pool. A process alone lets each library size its pool to the whole host, as it chooses by itself
(x264: 1.5 threads a core; libavcodec's decoders: a thread a core; torch: a thread a core). N
workers on one host (`--devices 0,1`, `0,0`, `all`, a batch's workers, Ray actors on one node)
would each do the same and run N times as many threads as there are cores. So each worker takes
cores // N of the host's cores (those this process may run on) and sizes its pools to that share;
`SKIPSR_WORKER_THREADS=K` sets the share to K cores instead, also for a process alone (a farm task
on a node that other tasks share).

The encoder is the exception: x264's output depends on its `threads` (they change its lookahead
and frame-threading decisions), so its count is the host's, never the share, and the same bytes
come out whether one process renders a video in parts or several workers do, stopped and resumed
or not. Every encoder gets x264's own rule for this process's cores (1.5 threads a core, at most
one per two rows of 16 pixels), the cores read once, at import: x264 left to count by itself reads
those of the thread that opens it, which can differ from the process's (an OpenMP runtime that
binds its threads binds the model's thread to one core). SKIPSR_WORKER_THREADS=K, which the user
sets, gives it threads for K cores instead.

Beside a GPU, a worker of a share it took by itself gives its decoder threads for twice its cores
(never more than the host's), so that the cores a worker leaves idle (its part starting, waiting
for the model, or done before the others) go to the others. On one H200 with 16 cores, four
workers upscaling 720p to 1440p ran 4-12% faster with decoder and x264 threads for twice their
share than for their share alone (BENCHMARKS.md); x264 threads for the whole host beside four
workers were not measured. Torch's pool keeps to the share. A model on the CPU (which runs in
torch's pool) and a share set by SKIPSR_WORKER_THREADS keep the decoder and torch to it.

A worker applies its share once at start (`apply_cpu_share`), before it opens any file: the
decoders it opens later read the share of their process here. A process alone without
SKIPSR_WORKER_THREADS keeps torch's and the decoders' own choices.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from skipsr_cli.errors import UsageError

ENV = "SKIPSR_WORKER_THREADS"
TORCH_HOST_THREADS = 4  # beside a GPU torch's host work (uploads, blends, copies) is small
MAX_DECODER_THREADS = 16  # libavcodec's own cap on threads it picks for a decoder


@dataclass(frozen=True)
class CpuShare:
    """The threads of one worker: its cores, and each pool sized to them."""

    cores: int  # the cores this worker may keep busy
    torch_threads: int  # torch's intra-op pool
    encoder_threads: int  # SKIPSR_WORKER_THREADS's x264 `threads`; 0: the host's (encoder_threads)
    decoder_threads: int  # the video decoder's threads


_applied: CpuShare | None = None  # this process's share; None: the whole host, as libraries pick


@functools.cache
def host_cores() -> int:
    """The cores this process may run on (its affinity: a cgroup's or taskset's limit), read once,
    at import: the same for every thread of the process, whatever one of them was bound to since."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_share(
    workers: int,
    cores: int | None = None,
    model_on_cpu: bool = False,
    env: Mapping[str, str] = os.environ,
) -> CpuShare | None:
    """The share of one of `workers` worker processes on a host of `cores` cores (default: this
    one's); None for a worker alone with no SKIPSR_WORKER_THREADS, which keeps the libraries'
    own choices. With `model_on_cpu` the network runs in torch's pool, which then gets the whole
    share; beside a GPU it gets a few threads."""
    given = env.get(ENV, "").strip()
    if not given and workers <= 1:
        return None
    if given:
        try:
            share = int(given)
        except ValueError:
            share = 0
        if share < 1:
            raise UsageError(f"{ENV}={given!r} is not a number of cores (1 or more)")
    else:
        share = max(1, (cores or host_cores()) // workers)
    # cores to give the decoder threads for: twice the share where this worker took it by itself
    # beside a GPU, the host's at most (see the module's docstring)
    coding = share if given or model_on_cpu else min(2 * share, cores or host_cores())
    return CpuShare(
        cores=share,
        torch_threads=share if model_on_cpu else min(share, TORCH_HOST_THREADS),
        # the encoder's are the host's, whatever the workers, unless the user sets the share
        encoder_threads=share * 3 // 2 if given else 0,
        decoder_threads=min(coding, MAX_DECODER_THREADS),
    )


def apply_cpu_share(workers: int, device: torch.device | str = "cpu") -> CpuShare | None:
    """Size this worker process's thread pools to its share among `workers` workers on this host,
    for a model on `device`; returns the share (None: a worker alone keeps the whole host)."""
    global _applied
    share = cpu_share(workers, model_on_cpu=torch.device(device).type == "cpu")
    if share is not None:
        torch.set_num_threads(share.torch_threads)
    _applied = share
    return share


def encoder_threads(height: int) -> int:
    """Threads for a video encoder this process opens, for frames of `height` rows: those of
    SKIPSR_WORKER_THREADS's share, else x264's own rule for this process's cores (1.5 a core, at
    most one per two rows of 16 pixels), whatever the number of workers or the opening thread's
    cores: x264's output depends on its threads (see the module's docstring)."""
    if _applied is not None and _applied.encoder_threads:
        return _applied.encoder_threads
    return max(1, min(host_cores() * 3 // 2, (height + 15) // 16 // 2))


def decoder_threads() -> int:
    """Threads for a video decoder this process opens; 0 lets libavcodec pick (every core)."""
    return _applied.decoder_threads if _applied is not None else 0


host_cores()  # read now, once: see host_cores
