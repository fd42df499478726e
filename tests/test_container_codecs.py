"""Container and encoder pairs the muxer cannot hold are refused before any work (exit 2, one line
naming both and the encoders the container does hold, each probed); the encoder a container gets
by default is one it holds (.ogv: VP8, not x264); refusals that depend on the input's time base
or rate (mpeg4 at 1/90000, MPEG-1 at 12 fps) are judged at the real ones; MPEG-1/2, which take
only one frame's time base, are written at it from any input at a rate of their standard; a
farm's task refuses an OUTPUT its parts cannot be joined into."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import make_clip
from typer.testing import CliRunner

from skipsr_cli.cli import app
from skipsr_cli.errors import ExitCode
from skipsr_cli.media.encoding import default_codec, muxer_refuses

DEBUG = ["--model", "debug", "--random-weights", "--device", "cpu", "-q"]


def clip_in(folder: Path, name: str) -> Path:
    return make_clip(folder / name, width=32, height=24, frames=2, audio=False)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs by their stream's time base: mp4 (1/12288), MPEG-TS (1/90000), AVI (1/24); and an
    mp4 at 12 fps, a rate outside MPEG-1's standard."""
    folder = tmp_path_factory.mktemp("in")
    made = {name: clip_in(folder, f"in.{name}") for name in ("mp4", "ts", "avi")}
    made["12fps"] = make_clip(folder / "12.mp4", width=32, height=24, frames=2, rate=Fraction(12))
    assert time_base(made["ts"]) == Fraction(1, 90000)
    assert time_base(made["avi"]) == Fraction(1, 24)
    assert time_base(made["mp4"]).denominator not in (24, 90000)
    return made


def time_base(path: Path) -> Fraction:
    with av.open(str(path)) as container:
        return container.streams.video[0].time_base


def invoke(*args: object):
    return CliRunner().invoke(app, ["upscale", *map(str, args), *DEBUG])


def written(path: Path) -> tuple[str, int]:
    """(codec, frames decoded) of a video's first stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, sum(1 for _ in container.decode(stream))


def refused(result, tmp_path: Path, says: str) -> str:
    """The one line of a usage error that holds `says`; nothing was left in `tmp_path`."""
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []
    return result.stderr


def offered(line: str) -> list[str]:
    """The encoders a refusal offers: `choose --codec a, b or c (which ...`."""
    match = re.search(r"choose --codec (.+?) \(which", line)
    assert match, line
    return re.split(r", | or ", match.group(1))


def test_an_ogv_gets_an_encoder_ogg_holds(clips: dict[str, Path], tmp_path: Path):
    """It was x264, which the ogg muxer refuses writing its header: exit 5 after the model."""
    out = tmp_path / "o.ogv"
    r = invoke(clips["mp4"], out)
    assert r.exit_code == 0, r.output
    assert written(out) == ("vp8", 2)
    assert default_codec(".ogv") == "libvpx" and muxer_refuses("ogv", "libx264") is not None
    assert [p.name for p in tmp_path.iterdir()] == ["o.ogv"]  # no partial left beside it


@pytest.mark.parametrize(
    ("output", "codec", "says"),
    [
        ("o.ogv", "libx264", "output {tmp}/o.ogv: the ogv container cannot hold libx264; choose"),
        ("o.ogg", "libx264", "output {tmp}/o.ogg: the ogg container cannot hold libx264; choose"),
        ("o.mov", "libvpx-vp9", "o.mov: the mov container cannot hold libvpx-vp9; choose --codec"),
        ("o.mp4", "nosuch", "output {tmp}/o.mp4: unknown encoder 'nosuch': this FFmpeg has no"),
        ("o.mp4", "aac", "output {tmp}/o.mp4: 'aac' is an audio encoder, not a video encoder"),
    ],
)
def test_a_pair_the_muxer_refuses_is_one_usage_line_offering_what_it_holds(
    clips: dict[str, Path], tmp_path: Path, output: str, codec: str, says: str
):
    """The ogg and mov pairs were exit 5 after the model's work; the unknown encoder was said to
    be one the container cannot hold."""
    line = refused(
        invoke(clips["mp4"], tmp_path / output, "--codec", codec),
        tmp_path,
        says.format(tmp=tmp_path),
    )
    kind = av.open(str(tmp_path / output), "w").format.name  # the name only: no file is made
    offer = offered(line)
    assert offer and codec not in offer
    for other in offer:
        assert muxer_refuses(kind, other, time_base(clips["mp4"]), Fraction(24)) is None, other


@pytest.mark.parametrize(
    ("input", "codec", "output", "says"),
    [
        # mpeg4's time base denominator is at most 65535
        ("ts", "mpeg4", "o.mp4", "encoder mpeg4 cannot write at the input's time base 1/90000"),
        # MPEG-1 takes only the rates of its standard (24, 25, 30000/1001, ...), not 12
        ("12fps", "mpeg1video", "o.mpg", "encoder mpeg1video cannot write (MPEG-1/2 does not"),
    ],
)
def test_a_codec_refused_at_the_inputs_time_base_is_refused_before_the_work(
    clips: dict[str, Path], tmp_path: Path, input: str, codec: str, output: str, says: str
):
    """Each was exit 5 once the model had run: the trial open was at 1/25."""
    line = refused(invoke(clips[input], tmp_path / output, "--codec", codec), tmp_path, says)
    assert "MPEG" in line or "65535" in line  # FFmpeg's own reason, not "Invalid argument"
    rate = Fraction(12 if input == "12fps" else 24)
    assert muxer_refuses("mp4", codec, time_base(clips[input]), rate) is not None


@pytest.mark.parametrize(
    ("output", "codec", "decoded"),
    [("o.m2v", None, "mpeg2video"), ("o.m1v", None, "mpeg1video"), ("o.mpg", "mpeg2video", None)],
)
def test_mpeg_1_and_2_are_written_at_one_frames_time_base_from_any_input(
    clips: dict[str, Path], tmp_path: Path, output: str, codec: str | None, decoded: str | None
):
    """They were refused from an mp4's 1/12288 (the encoder was opened at the input's time base,
    which MPEG-1/2 refuse); now they are opened at one frame's and each frame keeps its time."""
    out = tmp_path / output
    r = invoke(clips["mp4"], out, *(["--codec", codec] if codec else []))
    assert r.exit_code == 0, r.output
    with av.open(str(clips["mp4"])) as source, av.open(str(out)) as made:
        times = [float(f.time) for f in source.decode(video=0)]
        got = [float(f.time) for f in made.decode(video=0)]
        name = made.streams.video[0].codec_context.name
    assert name == (decoded or codec) and len(got) == len(times) == 2
    if out.suffix == ".mpg":  # a raw .m1v/.m2v stores no times: its demuxer makes some up
        assert got[1] - got[0] == pytest.approx(times[1] - times[0], abs=1e-3)  # a frame apart


@pytest.mark.parametrize(
    ("input", "codec", "decoded"),
    [("mp4", "mpeg4", "mpeg4"), ("avi", "mpeg2video", "mpeg2video")],
)
def test_the_same_codec_at_a_time_base_it_takes_is_written(
    clips: dict[str, Path], tmp_path: Path, input: str, codec: str, decoded: str
):
    out = tmp_path / "o.mp4"
    r = invoke(clips[input], out, "--codec", codec)
    assert r.exit_code == 0, r.output
    assert written(out) == (decoded, 2)


def test_a_mask_is_checked_at_the_inputs_rate(clips: dict[str, Path], tmp_path: Path):
    """A .m1v mask gets MPEG-1 (its container's own encoder): written from a 24 fps input, and
    refused before the work from a 12 fps one, naming --mask-out (it was exit 5 after it)."""
    r = invoke(clips["mp4"], tmp_path / "o.mp4", "--mask-out", tmp_path / "m.m1v")
    assert r.exit_code == 0, r.output
    assert written(tmp_path / "m.m1v") == ("mpeg1video", 2)
    for made in ("o.mp4", "m.m1v"):
        (tmp_path / made).unlink()
    r = invoke(clips["12fps"], tmp_path / "o.mp4", "--mask-out", tmp_path / "m.m1v")
    refused(r, tmp_path, f"--mask-out {tmp_path}/m.m1v: encoder mpeg1video cannot write")


def test_a_farm_task_refuses_an_output_its_parts_cannot_join_into(
    clips: dict[str, Path], tmp_path: Path
):
    """Each task rendered its part into a Matroska file and only the stitch found that a .mov
    cannot hold VP9: now every task says so at once, leaving no parts folder."""
    r = invoke(clips["mp4"], tmp_path / "o.mov", "--codec", "libvpx-vp9", "--segment", "1/2")
    refused(r, tmp_path, f"output {tmp_path}/o.mov: the mov container cannot hold libvpx-vp9")


def test_muxer_refuses_says_why_at_the_time_base_given():
    assert muxer_refuses("ogg", "libvpx") is None
    assert "Unsupported codec" in (muxer_refuses("ogg", "libx264") or "")
    assert "65535" in (muxer_refuses("mp4", "mpeg4", Fraction(1, 90000)) or "")
    assert muxer_refuses("mp4", "mpeg4", Fraction(1, 12800)) is None
    assert muxer_refuses("mp4", "mpeg2video", Fraction(1, 25), Fraction(25)) is None


@pytest.mark.parametrize(("ext", "kind"), [(".mpd", "dash"), (".m3u8", "hls")])
def test_a_muxer_that_writes_files_of_its_own_is_refused_without_writing_one(
    clips, tmp_path, monkeypatch, ext, kind
):
    """DASH and HLS write a manifest and segments by names of their own: their header, written in
    a probe, dropped segment files where the command ran (DASH's crashed it: SIGFPE). They are
    refused for the output and the mask, and nothing lands in the current folder."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert muxer_refuses(kind, "libx264") == f"the {kind} muxer writes files of its own"
    assert default_codec(ext) == "libx264"
    out = tmp_path / "out"
    out.mkdir()
    says = f"({kind}) is written as many files (a playlist or manifest and its segments)"
    refused(invoke(clips["mp4"], out / f"o{ext}"), out, says)
    refused(invoke(clips["mp4"], out / "o.mp4", "--mask-out", out / f"m{ext}"), out, says)
    assert list(here.iterdir()) == []


def test_mpeg_2_keeps_every_frame_of_a_variable_rate_input(tmp_path: Path):
    """Frames of a variable-rate input closer than a frame apart rounded onto one slot of
    MPEG-2's frame grid, which its encoder refused after the model had run (exit 5, also for a
    .m2v mask beside an mp4 output). Each now takes the next free slot: every frame is kept."""
    stamps = [0, 40, 80, 90, 160, 200, 240, 280, 320, 360]  # ms; 90 rounds onto 80's slot
    src = tmp_path / "in" / "vfr.mp4"
    src.parent.mkdir()
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(stamps):
            image = np.full((24, 32, 3), 20 * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    r = invoke(src, tmp_path / "o.mpg", "--codec", "mpeg2video")
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "o.mpg")) as made:
        times = [float(f.time) for f in made.decode(video=0)]
    assert len(times) == len(stamps)
    steps = [round(b - a, 3) for a, b in zip(times[:-1], times[1:], strict=True)]
    assert steps == [0.04] * (len(stamps) - 1)  # 90 ms went to the next slot, 120 ms
    r = invoke(src, tmp_path / "o.mp4", "--mask-out", tmp_path / "m.m2v")
    assert r.exit_code == 0, r.output
    assert written(tmp_path / "m.m2v") == ("mpeg2video", len(stamps))
