"""No spelling of the output writes over the input; checked before any work (no model here)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from media import make_clip
from test_images import write_png

from skipsr_cli.errors import OutputError, UsageError
from skipsr_cli.run.pipeline import UpscaleJob, prepare
from skipsr_cli.run.targets import check_frames_target


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """seq/f_0000.png .. f_0002.png"""
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(3):
        write_png(folder / f"f_{i:04d}.png", np.full((48, 64, 3), 40 * i, np.uint8))
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("seq/f_%04d.png", "seq/f_%04d.png"),  # the same pattern
        ("seq/f_%d.png", "seq/../seq/f_%04d.png"),  # another spelling of the same files
        ("seq/f_%04d.png", "seq"),  # the folder of the input frames
        ("seq", "seq/"),  # the input folder itself
        ("seq", "seq/f_%04d.png"),
    ],
)
def test_png_outputs_that_are_the_input_sequence_are_refused(
    frames: Path, source: str, target: str
) -> None:
    before = contents(frames)
    root = frames.parent
    with pytest.raises(UsageError, match="input") as caught:
        prepare(UpscaleJob(root / source, root / target, overwrite=True))
    assert str(frames) in str(caught.value)  # names both paths
    assert contents(frames) == before


def test_png_outputs_beside_the_input_with_other_names_are_fine(frames: Path) -> None:
    prepare(UpscaleJob(frames / "f_%04d.png", frames / "big_%04d.png"))


def test_links_to_the_input_are_the_input(frames: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "in.mp4", frames=3, audio=False)
    (tmp_path / "sym.mp4").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mp4")
    for out in ("sym.mp4", "hard.mp4"):
        with pytest.raises(UsageError, match="is the input"):
            prepare(UpscaleJob(clip, tmp_path / out, overwrite=True))
    # an output frame that is a link to an input frame held in another folder
    other = tmp_path / "out"
    other.mkdir()
    os.link(frames / "f_0001.png", other / "g_0001.png")
    with pytest.raises(UsageError, match="write over the input's frame"):
        prepare(UpscaleJob(frames / "f_%04d.png", other / "g_%04d.png", overwrite=True))
    with pytest.raises(UsageError, match="is the input"):
        prepare(UpscaleJob(clip, tmp_path / "mask_src.mp4", mask_out=tmp_path / "sym.mp4"))


def test_a_header_claiming_an_enormous_duration_costs_nothing_before_work(tmp_path: Path) -> None:
    """One name per claimed frame would be a MemoryError (or minutes) here."""
    out = tmp_path / "frames"
    out.mkdir()
    (out / "frame_000007.png").write_bytes(b"")
    check_frames_target(out / "f_%06d.png", 10**15, overwrite=False)
    check_frames_target(out, 10**15, overwrite=True)
    with pytest.raises(OutputError, match="frame_000007"):
        check_frames_target(out, 10**15, overwrite=False)
    # and through prepare(): an mkv whose duration tag claims 99 hours
    clip = make_clip(tmp_path / "in.mkv", frames=3, audio=False)
    data = clip.read_bytes()
    tag = b"00:00:00.125000000"
    assert tag in data
    data = data.replace(tag, b"99:00:00.125000000")
    at = data.index(b"\x44\x89\x88") + 3  # the segment's Duration: an 8-byte float, in ms
    clip.write_bytes(data[:at] + struct.pack(">d", 99 * 3600e3) + data[at + 8 :])
    plan = prepare(UpscaleJob(clip, out, overwrite=True))
    assert plan.info.frame_count > 8_000_000
