"""Ray: a part or file whose actor died is sent again by the driver, said and bounded.

The actors here are test subclasses of the real workers, made inside functions so that Ray ships
them by value: one kills its own process (os._exit, as the OOM killer or a segfault would) in the
middle of a part, once or every time.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from media import make_clip

from skipsr_cli import api
from skipsr_cli.errors import ExitCode, ModelError, OutputError

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

RUN = dict(model="debug", random_weights=True, chunk_frames=8, overlap=2, lossless=True)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as f:
        return [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]


def dying_segments(marker: Path, part: int, always: bool) -> type:
    """A SegmentWorker whose process exits once it has passed the first frames of part `part`
    on: the first time only (`marker` is made then), or every time."""
    from skipsr_cli.farm.ray import SegmentWorker
    from skipsr_cli.farm.ray_progress import reporting
    from skipsr_cli.run.progress import Advanced

    class Dying(SegmentWorker):
        def render(self, input, output, index, count, total, sender=None):
            if index != part:
                return super().render(input, output, index, count, total, sender)
            if not always:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:  # died once already
                    return super().render(input, output, index, count, total, sender)
            told = reporting(sender)

            def die(event):
                if told is not None:
                    told(event)
                if isinstance(event, Advanced) and event.frames > 0:
                    os._exit(3)

            return index, self.render_part(input, output, index, count, total, die)

    return Dying


def dying_once(marker: Path) -> type:
    """A FileWorker whose process exits on the first file any of its kind is given (`marker` is
    made then); the file goes to another actor."""
    from skipsr_cli.farm.ray import FileWorker

    class Dying(FileWorker):
        def run(self, index, item, sender=None):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return super().run(index, item, sender)
            os._exit(3)

    return Dying


def all_actors_gone(timeout: float = 30.0) -> bool:
    """Whether Ray has every CPU back: no actor of the run is left holding its share."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ray.available_resources().get("CPU", 0) >= ray.cluster_resources()["CPU"]:
            return True
        time.sleep(0.2)
    return False


def test_a_part_whose_actor_died_is_rendered_again_and_said(
    local_ray, tmp_path, monkeypatch, capfd
):
    from skipsr_cli.cli import main
    from skipsr_cli.farm import ray as farm_ray

    clip = make_clip(tmp_path / "in.mp4", frames=17, audio=True)
    api.upscale(clip, tmp_path / "whole.mkv", device="cpu", **RUN)
    dying = dying_segments(tmp_path / "died-once", part=2, always=False)
    monkeypatch.setattr(farm_ray, "SegmentWorker", dying)
    out = tmp_path / "out.mkv"
    args = ["upscale", str(clip), str(out), "--ray", "local", "--segments", "3", "--workers", "2"]
    args += ["--model", "debug", "--random-weights", "--chunk-frames", "8", "--overlap", "2"]
    capfd.readouterr()
    with pytest.raises(SystemExit) as done:
        main([*args, "--lossless", "--json"])
    stdout, stderr = capfd.readouterr()
    assert done.value.code == 0, stderr
    assert (tmp_path / "died-once").exists()  # the actor did die
    # the progress (plain lines, to the process's stderr) names the run once, though part 2
    # started twice
    assert len(re.findall(r"^upscaling ", stderr, flags=re.M)) == 1, stderr
    warned = re.findall(r"^skipsr: warning: (part .*)$", stderr, flags=re.M)
    assert len(warned) == 1, stderr
    assert re.fullmatch(
        r"part 2 of 3: its Ray actor died \(.+\); rendering it again \(attempt 2\)", warned[0]
    )
    said = json.loads(stdout.splitlines()[-1])
    assert said["frames"] == 17 and warned[0] in said["warnings"]
    assert {p["part"]: p["attempts"] for p in said["parts"]} == {1: 1, 2: 2, 3: 1}
    ours, theirs = frames(out), frames(tmp_path / "whole.mkv")
    assert len(ours) == 17 and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    # the dead attempt's half-written part went with the work folder; no actor is left
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "died-once",
        "in.mp4",
        "out.mkv",
        "whole.mkv",
    ]
    assert all_actors_gone()


def test_a_part_whose_actor_dies_every_time_fails_after_the_last_attempt(
    local_ray, tmp_path, monkeypatch
):
    from skipsr_cli.farm import ray as farm_ray
    from skipsr_cli.farm import ray_crew

    clip = make_clip(tmp_path / "in.mp4", frames=17, audio=False)
    monkeypatch.setattr(farm_ray, "SegmentWorker", dying_segments(tmp_path, 2, always=True))
    parts = tmp_path / "parts"
    with pytest.raises(OutputError) as failed:
        api.upscale(clip, tmp_path / "out.mkv", ray="local", segments=3, parts=parts, **RUN)
    said = str(failed.value)
    attempts = ray_crew.ATTEMPTS
    assert said.startswith(f"part 2 of 3 failed on each of its {attempts} attempts: ")
    assert "its Ray actor died (" in said and "\n" not in said
    assert failed.value.exit_code == ExitCode.OUTPUT
    assert not (tmp_path / "out.mkv").exists()
    # one actor at a time: part 1 was done before part 2 started, and is kept for a rerun
    assert sorted(p.name for p in parts.glob("part-*.mkv")) == ["part-00001-of-00003.mkv"]
    assert all_actors_gone()


def no_room_after_start(monkeypatch, place_s: float) -> None:
    """Every actor started after the run's first ones cannot be placed, as where a node was lost
    and the run's other actors hold every GPU left: it asks for a resource no node has. A fresh
    actor is given up on after `place_s` seconds."""
    from skipsr_cli.farm import ray_crew

    start = ray_crew.Crew.start

    def first_ones_only(self, count):
        actors = start(self, count)
        self.actor = self.actor.options(resources={"nothere": 1})
        return actors

    monkeypatch.setattr(ray_crew.Crew, "start", first_ones_only)
    monkeypatch.setattr(ray_crew, "PLACE_S", place_s)


def in_time(call, seconds: float = 120.0):
    """`call()`'s result, or its exception raised here; a failure if it has not returned within
    `seconds` (a driver that waits for an actor that can never be placed)."""
    ended: dict = {}

    def run():
        try:
            ended["result"] = call()
        except BaseException as e:
            ended["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: the driver hung"
    if "error" in ended:
        raise ended["error"]
    return ended["result"]


def test_a_fresh_actor_that_cannot_be_placed_leaves_the_work_to_the_one_left(
    local_ray, tmp_path, monkeypatch
):
    """Part 2's actor dies, and no actor can take its place: the other actor renders the rest,
    part 2 included, and the output is a whole run's; a warning says so where a fresh actor was
    started and given up on."""
    from skipsr_cli.farm import ray as farm_ray

    clip = make_clip(tmp_path / "in.mp4", frames=17, audio=False)
    api.upscale(clip, tmp_path / "whole.mkv", device="cpu", **RUN)
    monkeypatch.setattr(farm_ray, "SegmentWorker", dying_segments(tmp_path / "died", 2, False))
    no_room_after_start(monkeypatch, place_s=0.05)  # given up on long before the rest is done
    out = tmp_path / "out.mkv"
    summary = in_time(lambda: api.upscale(clip, out, ray="local", segments=3, workers=2, **RUN))
    assert (tmp_path / "died").exists()
    warned = [w for w in summary.warnings if w.startswith("part ")]
    assert len(warned) == 1 and re.fullmatch(
        r"part 2 of 3: its Ray actor died \(.+\); rendering it again \(attempt 2\)", warned[0]
    )
    # a fresh actor is started, and given up on, where part 2's retry finds the other actor still
    # rendering; where that one had finished its parts, it takes the retry and none is started
    assert [w for w in summary.warnings if w.startswith("a fresh Ray actor")] in (
        [],
        [
            "a fresh Ray actor in place of one that died was not placed within 0.05 s: the "
            "cluster had no room for it (a node lost?); the run went on with the actors left"
        ],
    )
    ours, theirs = frames(out), frames(tmp_path / "whole.mkv")
    assert len(ours) == 17 and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert all_actors_gone()


def test_no_actor_left_and_none_placed_fails_naming_the_parts_not_rendered(
    local_ray, tmp_path, monkeypatch
):
    """One actor, which dies in part 2, and none can take its place: the run fails (exit 5)
    within the placing time, naming parts 2 and 3 and why, and keeps part 1 for a rerun."""
    from skipsr_cli.farm import ray as farm_ray

    clip = make_clip(tmp_path / "in.mp4", frames=17, audio=False)
    monkeypatch.setattr(farm_ray, "SegmentWorker", dying_segments(tmp_path, 2, always=True))
    no_room_after_start(monkeypatch, place_s=1.0)
    parts = tmp_path / "parts"
    run = dict(ray="local", segments=3, workers=1, parts=parts, **RUN)
    with pytest.raises(OutputError) as failed:
        in_time(lambda: api.upscale(clip, tmp_path / "out.mkv", **run))
    said = str(failed.value)
    assert said.startswith(
        "parts 2 and 3 of 3 were not rendered: no Ray actor was left to render them; a fresh Ray "
        "actor in place of one that died was not placed within 1 s: "
    ), said
    assert failed.value.exit_code == ExitCode.OUTPUT
    assert not (tmp_path / "out.mkv").exists()
    assert sorted(p.name for p in parts.glob("part-*.mkv")) == ["part-00001-of-00003.mkv"]
    assert all_actors_gone()


def test_an_actor_that_cannot_load_the_model_is_a_model_error(local_ray, tmp_path, monkeypatch):
    """Said once, as what it is, before any part is sent; not a part retried until it fails."""
    from skipsr_cli.farm import ray as farm_ray

    class Broken(farm_ray.SegmentWorker):
        def __init__(self, *args, **kwargs):
            raise RuntimeError("CUDA error: out of memory while loading")

    monkeypatch.setattr(farm_ray, "SegmentWorker", Broken)
    clip = make_clip(tmp_path / "in.mp4", frames=5, audio=False)
    with pytest.raises(ModelError, match=r"^a Ray actor could not load the model: .*out of memory"):
        api.upscale(clip, tmp_path / "out.mkv", ray="local", segments=2, **RUN)
    assert not (tmp_path / "out.mkv").exists()
    assert all_actors_gone()


def test_a_batch_file_whose_actor_died_is_upscaled_again(local_ray, tmp_path, monkeypatch):
    from skipsr_cli.farm import ray as farm_ray

    marker = tmp_path / "died-once"
    monkeypatch.setattr(farm_ray, "FileWorker", dying_once(marker))
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_clip(src / name, frames=5, audio=False)
    run = dict(model="debug", random_weights=True, ext="mkv", lossless=True, device="cpu")
    summary = api.upscale_batch(src, tmp_path / "out", ray="local", workers=2, **run)
    assert marker.exists()
    assert [f.status for f in summary.files] == ["done", "done"]
    retried = [w for f in summary.files for w in f.warnings if "Ray actor" in w]
    assert len(retried) == 1
    assert re.fullmatch(r"its Ray actor died \(.+\); upscaling it again \(attempt 2\)", retried[0])
    assert all_actors_gone()


def test_a_batch_says_once_that_a_fresh_actor_was_given_up_on(local_ray, tmp_path, monkeypatch):
    """A file's actor dies and no fresh one can be placed: the other actor upscales every file,
    and the warning that the fresh one was given up on comes once, with a file's."""
    from skipsr_cli.farm import ray as farm_ray

    marker = tmp_path / "died-once"
    monkeypatch.setattr(farm_ray, "FileWorker", dying_once(marker))
    no_room_after_start(monkeypatch, place_s=0.05)
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        make_clip(src / name, frames=5, audio=False)
    run = dict(model="debug", random_weights=True, ext="mkv", lossless=True, device="cpu")
    summary = in_time(
        lambda: api.upscale_batch(src, tmp_path / "out", ray="local", workers=2, **run)
    )
    assert [f.status for f in summary.files] == ["done", "done", "done"]
    given_up = [w for f in summary.files for w in f.warnings if w.startswith("a fresh Ray actor")]
    assert given_up == [
        "a fresh Ray actor in place of one that died was not placed within 0.05 s: the cluster "
        "had no room for it (a node lost?); the batch went on with the actors left"
    ]
    assert all_actors_gone()


def test_a_batch_on_ray_stopped_after_a_file_names_what_was_written(
    local_ray, tmp_path, monkeypatch
):
    """Ctrl-C once the first file's result is in: what the batch says it left is exactly the
    outputs on disk, the finished file's video and its mask, though an actor wrote them; and the
    files' claims are read for what an actor put in place after the last result (they were not
    once a result had come: the loop's result and the flag of its end shared a name)."""
    from skipsr_cli.batch.progress import FileResult
    from skipsr_cli.farm import ray as farm_ray
    from skipsr_cli.media import partials

    claims_read = []

    def read_claims(*args, **kwargs):
        claims_read.append(args)
        return note_claimed(*args, **kwargs)

    note_claimed = farm_ray.note_claimed
    monkeypatch.setattr(farm_ray, "note_claimed", read_claims)

    src, out, masks = tmp_path / "in", tmp_path / "out", tmp_path / "masks"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_clip(src / name, frames=5, audio=False)

    def stop_after_a_file(event):
        if isinstance(event, FileResult):
            assert event.status == "done", event
            raise KeyboardInterrupt

    run = dict(model="debug", random_weights=True, ext="mkv", lossless=True, device="cpu")
    partials.forget_placements()
    with pytest.raises(KeyboardInterrupt):
        api.upscale_batch(
            src, out, ray="local", workers=1, mask_out=masks, progress=stop_after_a_file, **run
        )
    on_disk = [p for folder in (out, masks) for p in folder.iterdir() if p.is_file()]
    assert sorted(p.name for p in on_disk) == ["a.mkv", "a.mkv"]
    assert sorted(partials.left_behind()) == sorted(str(p) for p in on_disk)
    said = partials.left_behind_words()
    assert said == f"{out / 'a.mkv'} and {masks / 'a.mkv'} were written", said
    assert len(claims_read) == 1
    assert all_actors_gone()
