"""The overlapped pipeline: same output as the serial one, typed errors, no output or thread left."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import make_clip, make_corrupt_clip

from models import SkipSR
from skipsr_cli.errors import InputError, OutputError, UsageError
from skipsr_cli.media.encoding import EncodeOptions
from skipsr_cli.media.video_io import read_frames
from skipsr_cli.media.video_writer import VideoWriter
from skipsr_cli.run import pipeline
from skipsr_cli.run.options import UpscaleOptions, job_of, mask_encode_options
from skipsr_cli.run.overlap import BackgroundWriter, Prefetcher
from skipsr_cli.run.pipeline import UpscaleJob, prepare, upscale
from skipsr_cli.weights import load_model

LOSSLESS = EncodeOptions(codec="ffv1", crf=None, preset=None)  # output frames compare exactly
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model() -> SkipSR:
    return load_model("debug", random_weights=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("in") / "in.mp4", frames=13, audio=True)


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """(5) Every test, passing or failing by design, ends with only the threads it started with."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, f"threads left alive: {left}"


def run(model: SkipSR, job: UpscaleJob, overlap: bool = True) -> None:
    upscale(model, prepare(job), CPU, torch.float32, emit=lambda e: None, overlap=overlap)


def frames_of(path: Path) -> list[np.ndarray]:
    return [f.rgb for f in read_frames(path)]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "skipsr-partial" in p.name)


def test_overlap_output_is_bit_identical_to_serial(model: SkipSR, clip: Path, tmp_path: Path):
    outputs = {}
    for overlap in (False, True):
        out, mask = tmp_path / f"out-{overlap}.mkv", tmp_path / f"mask-{overlap}.mkv"
        job = UpscaleJob(clip, out, chunk_frames=5, overlap=2, encode=LOSSLESS, mask_out=mask)
        run(model, job, overlap=overlap)
        outputs[overlap] = (frames_of(out), frames_of(mask))
    (serial, serial_mask), (threaded, threaded_mask) = outputs[False], outputs[True]
    assert len(serial) == len(threaded) == 13
    for a, b in zip(serial + serial_mask, threaded + threaded_mask, strict=True):
        np.testing.assert_array_equal(a, b)


def codec_and_frames(path: Path) -> tuple[str, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, sum(1 for _ in container.decode(stream))


@pytest.mark.parametrize(
    ("output", "mask", "codecs"),
    [
        ("out.mp4", "mask.gif", ("h264", "gif")),  # a GIF cannot hold the output's x264
        ("out.gif", "mask.mp4", ("gif", "h264")),  # nor an MP4 the output's GIF
        ("out.mkv", "mask.webm", ("h264", "vp9")),
    ],
)
def test_the_mask_video_is_encoded_as_its_own_container_wants(
    model: SkipSR, clip: Path, tmp_path: Path, output: str, mask: str, codecs: tuple[str, str]
):
    options = UpscaleOptions(
        model="debug", random_weights=True, chunk_frames=4, crf=30, mask_out=tmp_path / mask
    )
    run(model, job_of(clip, tmp_path / output, options))
    assert (codec_and_frames(tmp_path / output), codec_and_frames(tmp_path / mask)) == (
        (codecs[0], 13),
        (codecs[1], 13),
    )


def test_the_outputs_encoder_choices_follow_the_mask_where_they_mean_the_same():
    """On the output's own encoder the mask takes its settings; on another, that encoder's
    default CRF (a CRF is the output encoder's scale: 60 is no x264 CRF), but the preset's speed
    and the --pix-fmt that encoder takes."""
    same = UpscaleOptions(codec="libx265", crf=30, pix_fmt="yuv444p")
    main = job_of(Path("in.mp4"), Path("out.mkv"), same).encode
    assert mask_encode_options(same, Path("mask.mp4"), main) == main
    vp9 = mask_encode_options(same, Path("mask.webm"), main)
    assert (vp9.codec, vp9.crf, vp9.pix_fmt) == ("libvpx-vp9", 18, "yuv444p")
    other = UpscaleOptions(crf=60, preset="fast")
    main = job_of(Path("in.mp4"), Path("out.webm"), other).encode
    x264 = mask_encode_options(other, Path("mask.mp4"), main)
    assert (main.crf, x264.codec, x264.crf, x264.preset) == (60, "libx264", 18, "fast")


def test_a_mask_container_that_cannot_hold_the_encoder_is_refused_before_the_model(
    clip: Path, tmp_path: Path
):
    """A job built by hand says its mask's encoder (None: the output's); what the mask's container
    cannot hold is a usage error from `prepare`, not a failed write after the model's work."""
    job = UpscaleJob(clip, tmp_path / "out.mp4", mask_out=tmp_path / "mask.gif")
    with pytest.raises(
        UsageError, match="--mask-out .*mask.gif: the gif container cannot hold libx264"
    ):
        prepare(job)
    assert list(tmp_path.iterdir()) == []


def test_prefetcher_reraises_the_producer_error_and_stops():
    produced = []

    def source() -> Iterator[int]:
        for i in range(3):
            produced.append(i)
            yield i
        raise InputError("bad frame 3")

    with Prefetcher(source(), depth=2, name="test-prefetch") as frames:
        got = []
        with pytest.raises(InputError, match="bad frame 3"):
            for item in frames:
                got.append(item)
                time.sleep(0.01)  # let the producer fail while items are still buffered
        assert next(frames, None) is None  # stopped: no item after the error
    assert produced == [0, 1, 2]
    assert got == produced[: len(got)]


def test_prefetcher_close_stops_a_producer_blocked_on_a_full_queue():
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    with Prefetcher(endless(), depth=2) as frames:
        assert [next(frames) for _ in range(5)] == [0, 1, 2, 3, 4]


def test_background_writer_reraises_the_write_error():
    written = []

    def write(item: int) -> None:
        if item == 4:
            raise OutputError("disk full")
        written.append(item)

    with pytest.raises(OutputError, match="disk full"), BackgroundWriter(write, depth=2) as sink:
        for i in range(100):
            sink.put(i)
    assert written == [0, 1, 2, 3]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names are Linux's")
def test_the_helpers_threads_carry_their_names_in_the_system():
    """`top -H` and /proc tell a run's stages apart, FFmpeg's own threads included: a thread
    started from a helper (as an encoder's are) carries the helper's name."""

    def comm() -> str:
        return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    seen = {}

    def write(item: int) -> None:
        seen["writer"] = comm()
        child = threading.Thread(target=lambda: seen.update(child=comm()))
        child.start()
        child.join()

    with BackgroundWriter(write, depth=1, name="skipsr-encode") as sink:
        sink.put(0)

    def decoded() -> Iterator[int]:
        seen["prefetcher"] = comm()
        yield 0

    with Prefetcher(decoded(), depth=1, name="skipsr-decode") as frames:
        assert list(frames) == [0]
    assert seen == {
        "writer": "skipsr-encode",
        "child": "skipsr-encode",
        "prefetcher": "skipsr-decode",
    }


def test_the_writers_start_holds_its_wait_for_the_first_item_however_the_threads_run():
    """The producer may fill the queue before the writer's thread wakes with the first item: the
    wait for the first item was then left out of the start's waits (0.012 s for the first item,
    0.0 until the queue filled: a `make test-slow` failure). However the threads interleave, the
    first wait is part of the start's, which is part of all."""
    for _ in range(30):
        with BackgroundWriter(lambda item: time.sleep(0.001), depth=1) as sink:
            time.sleep(0.005)  # the writer waits for its first item
            for i in range(3):
                sink.put(i)  # the second put finds the queue full, maybe before it woke
        assert 0 < sink.first_wait <= sink.fill_wait <= sink.idle


def test_the_helpers_count_who_waited_for_whom():
    """A slow writer keeps the producer waiting for room; a slow producer keeps the writer idle
    and the consumer of a prefetcher waiting: the run's summary says which side set the pace."""
    with BackgroundWriter(lambda item: time.sleep(0.02), depth=1) as slow:
        for i in range(8):
            slow.put(i)
    assert slow.blocked > 0.08 and slow.idle < 0.05
    with BackgroundWriter(lambda item: None, depth=4) as fast:
        for i in range(5):
            time.sleep(0.02)
            fast.put(i)
    assert fast.idle > 0.06 and fast.blocked < 0.05
    # the wait for the first item (the producer's start) is told apart from the later ones
    assert 0.015 < fast.first_wait < 0.04 < fast.idle
    with BackgroundWriter(lambda item: time.sleep(0.03), depth=1) as ready:
        ready.put(0)  # there before the writer waits: a first wait of about nothing
        time.sleep(0.05)
        ready.put(1)
    assert ready.first_wait < 0.01 < ready.idle  # the second wait is not taken for the first

    def slow_after(n: int) -> Callable[[int], None]:
        return lambda item: time.sleep(0.03 if item >= n else 0)

    # its start: three items come slowly and go straight through; then the writer falls behind,
    # the queue fills, and a later wait (the producer late again) is not taken for the start
    with BackgroundWriter(slow_after(3), depth=2) as starting:
        for i in range(8):
            time.sleep(0.03 if i < 3 else 0)
            starting.put(i)
        time.sleep(0.5)  # the queue drains: the writer waits for the last item
        starting.put(8)
    # (about 0.09 s; a writer thread that starts late on a busy host misses some of the first)
    assert 0.03 < starting.fill_wait < 0.25 < starting.idle
    assert starting.first_wait <= starting.fill_wait
    with BackgroundWriter(lambda item: None, depth=4) as never_behind:
        for i in range(3):
            time.sleep(0.02)
            never_behind.put(i)
    assert never_behind.fill_wait == never_behind.idle > 0.04  # every wait was before a full queue

    def late() -> Iterator[int]:
        for i in range(4):
            time.sleep(0.02)
            yield i

    with Prefetcher(late(), depth=2) as frames:
        assert list(frames) == [0, 1, 2, 3]
    assert frames.waited > 0.05


@pytest.mark.parametrize("overlap", [True, False])
def test_encoder_failure_is_an_output_error_and_leaves_no_file(
    model: SkipSR, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overlap: bool
):
    encode = VideoWriter._encode  # where RGB frames and device-converted planes both end up

    def failing_encode(self: VideoWriter, frame, pts: int | None = None) -> None:
        if self.frames_written == 4:  # the 5th frame
            raise OutputError(f"cannot write {self.path}: disk full")
        encode(self, frame, pts)

    monkeypatch.setattr(VideoWriter, "_encode", failing_encode)
    out = tmp_path / "out.mp4"
    with pytest.raises(OutputError, match="disk full"):
        run(model, UpscaleJob(clip, out, chunk_frames=4, overlap=1), overlap=overlap)
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("overlap", [True, False])
def test_decode_failure_is_counted_or_with_strict_an_input_error_and_no_file(
    model: SkipSR, tmp_path: Path, overlap: bool
):
    corrupt = make_corrupt_clip(tmp_path / "corrupt.mkv")
    out = tmp_path / "out.mkv"
    job = UpscaleJob(corrupt, out, chunk_frames=4, overlap=1, strict=True)
    with pytest.raises(InputError, match="cannot decode"):
        run(model, job, overlap=overlap)
    assert not out.exists()
    assert leftovers(tmp_path) == []
    plan = prepare(replace(job, strict=False))
    summary = upscale(model, plan, CPU, torch.float32, emit=lambda e: None, overlap=overlap)
    assert summary.frames_lost > 0 and summary.frames + summary.frames_lost >= 20
    assert "damaged input" in summary.warnings[0]
    assert leftovers(tmp_path) == []


def test_keyboard_interrupt_stops_the_threads_and_leaves_no_file(
    model: SkipSR, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    run_chunk = pipeline.run_chunk
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run_chunk(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run_chunk", interrupted)
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        run(model, UpscaleJob(clip, out, chunk_frames=4, overlap=1))
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_progress_counts_every_frame_once(model: SkipSR, clip: Path, tmp_path: Path):
    events = []
    job = UpscaleJob(clip, tmp_path / "out.mkv", chunk_frames=4, overlap=1, encode=LOSSLESS)
    summary = upscale(model, prepare(job), CPU, torch.float32, emit=events.append)
    assert summary.frames == 13
    waits = summary.waits  # where an overlapped run spent its waiting, for `bench run`
    assert set(waits) == {
        "model_waited_for_decoder",
        "model_waited_for_encoder",
        "encoder_waited_for_model",
        "encoder_waited_for_first_frames",
        "encoder_waited_until_its_queue_filled",
    }
    assert all(0 <= w <= summary.wall_seconds for w in waits.values())
    # at least while the first chunk ran, and that wait is part of all the encoder's waits
    first, filled = (
        waits["encoder_waited_for_first_frames"],
        waits["encoder_waited_until_its_queue_filled"],
    )
    assert 0 < first <= filled <= waits["encoder_waited_for_model"]
    assert hash(summary) == hash(summary)  # a summary stays hashable
    counts = [e.frames for e in events if type(e).__name__ == "Advanced"]
    assert counts == sorted(counts) and counts[-1] == 13  # the final report follows the drain
    assert len(frames_of(job.output)) == 13


def test_the_default_plan_runs_each_frame_through_the_model_once(
    model: SkipSR, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """No frame is upscaled twice by default: a shared frame costs a second pass through the model
    (the shipped network gains nothing from it, BENCHMARKS.md); with --overlap K the chunks share
    K frames, and the model sees each shared frame twice. Chunks as (first frame, frames)."""
    seen: list[tuple[int, int]] = []
    run_chunk = pipeline.run_chunk

    def counted(net, chunk, *args):
        seen.append((chunk.start, len(chunk.items)))
        return run_chunk(net, chunk, *args)

    monkeypatch.setattr(pipeline, "run_chunk", counted)
    run(model, UpscaleJob(clip, tmp_path / "a.mkv", chunk_frames=4, encode=LOSSLESS))
    assert seen == [(0, 4), (4, 4), (8, 4), (12, 1)]  # 13 frames
    seen.clear()
    run(model, UpscaleJob(clip, tmp_path / "b.mkv", chunk_frames=4, overlap=1, encode=LOSSLESS))
    assert seen == [(0, 4), (3, 4), (6, 4), (9, 4)]  # frames 3, 6 and 9 twice
    assert len(frames_of(tmp_path / "a.mkv")) == len(frames_of(tmp_path / "b.mkv")) == 13
