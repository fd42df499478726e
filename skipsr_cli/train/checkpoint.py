"""Resumable training checkpoints: model, optimizer, step and random state, in safetensors shards.

Shards stay under 15 MiB so each file can travel back from a GPU machine on its own. Nothing is
pickled: tensors go to safetensors, everything else (step, Python RNG state, optimizer hyper-
parameters) to `state.json`. Writing goes to a temporary folder renamed into place, so a run killed
mid-save leaves the previous checkpoint intact. Temporaries are named after the process that writes
them (media/partials.py), so that `recover` (before a run reads its checkpoint) and `sweep` (before
it fills its cache) remove what a killed run of this host left, and never what a live one (here, or
on another host sharing the folder) is still writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from skipsr_cli.media.partials import SUFFIX, gone, identity, note_placing, partial_name

SHARD_BYTES = 15 * 2**20
OLD = "-old"  # the role of a temporary that holds the checkpoint being replaced


def temporary(target: Path, role: str = "") -> Path:
    """A fresh hidden name beside `target` (a checkpoint folder, or a file such as a cached video)
    for a temporary of it that names this process and host: `.STEM.RANDOM-PID@HOST.skipsr-partial`,
    then `role` and target's suffix, so that a file keeps its extension."""
    return target.with_name(partial_name(target.stem, role + target.suffix))


def recover(target: Path) -> list[Path]:
    """`sweep` for one target: a checkpoint folder, before a run reads it."""
    return sweep(target.parent, [target])


def sweep(folder: Path, targets: Iterable[Path]) -> list[Path]:
    """Clear what dead processes of this host left in `folder` beside `targets` (their `temporary`
    names), with one listing of the folder however many targets there are (a video cache holds
    thousands); returns what was removed. A target that a save killed between its two renames
    left missing is first put back: from the new checkpoint if it was whole (its state.json is
    written last), else from the previous one the save had moved aside. What a live process or
    another host is writing is never touched, nor counted as a checkpoint to put back."""
    roles: dict[tuple[str, str], tuple[Path, str]] = {}
    host = _parse(partial_name("x"))["host"]  # this host, as temporaries name it
    for target in targets:
        for role in ("", OLD):  # the names as `temporary` makes them (a long stem shortened)
            made = _parse(temporary(target, role).name)
            roles[made["stem"], made["ext"]] = (target, role)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    left: dict[Path, list[tuple[str, Path]]] = {}
    for entry in entries:
        name = _parse(entry.name)
        if name is None or name["host"] != host or (name["stem"], name["ext"]) not in roles:
            continue
        if gone(int(name["pid"])):
            target, role = roles[name["stem"], name["ext"]]
            left.setdefault(target, []).append((role, Path(entry.path)))
    removed = []
    for target, found in left.items():
        stale = [path for _, path in found] if target.exists() else _put_back(target, found)
        for path in stale:
            with contextlib.suppress(OSError):  # gone already: another run cleared it first
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
    return removed


# media.partials keeps its parser to itself: this reads the names that its `partial_name` makes
_TEMPORARY = re.compile(
    r"\.(?P<stem>.*)\.[0-9a-f]{8}-(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)"
    + re.escape(SUFFIX)
    + r"(?P<ext>.*)"
)


def _parse(name: str) -> re.Match[str] | None:
    return _TEMPORARY.fullmatch(name)


def _put_back(target: Path, found: list[tuple[str, Path]]) -> list[Path]:
    """Move the latest whole checkpoint among dead writers' temporaries `found` to the missing
    `target` (a new one before one moved aside); returns the rest, now stale. Where the move
    fails and `target` is still missing, nothing is stale: a later run tries again."""
    whole = [(role == "", step, path) for role, path in found if (step := _whole(path)) is not None]
    paths = [path for _, path in found]
    if not whole:
        return paths
    best = max(whole)[2]
    try:
        os.replace(best, target)
    except OSError:
        if not target.exists():
            return []
    return [path for path in paths if path != best]


def _whole(folder: Path) -> int | None:
    """The step of the checkpoint in `folder` if it is whole: state.json reads and every shard it
    names is there; None otherwise (a save cut short, or a file such as a cached video)."""
    try:
        state = json.loads((folder / "state.json").read_text())
        names = [*state["model"], *state["optimizer"], *state["rng"]]
        step = int(state["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if all((folder / name).is_file() for name in names) else None


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
        note_placing([identity(folder, tmp)], [folder])  # a stop then names it as written
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
