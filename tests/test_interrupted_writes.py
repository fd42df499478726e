"""A write stopped halfway (an error, Ctrl-C, SIGTERM) leaves no partial or temp file behind: the
video writer's partial file from the moment it exists, and the JSON written atomically (a farm's
manifests, a batch's records) whether the stop comes while writing or at the rename."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import pytest
from media import make_clip, writer_like

from skipsr_cli.batch.records import write_record
from skipsr_cli.media.joiner import join_videos


def stop_once_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C right after the partial file is made: as its descriptor is closed."""
    close = os.close

    def close_then_stop(fd: int) -> None:
        close(fd)
        monkeypatch.undo()
        raise KeyboardInterrupt

    monkeypatch.setattr("skipsr_cli.media.video_writer.os.close", close_then_stop)


def test_a_stop_as_the_writer_makes_its_partial_file_leaves_nothing(tmp_path, monkeypatch):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    stop_once_made(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        writer_like(src, tmp_path / "out.mp4", copy_audio_from=src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_stop_as_the_joiner_makes_its_partial_file_leaves_nothing(tmp_path, monkeypatch):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    stop_once_made(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        join_videos([(src, 0)], tmp_path / "out.mp4", src, Fraction(24))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def raising(error: BaseException):
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


@pytest.mark.parametrize("where", ["os.replace", "json.dump"])
@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_a_json_write_stopped_before_its_rename_leaves_the_old_file_only(
    tmp_path: Path, monkeypatch, where: str, error: BaseException
):
    path = tmp_path / "part.json"  # a farm's manifests and a batch's records alike
    write_record(path, {"old": True})
    module, name = where.split(".")
    monkeypatch.setattr({"os": os, "json": json}[module], name, raising(error))
    with pytest.raises(type(error)):
        write_record(path, {"new": True})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["part.json"]
    assert json.loads(path.read_text()) == {"old": True}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_record_takes_the_mode_the_umask_gives(tmp_path: Path, umask: int):
    """A manifest or record is as readable as the outputs beside it: the umask's mode, not
    mkstemp's 0600 (a farm's stitch run as another user could read the parts, not their
    manifests)."""
    previous = os.umask(umask)
    try:
        write_record(tmp_path / "part.json", {"part": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "part.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_record_of_a_long_name_is_written(tmp_path: Path):
    """A record's temp name is its name and 14 bytes more, as mkstemp's was: a batch's claims of
    long output names (227-230 bytes) fit the file system's 255 again."""
    path = tmp_path / ("a" * 236 + ".json")  # 241 bytes: 255 with the temp name's own 14
    write_record(path, {"long": True})
    assert json.loads(path.read_text()) == {"long": True}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
