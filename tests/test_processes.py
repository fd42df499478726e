"""How worker processes start (skipsr_cli/processes.py): for a long video on the command line, from
a fork server started first thing, which has the model code imported already, never the current
folder's, and ignores the group's signals; with the environment of the moment they are asked for;
dying with their parent. Elsewhere they are spawned."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import imageio_ffmpeg
import pytest

from skipsr_cli import processes
from skipsr_cli.farm import devices, resume

ROOT = Path(__file__).resolve().parents[1]
served = pytest.mark.skipif(
    sys.platform != "linux" or sys.version_info < (3, 11), reason="the fork server: Linux, 3.11+"
)


def _clip(path: Path, frames: int) -> Path:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi"]
    cmd += ["-i", "testsrc=size=32x32:rate=60", "-frames:v", str(frames)]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-y", str(path)]
    subprocess.run(cmd, check=True)
    return path


def test_the_server_path_names_the_current_folder_that_python_c_put_first(tmp_path, monkeypatch):
    """`python -c` in an uninstalled checkout imports our code through "" (the current folder);
    the server, under PYTHONSAFEPATH, gets that folder by its path (dropping "" cost every worker
    its imports: exit code 1 with parts left), and every other entry as it was."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", "/opt/site", str(ROOT)])
    assert processes.server_path().split(os.pathsep) == [str(tmp_path), "/opt/site", str(ROOT)]


@pytest.fixture(scope="module")
def long(tmp_path_factory) -> Path:
    return _clip(tmp_path_factory.mktemp("long") / "long.mp4", processes.LONG_FRAMES)


def _script(tmp_path: Path, body: str) -> Path:
    """A program that arms the fork server as the command line would for `--workers 2` on the
    long clip (its first argument), then runs `body`."""
    path = tmp_path / "bin" / "program.py"
    path.parent.mkdir(exist_ok=True)
    head = (
        "import gc, json, os, signal, sys, time\n"
        "from skipsr_cli import processes\n"
        "armed = processes.start_early(['upscale', sys.argv[1], 'out.mp4', '--workers', '2'])\n"
    )
    path.write_text(head + textwrap.dedent(body))
    return path


def _run(program: Path, long: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(program), str(long)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_long_video_rule_is_the_resume_rule():
    assert processes.LONG_FRAMES == resume.RESUME_FRAMES
    assert processes.SPLIT_SUFFIXES == resume.RESUMABLE
    assert processes.CORES_PER_WORKER == devices.CORES_PER_WORKER


def test_without_the_command_lines_early_start_workers_are_spawned():
    """The Python API in a caller's program: its own fork server (and preload) is left alone."""
    assert processes.context().get_start_method() == "spawn"


@served
def test_a_worker_forks_from_the_server_with_its_imports_and_the_callers_environment(
    tmp_path, long
):
    """The worker has the model code imported before the fork, the environment of the moment it
    was asked for (changed since the server started), SIGTERM back to its default and Ctrl-C
    ignored (the server ignores both: a scheduler's or a terminal's reaches the whole group); and a
    `models/` in the folder the command runs in is not imported in place of ours."""
    shadow = tmp_path / "work"
    (shadow / "models").mkdir(parents=True)
    (shadow / "models" / "__init__.py").write_text(
        "open('imported-the-wrong-models', 'w').close()\n"
    )
    body = """
    def report(parent, environ, answers):
        processes.begin_worker(parent, environ)
        import models
        with open(f"/proc/{os.getppid()}/status") as f:
            ignored = int(next(l for l in f if l.startswith("SigIgn:")).split()[1], 16)
        with open(f"/proc/self/status") as f:
            mine = int(next(l for l in f if l.startswith("SigBlk:")).split()[1], 16)
        answers.put({
            "mark": os.environ.get("SKIPSR_TEST_MARK"),
            "preloaded": "skipsr_cli.farm.devices" in sys.modules,
            "models": models.__file__,
            "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
            "server_ignores": [bool(ignored >> (s - 1) & 1) for s in (signal.SIGINT, signal.SIGTERM)],
            "worker_blocks": [bool(mine >> (s - 1) & 1) for s in (signal.SIGINT, signal.SIGTERM)],
            "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
            "parent_alive": processes.parent_alive(parent),
            "stranger_alive": processes.parent_alive(parent + 10**7),
            "gc_enabled": gc.isenabled(),
            "frozen": gc.get_freeze_count(),
        })

    if __name__ == "__main__":
        os.environ["SKIPSR_TEST_MARK"] = "set after the server started"
        ctx = processes.context()
        answers = ctx.Queue()
        worker = ctx.Process(target=report, args=(os.getpid(), dict(os.environ), answers))
        worker.start()
        print(json.dumps({"armed": armed, "method": ctx.get_start_method(), **answers.get(timeout=120)}))
        worker.join(timeout=60)
    """
    done = _run(_script(tmp_path, body), long, shadow)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["armed"] and said["method"] == "forkserver"
    assert said["mark"] == "set after the server started" and said["preloaded"]
    assert said["models"] == str(ROOT / "models" / "__init__.py")
    assert not (shadow / "imported-the-wrong-models").exists()
    assert said["sigterm_default"] and said["sigint_ignored"]
    assert said["server_ignores"] == [True, True] and said["worker_blocks"] == [False, False]
    assert said["parent_alive"] and not said["stranger_alive"]
    # the server imported with collection off; the worker froze what it inherited (torch, the
    # run: shared with the server, not collected) and collects again, as a long run must
    assert said["gc_enabled"] and said["frozen"] > 100_000


@served
def test_a_worker_dies_with_its_parent_even_by_sigkill(tmp_path, long):
    body = """
    def sleeper(parent, environ):
        processes.begin_worker(parent, environ)
        time.sleep(60)

    if __name__ == "__main__":
        worker = processes.context().Process(target=sleeper, args=(os.getpid(), dict(os.environ)))
        worker.start()
        print(worker.pid, flush=True)
        time.sleep(60)
    """
    program = _script(tmp_path, body)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, str(program), str(long)], stdout=subprocess.PIPE, text=True, env=env
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


def test_the_servers_socket_folder_goes_at_exit_or_with_the_next_run_after_a_sigkill(
    tmp_path, long
):
    """multiprocessing's pymp-* folder for the server's socket stayed in the temporary folder after
    every SIGKILL; it is now made inside a folder named for the process and host, which the next
    run on this host removes once that process is gone, and which a run that ends removes."""
    temp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: a socket's path is 107 bytes
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(temp)}
    program = _script(tmp_path, _LISTS_TEMP)
    killed = subprocess.Popen(
        [sys.executable, str(program), str(long), "wait"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert killed.stdout.readline().split(" ", 1)[0] == "True"  # the server started
        left = [p.name for p in temp.iterdir()]
        assert left == [f".{processes.SOCKETS}-{killed.pid}-{processes._host_tag()}"]
        assert [p.name.startswith("pymp-") for p in (temp / left[0]).iterdir()] == [True]
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        time.sleep(1)  # the server goes with it
        assert [p.name for p in temp.iterdir()] == left  # what a SIGKILL leaves
        again = subprocess.run(
            [sys.executable, str(program), str(long)], capture_output=True, text=True, env=env
        )
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
        armed, listed = again.stdout.split(" ", 1)
        assert armed == "True" and left[0] not in listed  # gone as the next server started
        assert list(temp.iterdir()) == []  # and that run's own, at its exit
    finally:
        killed.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_where_a_named_socket_folder_would_make_too_long_a_path_the_server_starts_as_before(
    tmp_path, long
):
    """A temporary folder whose path leaves room for multiprocessing's socket, but not with the
    named folder around it: the server starts in multiprocessing's own folder, as before."""
    room = processes.SOCKET_PATH_MAX - processes.SOCKET_TAIL
    temp = tmp_path / ("d" * max(1, room - len(os.fsencode(tmp_path)) - 5))
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(temp)}
    done = subprocess.run(
        [sys.executable, str(_script(tmp_path, _LISTS_TEMP)), str(long)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    armed, listed = done.stdout.split(" ", 1)
    assert armed == "True" and "pymp-" in listed and processes.SOCKETS not in listed


_LISTS_TEMP = """
import tempfile
print(armed, sorted(os.listdir(tempfile.gettempdir())), flush=True)
if sys.argv[2:] == ["wait"]:
    time.sleep(60)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended


def test_the_server_starts_early_for_a_long_video_on_several_workers_only(
    tmp_path, long, monkeypatch
):
    short = _clip(tmp_path / "short.mkv", processes.LONG_FRAMES - 1)
    monkeypatch.setattr(processes, "_has_gpu", lambda: True)
    monkeypatch.setattr(processes, "_cores", lambda: 16)
    monkeypatch.delenv("SKIPSR_WORKER_THREADS", raising=False)
    wants = processes._wants_workers
    assert wants(["upscale", str(long), "out.mp4"])
    assert wants(["upscale", "--model", "base", str(long), str(tmp_path / "o.mkv")])
    # options and their values anywhere, flags (also grouped) among the arguments
    assert wants(["upscale", str(long), "--scale", "2", "-qy", "--crf=20", "out.mp4", "--json"])
    assert wants(["upscale", "-s", "4", str(long), "--no-skip", "out.mp4"])
    assert wants(["upscale", "-qs", "4", str(long), "out.mp4"])  # grouped, the valued one last
    assert wants(["upscale", "-qs4", str(long), "-yq", "out.mp4"])  # the value inside
    assert wants(["upscale", "--preset", "slow", "--", str(long), "out.mp4"])
    assert not wants(["upscale", str(long), "out.mp4", "extra.mp4"])  # not a command that runs
    assert not wants(["upscale", str(short), "out.mkv"])  # one piece: one process
    assert not wants(["stitch", str(long)])
    for extra in (
        ["--segment", "1/4"],
        ["--segment=auto"],
        ["--ray"],
        ["--help"],
        ["--mask-out", "m.mp4"],
        ["--frames=0:100"],
        ["--device", "cpu"],
        ["--device=cpu"],
        ["--workers", "1"],
        ["--devices", "0"],
    ):
        assert not wants(["upscale", str(long), "out.mp4", *extra]), extra
    assert not wants(["upscale", str(long), "frames_%04d.png"])  # PNG frames: one process
    assert not wants(["upscale", str(long), str(tmp_path)])  # into a folder: PNG frames
    monkeypatch.setenv("SKIPSR_WORKER_THREADS", "4")
    assert not wants(["upscale", str(long), "out.mp4"])  # a farm node's share: one worker
    monkeypatch.delenv("SKIPSR_WORKER_THREADS")
    monkeypatch.setattr(processes, "_cores", lambda: 4)
    assert not wants(["upscale", str(long), "out.mp4"])  # cores for one worker only
    monkeypatch.setattr(processes, "_has_gpu", lambda: False)
    assert not wants(["upscale", str(long), "out.mp4"])  # no GPU: one process on the CPU
    assert wants(["upscale", str(long), "out.mp4", "--workers", "2"])
    assert wants(["upscale", str(long), "out.mp4", "--devices", "cpu,cpu"])
    assert not wants(["upscale", str(tmp_path / "none.mp4"), "out.mp4", "--workers", "2"])


def test_the_options_that_take_a_value_are_the_commands():
    """The early start tells INPUT and OUTPUT from options' values without the command's parser."""
    import typer.main

    from skipsr_cli.commands.app import app

    upscale = typer.main.get_command(app).commands["upscale"]
    valued = {
        name
        for param in upscale.params
        if param.param_type_name == "option" and not param.is_flag
        for name in param.opts + param.secondary_opts
    }
    assert valued == processes.VALUED


@served
def test_a_server_that_died_is_not_started_again_without_its_settings(tmp_path, long):
    """multiprocessing would start a fork server again at the next worker, but with neither the
    safe path nor the tie to the main process; the workers are spawned instead."""
    body = """
    from multiprocessing import forkserver

    if __name__ == "__main__":
        server = forkserver._forkserver._forkserver_pid
        before = processes.context().get_start_method()
        os.kill(server, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while processes._server_runs() and time.monotonic() < deadline:
            time.sleep(0.01)
        ctx = processes.context()
        worker = ctx.Process(target=time.sleep, args=(0,))
        worker.start()
        worker.join(timeout=60)
        print(json.dumps({
            "armed": armed,
            "before": before,
            "after": ctx.get_start_method(),
            "exitcode": worker.exitcode,
            "server": forkserver._forkserver._forkserver_pid == server,
        }))
    """
    done = _run(_script(tmp_path, body), long, tmp_path)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said == {
        "armed": True,
        "before": "forkserver",
        "after": "spawn",
        "exitcode": 0,
        "server": True,
    }


@served
def test_the_early_start_imports_no_torch_in_the_main_process(tmp_path, long):
    body = "print(armed, 'torch' in sys.modules)\n"
    done = _run(_script(tmp_path, body), long, tmp_path)
    assert done.stdout.split() == ["True", "False"], done.stderr


@served
def test_a_worker_stops_on_sigterm_at_once_and_a_signal_while_the_server_starts_is_kept(
    tmp_path, long
):
    """The server ignores SIGTERM, and a worker forked from it took that over until its own
    handler was set: `terminate()` just after `start()` was lost and the stop waited 30 s. A
    SIGTERM to the main process while it starts the server (when both ignore it) waits for the
    main process's handler instead of being lost."""
    body = """
    if __name__ == "__main__":
        print(json.dumps({"armed": armed}), flush=True)
        worker = processes.context().Process(target=time.sleep, args=(60,))
        worker.start()
        worker.terminate()
        worker.join(timeout=10)
        print(json.dumps({"exitcode": worker.exitcode}), flush=True)
    """
    done = _run(_script(tmp_path, body), long, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines == [{"armed": True}, {"exitcode": -signal.SIGTERM}]

    late = tmp_path / "late.py"
    late.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            from multiprocessing import forkserver
            from skipsr_cli import processes
            seen = []
            signal.signal(signal.SIGTERM, lambda *_: seen.append("TERM"))
            start = forkserver.ensure_running
            forkserver.ensure_running = lambda: (start(), os.kill(os.getpid(), signal.SIGTERM))
            armed = processes.start_early(["upscale", {str(long)!r}, "o.mp4", "--workers", "2"])
            print(armed, seen, signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(late)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.stdout.split() == ["True", "['TERM']", "True"], done.stderr
