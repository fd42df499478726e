"""A Ctrl-C or SIGTERM that lands as the outputs go into place, or just after, is told truthfully.

The outputs of a run (a video and its mask) go into place together: a stop during the renames
waits until they are all done, and the command then ends 130 (143 for SIGTERM) with a line that
names each file it wrote; a stop before them says that no output was left behind. The file
system matches the line either way, and no partial file is left. A run in parts (its stitch) and
a batch say the same.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from fractions import Fraction
from pathlib import Path

import pytest
from media import make_clip

from skipsr_cli.batch import workers
from skipsr_cli.batch.plan import BatchItem
from skipsr_cli.batch.progress import FileProgress
from skipsr_cli.cli import main
from skipsr_cli.farm import parts as farm_parts
from skipsr_cli.farm import resume
from skipsr_cli.farm.segments import work_folder
from skipsr_cli.media import joiner, partials
from skipsr_cli.media.partials import stops_deferred, stops_held
from skipsr_cli.media.video_writer import VideoWriter
from skipsr_cli.run import pipeline
from skipsr_cli.run.progress import Placing

ARGS = ["--model", "debug", "--random-weights", "--device", "cpu", "-q"]


def run(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    return done.value.code, capsys.readouterr().err


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def clip(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the outputs as the user names them: out.mp4
    return make_clip(tmp_path / "in.mp4", frames=3, audio=False)


def stop_after_publish(monkeypatch, error: type[BaseException] = KeyboardInterrupt) -> None:
    """The stop comes as the run tidies up once publish_together has put its outputs in place."""
    publish = pipeline.publish_together

    def then_stopped(*args, **kwargs) -> None:
        publish(*args, **kwargs)
        raise error

    monkeypatch.setattr(pipeline, "publish_together", then_stopped)


def test_a_stop_just_after_the_outputs_are_in_place_names_them(clip, tmp_path, monkeypatch, capsys):
    stop_after_publish(monkeypatch)
    code, err = run(["upscale", "in.mp4", "out.mp4", "--mask-out", "mask.mkv", *ARGS], capsys)
    assert code == 130
    assert err == "skipsr: interrupted; out.mp4 and mask.mkv were written\n"
    assert names(tmp_path) == ["in.mp4", "mask.mkv", "out.mp4"]  # and no partial file


def test_a_stop_before_the_outputs_go_in_place_says_none_was_left(
    clip, tmp_path, monkeypatch, capsys
):
    def stopped(*args, **kwargs) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "publish_together", stopped)
    code, err = run(["upscale", "in.mp4", "out.mp4", "--mask-out", "mask.mkv", *ARGS], capsys)
    assert (code, err) == (130, "skipsr: interrupted; no output was left behind\n")
    assert names(tmp_path) == ["in.mp4"]


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_a_signal_between_the_renames_waits_until_the_set_is_whole(
    clip, tmp_path, monkeypatch, capsys, stop, code, said
):
    """The signal lands once the video is in place and before its mask is: never a half set."""
    publish = VideoWriter.publish

    def signalled(self: VideoWriter) -> None:
        publish(self)
        if self.path.name == "out.mp4":
            os.kill(os.getpid(), stop)
            time.sleep(0.05)  # a handler that raises has run by now

    monkeypatch.setattr(VideoWriter, "publish", signalled)
    got, err = run(["upscale", "in.mp4", "out.mp4", "--mask-out", "mask.mkv", *ARGS], capsys)
    assert got == code
    assert err == f"skipsr: {said}; out.mp4 and mask.mkv were written\n"
    assert names(tmp_path) == ["in.mp4", "mask.mkv", "out.mp4"]


def test_a_stop_after_the_stitch_ends_as_the_single_file_run_does(
    clip, tmp_path, monkeypatch, capsys
):
    """A run in parts holds a stop that comes once its stitch put the output in place, empties
    its work folder, and then ends as stopped: 130, naming the output, as a run in one piece."""
    monkeypatch.setattr(resume, "RESUME_FRAMES", 10)
    monkeypatch.setattr(resume, "FRAMES_PER_PART", 6)
    make_clip(tmp_path / "in.mp4", frames=14, audio=False)
    empty = farm_parts.empty_work_folder

    def stopped_while_emptying(folder: Path) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        empty(folder)

    monkeypatch.setattr(farm_parts, "empty_work_folder", stopped_while_emptying)
    code, err = run(["upscale", "in.mp4", "out.mkv", *ARGS, "--chunk-frames", "8"], capsys)
    assert (code, err) == (130, "skipsr: interrupted; out.mkv was written\n")
    assert names(tmp_path) == ["in.mp4", "out.mkv"]
    assert not work_folder(tmp_path / "out.mkv").exists()


def test_the_joiner_puts_its_output_in_place_before_a_stop_and_notes_it(
    clip, tmp_path, monkeypatch
):
    """`skipsr stitch`: a signal as the joined file is renamed waits for the rename."""
    replace = os.replace

    def signalled(src, dst) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        replace(src, dst)

    partials.forget_placements()
    monkeypatch.setattr(joiner.os, "replace", signalled)
    with pytest.raises(KeyboardInterrupt):
        joiner.join_videos([(clip, 0)], tmp_path / "out.mkv", clip, Fraction(24))
    assert partials.left_behind() == [str(tmp_path / "out.mkv")]
    assert names(tmp_path) == ["in.mp4", "out.mkv"]


def test_a_stop_in_a_batch_names_the_files_it_finished(tmp_path, monkeypatch, capsys):
    """The first file is in place when the stop comes: the batch does not say none was left."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        make_clip(src / f"{name}.mp4", frames=2, audio=False)
    monkeypatch.chdir(tmp_path)
    stop_after_publish(monkeypatch)
    code, err = run(["upscale", "src", "out", *ARGS], capsys)
    assert (code, err) == (130, "skipsr: interrupted; out/a.mp4 was written\n")
    assert [p.name for p in (tmp_path / "out").glob("*.mp4")] == ["a.mp4"]
    assert not list(tmp_path.rglob("*skipsr-partial*"))


def test_a_batch_keeps_what_its_workers_placed_even_after_it_stopped_reading(tmp_path):
    """A worker process says what it is about to put in place (Placing); the batch keeps it, from
    the messages it read and from those left in the queue once its workers are gone."""
    out, mask = tmp_path / "a.mp4", tmp_path / "a.mask.mkv"
    for path in (out, mask):
        path.write_bytes(b"video")
    ids = tuple(partials.identity(p, p) for p in (out, mask))
    item = BatchItem(name="a.mp4", input=tmp_path / "in.mp4", output=out, mask_out=mask)
    partials.forget_placements()
    results = mp.get_context("spawn").Queue()
    results.put(("skipsr-worker-0", "event", FileProgress(0, "a.mp4", Placing(ids))))
    time.sleep(0.2)  # the queue's feeder has written it
    workers._drain(results, {0: item})
    assert partials.left_behind() == [str(out), str(mask)]
    out.unlink()  # not in place after all (a rename that never came): not named
    mask.unlink()
    mask.write_bytes(b"another file")
    assert partials.left_behind() == []


def test_a_batch_names_what_its_workers_claims_put_in_place_where_no_message_came(tmp_path):
    """A stopped worker can exit before its last message is sent; its claim, written before the
    renames, still says what it put in place. Those written since the batch began are named; a
    claim an earlier, killed batch left names files that are not this batch's."""
    from skipsr_cli.batch import records

    out_dir = tmp_path / "out"
    (out_dir / records.STATE_DIR).mkdir(parents=True)
    out, mask = out_dir / "a.mp4", tmp_path / "masks" / "a.mp4"
    mask.parent.mkdir()
    began = time.time_ns()
    for path in (out, mask):
        path.write_bytes(b"video")
    item = BatchItem(name="a.mp4", input=tmp_path / "in.mp4", output=out, mask_out=mask)
    key = workers.BatchKey(out_dir, {}, "weights")
    claim = records.claim_path(out_dir, out)
    records.write_record(claim, records.claim_record(item.input, {}, "weights", []))
    records.place_claim(claim, tuple(partials.identity(p, p) for p in (out, mask)))
    partials.forget_placements()
    workers.note_claimed(key, {0: item}, began + 10**12)  # a batch that began after they were
    assert partials.left_behind() == []
    workers.note_claimed(key, {0: item}, began)
    assert partials.left_behind() == [str(out), str(mask)]
    partials.forget_placements()


def test_stops_deferred_acts_on_the_stop_after_the_block_and_a_hold_keeps_it():
    went_on = []
    with pytest.raises(KeyboardInterrupt), stops_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        went_on.append(True)
    assert went_on == [True]
    partials.forget_placements()
    with stops_held() as came, stops_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert came == [signal.SIGINT] and partials.held_stops == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    partials.forget_placements()


class _Stop(Exception):
    pass


def _raise_stop(number: int, frame: object) -> None:
    raise _Stop(number)


@pytest.mark.parametrize("at", [1, 3], ids=["between the two swaps", "between the two put-backs"])
def test_a_stop_while_the_handlers_are_swapped_leaves_both_acting_as_before(monkeypatch, at):
    """A stop already due runs at Python's next check, which can fall between the two handlers'
    swaps (it is recorded, or acts at once through its old handler) or between the two put-backs
    (it acts as the handler put back says). Either way each signal afterwards reaches the handler
    from before: no recorder is left in place to swallow every later Ctrl-C or SIGTERM."""
    sig = signal.SIGTERM if at == 1 else signal.SIGINT
    before = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    real, calls, ran = signal.signal, [], []

    def swapping(number, handler):
        previous = real(number, handler)
        calls.append(number)
        if len(calls) == at:
            os.kill(os.getpid(), sig)  # due from here: Python runs it at a later call
        return previous

    monkeypatch.setattr(signal, "signal", swapping)
    try:
        try:
            with stops_held():
                ran.append("block")
            ran.append("after")
        except _Stop as stop:
            ran.append(stop.args[0])
        monkeypatch.undo()
        if at == 1:  # recorded in the block, or acted on before it
            assert ran in (["block", "after"], [sig]), ran
            assert partials.held_stops == ([sig] if "block" in ran else [])
        else:  # acted on once the handler was back: as the block ended
            assert ran == ["block", sig], ran
        for number in (signal.SIGINT, signal.SIGTERM):
            with pytest.raises(_Stop) as stopped:
                os.kill(os.getpid(), number)
                time.sleep(0.5)  # the handler runs at the next check; a swallowed one never
            assert stopped.value.args[0] == number
    finally:
        monkeypatch.undo()
        for number, handler in before.items():
            signal.signal(number, handler)
        partials.held_stops.clear()


def test_the_api_keeps_what_a_stop_would_name_for_one_call_only(clip, tmp_path):
    """Each `upscale` call starts the record afresh: a program that upscales file after file
    through the API keeps one call's outputs in it, not every output it ever wrote."""
    import skipsr_cli

    net = skipsr_cli.load_model("debug", device="cpu", random_weights=True)
    for name in ("a.mp4", "b.mp4"):
        skipsr_cli.upscale(clip, tmp_path / name, model=net, copy_audio=False)
    assert [Path(p).name for p in partials.left_behind()] == ["b.mp4"]
    assert len(partials.placements) == 1
    partials.forget_placements()
