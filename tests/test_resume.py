"""Resume for everyone: a long run killed with SIGKILL is continued by the same command."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from media import make_clip

from skipsr_cli import api, load_model
from skipsr_cli.cli import main
from skipsr_cli.errors import OutputError, UsageError
from skipsr_cli.farm import parts as farm_parts
from skipsr_cli.farm import resume
from skipsr_cli.farm.parts import LOCK_NAME
from skipsr_cli.farm.segments import work_folder

SMALL = "import skipsr_cli.farm.resume as r; r.RESUME_FRAMES = 10; r.FRAMES_PER_PART = 6; "
ARGS = ["--model", "debug", "--random-weights", "--device", "cpu", "--lossless", "-q"]
ARGS += ["--chunk-frames", "8", "--overlap", "2"]
RUN = dict(device="cpu", lossless=True, chunk_frames=8, overlap=2)  # ARGS' run, for the API


def frames(path: Path) -> tuple[list[np.ndarray], list[float], int]:
    with av.open(str(path)) as f:
        got = [(fr.to_ndarray(format="rgb24"), fr.time) for fr in f.decode(video=0)]
        return [a for a, _ in got], [t for _, t in got], len(f.streams.audio)


def cli(clip: Path, out: Path) -> subprocess.Popen:
    code = SMALL + "from skipsr_cli.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "upscale", str(clip), str(out), *ARGS],
        stderr=subprocess.PIPE,
        text=True,
    )


def _parts_rendered(monkeypatch) -> list[str]:
    """The segments rendered from here on, in order ("I/N"), as the run renders them."""
    rendered: list[str] = []
    render = farm_parts.render_segment
    monkeypatch.setattr(
        farm_parts,
        "render_segment",
        lambda i, o, opts, *a: rendered.append(opts.segment) or render(i, o, opts, *a),
    )
    return rendered


@pytest.fixture
def small_segments(monkeypatch):
    monkeypatch.setattr(resume, "RESUME_FRAMES", 10)
    monkeypatch.setattr(resume, "FRAMES_PER_PART", 6)


def test_a_long_run_in_segments_equals_one_piece_and_cleans_up(tmp_path, small_segments):
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=True)
    run = dict(
        model="debug", random_weights=True, device="cpu", lossless=True, chunk_frames=8, overlap=2
    )
    summary = api.upscale(clip, tmp_path / "seg.mkv", **run)
    assert summary.frames == 23 and not work_folder(tmp_path / "seg.mkv").exists()
    resume.RESUME_FRAMES = 10**9  # the same run in one piece
    api.upscale(clip, tmp_path / "one.mkv", **run)
    a, b = frames(tmp_path / "seg.mkv"), frames(tmp_path / "one.mkv")
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[1] == pytest.approx(b[1]) and a[2] == b[2] == 1


def test_a_named_parts_folder_is_kept_and_never_swept(tmp_path, small_segments):
    """--parts DIR: the long run's parts stay there after the stitch; a part of another split
    already there (a farm's) is not deleted, and the stitch passes over it: this run's split is
    the only complete one."""
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=False)
    run = dict(model="debug", random_weights=True, device="cpu", lossless=True)
    run.update(chunk_frames=8, overlap=2)
    parts = tmp_path / "parts"
    api.upscale(clip, tmp_path / "a.mkv", parts=parts, **run)
    assert len(list(parts.glob("part-*-of-00004.mkv"))) == 4  # 23 frames, 6 a part
    api.upscale(clip, tmp_path / "b.mkv", segment="1/2", parts=tmp_path / "farm", **run)
    foreign = next((tmp_path / "farm").glob("part-00001-of-00002*"))
    api.upscale(clip, tmp_path / "b.mkv", parts=tmp_path / "farm", **run)
    assert foreign.exists() and len(list((tmp_path / "farm").glob("part-*-of-00004.mkv"))) == 4
    a, b = frames(tmp_path / "a.mkv"), frames(tmp_path / "b.mkv")
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))


def test_segments_n_splits_a_short_video_too_and_refuses_what_cannot_split(tmp_path):
    """--segments N without --segment: the video runs in N parts on this machine whatever its
    length (at most one a frame), as a long one does; a frame range, a mask video or an image
    output cannot be split, and are refused before anything is written."""
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=True)
    run = dict(model="debug", random_weights=True, device="cpu", lossless=True)
    parts = tmp_path / "parts"
    assert api.upscale(clip, tmp_path / "a.mkv", segments=3, parts=parts, **run).frames == 23
    assert len(list(parts.glob("part-*-of-00003.mkv"))) == 3
    api.upscale(clip, tmp_path / "b.mkv", segments=40, parts=tmp_path / "p40", **run)
    assert len(list((tmp_path / "p40").glob("part-*-of-00023.mkv"))) == 23
    api.upscale(clip, tmp_path / "one.mkv", **run)
    one = frames(tmp_path / "one.mkv")
    for name in ("a.mkv", "b.mkv"):
        got = frames(tmp_path / name)
        assert all(np.array_equal(x, y) for x, y in zip(got[0], one[0], strict=True))
        assert got[1] == pytest.approx(one[1]) and got[2] == one[2] == 1
    # parts an earlier run in parts left (stopped before its stitch) are kept when the video is
    # then run in one piece, and said
    out = tmp_path / "d.mkv"
    api.upscale(clip, out, segment="1/3", parts=work_folder(out), **run)
    summary = api.upscale(clip, out, **run)
    assert any("1 finished part(s) of an earlier run of d.mkv" in w for w in summary.warnings)
    assert len(list(work_folder(out).glob("part-00001-of-00003.*"))) == 2  # the part, its manifest
    # while a run in parts holds the folder, a run in one piece of the same output is refused
    with open(work_folder(out) / LOCK_NAME, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputError, match="another skipsr run is writing .*d.mkv"):
            api.upscale(clip, out, overwrite=True, **run)
    assert api.upscale(clip, out, segments=3, overwrite=True, **run).frames == 23
    assert not work_folder(out).exists()
    refused = (
        dict(frames="0:10"),
        dict(mask_out=tmp_path / "mask.mkv"),
        dict(output=tmp_path / "frame_%04d.png"),
    )
    for extra in refused:
        out = extra.pop("output", tmp_path / "c.mkv")
        with pytest.raises(UsageError, match="--segments renders a whole video file"):
            api.upscale(clip, out, segments=3, **extra, **run)
    assert not (tmp_path / "c.mkv").exists() and not list(tmp_path.glob("frame_*"))


def test_a_second_run_of_the_same_output_is_refused_while_the_first_holds_it(
    tmp_path, small_segments, monkeypatch
):
    """Two long runs of one output would take and sweep each other's parts: the second is
    refused at once, and runs once the first has let go (also when it died: the hold goes with
    its process)."""
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=False)
    run = dict(model="debug", random_weights=True, device="cpu", chunk_frames=8, overlap=2)
    out = tmp_path / "out.mkv"
    work_folder(out).mkdir()
    with open(work_folder(out) / LOCK_NAME, "a+") as first:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first run holds it
        with pytest.raises(OutputError, match="another skipsr run is writing .*out.mkv"):
            api.upscale(clip, out, **run)
        assert not out.exists()
    assert api.upscale(clip, out, **run).frames == 23 and not work_folder(out).exists()
    out.unlink()

    def no_locks(*args):  # Lustre mounted noflock, NFS without lockd
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert api.upscale(clip, out, **run).frames == 23 and not work_folder(out).exists()


def test_sigkill_at_five_random_points_then_rerun_gives_the_whole_run(tmp_path):
    """Issue 14's acceptance: SIGKILL at 5 random points, rerunning after each; the output is the
    uninterrupted run's frames and timestamps, and nothing is left over."""
    clip = make_clip(tmp_path / "in.mp4", frames=41, audio=True)
    whole = cli(clip, tmp_path / "whole.mkv")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    out = tmp_path / "out.mkv"
    work = work_folder(out)
    rng = random.Random(14)
    # kill points: once during start-up, then once each of 2, 3, 4 and 5 of the 7 parts is done,
    # a random moment later (inside the next part): anchored to progress, not to the clock
    targets = [0, 2, 3, 4, 5]
    done = []
    for target in targets:
        run = cli(clip, out)
        if target == 0:
            time.sleep(rng.uniform(0.3, 1.5))
        else:
            deadline = time.monotonic() + 120
            while len(list(work.glob("part-*.json"))) < target and time.monotonic() < deadline:
                assert run.poll() is None, run.stderr.read()
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert not out.exists(), "a killed run must not leave the output"
        done.append(len(list(work.glob("part-*.json"))))
    assert done[1:] == sorted(done[1:]) and done[-1] >= 5, done  # each rerun kept what was done
    last = cli(clip, out)
    assert last.wait(timeout=300) == 0, last.stderr.read()
    assert not work.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
    a, b = frames(out), frames(tmp_path / "whole.mkv")
    assert len(a[0]) == 41 and all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[1] == pytest.approx(b[1]) and a[2] == 1


def test_a_kill_after_the_output_is_in_place_is_finished_by_the_rerun(
    tmp_path, small_segments, capsys
):
    """SIGKILL once the stitched output is in place, before the work folder is emptied: the same
    command run again knows the output for its own (farm/placed.py), removes the folder, and ends
    as done, with the output untouched; another job, or a file changed since, is not taken for
    it (the output exists, the folder stays)."""
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=True)
    out = tmp_path / "out.mkv"
    killed = "import os, skipsr_cli.farm.parts as p; p.empty_work_folder = lambda f: os._exit(9); "
    code = SMALL + killed + "from skipsr_cli.cli import main; main()"
    run = subprocess.run(
        [sys.executable, "-c", code, "upscale", str(clip), str(out), *ARGS], capture_output=True
    )
    assert run.returncode == 9, run.stderr
    work = work_folder(out)
    assert (work / "placed.json").is_file() and len(list(work.glob("part-*.json"))) == 4
    before = out.stat()
    bytes_before = out.read_bytes()

    # another job for the same output is refused as before, and nothing is removed: other
    # frames, other streams, a mask besides, frames of a range, another dtype
    for other in (["--seed", "1"], ["--no-audio"], ["--mask-out", "m.mkv"], ["--frames", "0:5"]):
        with pytest.raises(SystemExit) as done:
            main(["upscale", str(clip), str(out), *ARGS, *other])
        assert done.value.code == 5 and "output exists" in capsys.readouterr().err, other
        assert work.is_dir() and (work / "placed.json").is_file()
    with pytest.raises(OutputError, match="output exists"):  # a network the caller loaded
        api.upscale(clip, out, model=load_model("debug", device="cpu", random_weights=True), **RUN)
    with pytest.raises(OutputError, match="output exists"):
        api.upscale(clip, out, model="debug", random_weights=True, dtype="bf16", **RUN)
    assert (work / "placed.json").is_file()

    with pytest.raises(SystemExit) as done:
        main(["upscale", str(clip), str(out), *[a for a in ARGS if a != "-q"], "--json"])
    stdout, stderr = capsys.readouterr()
    assert done.value.code == 0, stderr
    said = json.loads(stdout.splitlines()[-1])
    assert said["status"] == "kept" and said["frames"] == 23
    assert (said["out_width"], said["out_height"]) == (2 * 64, 2 * 48)
    assert f"skipsr: warning: {out} was put in place by an earlier run" in stderr
    assert not work.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mkv"]
    after = out.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert out.read_bytes() == bytes_before


def test_a_placed_record_vouches_only_for_the_file_it_placed(tmp_path, small_segments, monkeypatch):
    """The record of a run killed as it tidied up: a rerun of the job after the output was
    rewritten (another mtime) does not take it for its own; with -y it resumes from the kept
    parts, stitches again and removes the folder."""
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=False)
    out = tmp_path / "out.mkv"
    run = dict(model="debug", random_weights=True, device="cpu", lossless=True, chunk_frames=8)
    with monkeypatch.context() as killed:  # as if killed before emptying the folder
        killed.setattr(farm_parts, "empty_work_folder", lambda folder: None)
        api.upscale(clip, out, overlap=2, **run)
    work = work_folder(out)
    assert (work / "placed.json").is_file()
    os.utime(out, ns=(out.stat().st_atime_ns, out.stat().st_mtime_ns + 10**9))
    with pytest.raises(OutputError, match="output exists"):
        api.upscale(clip, out, overlap=2, **run)
    rendered = _parts_rendered(monkeypatch)
    summary = api.upscale(clip, out, overlap=2, overwrite=True, **run)
    assert summary.status == "ok" and summary.frames == 23 and rendered == []
    assert not work.exists()


def test_parts_come_in_a_multiple_of_the_workers_and_a_rerun_keeps_the_split(
    tmp_path, small_segments, monkeypatch
):
    """A long run's parts: a part per FRAMES_PER_PART frames, rounded to the nearest multiple of
    the workers (at least one each), so that none renders a last part alone; but where a stopped
    run left finished parts of this input and these options, their split (the one with the most
    frames done), so a rerun with other workers resumes from them rather than sweeping them."""
    assert [resume.part_count(23, w) for w in (1, 2, 3, 4, 5)] == [4, 4, 3, 4, 5]
    assert resume.part_count(5, 8) == 5 and resume.part_count(0, 3) == 1  # none empty
    assert resume.part_count(23, 0) == 4
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=True)
    run = dict(model="debug", random_weights=True, device="cpu", lossless=True)
    out = tmp_path / "out.mkv"
    work = work_folder(out)
    kept = api.upscale(clip, out, segment="1/5", parts=work, **run)  # a stopped run's part
    (work / "part-00001-of-00040.json").write_text("{}")  # no manifest
    # two parts of a split with more frames done, but made with another --crf: not this run's
    api.upscale(clip, out, segment="1/3", parts=work, crf=30, **run)
    api.upscale(clip, out, segment="2/3", parts=work, crf=30, **run)
    rendered = _parts_rendered(monkeypatch)
    summary = api.upscale(clip, out, **run)
    assert summary.frames == 23 and not work_folder(out).exists()
    assert rendered == ["2/5", "3/5", "4/5", "5/5"]
    # the summary's timeline of the parts rendered now: one worker, so one after another
    timeline = summary.as_dict()["parts"]
    assert [t["part"] for t in timeline] == [2, 3, 4, 5]
    assert sum(t["frames"] for t in timeline) == 23 - kept.frames > 0
    times = [(t["started_s"], t["first_frames_s"], t["finished_s"]) for t in timeline]
    assert all(0 <= a <= b <= c <= summary.wall_seconds for a, b, c in times)
    assert all(times[k][0] >= times[k - 1][2] for k in range(1, 4))
    assert all(t["cpu_s"] > 0 for t in timeline) and summary.cpu_seconds > 0
    api.upscale(clip, tmp_path / "one.mkv", segments=1, **run)
    a, b = frames(out), frames(tmp_path / "one.mkv")
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    # of two splits of this run, the one with the most frames done
    other = tmp_path / "other.mkv"
    for segment in ("1/5", "1/3", "2/3"):
        api.upscale(clip, other, segment=segment, parts=work_folder(other), **run)
    rendered.clear()
    assert api.upscale(clip, other, **run).frames == 23 and rendered == ["3/3"]
    # a folder named by --parts may hold a farm's parts of another split: the run keeps to its own
    named = tmp_path / "named"
    api.upscale(clip, tmp_path / "n.mkv", segment="1/5", parts=named, **run)
    rendered.clear()
    assert api.upscale(clip, tmp_path / "n.mkv", parts=named, **run).frames == 23
    assert rendered == ["1/4", "2/4", "3/4", "4/4"] and len(list(named.glob("*-of-00005.*"))) == 2


def test_a_run_stopped_before_its_stitch_says_what_it_kept(tmp_path):
    """An error, Ctrl-C or SIGTERM inside a run in parts: its exception notes the parts of this
    split finished so far and where they are kept (the one-line error carries it); with none
    finished there is nothing to say."""
    from skipsr_cli.run.options import UpscaleOptions

    out = tmp_path / "out.mkv"
    with (
        pytest.raises(OutputError) as stopped,
        farm_parts.parts_of_run(out, UpscaleOptions(), 4) as opts,
    ):
        (opts.parts / "part-00002-of-00004.json").write_text("{}")
        (opts.parts / "part-00001-of-00003.json").write_text("{}")  # another split's
        raise OutputError("no space left on the device")
    kept = f"1 of 4 parts done, kept in {work_folder(out)}: the same command resumes"
    assert stopped.value.__notes__ == [kept]
    assert (work_folder(out) / "part-00002-of-00004.json").exists()  # kept for the rerun
    with (
        pytest.raises(KeyboardInterrupt) as early,
        farm_parts.parts_of_run(tmp_path / "other.mkv", UpscaleOptions(), 4),
    ):
        raise KeyboardInterrupt
    assert not hasattr(early.value, "__notes__")


def test_the_kept_parts_are_said_on_the_error_line(capsys):
    import typer

    from skipsr_cli.commands.common import exit_codes
    from skipsr_cli.errors import ExitCode

    def command() -> None:
        error = OutputError("no space left on the device")
        error.__notes__ = [
            "3 of 8 parts done, kept in .out.mkv.skipsr-work: the same command resumes"
        ]
        raise error

    with pytest.raises(typer.Exit) as ended:
        exit_codes(command)()
    assert ended.value.exit_code == ExitCode.OUTPUT
    assert capsys.readouterr().err == (
        "skipsr: error: no space left on the device; 3 of 8 parts done, kept in "
        ".out.mkv.skipsr-work: the same command resumes\n"
    )


def stop_at(when=lambda: True):
    """A progress callback that stops the run (Ctrl-C) at its first frames written once `when()`."""
    from skipsr_cli.run.progress import Advanced

    def progress(event: object) -> None:
        if isinstance(event, Advanced) and when():
            raise KeyboardInterrupt

    return progress


def test_a_run_in_parts_stopped_before_a_part_is_done_leaves_nothing_behind(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, which unwinds the same way) in a run in parts: before any part is
    finished there is nothing to resume, so neither the work folder nor its lock file is left;
    once a part is finished the folder keeps it (and only it: no lock file) and the rerun resumes
    from it. A --parts DIR this run made goes too where it holds no part; one that was there stays."""
    clip = make_clip(tmp_path / "in.mp4", frames=12, audio=False)
    run = dict(model="debug", random_weights=True, device="cpu", chunk_frames=4, overlap=0)
    out = tmp_path / "out.mkv"
    work = work_folder(out)
    with pytest.raises(KeyboardInterrupt):
        api.upscale(clip, out, segments=4, progress=stop_at(), **run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    done = lambda: bool(list(work.glob("part-*.json")))  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        api.upscale(clip, out, segments=4, progress=stop_at(done), **run)
    assert sorted(p.name for p in work.iterdir()) == [
        "part-00001-of-00004.json",
        "part-00001-of-00004.mkv",
    ]
    rendered = _parts_rendered(monkeypatch)
    assert api.upscale(clip, out, segments=4, **run).frames == 12
    assert rendered == ["2/4", "3/4", "4/4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mkv"]
    # --parts DIR: made by the run (with its parent) and left empty, taken back; there before, kept
    named = tmp_path / "new" / "parts"
    with pytest.raises(KeyboardInterrupt):
        api.upscale(clip, tmp_path / "n.mkv", segments=4, parts=named, progress=stop_at(), **run)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(KeyboardInterrupt):
        api.upscale(clip, tmp_path / "n.mkv", segments=4, parts=mine, progress=stop_at(), **run)
    assert mine.is_dir() and not list(mine.iterdir())
    assert api.upscale(clip, tmp_path / "n.mkv", segments=4, parts=mine, **run).frames == 12
    assert len(list(mine.iterdir())) == 8  # the parts and their manifests, no lock file


def test_the_lock_file_is_there_only_while_a_run_holds_it(tmp_path, monkeypatch):
    """The hold's file goes as the hold ends, also on an error; a second run is refused while the
    first holds it. One that opened the file just before its holder let go and removed it, then
    locks that removed file, finds the path names another file (a third run's, held) and is
    refused, never holding a lock of its own beside the third's."""

    from skipsr_cli.batch import records

    lock = tmp_path / "state" / "lock"
    with records.exclusive_hold(lock, "busy") as held:
        assert held and lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(OutputError, match="busy"), records.exclusive_hold(lock, "busy"):
            pass
    assert not lock.exists() and lock.parent.is_dir()
    with pytest.raises(ValueError), records.exclusive_hold(lock, "busy"):
        raise ValueError
    assert not lock.exists()
    # a file left by a run killed outright holds nothing: taken, then removed
    lock.write_text("12345\n")
    with records.exclusive_hold(lock, "busy") as held:
        assert held
    assert not lock.exists()
    # the race: a stale handle on a removed lock file, and a third run holding the new one
    lock.write_text("")
    stale = open(lock, "r+")  # noqa: SIM115
    lock.unlink()
    with open(lock, "a+") as third:
        fcntl.flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)
        opened = records._open_lock
        handles = iter([(stale, False)])
        monkeypatch.setattr(records, "_open_lock", lambda p: next(handles, None) or opened(p))
        with pytest.raises(OutputError, match="busy"), records.exclusive_hold(lock, "busy"):
            pass
        assert stale.closed and lock.exists()  # the third run's file is left alone


SLOW = (  # every part's first frames wait a minute: a run stopped then has finished nothing
    "import time, skipsr_cli.run.pipeline as p; from skipsr_cli.run.progress import Advanced; "
    "up = p.upscale; p.upscale = lambda n, plan, d, t, emit, *a: up(n, plan, d, t, "
    "lambda e: emit(e) or (isinstance(e, Advanced) and time.sleep(60)), *a); "
)


@pytest.mark.parametrize("mode", ["segments", "segment", "batch"])
def test_sigterm_before_anything_is_done_leaves_nothing_behind(tmp_path, mode):
    """SIGTERM (a scheduler, `timeout`) while the first part or file is being written: exit 143,
    and nothing the run made is left: no work folder or lock file (`--segments 4`), no empty
    OUT.parts/ (a farm's `--segment 1/2`), no OUT_DIR/.skipsr-batch/ nor OUT_DIR (a batch)."""
    src = tmp_path / "src"
    src.mkdir()
    clip = make_clip(src / "in.mp4", frames=12, audio=False)
    out = tmp_path / "out.mkv"
    target, extra = {
        "segments": (out, ["--segments", "4"]),
        "segment": (out, ["--segment", "1/2"]),
        "batch": (tmp_path / "out", []),
    }[mode]
    source = src if mode == "batch" else clip
    code = SLOW + "from skipsr_cli.cli import main; main()"
    run = subprocess.Popen(
        [sys.executable, "-c", code, "upscale", str(source), str(target), *ARGS, *extra],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not [p for p in tmp_path.rglob("*") if "skipsr-partial" in p.name]:
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        "skipsr: terminated (SIGTERM); no output was left behind"
    )
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "src",
        "src/in.mp4",
    ]


def test_runs_that_start_as_others_end_never_hold_at_once_nor_fail_on_the_folder(tmp_path):
    """Four processes take and let go of one hold for two seconds, each removing the lock's
    folder once it is empty, as runs in parts do. None holds it beside another, and none fails
    other than as refused: a folder removed between mkdir's 'exists' and its check was 'cannot
    write ...: File exists' (exit 5) though nobody held the lock."""
    import multiprocessing as mp

    from lockstress import hold_and_release

    ctx = mp.get_context("spawn")  # not forked from this process's threads
    start, errors, overlaps = ctx.Event(), ctx.Queue(), ctx.Queue()
    args = (str(tmp_path / "work" / "lock"), 2.0, start, errors, overlaps)
    procs = [ctx.Process(target=hold_and_release, args=args) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
    said = []
    while not errors.empty():
        said.append(errors.get())
    assert [p.exitcode for p in procs] == [0] * 4 and said == [] and overlaps.empty()


def test_a_lock_on_a_file_removed_meanwhile_is_taken_again_not_taken_for_no_locks(
    tmp_path, monkeypatch
):
    """NFS: a lock asked on the handle of a file its holder removed just then fails with ESTALE.
    That is not a file system without locks (on which a run would go on without a hold): the
    path is opened again and locked."""

    from skipsr_cli.batch import records

    real, calls = fcntl.flock, []

    def stale_once(handle, how):
        calls.append(how)
        if len(calls) == 1:
            raise OSError(errno.ESTALE, "Stale file handle")
        return real(handle, how)

    monkeypatch.setattr(fcntl, "flock", stale_once)
    with records.exclusive_hold(tmp_path / "lock", "busy") as held:
        assert held
    assert len(calls) >= 2 and not (tmp_path / "lock").exists()


def test_a_parts_folder_that_cannot_be_made_is_an_output_error(tmp_path, capsys, monkeypatch):
    """`--parts DIR` under a file: exit 5 and one line (an internal error, exit 1, since the
    folder was made outside the hold), for a run in parts and for one farm task alike."""
    from skipsr_cli.cli import main

    monkeypatch.chdir(tmp_path)
    clip = make_clip(tmp_path / "in.mp4", frames=8, audio=False)
    (tmp_path / "plain").write_text("")
    for split in (["--segments", "2"], ["--segment", "1/2"]):
        out = tmp_path / "out.mkv"
        with pytest.raises(SystemExit) as done:
            main(["upscale", str(clip), str(out), *ARGS, *split, "--parts", "plain/parts"])
        err = capsys.readouterr().err
        assert done.value.code == 5, err
        assert err.startswith("skipsr: error: cannot write plain/parts") and err.count("\n") == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "plain"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_once_the_output_is_in_place_waits_for_the_tidying_then_acts(
    tmp_path, small_segments, monkeypatch, stop
):
    """Ctrl-C or SIGTERM as the run empties its work folder after the stitch put OUTPUT in place:
    it cut the emptying off halfway and the command said that no output was left behind. Now the
    folder is emptied and removed, OUTPUT is whole, and then the stop acts, as after a run in one
    piece (a program calling the API does not lose it); a stop before the output is in place
    still stops it, with no output."""
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=False)
    run = dict(model="debug", random_weights=True, device="cpu", chunk_frames=8, overlap=2)
    out = tmp_path / "out.mkv"
    empty = farm_parts.empty_work_folder

    def stopped_while_emptying(folder: Path) -> None:
        os.kill(os.getpid(), stop)
        time.sleep(0.05)  # the handler has run by now
        empty(folder)

    def terminated(*_) -> None:  # as the command line's handler turns SIGTERM into an exception
        raise SystemExit(143)

    monkeypatch.setattr(farm_parts, "empty_work_folder", stopped_while_emptying)
    terminate = signal.signal(signal.SIGTERM, terminated)
    try:
        acted = KeyboardInterrupt if stop == signal.SIGINT else SystemExit
        with pytest.raises(acted):
            api.upscale(clip, out, **run)
        assert len(frames(out)[0]) == 23 and not work_folder(out).exists()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handed back

        def stopped_while_joining(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)

        monkeypatch.setattr(farm_parts, "join_videos", stopped_while_joining)
        with pytest.raises(KeyboardInterrupt):
            api.upscale(clip, tmp_path / "late.mkv", **run)
        assert not (tmp_path / "late.mkv").exists()
    finally:
        signal.signal(signal.SIGTERM, terminate)


def test_a_placed_record_that_cannot_be_written_costs_only_the_rerun_its_ease(
    tmp_path, small_segments, monkeypatch
):
    """The disk full as the record is written: the joined output goes into place all the same and
    the folder is removed; and a record left beside an input that is not a file (a folder of
    frames) is not read (no crash)."""
    from test_images import write_png

    from skipsr_cli.batch import records

    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=False)
    out = tmp_path / "out.mkv"
    write = records.write_record

    def full(path: Path, record: dict) -> None:
        if path.name == "placed.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, record)

    monkeypatch.setattr("skipsr_cli.farm.placed.write_record", full)
    assert api.upscale(clip, out, model="debug", random_weights=True, **RUN).frames == 23
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mkv"]
    frames_dir = tmp_path / "shots"
    frames_dir.mkdir()
    for n in range(3):
        write_png(frames_dir / f"shot_{n}.png", np.full((48, 64, 3), 40 * n, np.uint8))
    work_folder(out).mkdir()
    (work_folder(out) / "placed.json").write_text("{}")
    with pytest.raises(OutputError, match="output exists"):
        api.upscale(frames_dir, out, model="debug", random_weights=True, **RUN)


def test_the_record_of_a_placed_output_is_the_last_thing_the_sweep_removes(tmp_path, monkeypatch):
    """A run killed while it empties its work folder after its stitch finds, when run again,
    either the record of its placed output (and ends as done) or nothing left to resume: the
    record goes last."""
    folder = tmp_path / ".out.mkv.skipsr-work"
    folder.mkdir()
    for name in ("a.json", "placed.json", "part-00001-of-00002.mkv", "z.json", LOCK_NAME):
        (folder / name).write_text("x")
    removed: list[str] = []
    unlink = Path.unlink
    monkeypatch.setattr(Path, "unlink", lambda p, *a, **k: (removed.append(p.name), unlink(p)))
    farm_parts.empty_work_folder(folder)
    assert removed[-1] == "placed.json" and len(removed) == 4
    assert [p.name for p in folder.iterdir()] == [LOCK_NAME]  # the hold's own, while held


def test_a_work_folder_left_with_only_its_lock_goes_with_the_next_run(tmp_path, small_segments):
    """Killed after the sweep but before its hold was let go of, a run leaves its folder with
    nothing but the lock file: the next run of the command removes it, and says the output
    exists, as it is."""
    clip = make_clip(tmp_path / "in.mp4", frames=23, audio=False)
    out = tmp_path / "out.mkv"
    run = dict(model="debug", random_weights=True, device="cpu", chunk_frames=8, overlap=2)
    api.upscale(clip, out, **run)
    work = work_folder(out)
    work.mkdir()
    (work / LOCK_NAME).write_text("")
    with pytest.raises(OutputError, match="output exists"):
        api.upscale(clip, out, **run)
    assert not work.exists()
    work.mkdir()  # a live run's folder, the lock held: left alone
    with open(work / LOCK_NAME, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(OutputError):
            api.upscale(clip, out, **run)
        assert (work / LOCK_NAME).exists()
