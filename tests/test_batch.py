"""Folder batches (issue 13): `skipsr upscale IN_DIR OUT_DIR` on the debug preset, on the CPU.

Most runs are in-process (Typer's runner, the Python API) to stay fast; the SIGKILL test needs a
real process to kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import make_clip, make_non_video
from typer.testing import CliRunner

import skipsr_cli
from skipsr_cli.batch import run as batch_run
from skipsr_cli.batch.plan import FolderKind, folder_kind
from skipsr_cli.cli import app
from skipsr_cli.errors import ExitCode, UsageError
from skipsr_cli.media.video_io import read_frames

DEBUG = ["--model", "debug", "--random-weights", "--device", "cpu"]
FAST = ["--chunk-frames", "4", "--overlap", "1"]


def clip(path: Path, frames: int = 3, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_clip(path, width=32, height=24, frames=frames, audio=False, seed=seed)


def invoke(*args: object, fast: list[str] = FAST):
    return CliRunner().invoke(app, ["upscale", *map(str, args), *DEBUG, *fast])


def png(path: Path, seed: int) -> Path:
    """A 32x24 RGB picture as a PNG file."""
    rgb = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = 32, 24, "rgb24"
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    path.write_bytes(b"".join(bytes(p) for p in codec.encode(frame)))
    return path


def frames_of(path: Path) -> list[np.ndarray]:
    return [f.rgb for f in read_frames(path)]


def outputs(folder: Path) -> dict[str, int]:
    """Every visible file under `folder` (relative name -> mtime_ns); partial files count too."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and ".skipsr-batch" not in p.parts
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.mp4, b.mp4 (broken), c.mkv, and sub/d.mov."""
    root = tmp_path_factory.mktemp("videos")
    clip(root / "a.mp4")
    make_non_video(root / "b.mp4")
    clip(root / "c.mkv", seed=1)
    clip(root / "sub" / "d.mov", seed=2)
    return root


def test_a_broken_file_fails_alone_and_a_rerun_changes_nothing(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    r = invoke(folder, out, "--json")
    assert r.exit_code == ExitCode.PARTIAL, r.output
    assert "b.mp4" in r.stderr and "1 of 3 files failed" in r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    by_file = {line["file"]: line for line in lines[:-1]}
    assert {f: v["status"] for f, v in by_file.items()} == {
        "a.mp4": "done",
        "b.mp4": "failed",
        "c.mkv": "done",
    }
    assert by_file["a.mp4"]["frames"] == 3 and "b.mp4" in by_file["b.mp4"]["error"]
    assert lines[-1]["summary"] and lines[-1]["failed_files"] == ["b.mp4"]
    assert outputs(out).keys() == {"a.mp4", "c.mkv"}  # the input's names and containers
    assert len(frames_of(out / "a.mp4")) == 3
    before = outputs(out)
    again = invoke(folder, out, "--json")
    assert again.exit_code == ExitCode.PARTIAL  # b.mp4 is still broken
    statuses = sorted(json.loads(line)["status"] for line in again.stdout.splitlines()[:-1])
    assert statuses == ["failed", "skipped", "skipped"]
    assert outputs(out) == before  # untouched: same files, same mtimes
    redo = invoke(folder, out, "--json", "--overwrite")
    statuses = sorted(json.loads(line)["status"] for line in redo.stdout.splitlines()[:-1])
    assert statuses == ["done", "done", "failed"]
    assert all(outputs(out)[name] != before[name] for name in before)


def test_recursive_mirrors_subfolders_with_a_glob_and_ext(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    r = invoke(folder, out, "--recursive", "--glob", "[acd]*", "--ext", "mkv", "-q")
    assert r.exit_code == 0, r.output
    assert outputs(out).keys() == {"a.mkv", "c.mkv", "sub/d.mkv"}
    assert len(frames_of(out / "sub" / "d.mkv")) == 3


def test_the_folder_rule(tmp_path: Path):
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(3):
        png(seq / f"f_{i:03d}.png", i)
    assert folder_kind(seq) is FolderKind.SEQUENCE
    assert folder_kind(seq, glob="*.png") is FolderKind.BATCH
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("beach.png", "cat.png"):
        png(photos / name, 7)
    assert folder_kind(photos) is FolderKind.BATCH
    r = invoke(photos, tmp_path / "photos_x2", "-q")
    assert r.exit_code == 0, r.output
    assert outputs(tmp_path / "photos_x2").keys() == {"beach.png", "cat.png"}
    r = invoke(seq, tmp_path / "seq.mp4", "-q")  # a sequence is one clip, as before
    assert r.exit_code == 0, r.output
    assert len(frames_of(tmp_path / "seq.mp4")) == 3
    clip(seq / "extra.mp4")
    with pytest.raises(UsageError, match="--glob"):
        folder_kind(seq)
    r = invoke(seq, tmp_path / "mixed", "-q")
    assert r.exit_code == ExitCode.USAGE
    assert "--glob '*.mp4'" in r.stderr and "f_%03d.png" in r.stderr
    r = invoke(seq, tmp_path / "out.mp4", "--glob", "*.mp4", "-q")  # a batch writes a folder
    assert r.exit_code == ExitCode.USAGE and "must be a folder" in r.stderr
    r = invoke(seq / "extra.mp4", tmp_path / "one.mp4", "--ext", "mkv")  # batch-only, one file
    assert r.exit_code == ExitCode.USAGE and "--ext" in r.stderr


def test_two_workers_write_what_one_writes(tmp_path: Path):
    src = tmp_path / "in"
    for i in range(2):
        clip(src / f"v{i}.mp4", frames=2, seed=i)
    make_non_video(src / "broken.mp4")  # a worker reports it and goes on
    options = dict(
        model="debug", random_weights=True, device="cpu", lossless=True, chunk_frames=2, overlap=0
    )
    one = skipsr_cli.upscale_batch(src, tmp_path / "one", ext="mkv", **options)
    two = skipsr_cli.upscale_batch(src, tmp_path / "two", ext="mkv", devices="cpu,cpu", **options)
    assert one.done == two.done == 2 and one.failed == two.failed == 1
    assert [f.file for f in two.files if f.status == "failed"] == ["broken.mp4"]
    for i in range(2):
        a, b = frames_of(tmp_path / "one" / f"v{i}.mkv"), frames_of(tmp_path / "two" / f"v{i}.mkv")
        assert len(a) == len(b) == 2
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_two_workers_on_one_device_write_what_one_writes(tmp_path: Path, monkeypatch):
    """--devices cpu --workers 2: two worker processes on one device, as cpu,cpu; a rerun with one
    worker skips every file (how many workers ran is no part of the records' key)."""
    src = tmp_path / "in"
    for i in range(2):
        clip(src / f"v{i}.mp4", frames=2, seed=i)
    pools, pool = [], batch_run.run_pool

    def spy(devices, *args):
        pools.append(devices)
        return pool(devices, *args)

    monkeypatch.setattr(batch_run, "run_pool", spy)
    lossless = ["--ext", "mkv", "--lossless", "--json"]
    one = invoke(src, tmp_path / "one", *lossless)
    two = invoke(src, tmp_path / "two", "--devices", "cpu", "--workers", "2", *lossless)
    assert one.exit_code == two.exit_code == 0, two.output
    assert pools == [[torch.device("cpu")] * 2]
    for i in range(2):
        a, b = frames_of(tmp_path / "one" / f"v{i}.mkv"), frames_of(tmp_path / "two" / f"v{i}.mkv")
        assert len(a) == len(b) == 2
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    again = invoke(src, tmp_path / "two", "--workers", "1", *lossless)
    assert again.exit_code == 0, again.output
    assert [json.loads(x)["status"] for x in again.stdout.splitlines()[:-1]] == ["skipped"] * 2
    (tmp_path / "two" / "v1.mkv").unlink()  # one file left to do: one worker, in this process
    last = invoke(src, tmp_path / "two", "--devices", "cpu", "--workers", "2", *lossless)
    assert last.exit_code == 0, last.output
    assert len(pools) == 1 and len(frames_of(tmp_path / "two" / "v1.mkv")) == 2


CPU, CUDA0, CUDA1 = torch.device("cpu"), torch.device("cuda", 0), torch.device("cuda", 1)


@pytest.mark.parametrize(
    ("devices", "workers", "default", "expected"),
    [
        (None, None, "cpu", [CPU]),  # one worker: the plain in-process run
        (None, 1, "cpu", [CPU]),
        (None, 2, "cpu", [CPU, CPU]),  # --workers 2 alone: two on the default device
        (None, 2, torch.device("cuda"), [CUDA0, CUDA0]),
        ("cpu", 2, "cpu", [CPU, CPU]),  # the same as cpu,cpu
        ("cpu,cpu", None, "cpu", [CPU, CPU]),
        ("0", None, "cpu", [CUDA0]),
        ("0", 2, "cpu", [CUDA0, CUDA0]),
        ("0,0", None, "cpu", [CUDA0, CUDA0]),
        ("0,1", None, "cpu", [CUDA0, CUDA1]),
        ("0,1", 2, "cpu", [CUDA0, CUDA1]),
        ("0,1", 4, "cpu", [CUDA0, CUDA1, CUDA0, CUDA1]),  # round-robin
        ("all", 3, "cpu", [CUDA0, CUDA1, CUDA0]),
        ("cuda:1,cpu", 3, "cpu", [CUDA1, CPU, CUDA1]),
    ],
)
def test_workers_spread_round_robin_over_the_devices(
    monkeypatch, devices, workers, default, expected
):
    from skipsr_cli.batch.workers import local_workers

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert local_workers(devices, workers, default) == expected


def test_fewer_workers_than_devices_is_a_usage_error(monkeypatch, tmp_path: Path):
    from skipsr_cli.batch.workers import local_workers

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(
        UsageError, match=r"--workers 1 is fewer than the 2 devices of --devices 0,1"
    ):
        local_workers("0,1", 1)
    with pytest.raises(UsageError, match="--workers must be at least 1, not 0"):
        local_workers("cpu", 0)
    one = clip(tmp_path / "in" / "a.mp4")
    for source, out in ((one, "out.mp4"), (one.parent, "out")):  # one video, and a batch
        r = invoke(source, tmp_path / out, "--devices", "cpu,cpu", "--workers", "1")
        assert r.exit_code == ExitCode.USAGE, r.output
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("skipsr: error: --workers 1 ")
        assert "--devices cpu,cpu" in r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.mp4").exists()


def test_a_killed_batch_resumes_with_only_what_was_missing(tmp_path: Path):
    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "a.mp4", frames=2)
    clip(src / "b.mp4", frames=30, seed=1)  # long enough to be killed in the middle
    clip(src / "c.mp4", frames=2, seed=2)
    exe = Path(sys.executable).parent / "skipsr"
    fast = ["--chunk-frames", "2", "--overlap", "0"]
    args = [str(exe), "upscale", str(src), str(out), *DEBUG, *fast, "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(".skipsr-partial" in name for name in outputs(out) if out.exists()):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        if "a.mp4" not in outputs(out):  # the partial file was a.mp4's: wait for b.mp4's
            while "a.mp4" not in outputs(out) or len(outputs(out)) < 2:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    left = outputs(out)
    assert "a.mp4" in left and "c.mp4" not in left
    assert any(".skipsr-partial" in name for name in left)  # what a killed run leaves
    r = invoke(src, out, "--json", fast=fast)  # the same options: a.mp4 is done
    assert r.exit_code == 0, r.output
    statuses = {json.loads(x)["file"]: json.loads(x)["status"] for x in r.stdout.splitlines()[:-1]}
    assert statuses == {"a.mp4": "skipped", "b.mp4": "done", "c.mp4": "done"}
    now = outputs(out)
    assert now.keys() == {"a.mp4", "b.mp4", "c.mp4"}  # no partial file left
    assert now["a.mp4"] == left["a.mp4"]
    assert len(frames_of(out / "b.mp4")) == 30


def test_a_batch_killed_between_an_output_and_its_record_redoes_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Killed after a.mp4 was put in place but before its record was written: the rerun
    replaces a.mp4 (its claim says this batch made it) instead of refusing it as a user's file."""
    from skipsr_cli.batch import records

    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "a.mp4", frames=2)
    clip(src / "b.mp4", frames=2, seed=1)

    def killed(*args):  # the record is made once the output is in place
        raise KeyboardInterrupt

    monkeypatch.setattr(records, "make_record", killed)
    assert invoke(src, out).exit_code == ExitCode.INTERRUPTED
    assert set(outputs(out)) == {"a.mp4"}
    assert records.claim_path(out, out / "a.mp4").exists()
    assert not records.record_path(out, out / "a.mp4").exists()
    monkeypatch.undo()
    # a rerun that fails before its outputs are in place: a.mp4 is still the batch's own
    from skipsr_cli.errors import ModelError
    from skipsr_cli.run import pipeline

    def fails(*args, **kwargs):
        raise ModelError("out of GPU memory")

    monkeypatch.setattr(pipeline, "upscale", fails)
    assert invoke(src, out).exit_code == ExitCode.PARTIAL
    assert records.claim_holds(records.claim_path(out, out / "a.mp4"))
    monkeypatch.undo()
    r = invoke(src, out, "--json")
    assert r.exit_code == 0, r.output
    statuses = {json.loads(x)["file"]: json.loads(x)["status"] for x in r.stdout.splitlines()[:-1]}
    assert statuses == {"a.mp4": "done", "b.mp4": "done"}
    assert not list((out / ".skipsr-batch").rglob("*.claim.json"))  # records, and no claims
    again = invoke(src, out, "--json")
    assert [json.loads(x)["status"] for x in again.stdout.splitlines()[:-1]] == ["skipped"] * 2


def test_a_claim_never_reaches_a_users_file_nor_costs_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A file that fails or is stopped before its output is in place takes its claim back, and
    leaves the record of the output made before untouched; a claim left by a run killed before
    its output was in place is removed when the next batch starts. So a user's file put at such
    an output is refused, never replaced, and a finished output is not redone."""
    from skipsr_cli.batch import records
    from skipsr_cli.errors import ModelError
    from skipsr_cli.run import pipeline

    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "a.mp4", frames=2)
    assert invoke(src, out).exit_code == 0
    made = (out / "a.mp4").read_bytes()
    clip(src / "c.mp4", frames=2, seed=2)
    clip(src / "d.mp4", frames=2, seed=3)

    def fails(plan, stop):
        def upscale(*args, **kwargs):
            if args[1].job.input.name == stop:
                raise KeyboardInterrupt
            raise ModelError("out of GPU memory")

        return upscale

    # every file fails: a.mp4 redone with other options, c.mp4 new; then d.mp4 is interrupted
    monkeypatch.setattr(pipeline, "upscale", fails(None, "d.mp4"))
    assert invoke(src, out, "--crf", "30").exit_code == ExitCode.INTERRUPTED
    assert not list((out / ".skipsr-batch").rglob("*.claim.json"))
    monkeypatch.undo()
    r = invoke(src, out, "--json")  # a.mp4's record, with the first options, still holds
    statuses = {json.loads(x)["file"]: json.loads(x)["status"] for x in r.stdout.splitlines()[:-1]}
    assert statuses == {"a.mp4": "skipped", "c.mp4": "done", "d.mp4": "done"}
    assert (out / "a.mp4").read_bytes() == made
    # a claim left by a run killed after putting d.mp4 in place, before its record; then the
    # user replaces d.mp4 with a file of their own: another file than the claimed one, refused
    claim = records.claim_path(out, out / "d.mp4")
    made = records.claim_record(src / "d.mp4", {}, "w", [identity(out / "d.mp4")])
    records.write_record(claim, made)
    records.record_path(out, out / "d.mp4").unlink()
    (out / "d.mp4").unlink()
    (out / "d.mp4").write_bytes(b"the user's own file")
    r = invoke(src, out, "--json")
    assert r.exit_code == ExitCode.PARTIAL
    failed = [json.loads(x) for x in r.stdout.splitlines()[:-1] if "d.mp4" in x][0]
    assert "exists" in failed["error"]
    assert (out / "d.mp4").read_bytes() == b"the user's own file"
    assert not claim.exists()  # it held no output of the batch's: gone with the batch's lock


def test_a_batch_stopped_once_an_output_is_in_place_redoes_that_file(tmp_path: Path):
    """Ctrl-C (or SIGTERM) after the pipeline put a.mp4 in place, while its summary goes out:
    the claim stays, so the rerun redoes a.mp4 instead of refusing it."""
    from skipsr_cli import api
    from skipsr_cli.batch.progress import FileProgress
    from skipsr_cli.run.progress import Summary

    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "a.mp4", frames=2)
    run = dict(model="debug", random_weights=True, device="cpu", chunk_frames=4, overlap=1)

    def stopped(event: object) -> None:
        if isinstance(event, FileProgress) and isinstance(event.event, Summary):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.upscale_batch(src, out, progress=stopped, **run)
    assert set(outputs(out)) == {"a.mp4"}
    assert [f.status for f in api.upscale_batch(src, out, **run).files] == ["done"]


def identity(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns]


def test_a_claim_holds_the_files_it_put_in_place_and_no_other(tmp_path: Path):
    """A claim holds while a file it put in place (the video, or a mask video moved before the
    batch was killed) is there, the same file; it goes, when a batch takes or lets go of the
    lock, once none is: never put in place, gone, or another file in its stead."""
    from skipsr_cli.batch import records

    out, masks = tmp_path / "out", tmp_path / "masks"
    clip(tmp_path / "a.mp4")
    video, mask = out / "sub" / "a.mp4", masks / "sub" / "a.mp4"
    claim = records.claim_path(out, video)
    made = records.claim_record(tmp_path / "a.mp4", {}, "w", [])
    records.write_record(claim, made)  # before anything was put in place
    assert records.remove_stale_claims(out) == [claim]
    mask.parent.mkdir(parents=True)
    mask.write_bytes(b"a mask video put in place")
    never = [str(video), 0, 0, 0]  # the video was never put in place
    keep = {**made, "placed": [never, identity(mask)]}
    records.write_record(claim, keep)
    assert records.claim_holds(claim) and records.remove_stale_claims(out) == []
    mask.unlink()
    mask.write_bytes(b"somebody else's")  # another file at the claimed path
    assert not records.claim_holds(claim)
    with records.batch_lock(out):  # taking the lock: it holds nothing
        assert not claim.exists()
        records.write_record(claim, keep)
    assert not claim.exists()  # letting go of it: a worker that died mid-file left this one
    assert not (out / records.STATE_DIR).exists()  # nor its folders, nor the lock: nothing done
    claim.parent.mkdir(parents=True)
    claim.write_text("not json")
    assert records.remove_stale_claims(out) == [claim] and not claim.exists()


def test_a_plain_cuda_device_gets_its_index(monkeypatch):
    """Workers call torch.cuda.set_device, which refuses a CUDA device without an index: the
    default device (`cuda`, no --devices) must come back as the current one, cuda:0."""
    import torch

    from skipsr_cli.batch.workers import parse_devices

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert parse_devices(None, torch.device("cuda")) == [torch.device("cuda", 0)]
    assert parse_devices(None, "cpu") == [torch.device("cpu")]


def test_a_denoise_blend_is_part_of_what_a_record_holds(tmp_path: Path):
    """--denoise changes the outputs, so it is in the options key and the blended-in file in the
    weights' identity; at 0 the key is what records written before the option held."""
    from skipsr_cli.batch import records
    from skipsr_cli.errors import ModelError
    from skipsr_cli.run.options import UpscaleOptions
    from skipsr_cli.weights import SHIPPED

    plain = UpscaleOptions(denoise=0)
    blended = UpscaleOptions(denoise=0.5)
    assert "denoise" not in records.options_key(plain)
    # the default, auto: its mapping is in the key; where nothing is blended, it is plain 0
    assert records.options_key(UpscaleOptions())["denoise"].startswith("auto (QP 19-29")
    assert "denoise" not in records.options_key(UpscaleOptions(model="debug"))
    assert "denoise_weights" not in records.options_key(plain)
    assert records.options_key(blended)["denoise"] == 0.5
    assert records.weights_identity(plain).startswith("sha256:")
    denoise = records.weights_identity(blended)
    assert denoise.startswith(records.weights_identity(plain) + "+denoise:sha256:")
    other = tmp_path / "other.safetensors"
    other.write_bytes((SHIPPED / "base_denoise.safetensors").read_bytes()[:-1] + b" ")
    named = UpscaleOptions(denoise=0.5, denoise_weights=other)
    assert records.weights_identity(named) != denoise
    with pytest.raises(ModelError, match="weights not found"):
        records.weights_identity(UpscaleOptions(denoise=0.5, denoise_weights=tmp_path / "no"))


def test_a_folder_batch_refuses_segments(tmp_path):
    """--segment and --segments cut one video into parts; a folder's files are the batch's parts."""
    clip(tmp_path / "in" / "a.mp4")
    for extra in (["--segment", "1/2"], ["--segments", "2"]):
        result = invoke(tmp_path / "in", tmp_path / "out", *extra)
        assert result.exit_code == 2, result.output
        assert "--devices or --ray" in result.output
    assert not (tmp_path / "out").exists()


def test_one_batch_at_a_time_and_none_without_file_locks(tmp_path, monkeypatch):
    """A second batch into the same folder is refused while the first holds it; on a file system
    without locks a batch is refused too (clearing partials would not be safe), as one error."""
    import errno
    import fcntl
    import subprocess
    import sys

    from skipsr_cli.batch import records
    from skipsr_cli.errors import OutputError
    from skipsr_cli.media import partials

    out = tmp_path / "out"
    (out / records.STATE_DIR).mkdir(parents=True)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    host = partials._host()
    partial = out / f".a.0123abcd-{ended.pid}@{host}.skipsr-partial.mp4"
    partial.write_bytes(b"a killed run's")
    # a single upscale writing beside the batch, and a run on another host of a shared disk
    (out / "sub").mkdir()
    live = out / "sub" / f".b.0123abcd-{os.getpid()}@{host}.skipsr-partial.mp4"
    elsewhere = out / f".c.0123abcd-{ended.pid}@{host}x.skipsr-partial.mp4"
    for path in (live, elsewhere):
        path.write_bytes(b"being written")
    with open(out / records.STATE_DIR / records.LOCK, "a+") as first:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a live batch holds it
        busy = pytest.raises(OutputError, match=f"another skipsr batch is writing into {out}")
        with busy, records.batch_lock(out):
            pass
    assert partial.exists()  # a live batch's partial file is never swept

    def no_locks(*args):  # Lustre mounted noflock, NFS without lockd
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    no_hold = pytest.raises(OutputError, match="its file system has no file locks")
    with no_hold, records.batch_lock(out):
        pass
    assert partial.exists()
    monkeypatch.undo()
    with records.batch_lock(out):
        assert not partial.exists()
        assert live.exists() and elsewhere.exists()  # they were removed: the live run failed


def test_an_output_folder_that_cannot_be_made_is_an_output_error(tmp_path):
    """OUT_DIR (or the folder of --mask-out) that cannot be made is an output that cannot be
    written: exit 5 (README, "Exit codes"), one line, before any file is tried."""
    clip(tmp_path / "in" / "a.mp4")
    (tmp_path / "plain").write_bytes(b"a file, not a folder")
    for extra in ([], ["--mask-out", tmp_path / "masks"]):
        r = invoke(tmp_path / "in", tmp_path / "plain" / "out", "-q", *extra)
        assert r.exit_code == ExitCode.OUTPUT, r.output
        assert (
            r.stderr
            == f"skipsr: error: cannot make the output folder {tmp_path}/plain/out: Not a directory\n"
        )
    r = invoke(tmp_path / "in", tmp_path / "out", "-q", "--mask-out", tmp_path / "plain" / "m")
    assert r.exit_code == ExitCode.OUTPUT, r.output
    assert (
        r.stderr
        == f"skipsr: error: cannot make the mask folder {tmp_path}/plain/m: Not a directory\n"
    )
    assert not (tmp_path / "out" / "a.mp4").exists()


def test_a_mask_folder_that_is_the_output_or_input_folder_is_a_usage_error(tmp_path):
    """The masks take the outputs' names: into OUT_DIR they would replace the outputs, and in
    IN_DIR they would be read as inputs. Either is one usage error (exit 2) naming the clash,
    not a batch whose every file fails (exit 6) or finds nothing to upscale (exit 3)."""
    src = tmp_path / "in"
    clip(src / "a.mp4")
    out = tmp_path / "out"
    for mask, what in ((out, "output"), (src, "input")):
        r = invoke(src, out, "-q", "--mask-out", mask)
        assert r.exit_code == ExitCode.USAGE, r.output
        assert r.stderr.startswith(f"skipsr: error: --mask-out {mask} is the {what} folder")
        assert r.stderr.count("\n") == 1, r.stderr
    (tmp_path / "m.mp4").write_bytes(b"a file")  # a batch's masks go into a folder
    r = invoke(src, out, "-q", "--mask-out", tmp_path / "m.mp4")
    assert r.exit_code == ExitCode.USAGE and "writes its masks into a folder" in r.stderr
    assert not out.exists() and sorted(p.name for p in src.iterdir()) == ["a.mp4"]


def test_a_mask_that_would_land_on_another_files_output_is_a_usage_error(tmp_path):
    """--mask-out out/sub with --recursive: the mask of a.mp4 would be out/sub/a.mp4, which is
    the output of sub/a.mp4, and one would replace the other. One usage error naming both, before
    any file; a mask folder inside OUT_DIR whose names clash with none still runs."""
    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "a.mp4"), clip(src / "sub" / "a.mp4")
    r = invoke(src, out, "-q", "--recursive", "--mask-out", out / "sub")
    assert r.exit_code == ExitCode.USAGE, r.output
    assert r.stderr == (
        f"skipsr: error: the mask of a.mp4 and the output of sub/a.mp4 would both be written to "
        f"{out / 'sub' / 'a.mp4'}: choose a --mask-out folder outside the output folder\n"
    )
    assert not out.exists()
    r = invoke(src, out, "-q", "--recursive", "--mask-out", out / "masks")
    assert r.exit_code == 0, r.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4"))
    assert written == ["a.mp4", "masks/a.mp4", "masks/sub/a.mp4", "sub/a.mp4"]


def test_a_batch_stopped_before_a_file_is_done_leaves_nothing_behind(tmp_path: Path):
    """Ctrl-C (or SIGTERM) before any file is done: no lock file, no .skipsr-batch/, and none of
    the folders the batch made (OUT_DIR, the subfolders it mirrors, the mask folder) where they
    hold nothing; OUT_DIR that was there before stays. Stopped once a file is done: its
    done-record stays (and no lock file), and the rerun skips that file."""
    from skipsr_cli import api
    from skipsr_cli.batch import records
    from skipsr_cli.batch.progress import FileProgress
    from skipsr_cli.run.progress import Advanced

    src = tmp_path / "in"
    clip(src / "a.mp4", frames=2)
    clip(src / "sub" / "b.mp4", frames=2, seed=1)
    run = dict(model="debug", random_weights=True, device="cpu", chunk_frames=4, overlap=1)

    def stop(name: str):
        def progress(event: object) -> None:
            advanced = isinstance(event, FileProgress) and isinstance(event.event, Advanced)
            if advanced and event.name == name:
                raise KeyboardInterrupt

        return progress

    out, masks = tmp_path / "new" / "out", tmp_path / "masks"
    batch = dict(recursive=True, mask_out=masks, **run)
    with pytest.raises(KeyboardInterrupt):
        api.upscale_batch(src, out, progress=stop("a.mp4"), **batch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    out.mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        api.upscale_batch(src, out, progress=stop("a.mp4"), **batch)
    assert out.is_dir() and not list(out.iterdir()) and not masks.exists()
    # a.mp4 done, then stopped in sub/b.mp4: a.mp4, its mask and record stay, nothing else
    with pytest.raises(KeyboardInterrupt):
        api.upscale_batch(src, out, progress=stop("sub/b.mp4"), **batch)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert [p for p in left if not p.startswith("in")] == [
        "masks",
        "masks/a.mp4",
        "new",
        "new/out",
        "new/out/.skipsr-batch",
        "new/out/.skipsr-batch/a.mp4.json",
        "new/out/a.mp4",
    ]
    again = api.upscale_batch(src, out, **batch)
    assert [f.status for f in again.files] == ["skipped", "done"]
    assert not (out / records.STATE_DIR / records.LOCK).exists()


def test_a_batch_refused_or_failing_early_takes_back_only_folders_it_made(tmp_path: Path):
    """Weights that cannot load (exit 4) leave no output folder behind: they are checked before
    any folder is made. A batch refused because another holds OUT_DIR takes nothing back: a
    folder that was missing when it planned may be one the running batch just made for its
    next file."""
    from skipsr_cli import api
    from skipsr_cli.batch import records
    from skipsr_cli.errors import ModelError, OutputError

    src = tmp_path / "in"
    clip(src / "a.mp4", frames=2)
    bad = tmp_path / "missing.safetensors"
    with pytest.raises(ModelError):
        api.upscale_batch(src, tmp_path / "new" / "out", model="debug", weights=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]

    out = tmp_path / "out"
    out.mkdir()
    with records.batch_lock(out):  # the running batch
        made = records.missing_folders([out / "sub"])
        (out / "sub").mkdir()  # it makes the folder of its next file
        busy = pytest.raises(OutputError, match="another skipsr batch")
        with busy, records.batch_lock(out, made=made):
            pass
        assert (out / "sub").is_dir()


def test_a_missing_output_beside_its_mask_is_made_again(tmp_path: Path):
    """The output and its mask have the same name in their folders: the record kept one size
    for both (the mask's), so a deleted output was taken as done and never made again."""
    src, out, masks = tmp_path / "in", tmp_path / "out", tmp_path / "masks"
    clip(src / "a.mp4")
    assert invoke(src, out, "--mask-out", masks).exit_code == 0
    (out / "a.mp4").unlink()
    again = invoke(src, out, "--mask-out", masks, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.splitlines()[0])["status"] == "done"
    assert len(frames_of(out / "a.mp4")) == 3
    same = invoke(src, out, "--mask-out", masks, "--json")
    assert json.loads(same.stdout.splitlines()[0])["status"] == "skipped"


def test_a_second_folder_of_the_same_names_does_not_replace_the_first_ones_outputs(
    tmp_path: Path,
):
    """day2/a.mp4 into the OUT_DIR that holds day1/a.mp4's output: that output has a record, so
    it was taken as the batch's own and replaced without a word. Now it is another input's, and
    only --overwrite replaces it; the same folder moved keeps its outputs its own."""
    out = tmp_path / "out"
    clip(tmp_path / "day1" / "a.mp4", seed=1)
    clip(tmp_path / "day2" / "a.mp4", frames=4, seed=2)
    assert invoke(tmp_path / "day1", out).exit_code == 0
    first = outputs(out)
    second = invoke(tmp_path / "day2", out, "--json")
    assert second.exit_code == ExitCode.PARTIAL
    (failed,) = [json.loads(line) for line in second.stdout.splitlines()[:-1]]
    assert failed["status"] == "failed" and "exists" in failed["error"]
    assert outputs(out) == first and len(frames_of(out / "a.mp4")) == 3
    (tmp_path / "day1").rename(tmp_path / "moved")
    (tmp_path / "moved" / "a.mp4").touch()  # a changed input is made again, as before
    assert invoke(tmp_path / "moved", out).exit_code == 0
    assert outputs(out) != first and len(frames_of(out / "a.mp4")) == 3
    assert invoke(tmp_path / "day2", out, "--overwrite").exit_code == 0
    assert len(frames_of(out / "a.mp4")) == 4


def test_a_subfolder_named_lock_is_a_folder_like_any_other(tmp_path: Path):
    """Its records' folder, .skipsr-batch/lock/, was the batch's lock file: internal error."""
    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "lock" / "x.mov")
    clip(src / "sub" / "y.mov", seed=1)
    r = invoke(src, out, "-r")
    assert r.exit_code == 0, r.output
    assert len(frames_of(out / "lock" / "x.mov")) == 3 and (out / "sub" / "y.mov").is_file()


def test_ext_png_with_videos_in_the_folder_is_refused_before_any_work(tmp_path: Path):
    """Every video failed, one by one, asking for a %d pattern a batch cannot take."""
    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "a.mp4")
    png(src / "b.png", 1)
    r = invoke(src, out, "--ext", "png")
    assert r.exit_code == ExitCode.USAGE and "a.mp4 is a video" in r.stderr
    assert not out.exists()
    stills = tmp_path / "stills"
    stills.mkdir()
    png(stills / "c.png", 2)
    assert invoke(stills, out, "--ext", "png").exit_code == 0 and (out / "c.png").is_file()


def test_a_batchs_total_counts_each_still_as_one_frame(tmp_path: Path):
    """A still's container gives no count, so the total left stills out and the progress read
    more frames done than the total (87/85)."""
    from skipsr_cli import api
    from skipsr_cli.batch.progress import BatchStarted, FileResult

    src = tmp_path / "in"
    clip(src / "a.mp4", frames=5)
    png(src / "b.png", 1)
    png(src / "c.png", 2)
    events = []
    api.upscale_batch(
        src,
        tmp_path / "out",
        model="debug",
        random_weights=True,
        device="cpu",
        progress=events.append,
    )
    (started,) = [e for e in events if isinstance(e, BatchStarted)]
    done = sum(e.frames for e in events if isinstance(e, FileResult))
    assert started.frames == done == 7


def test_a_batch_letting_go_removes_what_its_dead_workers_left(tmp_path: Path):
    """A worker killed mid-file left its partial file until the next batch; the batch that saw
    it die removes it as it lets go of the lock, and leaves a live run's."""
    from skipsr_cli.batch import records
    from skipsr_cli.media import partials

    out, masks = tmp_path / "out", tmp_path / "masks"
    out.mkdir()
    masks.mkdir()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    host = partials._host()
    live = out / f".b.0123abcd-{os.getpid()}@{host}.skipsr-partial.mp4"
    with records.batch_lock(out, masks):
        dead = [f / f".a.0123abcd-{ended.pid}@{host}.skipsr-partial.mp4" for f in (out, masks)]
        for path in (*dead, live):
            path.write_bytes(b"half a video")
    assert not any(p.exists() for p in dead) and live.exists()


def test_a_name_near_the_file_systems_limit_is_recorded_and_skipped_again(tmp_path: Path):
    """A record's and a claim's names add to their output's: a name of 250 bytes, which a single
    upscale writes, failed in a batch with "File name too long"."""
    src, out = tmp_path / "in", tmp_path / "out"
    name = "x" * 246 + ".mov"
    clip(src / name)
    first = invoke(src, out, "--json")
    assert first.exit_code == 0, first.output
    assert len(frames_of(out / name)) == 3
    again = invoke(src, out, "--json")
    assert json.loads(again.stdout.splitlines()[0])["status"] == "skipped"


def test_a_killed_runs_claim_holds_its_output_only_for_its_own_input(tmp_path: Path):
    """day1's a.mp4 was put in place, then the batch was killed before its record: its claim
    made the output anybody's to replace, so day2's a.mp4 took it without --overwrite."""
    from skipsr_cli.batch import records

    out = tmp_path / "out"
    clip(tmp_path / "day1" / "a.mp4", seed=1)
    clip(tmp_path / "day2" / "a.mp4", frames=4, seed=2)
    assert invoke(tmp_path / "day1", out).exit_code == 0
    records.record_path(out, out / "a.mp4").unlink()  # killed before its record, claim left
    claim = records.claim_path(out, out / "a.mp4")
    made = records.claim_record(tmp_path / "day1" / "a.mp4", {}, "w", [identity(out / "a.mp4")])
    records.write_record(claim, made)
    assert records.claimed_for(claim, tmp_path / "day1" / "a.mp4")
    assert not records.claimed_for(claim, tmp_path / "day2" / "a.mp4")
    second = invoke(tmp_path / "day2", out, "--json")
    assert second.exit_code == ExitCode.PARTIAL and len(frames_of(out / "a.mp4")) == 3
    assert invoke(tmp_path / "day1", out).exit_code == 0  # its own run takes it back
