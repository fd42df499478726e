"""How worker processes start (skipsr_cli/processes.py): from a fork server that has the model code
imported already, with the environment of the moment they are asked for, dying with their parent;
and the early start of that server for a long video."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import imageio_ffmpeg
import pytest

from skipsr_cli import processes
from skipsr_cli.farm import resume

linux = pytest.mark.skipif(sys.platform != "linux", reason="the fork server is Linux's here")


def _clip(path: Path, frames: int) -> Path:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi"]
    cmd += ["-i", "testsrc=size=32x32:rate=60", "-frames:v", str(frames)]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-y", str(path)]
    subprocess.run(cmd, check=True)
    return path


def _report(parent: int, environ: dict[str, str], answers) -> None:
    processes.begin_worker(parent, environ)
    answers.put(
        (
            os.environ.get("SKIPSR_TEST_MARK"),
            processes.parent_alive(parent),
            processes.parent_alive(parent + 10**7),  # beyond any pid: no such process
            "skipsr_cli.farm.devices" in sys.modules,  # imported before the fork
        )
    )


def test_the_long_video_rule_is_the_resume_rule():
    assert processes.LONG_FRAMES == resume.RESUME_FRAMES
    assert processes.SPLIT_SUFFIXES == resume.RESUMABLE


@linux
def test_a_worker_forks_from_the_preloaded_server_with_the_environment_of_its_start(monkeypatch):
    ctx = processes.context()
    assert ctx.get_start_method() == "forkserver"
    answers = ctx.Queue()
    for mark in ("one", "two"):  # the server started with the first; the second changed since
        monkeypatch.setenv("SKIPSR_TEST_MARK", mark)
        worker = ctx.Process(target=_report, args=(os.getpid(), dict(os.environ), answers))
        worker.start()
        assert answers.get(timeout=120) == (mark, True, False, True)
        worker.join(timeout=30)
        assert worker.exitcode == 0


@linux
def test_a_worker_dies_with_its_parent_even_by_sigkill(tmp_path):
    # the parent starts a worker that would sleep for a minute, says the worker's pid, and waits
    script = textwrap.dedent(
        """
        import os, sys, time
        from skipsr_cli import processes

        def sleeper(parent, environ):
            processes.begin_worker(parent, environ)
            time.sleep(60)

        if __name__ == "__main__":
            worker = processes.context().Process(target=sleeper, args=(os.getpid(), dict(os.environ)))
            worker.start()
            print(worker.pid, flush=True)
            time.sleep(60)
        """
    )
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen(
        [sys.executable, "parent.py"], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        worker = int(parent.stdout.readline())
        time.sleep(0.5)
        assert _running(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(worker), "the worker outlived its parent"
    finally:
        parent.kill()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended


@linux
def test_the_server_starts_early_for_a_long_video_only(tmp_path, monkeypatch):
    long, short = _clip(tmp_path / "long.mp4", 3600), _clip(tmp_path / "short.mkv", 3599)
    monkeypatch.setattr(processes, "_has_gpu", lambda: True)
    wants = processes._wants_workers
    assert wants(["upscale", str(long), "out.mp4"])
    assert wants(["upscale", "--model", "base", str(long), str(tmp_path / "o.mkv")])
    assert not wants(["upscale", str(short), "out.mkv"])  # one piece: one process
    assert not wants(["stitch", str(long)])
    for extra in (["--segment", "1/4"], ["--segment=auto"], ["--ray"], ["--help"]):
        assert not wants(["upscale", str(long), "out.mp4", *extra]), extra
    assert not wants(["upscale", str(long), "out.mp4", "--device", "cpu"])
    monkeypatch.setattr(processes, "_has_gpu", lambda: False)
    assert not wants(["upscale", str(long), "out.mp4"])  # no GPU: one process on the CPU
    assert wants(["upscale", str(long), "out.mp4", "--workers", "2"])
    assert not wants(["upscale", str(tmp_path / "none.mp4"), "out.mp4", "--workers", "2"])


@linux
def test_the_early_start_imports_no_torch_in_the_main_process(tmp_path):
    long = _clip(tmp_path / "long.mp4", 3600)
    code = (
        "import sys\n"
        "from skipsr_cli import processes\n"
        "started = processes.start_early(sys.argv[1:])\n"
        "print(started, 'torch' in sys.modules)\n"
    )
    args = ["upscale", str(long), "out.mp4", "--workers", "2"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["True", "False"], done.stderr
