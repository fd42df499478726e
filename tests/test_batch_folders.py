"""Where a batch's output folder lies against its input folder: inside it, holding it, the same
folder, or reached through a link. Files of an output folder inside IN_DIR are earlier outputs,
never inputs; an output folder that holds IN_DIR holds every input, and they are all upscaled."""

from __future__ import annotations

from pathlib import Path

import pytest
from media import make_clip
from typer.testing import CliRunner

from skipsr_cli.batch.plan import plan_batch
from skipsr_cli.cli import app
from skipsr_cli.errors import ExitCode, UsageError

DEBUG = ["--model", "debug", "--random-weights", "--device", "cpu"]
FAST = ["--chunk-frames", "4", "--overlap", "1", "-q"]


def clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_clip(path, width=32, height=24, frames=2, audio=False)


def invoke(*args: object):
    return CliRunner().invoke(app, ["upscale", *map(str, args), *DEBUG, *FAST])


def inputs(items) -> list[str]:
    return [item.name for item in items]


def test_an_output_folder_that_holds_the_input_folder_upscales_every_file(tmp_path: Path):
    """`skipsr upscale videos/raw videos`: every input is in OUT_DIR, so being in OUT_DIR says
    nothing of a file there; all are upscaled (they were all skipped: exit 3), and a rerun
    skips them as done."""
    videos = tmp_path / "videos"
    raw = videos / "raw"
    clip(raw / "a.mp4")
    clip(raw / "b.mkv")
    r = invoke(raw, videos)
    assert r.exit_code == 0, r.output
    assert (videos / "a.mp4").is_file() and (videos / "b.mkv").is_file()
    assert sorted(p.name for p in raw.iterdir()) == ["a.mp4", "b.mkv"]  # nothing written there
    assert inputs(plan_batch(raw, videos)) == ["a.mp4", "b.mkv"]
    again = CliRunner().invoke(app, ["upscale", str(raw), str(videos), *DEBUG, *FAST, "--json"])
    assert again.exit_code == 0, again.output
    assert again.stdout.count('"status": "skipped"') == 2, again.stdout


def test_an_output_folder_inside_the_input_folder_is_never_read_back(tmp_path: Path):
    videos = tmp_path / "videos"
    clip(videos / "a.mp4")
    clip(videos / "x2" / "a.mp4")  # an earlier output
    clip(videos / "masks" / "a.mp4")
    assert inputs(plan_batch(videos, videos / "x2", recursive=True)) == ["a.mp4", "masks/a.mp4"]
    both = plan_batch(videos, videos / "x2", recursive=True, mask_dir=videos / "masks")
    assert inputs(both) == ["a.mp4"]
    # reached through a link: the output folder is still inside IN_DIR
    (tmp_path / "link").symlink_to(videos / "x2")
    assert inputs(plan_batch(videos, tmp_path / "link", recursive=True)) == [
        "a.mp4",
        "masks/a.mp4",
    ]


def test_folders_that_hold_the_input_folder_hold_every_input(tmp_path: Path):
    """OUT_DIR or the mask folder holding IN_DIR, also through a link to it: every input."""
    videos = tmp_path / "videos"
    raw = videos / "raw"
    clip(raw / "a.mp4")
    (tmp_path / "up").symlink_to(videos)
    for out in (videos, tmp_path / "up", tmp_path):
        assert inputs(plan_batch(raw, out)) == ["a.mp4"], out
    assert inputs(plan_batch(raw, tmp_path / "out", mask_dir=videos)) == ["a.mp4"]


def test_the_input_folder_as_the_output_folder_is_one_usage_error(tmp_path: Path):
    videos = tmp_path / "videos"
    clip(videos / "a.mp4")
    (tmp_path / "same").symlink_to(videos)
    for out in (videos, tmp_path / "same", videos / ".." / "videos"):
        r = invoke(videos, out)
        assert r.exit_code == ExitCode.USAGE, r.output
        assert (
            r.stderr
            == f"skipsr: error: the output folder {out} is the input folder: choose another\n"
        )
    assert sorted(p.name for p in videos.iterdir()) == ["a.mp4"]


@pytest.mark.parametrize(
    ("size", "why"),
    [
        ("40000x40000", "width and height must be between 1 and 16384"),
        ("1x", "expected WIDTHxHEIGHT"),
    ],
)
def test_a_bad_size_for_a_whole_batch_is_one_usage_error_before_any_file(tmp_path, size, why):
    """A --size no file can take is said once, before the batch starts: not a failure a file."""
    videos, out = tmp_path / "videos", tmp_path / "out"
    clip(videos / "a.mp4"), clip(videos / "b.mp4")
    r = invoke(videos, out, "--size", size)
    assert r.exit_code == ExitCode.USAGE, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(
        f"skipsr: error: --size {size!r}: {why}"
    )
    assert not out.exists()


def test_an_output_that_would_land_on_an_input_is_one_usage_error(tmp_path: Path):
    """OUT_DIR holding IN_DIR with --recursive: raw/raw/a.mp4 goes to videos/raw/a.mp4, which is
    the input a.mp4; an input that is a link to where its output goes is refused the same way."""
    videos = tmp_path / "videos"
    raw = videos / "raw"
    clip(raw / "a.mp4")
    clip(raw / "raw" / "a.mp4")
    assert inputs(plan_batch(raw, videos)) == ["a.mp4"]  # not recursive: no clash
    with pytest.raises(UsageError, match=r"^raw/a.mp4 would be written to .*raw/a.mp4, which is"):
        plan_batch(raw, videos, recursive=True)
    r = invoke(raw, videos, "--recursive")
    assert r.exit_code == ExitCode.USAGE and r.stderr.count("\n") == 1, r.output
    (raw / "raw" / "a.mp4").unlink()
    (raw / "b.mp4").symlink_to(clip(videos / "b.mp4"))
    with pytest.raises(UsageError, match="b.mp4 would be written to .* which is the input b.mp4"):
        plan_batch(raw, videos)


def test_an_output_that_would_land_inside_the_input_folder_is_one_usage_error(tmp_path: Path):
    """OUT_DIR (or the mask folder) holding IN_DIR with --recursive: raw/raw/y.mp4 goes to
    videos/raw/y.mp4, inside IN_DIR, where a rerun would read it as an input (and refuse the
    batch that wrote it); refused before any work, though no input is there yet."""
    videos = tmp_path / "videos"
    raw = videos / "raw"
    clip(raw / "a.mp4")
    clip(raw / "raw" / "y.mp4")
    r = invoke(raw, videos, "--recursive")
    assert r.exit_code == ExitCode.USAGE, r.output
    assert r.stderr == (
        f"skipsr: error: raw/y.mp4 would be written to {raw / 'y.mp4'}, inside the input folder "
        f"{raw}, where it would be read as an input: choose another output folder\n"
    )
    assert sorted(p.name for p in videos.iterdir()) == ["raw"]  # nothing written
    assert sorted(p.name for p in raw.iterdir()) == ["a.mp4", "raw"]
    with pytest.raises(UsageError, match=r"^raw/y.mp4 would be written to .*raw/y.mkv, inside"):
        plan_batch(raw, videos, recursive=True, ext="mkv")
    with pytest.raises(UsageError, match=r"^raw/y.mp4 would be written to .*, inside the input"):
        plan_batch(raw, tmp_path / "out", recursive=True, mask_dir=videos)
    # an output folder inside IN_DIR still takes the outputs there
    assert inputs(plan_batch(raw, raw / "x2", recursive=True)) == ["a.mp4", "raw/y.mp4"]
