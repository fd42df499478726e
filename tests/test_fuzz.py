"""Fuzz: damaged media made at test time (cut short, flipped bytes, broken headers) on mp4, mkv,
ts and png. Every case ends in exit 0 with a warning (or with every frame), or exit 3: never a
traceback, never an internal error, never a stray file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from damage import flipped, make_source, truncated
from test_images import write_png

from skipsr_cli.cli import main

FRAMES = 10
DEBUG = ["--model", "debug", "--random-weights", "--preset", "ultrafast", "-q", "--json"]
CASES = [
    (ext, damage)
    for ext in ("mp4", "mkv", "ts")
    for damage in ("cut 30%", "cut 60%", "flip middle", "flip header")
] + [("png", "cut 50%"), ("png", "flip header"), ("png folder", "one frame cut")]


def damaged(folder: Path, ext: str, damage: str) -> Path:
    if ext.startswith("png"):
        shots = folder / "shots"
        shots.mkdir()
        for i in range(3 if ext == "png folder" else 1):
            write_png(shots / f"s_{i}.png", np.full((48, 64, 3), 60 * i, np.uint8))
        if ext == "png folder":
            return truncated(shots / "s_1.png", shots / "s_1.png", 0.5) and shots
        src = shots / "s_0.png"
    else:
        src = make_source(folder, ext, frames=FRAMES)
    bad = folder / f"bad.{src.suffix.lstrip('.')}"
    if damage.startswith("cut"):
        return truncated(src, bad, int(damage[4:-1]) / 100)
    return flipped(src, bad, 0.5 if damage == "flip middle" else 0.0, count=48)


@pytest.mark.parametrize(("ext", "damage"), CASES)
def test_damaged_media_end_in_a_warning_or_exit_3(capsys, tmp_path, ext, damage) -> None:
    bad = damaged(tmp_path, ext, damage)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "out.mkv"
    with pytest.raises(SystemExit) as done:
        main(["upscale", str(bad), str(out), *DEBUG])
    captured = capsys.readouterr()
    code, err = done.value.code, captured.err
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 3), err
    if code == 3:
        assert err.startswith("skipsr: error:") and err.count("\n") == 1, err
        assert list(out_dir.iterdir()) == []
        return
    summary = json.loads(captured.out)
    whole = 3 if ext == "png folder" else 1 if ext == "png" else FRAMES
    if summary["frames"] < whole and ext != "ts":
        # MPEG-TS announces no frame count, and its demuxer drops a damaged packet without a
        # word: a cut between two pictures, or a packet the decoder gets past without a flag,
        # cannot be counted (README, "Damage is never silent")
        assert "skipsr: warning: damaged input" in err
    assert [p.name for p in out_dir.iterdir()] == ["out.mkv"]
