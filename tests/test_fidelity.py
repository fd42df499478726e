"""What `skipsr upscale` keeps of its input besides the picture: pixel aspect, data streams, and the
overall colour of the frames (issue: media fidelity)."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import Colorspace
from media import make_clip, make_colour_clip

from models import SkipSR
from skipsr_cli.media.video_io import probe, read_frames
from skipsr_cli.run.pipeline import UpscaleJob, prepare, upscale
from skipsr_cli.train.degrade import resize
from skipsr_cli.weights import load_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def debug() -> SkipSR:
    return load_model("debug", random_weights=True)


def run(model: SkipSR, job: UpscaleJob) -> None:
    upscale(model, prepare(job), CPU, torch.float32, emit=lambda e: None)


@pytest.mark.parametrize(
    "size, want",
    [(None, Fraction(4, 3)), ((128, 128), Fraction(16, 9)), ((256, 96), Fraction(2, 3))],
)
def test_pixel_aspect_keeps_the_display_shape(debug, tmp_path, size, want):
    """An anamorphic 64x48 input with 4:3 pixels displays as 85.3x48 (16:9). x2 keeps the 4:3
    pixels; an explicit size gets the pixel shape that keeps 16:9 on screen."""
    src = make_clip(tmp_path / "in.mp4", frames=3, audio=False, sar=Fraction(4, 3))
    assert probe(src).sar == Fraction(4, 3)
    out = tmp_path / "out.mp4"
    run(debug, UpscaleJob(src, out, size=size, chunk_frames=3, overlap=0))
    info = probe(out)
    assert info.sar == want
    assert info.sar * Fraction(info.width, info.height) == Fraction(16, 9)


def test_square_pixels_stay_unmarked(debug, tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=2, audio=False)
    out = tmp_path / "out.mp4"
    run(debug, UpscaleJob(src, out, chunk_frames=2, overlap=0))
    assert probe(out).sar in (None, Fraction(1, 1))


@pytest.mark.parametrize("suffix", [".mov", ".mp4", ".mkv"])
def test_start_timecode_is_kept(debug, tmp_path, suffix):
    """A camera's timecode track (a data stream) comes out as the same start timecode: a new
    timecode track in mov/mp4, a tag on the video stream in mkv."""
    src = make_clip(tmp_path / "in.mov", frames=3, audio=True, timecode="01:02:03:04")
    with av.open(str(src)) as c:
        assert [s.type for s in c.streams].count("data") == 1
    out = tmp_path / f"out{suffix}"
    run(debug, UpscaleJob(src, out, chunk_frames=3, overlap=0))
    with av.open(str(out)) as c:
        tags = {k.lower(): v for k, v in c.streams.video[0].metadata.items()}  # mkv: TIMECODE
        assert tags.get("timecode") == "01:02:03:04"
        data = [s for s in c.streams if s.type == "data"]
        assert len(data) == (0 if suffix == ".mkv" else 1)
        assert all(s.metadata.get("timecode") == "01:02:03:04" for s in data)
        assert len(c.streams.audio) == 1


def smooth_rgb(width: int = 96, height: int = 64) -> np.ndarray:
    """Slow ramps in every channel: nothing for the model to sharpen, so any shift is the I/O's."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack(
        [40 + 150 * x / width, 60 + 120 * y / height, 200 - 120 * (x + y) / (width + height)], -1
    )
    return rgb.round().astype(np.uint8)


@pytest.mark.parametrize("matrix, colour_range", [(6, 1), (1, 1), (1, 2)])
def test_no_colour_shift_through_a_whole_upscale(tmp_path, matrix, colour_range):
    """The shipped model on a smooth clip: each channel's mean, after downscaling the output back,
    within 1 code value of the input's (BT.601 and BT.709, limited and full range)."""
    rgb = smooth_rgb()
    src = make_colour_clip(tmp_path / "in.mkv", rgb, matrix=matrix, colour_range=colour_range)
    out = tmp_path / "out.mkv"
    run(load_model("base"), UpscaleJob(src, out, chunk_frames=4, overlap=0))
    want = next(iter(read_frames(src))).rgb.astype(np.float64)  # the input as decoded
    for frame in read_frames(out):
        up = torch.from_numpy(frame.rgb).permute(2, 0, 1)[None].double() / 255
        back = resize(up, rgb.shape[:2], "bicubic")[0].permute(1, 2, 0).numpy() * 255
        shift = np.abs(back.mean(axis=(0, 1)) - want.mean(axis=(0, 1)))
        assert shift.max() <= 1.0, shift


def captured_frames(monkeypatch) -> list[np.ndarray]:
    """Record what the pipeline hands the encoder: RGB frames or device-converted planes."""
    from skipsr_cli.media.video_writer import VideoWriter

    seen: list[np.ndarray] = []
    write, write_planes = VideoWriter.write, VideoWriter.write_planes

    def spy_write(self, rgb, pts=None):
        seen.append(rgb.copy())
        write(self, rgb, pts)

    def spy_planes(self, planes, pts=None):
        seen.append(planes.copy())
        write_planes(self, planes, pts)

    monkeypatch.setattr(VideoWriter, "write", spy_write)
    monkeypatch.setattr(VideoWriter, "write_planes", spy_planes)
    return seen


@pytest.mark.parametrize(
    "suffix, codec, pix_fmt", [(".mkv", "ffv1", "bgr0"), (".mp4", "h264", "yuv444p")]
)
def test_lossless_output_decodes_to_exactly_what_was_encoded(
    debug, tmp_path, monkeypatch, suffix, codec, pix_fmt
):
    from skipsr_cli.media.encoding import lossless_options

    src = make_clip(tmp_path / "in.mp4", frames=4, audio=False)
    out = tmp_path / f"out{suffix}"
    seen = captured_frames(monkeypatch)
    encode = lossless_options(suffix, None, None, "ultrafast")
    run(debug, UpscaleJob(src, out, chunk_frames=4, overlap=0, encode=encode))
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == (codec, pix_fmt)
        if pix_fmt == "bgr0":  # RGB in, RGB out: the model's 8-bit output itself
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        else:  # YCbCr 4:4:4 planes made on the device, kept bit for bit
            decoded = [f.to_ndarray(format="yuv444p") for f in c.decode(stream)]
    assert len(decoded) == len(seen) == 4
    for got, want in zip(decoded, seen, strict=True):
        assert np.array_equal(got, want)


def test_lossless_refuses_an_encoder_without_a_lossless_mode():
    from skipsr_cli.errors import UsageError
    from skipsr_cli.media.encoding import lossless_options

    with pytest.raises(UsageError, match="no lossless mode"):
        lossless_options(".mp4", "mpeg4", None, None)


def make_deep_clip(
    path: Path,
    frames: int = 3,
    width: int = 96,
    height: int = 64,
    hdr_transfer: int | None = None,
) -> np.ndarray:
    """A lossless 10-bit 4:4:4 clip (x264 qp 0) of a slow 16-bit ramp: 4 or more 10-bit levels per
    8-bit level, so an 8-bit stage anywhere shows. With `hdr_transfer` (16 PQ, 18 HLG) it is BT.2020
    and tagged as HDR video is. Returns the 16-bit RGB it was made from."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([0.3 + 0.2 * x / width, 0.4 + 0.1 * y / height, 0.5 + 0.05 * (x + y) / 160], -1)
    rgb16 = (rgb * 65535).round().astype(np.uint16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p10le"
        matrix = Colorspace.ITU601  # untagged under 720 lines: decoders assume BT.601 limited
        if hdr_transfer is not None:
            matrix = Colorspace.BT2020
            ctx = stream.codec_context
            ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = (
                9,
                9,
                hdr_transfer,
                1,
            )
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rgb16, format="rgb48le")
            deep = frame.reformat(format="yuv444p10le", dst_colorspace=matrix)
            if hdr_transfer is not None:
                deep.colorspace, deep.color_range = 9, 1
            for packet in stream.encode(deep):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return rgb16


def levels_per_8bit_step(rgb16: np.ndarray) -> float:
    """Distinct values of the green channel per 8-bit step it spans: at most 1 after 8 bits."""
    g = rgb16[..., 1].astype(np.float64)
    return len(np.unique(g)) / max(1.0, (g.max() - g.min()) / 257)


def test_ten_bit_input_is_decoded_deep_and_written_at_its_depth(debug, tmp_path):
    src = tmp_path / "in10.mkv"
    make_deep_clip(src)
    info = probe(src)
    assert info.bit_depth == 10
    first = next(iter(read_frames(src))).rgb
    assert first.dtype == np.uint16 and levels_per_8bit_step(first) > 2
    out = tmp_path / "out.mkv"
    run(debug, UpscaleJob(src, out, chunk_frames=3, overlap=0))
    assert probe(out).pix_fmt == "yuv420p10le"  # x264 high 10 by default for a 10-bit input
    forced = tmp_path / "forced8.mkv"
    job = UpscaleJob(src, forced, chunk_frames=3, overlap=0)
    run(debug, replace(job, encode=replace(job.encode, pix_fmt="yuv420p")))
    assert probe(forced).bit_depth == 8


def test_ten_bit_survives_the_model_path_in_float(tmp_path):
    """The shipped model in fp32 on a smooth 10-bit ramp (mostly skipped, so close to the fill):
    the 10-bit output keeps several levels per 8-bit step and stays within a fraction of an 8-bit
    step of the input, scaled back down."""
    src = tmp_path / "in10.mkv"
    rgb16 = make_deep_clip(src)
    out = tmp_path / "out.mkv"
    job = UpscaleJob(src, out, chunk_frames=3, overlap=0)
    run(load_model("base"), replace(job, encode=replace(job.encode, pix_fmt="yuv444p10le")))
    frame = next(iter(read_frames(out))).rgb
    assert frame.dtype == np.uint16 and levels_per_8bit_step(frame) > 2
    up = torch.from_numpy(frame.astype(np.float64)).permute(2, 0, 1)[None] / 65535
    back = resize(up, rgb16.shape[:2], "bicubic")[0].permute(1, 2, 0).numpy() * 65535
    inner = (slice(4, -4), slice(4, -4))
    err = np.abs(back[inner] - rgb16[inner].astype(np.float64)) / 257  # in 8-bit steps
    # The fill alone comes back within 0.001 steps; the shipped model (tau 40) came back 0.53 steps
    # away (the earlier weights at tau 36 stayed under 0.5).
    # The levels above are what catch an 8-bit path; this bound catches a shift of the picture.
    assert err.mean() < 0.75


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_phone_rotation_is_applied_to_the_pixels_and_dropped(debug, tmp_path, rotation):
    """A display matrix (as phones write) turns the picture: frames are read the right way round,
    sizes describe what the viewer sees, and the output carries the turned pixels with no matrix."""
    plain = make_clip(tmp_path / "plain.mp4", frames=3, audio=False)
    turned = make_clip(tmp_path / "turned.mp4", frames=3, audio=False, rotation=rotation)
    info = probe(turned)
    assert info.rotation == rotation
    quarter = rotation in (90, -90)
    assert (info.width, info.height) == ((48, 64) if quarter else (64, 48))
    for a, b in zip(read_frames(plain), read_frames(turned), strict=True):
        assert np.array_equal(np.rot90(a.rgb, rotation // 90), b.rgb)
    out = tmp_path / "out.mp4"
    run(debug, UpscaleJob(turned, out, chunk_frames=3, overlap=0))
    back = probe(out)
    assert (back.width, back.height, back.rotation) == (2 * info.width, 2 * info.height, 0)


@pytest.mark.parametrize("transfer", [16, 18])  # PQ, HLG
def test_hdr_tags_and_depth_are_carried(debug, tmp_path, transfer):
    """BT.2020 primaries and matrix, a PQ or HLG transfer, limited range and 10 bits: all kept."""
    src = tmp_path / "hdr.mkv"
    make_deep_clip(src, hdr_transfer=transfer)
    colour = probe(src).colour
    assert (colour.primaries, colour.transfer, colour.matrix) == (9, transfer, 9)
    out = tmp_path / "out.mkv"
    run(debug, UpscaleJob(src, out, chunk_frames=3, overlap=0))
    info = probe(out)
    assert info.colour == colour and info.bit_depth == 10


MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


def make_hdr10_clip(path: Path) -> Path:
    """10-bit HEVC with HDR10 static metadata (x265 writes it as SEI; decoders attach it to frames)."""
    params = f"hdr10=1:master-display={MASTER}:max-cll=1000,400:log-level=error"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(
            "libx265", rate=24, options={"preset": "ultrafast", "x265-params": params}
        )
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p10le"
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = 9, 9, 16, 1
        for i in range(3):
            rgb = np.full((48, 64, 3), 60 * i + 40, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p10le")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_hdr10_mastering_metadata_is_carried_by_x265_and_named_otherwise(debug, tmp_path):
    from skipsr_cli.media.encoding import EncodeOptions

    src = make_hdr10_clip(tmp_path / "hdr10.mkv")
    hdr = probe(src).hdr
    assert hdr is not None and (hdr.master_display, hdr.max_cll) == (MASTER, "1000,400")
    out = tmp_path / "out.mkv"
    x265 = EncodeOptions(codec="libx265", crf=20, preset="ultrafast")
    run(debug, UpscaleJob(src, out, chunk_frames=3, overlap=0, encode=x265))
    assert probe(out).hdr == hdr
    plan = prepare(UpscaleJob(src, tmp_path / "x264.mkv", chunk_frames=3, overlap=0))
    summary = upscale(debug, plan, CPU, torch.float32, emit=lambda e: None)
    assert any("mastering" in w and "libx264" in w for w in summary.warnings)


def test_twelve_bit_input_keeps_twelve_bits_with_x265_and_ten_with_x264(debug, tmp_path):
    from skipsr_cli.media.encoding import EncodeOptions

    src = tmp_path / "in12.mkv"
    with av.open(str(src), "w") as out:
        params = {"preset": "ultrafast", "x265-params": "log-level=error"}
        stream = out.add_stream("libx265", rate=24, options=params)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p12le"
        for i in range(2):
            rgb = np.full((48, 64, 3), 50 * i + 60, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    assert probe(src).bit_depth == 12
    x265 = EncodeOptions(codec="libx265", crf=20, preset="ultrafast")
    run(debug, UpscaleJob(src, tmp_path / "a.mkv", chunk_frames=2, overlap=0, encode=x265))
    assert probe(tmp_path / "a.mkv").pix_fmt == "yuv420p12le"
    run(debug, UpscaleJob(src, tmp_path / "b.mkv", chunk_frames=2, overlap=0))
    assert probe(tmp_path / "b.mkv").pix_fmt == "yuv420p10le"  # x264's deepest


@pytest.mark.parametrize(
    "suffix, codec", [(".avi", "mpeg4"), (".webm", "libvpx-vp9"), (".mov", "libx264")]
)
def test_other_containers_and_codecs_read(debug, tmp_path, suffix, codec):
    src = make_clip(tmp_path / f"in{suffix}", frames=4, audio=suffix != ".avi", codec=codec)
    out = tmp_path / "out.mp4"
    run(debug, UpscaleJob(src, out, chunk_frames=4, overlap=0))
    assert probe(out).frame_count == 4 and probe(out).width == 128
