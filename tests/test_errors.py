"""The error contract of the command line: one `skipsr: error:` line and the documented code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import pytest
from media import make_clip

from skipsr_cli.cli import main
from skipsr_cli.errors import ExitCode, UsageError

DEBUG = ["--model", "debug", "--random-weights"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("in") / "in.mp4", frames=3, audio=False)


def call(capsys, *args: str | Path) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return done.value.code, err, out


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--no-such-option"], "No such option: --no-such-option"),
        (["--chunk-frames", "many"], "'--chunk-frames'"),
        (["--chunk-frames", "0"], "'--chunk-frames'"),
        (["--tile", "0"], "'--tile'"),
        (["--steps", "0"], "'--steps'"),
        (["--audio-bitrate", "0"], "'--audio-bitrate'"),
        (["surplus"], "unexpected extra argument"),
        (["--seed", str(2**64)], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--crf", "99"], "CRF 99"),
        (["--codec", "libvpx-vp9", "--crf", "64"], "CRF 64"),
        (["--denoise", "1.5"], "--denoise must be auto or a number from 0 to 1, not '1.5'"),
        (["--denoise", "abc"], "--denoise must be auto or a number from 0 to 1, not 'abc'"),
        (["--denoise", "0.5"], "not with --random-weights"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, clip, tmp_path, extra, says) -> None:
    code, err, _ = call(capsys, "upscale", clip, tmp_path / "out.mp4", *DEBUG, "-q", *extra)
    assert code == ExitCode.USAGE, err
    assert err.startswith("skipsr: error:") and err.count("\n") == 1, err
    assert says in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("output", "extra", "code", "says"),
    [
        # a GIF has no lossless mode: said as such, not as x264's failure to fit in a GIF
        ("out.gif", ["--lossless"], ExitCode.USAGE, "out.gif is a GIF, which cannot be lossless"),
        # --mask-out for one input names a video file: the name needs its container's extension
        ("out.mp4", ["--mask-out", "{tmp}/bi"], ExitCode.USAGE, "--mask-out {tmp}/bi has no"),
        # ... that FFmpeg can write: refused before the model, not as a failed write after it
        ("out.mp4", ["--mask-out", "{tmp}/m.xyz"], ExitCode.USAGE, "{tmp}/m.xyz: FFmpeg writes no"),
        # a trailing slash names a folder of PNG frames, which must exist (README: an output)
        ("nodir/", [], ExitCode.OUTPUT, "{tmp}/nodir/: folder {tmp}/nodir does not exist"),
        # OUTPUT names a video file: without an extension, no container (was exit 5, after work)
        ("out", [], ExitCode.USAGE, "the output {tmp}/out has no extension: for one input it"),
        # ... nor one FFmpeg knows no container by (was exit 5, from the muxer after the model)
        ("out.xyz", [], ExitCode.USAGE, "output {tmp}/out.xyz: FFmpeg writes no video container"),
    ],
)
def test_an_output_the_options_cannot_give_says_why(
    capsys, clip, tmp_path, output, extra, code, says
):
    target = f"{tmp_path}/{output}"  # as typed: Path() would drop the trailing slash
    extra = [a.format(tmp=tmp_path) for a in extra]
    got, err, _ = call(capsys, "upscale", clip, target, *DEBUG, "-q", *extra)
    assert got == code, err
    assert err.startswith("skipsr: error:") and err.count("\n") == 1, err
    assert (
        says.format(tmp=tmp_path) in err and "libx264" not in err and "add an extension" not in err
    ), err
    assert list(tmp_path.iterdir()) == []


def test_denoise_with_a_weights_file_needs_the_file_to_blend_towards(
    capsys, clip, tmp_path
) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")  # never read: the options are refused first
    code, err, _ = call(
        capsys, "upscale", clip, tmp_path / "out.mp4", "--weights", weights, "--denoise", "0.5"
    )
    assert code == ExitCode.USAGE and err.count("\n") == 1, err
    assert "--denoise-weights" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_a_file_name_with_a_dash_is_pointed_after_double_dash(capsys, tmp_path) -> None:
    code, err, _ = call(capsys, "upscale", "-in.mp4", tmp_path / "out.mp4")
    assert code == ExitCode.USAGE and err.count("\n") == 1
    assert "-- -in.mp4" in err


def test_help_still_works(capsys) -> None:
    code, _, out = call(capsys, "upscale", "--help")
    assert code == 0 and "--strict" in out


def test_an_unreadable_input_is_an_input_error(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # reachable by another user, unlike tmp_path
    try:
        os.chmod(folder, 0o777)
        src = make_clip(folder / "secret.mp4", frames=2, audio=False)
        os.chmod(src, 0o000)
        cmd = [sys.executable, "-m", "skipsr_cli.cli", "upscale", str(src), str(folder / "o.mp4")]
        if os.geteuid() == 0:  # root reads everything: run as nobody
            if shutil.which("setpriv") is None:
                pytest.skip("needs a non-root user")
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == ExitCode.INPUT, r.stderr
        assert r.stderr.startswith("skipsr: error: cannot read") and r.stderr.count("\n") == 1
    finally:
        shutil.rmtree(folder)


def _torch_is_loading(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("after", [0.0, 1.0])
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_stop_while_starting_up_is_its_exit_code_and_one_line(tmp_path, after, stop) -> None:
    """SIGINT or SIGTERM (a farm's scancel, `timeout`) while torch is being imported (seen in the
    process's maps), or a second later: 130 or 143, and the line a stopped run says, as they are
    once the command runs (SIGTERM killed the process silently here before)."""
    import signal
    import time

    # long enough that a second after torch loads the run is still going, however fast the machine
    src = make_clip(tmp_path / "long.mp4", width=128, height=96, frames=120, audio=False)
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "skipsr_cli.cli", "upscale", str(src), str(out), *DEBUG, "-q"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _torch_is_loading(proc.pid) and time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.005)
    time.sleep(after)
    proc.send_signal(getattr(signal, stop))
    _, err = proc.communicate(timeout=120)
    code, said = (
        (ExitCode.INTERRUPTED, "interrupted")
        if stop == "SIGINT"
        else (ExitCode.TERMINATED, "terminated (SIGTERM)")
    )
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert err == f"skipsr: {said}; no output was left behind\n"
    assert [p.name for p in tmp_path.iterdir()] == ["long.mp4"]


def test_an_interrupt_inside_a_string_exec_keeps_the_exit_code(clip, tmp_path: Path) -> None:
    """Under `python -m`, CPython ended the process by SIGINT (-2), not with exit 130, when the
    last string `exec` or `eval` before the exit had ended in a KeyboardInterrupt, even one
    caught since: a Ctrl-C that landed while a dataclass was being built, or while Typer read
    the annotations (about 1 run in 10 of the start-up test above). Here the run itself is the
    string exec that Ctrl-C stops."""
    (tmp_path / "runner.py").write_text(
        "import sys\n"
        "from skipsr_cli import api, cli\n"
        "api.upscale = lambda *a, **k: exec('raise KeyboardInterrupt')\n"
        "cli.main(sys.argv[1:])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    cmd = [sys.executable, "-m", "runner", "upscale", str(clip), str(tmp_path / "o.mp4"), *DEBUG]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert (r.returncode, r.stderr) == (130, "skipsr: interrupted; no output was left behind\n")


def test_ctrl_c_during_the_exit_is_no_traceback(tmp_path: Path) -> None:
    """A Ctrl-C as the command exits (a second press, or one just as the run ends) arrives while
    the interpreter runs its exit handlers (torch registers some): it is ignored, not printed as
    a traceback. An exit handler registered before the command runs last, so it sends it then."""
    src = make_clip(tmp_path / "in.mp4", frames=2, audio=False)
    out = tmp_path / "out.mp4"
    script = (
        "import atexit, os, signal, sys, time\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))\n"
        "from skipsr_cli.cli import main\n"
        f"sys.argv = ['skipsr', 'upscale', {str(src)!r}, {str(out)!r}, '-q', *{DEBUG!r}]\n"
        "main()\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and out.exists()


def test_a_name_too_long_for_the_file_system_is_a_usage_error(capsys, clip, tmp_path) -> None:
    """No file system holds a name of 300 bytes: given as the output or the input, one line
    naming it and exit 2, not an internal error."""
    long = tmp_path / ("c" * 296 + ".mp4")
    for args in ([clip, long], [long, tmp_path / "out.mp4"]):
        code, err, _ = call(capsys, "upscale", *args, *DEBUG)
        assert code == ExitCode.USAGE, err
        assert err == f"skipsr: error: a file name is too long for the file system: {long}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_an_unknown_preset_is_one_line_naming_the_presets(clip, tmp_path, codec) -> None:
    """Refused before the encoder opens: opened, x264 prints its own complaint on stderr (from C,
    past Python's streams, so a subprocess shows it)."""
    cmd = [sys.executable, "-m", "skipsr_cli.cli", "upscale", str(clip), str(tmp_path / "o.mkv")]
    cmd += [*DEBUG, "--codec", codec, "--preset", "foo"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == ExitCode.USAGE
    assert r.stderr == (
        f"skipsr: error: invalid --preset 'foo': {codec} takes placebo, veryslow, slower, slow, "
        "medium, fast, faster, veryfast, superfast, ultrafast\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["model", "run", "capacity"])
def test_bench_refuses_a_threshold_that_is_no_number_of_db(capsys, clip, command) -> None:
    code, err, _ = call(capsys, "bench", command, clip, "--threshold", "nan", *DEBUG)
    assert code == ExitCode.USAGE, err
    assert err == "skipsr: error: --threshold must be a finite number of dB, not nan\n"


@pytest.mark.parametrize(("codec", "decoded"), [("libx265", "hevc"), ("libsvtav1", "libdav1d")])
def test_an_encoder_with_its_own_log_prints_nothing_under_quiet(clip, tmp_path, codec, decoded):
    """x265 and SVT-AV1 write their own info lines (version, level, settings) from C, past FFmpeg's
    log level: a `-q` run printed a dozen of them on stderr, at the trial open and the real one."""
    out = tmp_path / "o.mkv"
    cmd = [sys.executable, "-m", "skipsr_cli.cli", "upscale", str(clip), str(out), *DEBUG]
    env = {k: v for k, v in os.environ.items() if k != "SVT_LOG"}
    r = subprocess.run(
        [*cmd, "--codec", codec, "-q"], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0 and r.stderr == ""
    with av.open(str(out)) as f:
        assert f.streams.video[0].codec_context.name == decoded


def test_an_output_too_large_for_the_hosts_memory_is_refused_before_any_work(clip, tmp_path):
    """`--size 12000x12000` on a small input ran until the kernel killed it (exit 137): now one
    line, exit 2, naming what it needs and what the host has, with nothing written."""
    from skipsr_cli.run.host_memory import GIB, check_host_memory, host_bytes_needed

    out = tmp_path / "o.mp4"
    cmd = [sys.executable, "-m", "skipsr_cli.cli", "upscale", str(clip), str(out), *DEBUG]
    r = subprocess.run([*cmd, "--size", "12000x12000"], capture_output=True, text=True, timeout=120)
    assert r.returncode == ExitCode.USAGE
    assert r.stderr.startswith("skipsr: error: an output of 12000x12000 needs at least ")
    assert "choose a smaller --size or --scale" in r.stderr and r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    # the measured slopes: the CPU's model takes about twice the GPU's host memory a pixel
    assert host_bytes_needed((2048, 2048), True, 16) > 4 * GIB  # 5.1 GB measured, 0.6 of it fixed
    assert host_bytes_needed((2048, 2048), False, 16) < 2.5 * GIB
    assert host_bytes_needed((2048, 2048), True, 8) * 2 == host_bytes_needed((2048, 2048), True, 16)
    check_host_memory((3840, 2160), False, 16, available=8 * GIB)  # 4K on a GPU fits in 8 GiB
    with pytest.raises(UsageError, match="3840x2160 needs at least 8.4 GiB"):
        check_host_memory((3840, 2160), True, 16, available=8 * GIB)


def test_ray_refuses_an_output_size_this_host_cannot_hold_as_a_run_here_does(
    capsys, clip, tmp_path, monkeypatch
):
    """`--ray local` runs its actors on this host: a size its memory cannot hold is the same one
    line and exit 2 as without --ray, before Ray is started (it was an actor's traceback); so is
    a run that --ray leaves in one piece here (PNG frames are not split into parts)."""
    from skipsr_cli.farm import ray
    from skipsr_cli.run import host_memory

    def started(*args, **kwargs):
        raise AssertionError("Ray started before the output's size was checked")

    monkeypatch.setattr(ray, "_start", started)
    monkeypatch.setattr(host_memory, "host_bytes_available", lambda: host_memory.GIB // 4)
    run = [*DEBUG, "--device", "cpu", "--size", "1024x1024"]
    code, here, _ = call(capsys, "upscale", clip, tmp_path / "o.mp4", *run)
    assert code == ExitCode.USAGE, here
    assert here.startswith("skipsr: error: an output of 1024x1024 needs at least ")
    assert here.count("\n") == 1
    on_ray = (
        (tmp_path / "o.mp4", "local"),
        (tmp_path / "f_%04d.png", "ray://127.0.0.1:9"),  # a cluster, but the run is here
    )
    for output, address in on_ray:
        assert call(capsys, "upscale", clip, output, *run, "--ray", address)[:2] == (code, here)
    assert list(tmp_path.iterdir()) == []


def test_an_output_without_an_extension_is_refused_before_the_model_loads(
    clip, tmp_path, monkeypatch
):
    """OUTPUT without an extension names no container: a usage error suggesting a name, from the
    API as from the command line, before any model work; a %d pattern is PNG frames, and an
    existing folder without an extension still takes PNG frames."""
    from skipsr_cli import api

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded for an output that cannot be written")

    monkeypatch.setattr(api, "_load", loaded)
    run = dict(model="debug", random_weights=True, device="cpu")
    for name, example in (("out", "out.mp4"), ("f_%04d", "f_%04d.png"), ("out.", "out.mp4")):
        with pytest.raises(UsageError, match=f"e.g. {tmp_path / example} "):
            api.upscale(clip, tmp_path / name, **run)
    with pytest.raises(UsageError, match="--segment renders a part of .* without an extension"):
        api.upscale(clip, tmp_path / "out", segment="1/2", **run)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    (tmp_path / "frames").mkdir()
    assert api.upscale(clip, tmp_path / "frames", **run).frames == 3
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 3


def test_ffmpegs_words_are_one_line_and_name_another_file() -> None:
    """`said`: no errno, FFmpeg's logged line on the same line (its newline gone), the file the
    error is about where the message names another (a source read while the output is written),
    never the output's own partial name."""
    import av

    from skipsr_cli.media.av_errors import said

    log = (16, "mov,mp4", "moov atom not found\n")
    e = av.FFmpegError(1094995529, "Invalid data found when processing input", "in.mp4", log)
    assert (
        said(e, "in.mp4")
        == "Invalid data found when processing input (mov,mp4: moov atom not found)"
    )
    assert said(e, "out.mp4").startswith("Invalid data found when processing input: in.mp4 (")
    partial = OSError(28, "No space left on device", "d/.out.mp4.x-1@h.skipsr-partial.mp4")
    assert said(partial, "out.mp4") == "No space left on device"
    assert said(ValueError("bad")) == "bad"
