"""What each output's container and encoder take, settled before the model: the mask beside an
output on another encoder (the user's --pix-fmt where its encoder takes it, 4:4:4 at an odd size),
containers that hold no encoded video (.y4m), and image names other than PNG."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from media import make_clip
from typer.testing import CliRunner

from skipsr_cli.cli import app
from skipsr_cli.errors import ExitCode, UsageError
from skipsr_cli.media.encoding import EncodeOptions, full_chroma_at
from skipsr_cli.run.options import UpscaleOptions, job_of, mask_encode_options
from skipsr_cli.run.pipeline import UpscaleJob, prepare
from skipsr_cli.train.data import write_jpeg

DEBUG = ["--model", "debug", "--random-weights", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("in") / "in.mp4", width=32, height=24, frames=2)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "photo.jpg"
    write_jpeg(np.full((24, 32, 3), 128, np.uint8), path)
    return path


def invoke(*args: object):
    return CliRunner().invoke(app, ["upscale", *map(str, args), *DEBUG])


def picture(path: Path) -> tuple[str, str, int, int]:
    """(codec, pix_fmt, width, height) of a video's first stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, stream.codec_context.pix_fmt, stream.width, stream.height


@pytest.mark.parametrize(
    ("output", "mask", "extra", "codec"),
    [
        ("o2.webm", "m2.mp4", ["--pix-fmt", "yuv444p"], "h264"),  # VP9 out, x264 mask
        ("o3.mp4", "m3.webm", ["--pix-fmt", "yuv444p"], "vp9"),
        ("o4.gif", "m4.mp4", [], "h264"),  # no --pix-fmt: x264's 4:2:0 cannot be 99x75
    ],
)
def test_a_mask_on_another_encoder_is_written_at_an_odd_size(
    clip: Path, tmp_path: Path, output: str, mask: str, extra: list[str], codec: str
):
    """It was exit 2: the mask dropped --pix-fmt for its encoder's 4:2:0, which needs even sizes,
    and the error asked for the --pix-fmt already given."""
    r = invoke(clip, tmp_path / output, "--size", "99x75", "--mask-out", tmp_path / mask, *extra)
    assert r.exit_code == 0, r.output
    assert picture(tmp_path / mask) == (codec, "yuv444p", 99, 75)
    assert picture(tmp_path / output)[2:] == (99, 75)


def test_the_mask_keeps_the_pix_fmt_its_encoder_takes():
    main = job_of(Path("in.mp4"), Path("o.webm"), UpscaleOptions(pix_fmt="yuv444p")).encode
    given = UpscaleOptions(pix_fmt="yuv444p")
    assert mask_encode_options(given, Path("m.mp4"), main).pix_fmt == "yuv444p"
    grey = UpscaleOptions(pix_fmt="gray")  # x264 takes it, VP9 does not: the mask's default
    main = job_of(Path("in.mp4"), Path("o.mp4"), grey).encode
    assert mask_encode_options(grey, Path("m.webm"), main).pix_fmt is None
    assert mask_encode_options(grey, Path("m.png"), main).pix_fmt is None  # PNG: rgb24/rgb48be
    deep = UpscaleOptions(pix_fmt="rgb48be")
    main = job_of(Path("in.mp4"), Path("o_%04d.png"), deep).encode
    assert mask_encode_options(deep, Path("m.mkv"), main).pix_fmt is None  # x264 takes no RGB


def test_an_odd_size_takes_the_full_chroma_format_of_the_same_depth():
    def at(codec: str, pix_fmt: str | None, size: tuple[int, int]) -> str | None:
        return full_chroma_at(EncodeOptions(codec, pix_fmt=pix_fmt), *size).pix_fmt

    assert at("libx264", None, (99, 75)) == "yuv444p"
    assert at("libx264", "yuv420p10le", (98, 75)) == "yuv444p10le"
    assert at("libx265", "yuv420p12le", (99, 76)) == "yuv444p12le"
    assert at("libvpx-vp9", None, (99, 75)) == "yuv444p"
    assert at("libx264", "yuv422p", (98, 75)) == "yuv422p"  # 4:2:2 keeps every row
    assert at("libx264", None, (98, 76)) is None  # even: as it was
    assert at("gif", None, (99, 75)) is None  # no chroma to halve
    assert at("mpeg4", None, (99, 75)) is None  # no 4:4:4 to take


def test_what_the_mask_cannot_take_names_the_mask(clip: Path, tmp_path: Path):
    """The mask's own settings refused say that --mask-out is meant, not OUTPUT."""
    mask = tmp_path / "m.avi"
    job = UpscaleJob(
        clip,
        tmp_path / "o.mkv",
        size=(99, 75),
        encode=EncodeOptions(pix_fmt="yuv444p"),
        mask_out=mask,
        mask_encode=EncodeOptions("mpeg4", crf=None, preset=None),  # 4:2:0 only
    )
    with pytest.raises(UsageError) as refused:
        prepare(job)
    assert str(refused.value).startswith(f"--mask-out {mask}: output size 99x75 is odd but ")
    grey = EncodeOptions("png", crf=None, preset=None, pix_fmt="gray")
    frames = UpscaleJob(
        clip, tmp_path / "o.mkv", mask_out=tmp_path / "m_%04d.png", mask_encode=grey
    )
    with pytest.raises(UsageError, match=r"^--mask-out .*m_%04d.png: PNG frames are rgb24"):
        prepare(frames)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("output", "extra", "says"),
    [
        # yuv4mpegpipe takes x264 when the stream is added, then refuses it writing the header:
        # it was exit 5 after the model
        ("o.y4m", [], "output {tmp}/o.y4m: .y4m (yuv4mpegpipe) holds uncompressed video only"),
        ("o.yuv", [], "output {tmp}/o.yuv: .yuv (rawvideo) holds uncompressed video only"),
        ("o.mp4", ["--mask-out", "{tmp}/m.y4m"], "--mask-out {tmp}/m.y4m: .y4m (yuv4mpegpipe)"),
        ("o.webm", ["--codec", "libx264"], "o.webm: the webm container cannot hold libx264; "),
        ("o.mkv", ["--codec", "gif"], "o.mkv: the matroska container cannot hold gif; choose"),
    ],
)
def test_a_container_that_cannot_hold_the_video_is_one_usage_line(
    clip: Path, tmp_path: Path, output: str, extra: list[str], says: str
):
    r = invoke(clip, tmp_path / output, *[a.format(tmp=tmp_path) for a in extra])
    assert r.exit_code == ExitCode.USAGE, r.output
    assert r.stderr.count("\n") == 1 and says.format(tmp=tmp_path) in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("output", "extra", "says"),
    [
        ("p.jpg", [], "output {tmp}/p.jpg: skipsr writes images as PNG, not .jpg; name it e.g. "),
        ("p.webp", [], "output {tmp}/p.webp: skipsr writes images as PNG, not .webp; name it "),
        ("o.mp4", ["--mask-out", "{tmp}/m.jpg"], "--mask-out {tmp}/m.jpg: skipsr writes images"),
        ("p", [], "the output {tmp}/p has no extension: for one input it names a video file"),
    ],
)
def test_an_image_named_other_than_png_is_pointed_to_png(
    photo: Path, tmp_path: Path, output: str, extra: list[str], says: str
):
    """It said "a image2 file cannot hold libx264"; a name without an extension was pointed to
    out.mp4 for a photo."""
    r = invoke(photo, tmp_path / output, *[a.format(tmp=tmp_path) for a in extra])
    assert r.exit_code == ExitCode.USAGE, r.output
    assert r.stderr.count("\n") == 1 and says.format(tmp=tmp_path) in r.stderr, r.stderr
    png = (tmp_path / output.split(".")[0]).with_suffix(".png")
    if not extra:
        assert f"e.g. {png}" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_batch_writes_y4m_inputs_as_matroska_and_refuses_ext_y4m(clip: Path, tmp_path: Path):
    """A folder of .y4m videos (raw video) upscales into .mkv, as stills go to PNG: each file
    was refused in turn (exit 6); `--ext y4m` is refused once, before any work (exit 2)."""
    import subprocess

    import imageio_ffmpeg

    folder = tmp_path / "in"
    folder.mkdir()
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip)]
    subprocess.run([*cmd, "-pix_fmt", "yuv420p", str(folder / "a.y4m")], check=True)
    r = invoke(folder, tmp_path / "out")
    assert r.exit_code == 0, r.output
    written = [p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    assert written == ["a.mkv"]  # beside the batch's hidden records
    with av.open(str(tmp_path / "out" / "a.mkv")) as f:
        assert f.streams.video[0].codec_context.name == "h264"
    r = invoke(folder, tmp_path / "out2", "--ext", "y4m")
    assert r.exit_code == ExitCode.USAGE and "--ext y4m: not a container skipsr writes" in r.output
    assert not (tmp_path / "out2").exists()
