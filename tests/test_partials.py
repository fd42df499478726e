"""What a killed run leaves beside its output is removed by the next run; a live run's never is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from media import make_clip

import skipsr_cli
from skipsr_cli.media.partials import NAME_MAX, partial_name, remove_stale

DEBUG = ["--model", "debug", "--random-weights"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_a_dead_writers_partials_of_that_output_are_removed(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        own = partial_name("out", ".mp4")
        mine, _, rest = own.partition(f"-{os.getpid()}@")
        names = {
            "dead": f"{mine}-{dead_pid()}@{rest}",
            "live": f"{mine[:-1]}0-{live.pid}@{rest}",
            "own": own,
            "other output": f"{mine}-{dead_pid()}@{rest}".replace(".out.", ".film.", 1),
            "other host": f"{mine}-{dead_pid()}@elsewhere.skipsr-partial.mp4",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"")
        (tmp_path / (names["dead"][:-4] + ".png")).mkdir()  # a frames folder of the same stem
        removed = remove_stale(tmp_path, "out", ".mp4")
        assert [p.name for p in removed] == [names["dead"]]
        assert not remove_stale(tmp_path, "out", ".mp4")
    finally:
        live.kill()
        live.wait()
    assert len(list(tmp_path.iterdir())) == len(names)  # the four others and the folder


def test_after_sigkill_the_next_run_to_that_output_removes_the_partial(
    debug_model, tmp_path: Path
) -> None:
    src = make_clip(tmp_path / "long.mp4", width=128, height=96, frames=120, audio=False)
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "skipsr_cli.cli", "upscale", str(src), str(out), *DEBUG, "-q"]
    proc = subprocess.Popen([*cmd, "--preset", "ultrafast"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*skipsr-partial*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert len(list(tmp_path.glob(".out.*.skipsr-partial.mp4"))) == 1  # what the kill left
    tiny = make_clip(tmp_path / "tiny.mp4", frames=3, audio=False)
    skipsr_cli.upscale(tiny, out, model=debug_model, preset="ultrafast")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "out.mp4", "tiny.mp4"]


def test_a_png_run_removes_the_frames_folder_a_killed_run_left(debug_model, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    stale = frames / partial_name("frames").replace(f"-{os.getpid()}@", f"-{dead_pid()}@")
    stale.mkdir()
    (stale / "frame_000000.png").write_bytes(b"half")
    tiny = make_clip(tmp_path / "tiny.mp4", frames=2, audio=False)
    skipsr_cli.upscale(tiny, frames, model=debug_model)
    assert sorted(p.name for p in frames.iterdir()) == ["frame_000000.png", "frame_000001.png"]


def test_a_video_and_its_mask_are_put_in_place_together_or_not_at_all(
    debug_model, tmp_path: Path, monkeypatch
) -> None:
    """The mask video is finished first; if the video then cannot be finished (a full disk), or
    cannot be moved into place, neither is left: never a mask without its video."""
    import pytest

    from skipsr_cli.errors import OutputError
    from skipsr_cli.media import video_writer
    from skipsr_cli.media.video_writer import VideoWriter

    tiny = make_clip(tmp_path / "tiny.mp4", frames=2, audio=False)
    out, mask = tmp_path / "out.mkv", tmp_path / "mask.mkv"
    finish = VideoWriter._finish

    def full(self: VideoWriter) -> None:
        if self.path == out:
            raise OutputError(f"cannot write {out}: No space left on device")
        finish(self)

    monkeypatch.setattr(VideoWriter, "_finish", full)
    with pytest.raises(OutputError, match="No space left"):
        skipsr_cli.upscale(tiny, out, model=debug_model, mask_out=mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.mp4"]  # no partial either
    monkeypatch.undo()

    replace = os.replace

    def moved(src, dst) -> None:  # the video moves into place, the mask cannot
        if Path(dst) == mask:
            raise OSError("Input/output error")
        replace(src, dst)

    monkeypatch.setattr(video_writer.os, "replace", moved)
    with pytest.raises(OutputError, match="Input/output error"):
        skipsr_cli.upscale(tiny, out, model=debug_model, mask_out=mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.mp4"]  # the video taken back
    monkeypatch.undo()
    skipsr_cli.upscale(tiny, out, model=debug_model, mask_out=mask)
    assert out.exists() and mask.exists()


def test_outputs_that_fail_to_go_in_place_leave_what_was_there(
    debug_model, tmp_path: Path, monkeypatch
) -> None:
    """With --overwrite, the files a failed run would have replaced are all still there; PNG
    frames that fail to move halfway take back the frames moved before them."""
    import pytest

    from skipsr_cli.errors import OutputError

    tiny = make_clip(tmp_path / "tiny.mp4", frames=2, audio=False)
    out, mask = tmp_path / "out.mkv", tmp_path / "mask.mkv"
    skipsr_cli.upscale(tiny, out, model=debug_model, mask_out=mask)
    before = {p: p.read_bytes() for p in (out, mask)}
    replace = os.replace

    def moved(src, dst) -> None:  # the video moves into place, the mask cannot
        if Path(dst) == mask:
            raise OSError("Input/output error")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", moved)
    with pytest.raises(OutputError, match="Input/output error"):
        skipsr_cli.upscale(tiny, out, model=debug_model, mask_out=mask, overwrite=True, seed=1)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in (out, mask)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.mkv", "out.mkv", "tiny.mp4"]

    frames, masks = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir()
    masks.mkdir()
    real = Path.replace

    def second_mask_frame(self: Path, target) -> Path:
        if Path(target) == masks / "f_001.png":
            raise OSError(28, "No space left on device")
        return real(self, target)

    monkeypatch.setattr(Path, "replace", second_mask_frame)
    with pytest.raises(OutputError, match="No space left"):
        skipsr_cli.upscale(
            tiny, frames / "f_%03d.png", model=debug_model, mask_out=masks / "f_%03d.png"
        )
    monkeypatch.undo()
    assert list(frames.iterdir()) == [] and list(masks.iterdir()) == []


def test_png_frames_that_fail_to_move_halfway_are_taken_back(tmp_path: Path, monkeypatch) -> None:
    """ImageWriter.close on its own (no other output): the frames moved before the failure go."""
    import numpy as np
    import pytest

    from skipsr_cli.errors import OutputError
    from skipsr_cli.media.image_io import ImageWriter

    writer = ImageWriter(tmp_path / "f_%03d.png", width=8, height=8, pix_fmt="rgb24", frames=3)
    for _ in range(3):
        writer.write(np.zeros((8, 8, 3), np.uint8))
    real = Path.replace

    def third(self: Path, target) -> Path:
        if Path(target).name == "f_002.png":
            raise OSError(28, "No space left on device")
        return real(self, target)

    monkeypatch.setattr(Path, "replace", third)
    with pytest.raises(OutputError, match="No space left"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_an_output_name_of_any_legal_length_gets_a_partial_a_file_system_holds(
    tmp_path: Path,
) -> None:
    """A partial adds about 70 bytes to its output's name: one of 240 bytes (legal) gets a name
    cut to fit, the same each time, so a killed run's partial is still found and removed."""
    stem = "b" * 236  # "b...b.mp4": 240 bytes
    name = partial_name(stem, ".mp4")
    assert len(name.encode()) <= NAME_MAX and name != partial_name(stem, ".mp4")
    mine, _, rest = name.partition(f"-{os.getpid()}@")
    dead = tmp_path / f"{mine}-{dead_pid()}@{rest}"
    dead.write_bytes(b"")  # the file system takes the name
    other = partial_name("b" * 235 + "c", ".mp4").partition(f"-{os.getpid()}@")[0]
    assert other != mine  # another long name of the same start is another output
    assert remove_stale(tmp_path, stem, ".mp4") == [dead]
    short = partial_name("out", ".mp4")
    assert short.startswith(".out.") and short.endswith(".skipsr-partial.mp4")


def test_upscale_to_a_long_name_or_a_folder_given_as_dot(debug_model, tmp_path: Path) -> None:
    """An output name of 244 bytes is legal: the run writes it (its partial and work folder
    names are cut to fit). `.` is an existing folder, so PNG frames go there."""
    src = make_clip(tmp_path / "in.mp4", width=32, height=24, frames=3, audio=False)
    out = tmp_path / ("b" * 240 + ".mp4")
    skipsr_cli.upscale(src, out, model=debug_model)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.mp4", out.name])
    frames = tmp_path / "frames"
    frames.mkdir()
    cwd = os.getcwd()
    try:
        os.chdir(frames)
        skipsr_cli.upscale(src, Path("."), model=debug_model)
    finally:
        os.chdir(cwd)
    assert len(list(frames.glob("*.png"))) == 3


def test_a_write_error_the_disk_reports_only_at_the_flush_fails_the_run(
    debug_model, tmp_path: Path, monkeypatch
) -> None:
    """A network disk's late write error (over quota) comes at fsync, before the rename: the
    output (a run's, or a stitch's) is not put in place, the run fails with exit 5 naming it, and
    no partial is left. Without the flush, the file went into place and the run said done."""
    import errno

    import pytest

    from skipsr_cli.errors import OutputError
    from skipsr_cli.media import partials

    tiny = make_clip(tmp_path / "tiny.mp4", frames=3, audio=False)
    flushed: list[str] = []
    real = os.fsync

    def over_quota(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if partials.SUFFIX in name and Path(name).parent == tmp_path:  # an output, not a part
            flushed.append(name)
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        real(fd)

    monkeypatch.setattr(os, "fsync", over_quota)
    for kwargs in ({}, {"segments": 2}):  # a run in one piece, and one whose stitch flushes
        out = tmp_path / f"out{len(kwargs)}.mkv"
        with pytest.raises(OutputError, match=f"cannot write {out}: Disk quota exceeded"):
            skipsr_cli.upscale(tiny, out, model=debug_model, **kwargs)
        assert not out.exists() and not list(tmp_path.glob("*skipsr-partial*"))
    assert len(flushed) >= 2
