"""Ray: segments rendered by actors that keep the model loaded, stitched into the whole run."""

from __future__ import annotations

import json
import time

import av
import numpy as np
import pytest
from media import make_clip

from skipsr_cli import api

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

ON_RAY = dict(ray="local", device="cpu", model="debug", random_weights=True)  # a batch's files


@pytest.fixture(scope="module")
def local_ray():
    # a Ray of its own, also where one already runs on this machine (`ray start`)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def quick_board(monkeypatch):
    """Every progress event sent (the actors are given the period), and the board read often."""
    from skipsr_cli.farm import ray_progress

    monkeypatch.setattr(ray_progress, "SEND_S", 0.0)
    monkeypatch.setattr(ray_progress, "READ_S", 0.05)


def frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as f:
        return [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]


def test_ray_renders_the_whole_run_and_resumes(local_ray, tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=17, audio=True)
    run = dict(model="debug", random_weights=True, chunk_frames=8, overlap=2, lossless=True)
    api.upscale(clip, tmp_path / "whole.mkv", device="cpu", **run)
    out = tmp_path / "out.mkv"
    assert api.upscale(clip, out, ray="local", segments=3, workers=2, **run).frames == 17
    assert all(
        np.array_equal(a, b)
        for a, b in zip(frames(out), frames(tmp_path / "whole.mkv"), strict=True)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mkv", "whole.mkv"]
    kept = dict(ray="local", segments=3, workers=2, overwrite=True, parts=tmp_path / "parts")
    assert api.upscale(clip, out, **kept, **run).frames == 17  # a named parts folder stays
    parts = sorted((tmp_path / "parts").glob("part-*.mkv"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    assert len(parts) == 3
    again = api.upscale(clip, out, **kept, **run)
    assert again.frames == 17 and again.parts == ()  # nothing rendered: all three were done
    assert [p.stat().st_mtime_ns for p in parts] == stamps  # finished parts were kept


def test_a_run_on_ray_shows_its_parts_progress_as_they_render(
    local_ray, quick_board, tmp_path, monkeypatch
):
    """The actors' tasks return only at a part's end: the run showed nothing until the summary
    (not even its start). Now the actors send their events to the run's board, which the
    driver reads while the parts render: one start, then frames, then the summary."""
    from skipsr_cli.farm import ray as farm_ray
    from skipsr_cli.run.progress import Advanced, Started, Summary

    class Lingering(farm_ray.SegmentWorker):  # a part's end comes after its last events are read
        def render(self, *args):
            ended = super().render(*args)
            time.sleep(0.5)
            return ended

    monkeypatch.setattr(farm_ray, "SegmentWorker", Lingering)
    clip = make_clip(tmp_path / "in.mp4", frames=48, audio=False)
    run = dict(model="debug", random_weights=True, chunk_frames=8, overlap=2, lossless=True)
    events = []
    summary = api.upscale(
        clip,
        tmp_path / "out.mkv",
        ray="local",
        segments=2,
        workers=2,
        progress=events.append,
        **run,
    )
    started = [i for i, e in enumerate(events) if isinstance(e, Started)]
    advanced = [e for e in events if isinstance(e, Advanced)]
    assert len(started) == 1 and events[started[0]].device == "Ray, 2 actor(s)"
    assert events[started[0]].total_frames == 48 and events[started[0]].out_size == (128, 96)
    assert all(isinstance(e, Started | Summary) for e in events[: started[0] + 1])
    assert any(0 < e.frames < 48 for e in advanced)  # while the parts rendered
    assert [e.frames for e in advanced] == sorted(e.frames for e in advanced)
    assert events[-1] is summary and summary.frames == 48


def test_a_resumed_run_on_ray_counts_only_the_frames_left(
    local_ray, quick_board, tmp_path, monkeypatch
):
    """A part an earlier run finished is left out by the driver once the actors have loaded
    their weights, before any part starts: the start says the frames left. It said them all
    where a rendering part's start was read before the kept part's task had ended (here, an
    actor slow to find part 2 finished, as on slow shared storage)."""
    from skipsr_cli.farm import ray as farm_ray
    from skipsr_cli.run.progress import Started

    class SlowToFind(farm_ray.SegmentWorker):
        def render(self, input, output, index, count, total, sender=None):
            if index == 2:
                time.sleep(1.0)
            return super().render(input, output, index, count, total, sender)

    monkeypatch.setattr(farm_ray, "SegmentWorker", SlowToFind)

    clip = make_clip(tmp_path / "in.mp4", frames=17, audio=False)
    run = dict(model="debug", random_weights=True, chunk_frames=8, overlap=2, lossless=True)
    parts, out = tmp_path / "parts", tmp_path / "out.mkv"
    kept = api.upscale(clip, out, segment="2/3", parts=parts, **run)  # an earlier run's
    events = []
    summary = api.upscale(
        clip, out, ray="local", segments=3, workers=2, parts=parts, progress=events.append, **run
    )
    (started,) = [e for e in events if isinstance(e, Started)]
    assert started.total_frames == 17 - kept.frames
    assert summary.frames == 17 and [p["part"] for p in summary.parts] == [1, 3]


def test_a_run_on_ray_says_what_the_output_could_not_take(local_ray, tmp_path, capsys):
    """The stitch's warnings (a subtitle an mp4 cannot hold, left out) reach the summary and the
    command line's stderr and --json, as in a run on this machine: they were dropped on Ray."""
    from media import make_rich_mkv

    from skipsr_cli.cli import main

    rich = make_rich_mkv(tmp_path / "in.mkv", frames=6)
    run = dict(model="debug", random_weights=True, chunk_frames=4, overlap=1)
    here = api.upscale(rich, tmp_path / "here.mp4", segments=2, device="cpu", **run)
    summary = api.upscale(rich, tmp_path / "ray.mp4", ray="local", segments=2, **run)
    assert summary.frames == 6 and len(summary.parts) == 2
    left_out = [w for w in summary.warnings if "subtitle" in w and "left out" in w]
    assert left_out and left_out == [w for w in here.warnings if "subtitle" in w]
    capsys.readouterr()
    cmd = ["upscale", str(rich), str(tmp_path / "cli.mp4"), "--ray", "local", "--segments", "2"]
    with pytest.raises(SystemExit) as done:
        main([*cmd, "--model", "debug", "--random-weights", "-q", "--json"])
    stdout, stderr = capsys.readouterr()
    assert done.value.code == 0, stderr
    said = json.loads(stdout.splitlines()[-1])
    assert said["frames"] == 6 and left_out[0] in said["warnings"]
    assert f"skipsr: warning: {left_out[0]}\n" in stderr


def test_a_folder_batch_on_ray_actors(local_ray, quick_board, tmp_path, monkeypatch):
    """The files of a folder on three actors (never in this process): each output is the local
    run's, bit for bit; a file that is not a video fails alone, named; a rerun (locally) skips
    what Ray finished. Each file's start and frames reach the batch's progress while it renders
    (they did not: the batch heard of a file only at its end)."""
    from media import make_non_video

    from skipsr_cli.batch import run as batch_run
    from skipsr_cli.batch.progress import FileProgress, FileResult
    from skipsr_cli.farm import ray as farm_ray
    from skipsr_cli.run.progress import Advanced, Started

    class Lingering(farm_ray.FileWorker):  # a file's end comes after its last events are read
        def run(self, index, item, sender=None):
            ended = super().run(index, item, sender)
            time.sleep(0.5)
            return ended

    monkeypatch.setattr(farm_ray, "FileWorker", Lingering)
    src = tmp_path / "in"
    src.mkdir()
    for name, length in (("a.mp4", 9), ("b.mp4", 5), ("c.mp4", 12)):
        make_clip(src / name, frames=length, audio=False)
    make_non_video(src / "broken.mp4")
    run = dict(model="debug", random_weights=True, chunk_frames=8, ext="mkv", lossless=True)
    local = api.upscale_batch(src, tmp_path / "local", device="cpu", **run)
    with monkeypatch.context() as here:
        here.setattr(batch_run, "run_files", lambda *a: pytest.fail("the files ran locally"))
        # three actors on a Ray of two CPUs: each asks for a share, so none waits forever
        events = []
        summary = api.upscale_batch(
            src,
            tmp_path / "out",
            ray="local",
            workers=3,
            device="cpu",
            progress=events.append,
            **run,
        )
    for name, length in (("a.mp4", 9), ("b.mp4", 5), ("c.mp4", 12)):
        seen = [e.event for e in events if isinstance(e, FileProgress) and e.name == name]
        (end,) = [i for i, e in enumerate(events) if isinstance(e, FileResult) and e.file == name]
        before = [e for e in events[:end] if isinstance(e, FileProgress) and e.name == name]
        assert isinstance(seen[0], Started) and seen[0].total_frames == length
        assert any(isinstance(e.event, Advanced) and e.event.frames > 0 for e in before)
    status = {f.file: f.status for f in summary.files}
    assert status == {"a.mp4": "done", "b.mp4": "done", "broken.mp4": "failed", "c.mp4": "done"}
    (broken,) = [f for f in summary.files if f.status == "failed"]
    assert broken.error and broken.error == next(
        f.error for f in local.files if f.file == broken.file
    )
    for name in ("a", "b", "c"):
        ours, theirs = (
            frames(tmp_path / "out" / f"{name}.mkv"),
            frames(tmp_path / "local" / f"{name}.mkv"),
        )
        assert len(ours) == len(theirs) and all(
            np.array_equal(x, y) for x, y in zip(ours, theirs, strict=True)
        )
    again = api.upscale_batch(src, tmp_path / "out", device="cpu", **run)
    assert [f.status for f in again.files if f.file != "broken.mp4"] == ["skipped"] * 3


def test_a_batch_on_ray_names_each_file_whose_board_events_come_after_its_end(
    local_ray, tmp_path, monkeypatch
):
    """A short file ends before the driver reads its Started from the board, which drops events
    of ended files: the file was never named as it started, only as done. Here the board hears
    nothing at all; each file's Started still comes once, before its result, from its task's
    answer."""
    from skipsr_cli.batch.progress import FileProgress, FileResult
    from skipsr_cli.farm import ray as farm_ray
    from skipsr_cli.run.progress import Started

    class Silent(farm_ray.FileWorker):  # every event to the board lost
        def run(self, index, item, sender=None):
            return super().run(index, item, None)

    monkeypatch.setattr(farm_ray, "FileWorker", Silent)
    src = tmp_path / "in"
    src.mkdir()
    for name, length in (("a.mp4", 3), ("b.mp4", 4)):
        make_clip(src / name, frames=length, audio=False)
    events = []
    summary = api.upscale_batch(src, tmp_path / "out", workers=2, progress=events.append, **ON_RAY)
    assert [f.status for f in summary.files] == ["done", "done"]
    for name, length in (("a.mp4", 3), ("b.mp4", 4)):
        mine = [
            e
            for e in events
            if (isinstance(e, FileProgress) and e.name == name)
            or (isinstance(e, FileResult) and e.file == name)
        ]
        assert isinstance(mine[0], FileProgress) and isinstance(mine[0].event, Started)
        assert mine[0].event.total_frames == length
        assert sum(isinstance(e, FileProgress) and isinstance(e.event, Started) for e in mine) == 1
        assert isinstance(mine[-1], FileResult)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_batch_on_ray_stopped_after_a_file_ended_stops_cleanly(local_ray, tmp_path):
    """Ctrl-C after a file's result: the batch's tidy-up on Ray, as its runner closed, was handed
    that file's Started in place of the batch's start time and ended in a TypeError (ignored, as
    it came in a generator's close), so what the actors put in place went unnamed."""
    from skipsr_cli.batch.progress import FileResult

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_clip(src / name, frames=3, audio=False)

    def stop(event: object) -> None:
        if isinstance(event, FileResult):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.upscale_batch(src, tmp_path / "out", workers=1, progress=stop, **ON_RAY)
    assert (tmp_path / "out" / "a.mp4").is_file() or (tmp_path / "out" / "b.mp4").is_file()


def test_a_batch_on_ray_with_weights_that_cannot_load_is_one_error(local_ray, tmp_path):
    """As with local workers: one model error before any actor starts, no output folder filled."""
    from skipsr_cli.errors import ModelError

    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4", frames=3, audio=False)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights" * 10)
    with pytest.raises(ModelError):
        api.upscale_batch(src, tmp_path / "out", ray="local", weights=bad, device="cpu")
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_weights_that_cannot_load_are_one_error_before_ray_starts(tmp_path, monkeypatch):
    """A video in segments, or a folder batch: bad weights are one model error, found from the
    file before Ray is even started (no actor fails on them, none is restarted)."""
    from skipsr_cli.errors import ModelError, UsageError

    def started(*args, **kwargs):
        raise AssertionError("Ray started before the weights were checked")

    monkeypatch.setattr(ray, "init", started)
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4", frames=3, audio=False)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights" * 10)
    with pytest.raises(ModelError, match="not a safetensors file"):
        api.upscale(src / "a.mp4", tmp_path / "a.mkv", ray="local", weights=bad, device="cpu")
    with pytest.raises(ModelError, match="not a safetensors file"):
        api.upscale_batch(src, tmp_path / "out", ray="local", weights=bad, device="cpu")
    assert not (tmp_path / "a.mkv").exists() and not list((tmp_path / "out").glob("*.mp4"))
    with pytest.raises(UsageError, match="fp8"):  # as load_for would say, in every actor
        api.upscale_batch(src, tmp_path / "out", ray="local", model="debug", dtype="fp8")


def test_actors_get_the_weights_files_as_absolute_paths(tmp_path, monkeypatch):
    """An actor on another node does not share the driver's working folder."""
    from pathlib import Path

    from skipsr_cli.farm.ray import _weights_whole
    from skipsr_cli.run.options import UpscaleOptions

    monkeypatch.chdir(tmp_path)
    whole = _weights_whole(UpscaleOptions(weights=Path("w.safetensors")))
    assert whole.weights == tmp_path / "w.safetensors" and whole.denoise_weights is None


def test_a_cluster_that_cannot_be_reached_is_one_usage_error(tmp_path, monkeypatch):
    """An address where nothing listens is said at once (not a wait without end); a refused
    connection (Ray's token authentication, say) in one line, not as an internal error."""
    import socket

    from skipsr_cli.errors import UsageError

    clip = make_clip(tmp_path / "in.mp4", frames=3, audio=False)
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = dict(model="debug", random_weights=True, device="cpu")
    with pytest.raises(UsageError, match=f"cannot reach Ray at 127.0.0.1:{port}"):
        api.upscale(clip, tmp_path / "a.mkv", ray=f"127.0.0.1:{port}", **run)
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")
    with pytest.raises(UsageError, match="cannot reach Ray at ray://"):
        api.upscale(clip, tmp_path / "a.mkv", ray="auto", **run)

    def refused(*args, **kwargs):
        raise ConnectionError("authentication failed: no token\nmore detail")

    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr(ray, "init", refused)
    with pytest.raises(
        UsageError,
        match=r"^--ray: cannot connect to Ray at this machine: authentication failed: no token$",
    ):
        api.upscale(clip, tmp_path / "a.mkv", ray="local", **run)
    assert not (tmp_path / "a.mkv").exists()


def test_addresses_to_reach_before_ray_attaches():
    from skipsr_cli.farm.ray import _host_port

    assert _host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert _host_port("ray://head:10001") == ("head", 10001)
    assert _host_port("[fd00::5]:6379") == ("fd00::5", 6379)
    assert _host_port("auto") is None and _host_port(None) is None


def test_a_size_an_actor_cannot_hold_is_its_own_one_line(local_ray, tmp_path, monkeypatch):
    """On a cluster (nodes that may be other hosts) each actor checks its own node's memory: its
    refusal is the usage error as a run here says it, not Ray's wrapping with the traceback."""
    from skipsr_cli.errors import UsageError

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # auto: the Ray started for these tests
    clip = make_clip(tmp_path / "in.mp4", frames=3, audio=False)
    run = dict(model="debug", random_weights=True, device="cpu", chunk_frames=64)
    with pytest.raises(UsageError) as refused:  # 580 GiB at a time: no test host has it
        api.upscale(clip, tmp_path / "o.mp4", ray="auto", size="12000x12000", **run)
    said = str(refused.value)
    assert said.startswith("an output of 12000x12000 needs at least ") and "\n" not in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
