"""How the host thread waits for a CUDA device: asleep, not spinning on a core.

By default CUDA spins a core while the calling thread waits for the device (a process with fewer
contexts than the host has cores). A run waits for the model once a chunk (`.item()`, the output's
download), so every worker would hold a core for about as long as the GPU works on its chunk. Those
are the cores the x264 encoder needs: at 720p -> 1440p the encoder, not the model, sets the pace.
This sets the device's primary context to block on a synchronisation primitive instead, through the
driver API (`cuDevicePrimaryCtxSetFlags`), which PyTorch does not expose. It changes no result, only
how the waiting thread spends its time; where the driver library is not found it changes nothing.
"""

from __future__ import annotations

import ctypes
import sys

import torch

_SCHED_MASK = 0x07  # CU_CTX_SCHED_*: the low three bits of a context's flags
_BLOCKING_SYNC = 0x04  # CU_CTX_SCHED_BLOCKING_SYNC
_done: set[int] = set()


def sleep_while_waiting(device: torch.device) -> bool:
    """Make the host sleep, not spin, while it waits for `device`. True when the device's primary
    context now has that setting (at once for one that is already in use). Idempotent; never
    raises (a system without NVIDIA's driver library keeps its default)."""
    if device.type != "cuda" or torch.version.hip:  # ROCm names its devices cuda too
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index in _done:
        return True
    try:
        ok = _set_blocking(index)
    except (OSError, AttributeError):  # a driver library without these entry points
        ok = False
    if ok:
        _done.add(index)
    return ok


def _set_blocking(index: int) -> bool:
    driver = _driver()
    if driver is None or driver.cuInit(0) != 0:
        return False
    handle, flags, active = ctypes.c_int(), ctypes.c_uint(), ctypes.c_int()
    if driver.cuDeviceGet(ctypes.byref(handle), index) != 0:
        return False
    if driver.cuDevicePrimaryCtxGetState(handle, ctypes.byref(flags), ctypes.byref(active)) != 0:
        return False
    wanted = (flags.value & ~_SCHED_MASK) | _BLOCKING_SYNC
    if flags.value == wanted:
        return True
    # _v2 (CUDA 11+) may change a context that is already active; the first version may not
    set_flags = getattr(driver, "cuDevicePrimaryCtxSetFlags_v2", None)
    return set_flags is not None and set_flags(handle, wanted) == 0


def _driver() -> ctypes.CDLL | None:
    name = {"win32": "nvcuda.dll"}.get(sys.platform, "libcuda.so.1")
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None
