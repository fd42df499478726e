"""Resumable training checkpoints: model, optimizer, step and random state, in safetensors shards.

Shards stay under 15 MiB so each file can travel back from a GPU machine on its own. Nothing is
pickled: tensors go to safetensors, everything else (step, Python RNG state, optimizer hyper-
parameters) to `state.json`. Writing goes to a temporary folder renamed into place, so a run killed
mid-save leaves the previous checkpoint intact. Temporaries are named after the process that writes
them (media/partials.py), so that `recover`, before a run reads its checkpoint or fills its cache,
removes what a killed run of this host left, and never what a live one (here, or on another host
sharing the folder) is still writing.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from skipsr_cli.media.partials import SUFFIX, partial_name, remove_stale

SHARD_BYTES = 15 * 2**20
OLD = "-old"  # the role of a temporary that holds the checkpoint being replaced


def temporary(target: Path, role: str = "") -> Path:
    """A fresh hidden name beside `target` (a checkpoint folder, or a file such as a cached video)
    for a temporary of it that names this process and host: `.STEM.RANDOM-PID@HOST.skipsr-partial`,
    then `role` and target's suffix, so that a file keeps its extension."""
    return target.with_name(partial_name(target.stem, role + target.suffix))


def recover(target: Path) -> list[Path]:
    """Clear what dead processes of this host left beside `target` (its `temporary` names); returns
    what was removed. A checkpoint folder that a save killed between its two renames left missing
    is first put back from the previous checkpoint that the save had moved aside (one run saves a
    checkpoint at a time). Temporaries of live processes and of other hosts are kept."""
    stem, ext = target.stem, target.suffix
    if not target.exists():
        moved = f".{glob.escape(stem)}.*{SUFFIX}{OLD}{glob.escape(ext)}"
        for old in sorted(target.parent.glob(moved)):
            if (old / "state.json").is_file():
                with contextlib.suppress(OSError):  # another process put it back first
                    os.replace(old, target)
                    break
    return remove_stale(target.parent, stem, ext) + remove_stale(target.parent, stem, OLD + ext)


def save_tensors(tensors: dict[str, torch.Tensor], folder: Path, prefix: str) -> list[str]:
    """Write tensors into as many shards of at most SHARD_BYTES as needed; returns the file names."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, value in tensors.items():
        nbytes = value.numel() * value.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = value.detach().contiguous().cpu()
        size += nbytes
    names = []
    for i, shard in enumerate(shards):
        name = f"{prefix}-{i:03d}.safetensors"
        save_file(shard, str(folder / name))
        names.append(name)
    return names


def load_tensors(
    folder: Path, names: list[str], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name in names:
        out.update(load_file(str(folder / name), device=str(device)))
    return out


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state into tensors (by param index and name) and JSON-able values."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, extra: dict
) -> None:
    """Write a checkpoint beside `folder`, then rename it into place: `folder` always holds a whole
    checkpoint, the previous one or this one (see `recover` for a save killed between renames)."""
    tmp, old = temporary(folder), temporary(folder, OLD)
    try:
        tmp.mkdir(parents=True)
        _write(tmp, model, optimizer, step, extra)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not folder.exists():
            os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write(
    tmp: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, extra: dict
) -> None:
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    rng = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["torch_cuda"] = torch.cuda.get_rng_state()
    state = {
        "step": step,
        "model": save_tensors(model.state_dict(), tmp, "model"),
        "optimizer": save_tensors(opt_tensors, tmp, "optimizer"),
        "rng": save_tensors(rng, tmp, "rng"),
        "optimizer_meta": opt_meta,
        "python_random": _encode_random(random.getstate()),
        **extra,
    }
    (tmp / "state.json").write_text(json.dumps(state, indent=1))  # last: the temporary is whole


def load_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict:
    """Restore everything in place; returns state.json (step and extras)."""
    state = json.loads((folder / "state.json").read_text())
    device = next(model.parameters()).device
    model.load_state_dict(load_tensors(folder, state["model"], device), strict=True)
    if optimizer is not None:
        tensors = load_tensors(folder, state["optimizer"], device)
        meta = state["optimizer_meta"]
        per_param: dict[int, dict] = {}
        for key, value in [*tensors.items(), *meta["scalars"].items()]:
            index, name = key.split(".", 1)
            per_param.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})
    rng = load_tensors(folder, state["rng"])
    torch.set_rng_state(rng["torch_cpu"])
    if "torch_cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["torch_cuda"])
    random.setstate(_decode_random(state["python_random"]))
    return state


def _encode_random(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _decode_random(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
