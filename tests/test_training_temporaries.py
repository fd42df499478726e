"""Training's temporaries (a checkpoint being saved, a cached video being decoded) name the process
and host that write them, so that what a killed run left is removed by the next run on this host,
and what a live run or another host's run is writing is never touched."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_train
import torch

from skipsr_cli.train import checkpoint
from skipsr_cli.train.checkpoint import load_checkpoint, recover, save_checkpoint, temporary
from skipsr_cli.train.data import cache_videos

pack = test_train.pack  # the fixture: two photos and a video


def dead_pid() -> int:
    """The id of a process of this host that has ended (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def with_pid(path: Path, pid: int, host: str | None = None) -> Path:
    """`path` (a temporary's name) as if another process, or another host, had made it."""
    name = re.sub(r"-\d+@", f"-{pid}@", path.name)
    if host is not None:
        name = re.sub(r"@[A-Za-z0-9-]*\.", f"@{host}.", name)
    return path.with_name(name)


def small_model() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    return model, opt


def test_a_dead_process_temporary_goes_a_live_one_and_another_hosts_stay(tmp_path):
    target = tmp_path / "video_0.npy"
    mine = temporary(target)
    assert mine.name.endswith(".npy") and f"-{os.getpid()}@" in mine.name
    other_host = "not-" + re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:20]
    dead = with_pid(mine, dead_pid())
    elsewhere = with_pid(mine, dead_pid(), host=other_host)
    unrelated = with_pid(temporary(tmp_path / "video_1.npy"), dead_pid())
    for path in (mine, dead, elsewhere, unrelated):
        path.write_bytes(b"half written")
    assert recover(target) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (mine, elsewhere, unrelated)
    )


def test_a_checkpoint_save_leaves_no_temporaries_and_loads_back(tmp_path):
    model, opt = small_model()
    out = tmp_path / "vae"
    save_checkpoint(out, model, opt, 3, {"note": "first"})
    save_checkpoint(out, model, opt, 4, {"note": "second"})  # replaces the first
    assert [p.name for p in tmp_path.iterdir()] == ["vae"]
    again, opt_again = small_model()
    state = load_checkpoint(out, again, opt_again)
    assert state["step"] == 4 and state["note"] == "second"


def test_a_save_that_fails_leaves_the_previous_checkpoint_and_nothing_else(tmp_path, monkeypatch):
    model, opt = small_model()
    out = tmp_path / "vae"
    save_checkpoint(out, model, opt, 1, {})

    def full(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(OSError, match="no space"):
        save_checkpoint(out, model, opt, 2, {})
    assert [p.name for p in tmp_path.iterdir()] == ["vae"]
    assert json.loads((out / "state.json").read_text())["step"] == 1


SAVE_AND_DIE = """
import os, sys, torch
from pathlib import Path
from skipsr_cli.train import checkpoint
torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
opt = torch.optim.AdamW(model.parameters(), lr=0.1)
out, when = Path(sys.argv[1]), sys.argv[2]
checkpoint.save_checkpoint(out, model, opt, 1, {})
real = os.replace
def die(src, dst):  # SIGKILL at this moment of the next save: no clean-up runs
    if when == "between" and Path(dst) == out:
        os._exit(9)
    real(src, dst)
if when == "writing":
    checkpoint.save_tensors = lambda *a: os._exit(9)
os.replace = die
checkpoint.save_checkpoint(out, model, opt, 2, {})
"""


@pytest.mark.parametrize("when", ["writing", "between"])
def test_a_run_killed_mid_save_is_recovered_by_the_next(tmp_path, when):
    """A save killed while it writes leaves its temporary; one killed between its two renames
    leaves no checkpoint folder at all, only the previous one moved aside. The next run on this
    host puts the previous checkpoint back and removes the rest."""
    out = tmp_path / "vae"
    killed = subprocess.run([sys.executable, "-c", SAVE_AND_DIE, str(out), when], check=False)
    assert killed.returncode == 9
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2  # the previous checkpoint moved aside and the new one; or vae and one
    assert all(".skipsr-partial" in name for name in left if name != "vae")
    removed = recover(out)
    assert [p.name for p in tmp_path.iterdir()] == ["vae"]
    assert len(removed) == 1
    model, opt = small_model()
    assert load_checkpoint(out, model, opt)["step"] == 1  # the previous checkpoint, whole


def train_to(pack: Path, out: Path, steps: int, stop_at: int | None = None) -> list[str]:
    from models import PRESETS
    from skipsr_cli.train.loop import TrainConfig, train

    cfg = TrainConfig(
        "vae", pack, out, PRESETS["debug"], stop_at=stop_at, max_steps=steps, batch=2, frames=4,
        crop=32, workers=0, warmup=2, save_every=1e9,
    )  # fmt: skip
    lines: list[str] = []
    train(cfg, lines.append)
    return lines


def test_training_resumes_after_a_run_killed_mid_save(pack, tmp_path):
    """The loop recovers before it reads state.json: a run killed between the two renames of its
    save (no checkpoint folder, the previous one moved aside, the new one half there) resumes
    from the previous checkpoint, not from step 0, and ends where a run never stopped ends."""
    from skipsr_cli.train.checkpoint import OLD, load_tensors

    train_to(pack, tmp_path / "straight", 4)
    out = tmp_path / "resumed"
    train_to(pack, out, 4, stop_at=2)
    out.rename(with_pid(temporary(out, OLD), dead_pid()))
    half = with_pid(temporary(out), dead_pid())
    half.mkdir()
    (half / "model-000.safetensors").write_bytes(b"cut short")
    lines = train_to(pack, out, 4)
    assert "from step 2," in lines[0]
    names = {"resumed", "resumed.safetensors", "straight", "straight.safetensors"}
    assert {p.name for p in tmp_path.iterdir()} == names
    a = load_tensors(tmp_path / "straight", ["model-000.safetensors"])
    b = load_tensors(out, ["model-000.safetensors"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_video_cache_removes_what_a_killed_run_left(pack, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    mine_then = with_pid(temporary(cache / "video_0.npy"), dead_pid())
    np.save(mine_then, np.zeros(3))
    cache_videos(pack, cache)
    assert not mine_then.exists()
    assert sorted(p.name for p in cache.iterdir()) == ["video_0.npy", "videos.json"]
