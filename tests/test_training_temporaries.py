"""Training's temporaries (a checkpoint being saved, a cached video being decoded) name the process
and host that write them, so that what a killed run left is removed by the next run on this host,
and what a live run or another host's run is writing is never touched."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import test_train
import torch

from skipsr_cli.train import checkpoint, data
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


def test_a_saved_checkpoint_is_named_as_written_where_training_is_stopped(tmp_path):
    """Ctrl-C in `skipsr train` says what is on disk: the checkpoint in place, not "no output was
    left behind" (the command line's stopped line is built from `left_behind`)."""
    from skipsr_cli.media import partials

    model, opt = small_model()
    out = tmp_path / "ckpt"
    partials.forget_placements()
    try:
        assert partials.left_behind() == []
        save_checkpoint(out, model, opt, 1, {})
        save_checkpoint(out, model, opt, 2, {})
        assert partials.left_behind() == [str(out)]
        assert partials.left_behind_words() == f"{out} was written"
        shutil.rmtree(out)
        assert partials.left_behind() == []
    finally:
        partials.forget_placements()


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
from skipsr_cli.train import checkpoint, data
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
    """A save killed while it writes leaves its temporary, cut short: the next run on this host
    removes it and keeps the previous checkpoint. One killed between its two renames leaves no
    checkpoint folder at all, the previous one moved aside and the new one whole (its state.json
    is written last): the next run puts the new one in place, losing no steps, and removes the
    previous one."""
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
    assert load_checkpoint(out, model, opt)["step"] == {"writing": 1, "between": 2}[when]


def cut_between_renames(out: Path, pid: int, new_state: str | None = None) -> tuple[Path, Path]:
    """What a save by process `pid` killed between its two renames leaves beside `out`: the
    previous checkpoint (step 1) moved aside and the new one (step 2), whole unless `new_state`
    replaces its state.json. Returns (previous, new)."""
    model, opt = small_model()
    previous, new = with_pid(temporary(out, checkpoint.OLD), pid), with_pid(temporary(out), pid)
    save_checkpoint(out, model, opt, 1, {})
    out.rename(previous)
    save_checkpoint(out, model, opt, 2, {})
    out.rename(new)
    if new_state is not None:
        (new / "state.json").write_text(new_state)
    return previous, new


def test_a_new_checkpoint_cut_short_gives_way_to_the_previous_one(tmp_path):
    """A dead writer's new checkpoint whose state.json was cut off as it was written is not put
    in place: the previous one is, and the new one goes."""
    out = tmp_path / "vae"
    _, new = cut_between_renames(out, dead_pid(), new_state='{"step": 2, "model": ["model-0')
    assert recover(out) == [new]
    assert [p.name for p in tmp_path.iterdir()] == ["vae"]
    model, opt = small_model()
    assert load_checkpoint(out, model, opt)["step"] == 1


@pytest.mark.parametrize("writer", ["this process", "another process"])
def test_a_live_writer_cut_between_renames_is_left_alone(tmp_path, writer):
    """A save between its two renames right now looks like one killed there: while its writer
    lives, neither its new checkpoint nor the previous one is moved or removed."""
    out = tmp_path / "vae"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid = os.getpid() if writer == "this process" else alive.pid
        cut_between_renames(out, pid)
        before = sorted(p.name for p in tmp_path.iterdir())
        assert recover(out) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == before and not out.exists()
    finally:
        alive.kill()
        alive.wait()


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


def fake_pack(root: Path, count: int) -> Path:
    """A pack of `count` videos that the test's `decode_video` stands in for decoding."""
    (root / "videos").mkdir(parents=True)
    for i in range(count):
        (root / "videos" / f"clip{i:03d}.mp4").write_bytes(b"x" * i)
    return root


@contextlib.contextmanager
def listings_of(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each listing of `folder` (os.scandir, os.listdir: what Path.iterdir, glob and
    media.partials use) made while the block runs."""
    seen: list[str] = []

    def counted(real):
        def listing(path=".", *args, **kwargs):
            if isinstance(path, (str, os.PathLike)) and Path(path) == folder:
                seen.append(real.__name__)
            return real(path, *args, **kwargs)

        return listing

    with monkeypatch.context() as patch:
        patch.setattr(os, "scandir", counted(os.scandir))
        patch.setattr(os, "listdir", counted(os.listdir))
        yield seen


def test_a_cached_pack_is_checked_with_as_many_listings_for_many_videos_as_few(
    tmp_path, monkeypatch
):
    """A start with every video cached lists the cache folder a fixed number of times, not once
    or more for each video (2,000 videos took seconds when each looked through all the rest)."""
    monkeypatch.setattr(data, "decode_video", lambda path, scale: np.zeros((1, 2, 2, 3), np.uint8))
    listings = {}
    for count in (3, 60):
        cache = tmp_path / f"cache{count}"
        pack = fake_pack(tmp_path / f"pack{count}", count)
        cache_videos(pack, cache)
        with listings_of(cache, monkeypatch) as seen:
            cache_videos(pack, cache)
        listings[count] = len(seen)
        assert len(list(cache.glob("video_*.npy"))) == count
    assert 1 <= listings[3] == listings[60] <= 2, listings


def test_one_sweep_removes_what_killed_runs_left_for_every_video(tmp_path, monkeypatch):
    """The temporaries that dead processes of this host left for many videos all go in the one
    sweep a start makes; a live process's and another host's stay, and only the videos missing
    are decoded again."""
    decoded: list[str] = []

    def decode(path: Path, scale: float) -> np.ndarray:
        decoded.append(path.name)
        return np.zeros((1, 2, 2, 3), np.uint8)

    monkeypatch.setattr(data, "decode_video", decode)
    count, cache = 40, tmp_path / "cache"
    pack = fake_pack(tmp_path / "pack", count)
    cache_videos(pack, cache)
    with listings_of(cache, monkeypatch) as clean:
        cache_videos(pack, cache)
    gone, dead = [], dead_pid()
    for i in range(count):
        gone.append(with_pid(temporary(cache / f"video_{i}.npy"), dead))
        np.save(gone[-1], np.zeros(3))
    (cache / "video_7.npy").unlink()  # a run killed before it put this one in place
    live = temporary(cache / "video_3.npy")
    elsewhere = with_pid(temporary(cache / "video_4.npy"), dead, host="another-host")
    for path in (live, elsewhere):
        np.save(path, np.zeros(3))
    decoded.clear()
    with listings_of(cache, monkeypatch) as seen:
        cache_videos(pack, cache)
    assert len(seen) == len(clean) <= 2, (seen, clean)
    assert not [path for path in gone if path.exists()]
    assert live.exists() and elsewhere.exists()
    assert decoded == ["clip007.mp4"]
    assert len(list(cache.glob("video_*.npy"))) == count
