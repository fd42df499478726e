"""Colour: the input's matrix and range are used to decode to RGB, and carried (tags and
conversion) to the output. Clips are lossless yuv444p so only a matrix or range error shows."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from media import (
    RANGE_FULL,
    RANGE_LIMITED,
    colour_gradient,
    copy_through,
    make_colour_clip,
    rgb_to_yuv,
    writer_like,
    yuv_to_rgb,
)

from skipsr_cli.media.colour import ColourInfo, default_matrix
from skipsr_cli.media.encoding import EncodeOptions
from skipsr_cli.media.video_io import probe, read_frames

BT601, BT709, BT2020 = 6, 1, 9  # AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic
LOSSLESS = EncodeOptions(codec="libx264", crf=0, preset="ultrafast", pix_fmt="yuv444p")

CASES = {
    "bt601-limited": ColourInfo(primaries=BT601, transfer=BT601, matrix=BT601, range=RANGE_LIMITED),
    "bt709-limited": ColourInfo(primaries=BT709, transfer=BT709, matrix=BT709, range=RANGE_LIMITED),
    "bt709-full": ColourInfo(primaries=BT709, transfer=BT709, matrix=BT709, range=RANGE_FULL),
    "bt2020-limited": ColourInfo(primaries=BT2020, transfer=BT709, matrix=BT2020, range=1),
}


def tile_means(rgb: np.ndarray, rows: int = 4, cols: int = 6) -> np.ndarray:
    """(rows, cols, 3) per-channel means of a grid of tiles: one mean per hue band and shade, so a
    shift in one colour cannot cancel out against the opposite shift in another."""
    h, w = rgb.shape[:2]
    img = rgb[: h - h % rows, : w - w % cols].astype(np.float64)
    return img.reshape(rows, h // rows, cols, w // cols, 3).mean(axis=(1, 3))


def colour_error(got: np.ndarray, want: np.ndarray) -> float:
    """The worst per-channel tile-mean difference, in 8-bit code values."""
    return float(np.abs(tile_means(got) - tile_means(want)).max())


def _clip(tmp_path: Path, colour: ColourInfo, rgb: np.ndarray, name: str = "in.mkv") -> Path:
    return make_colour_clip(
        tmp_path / name,
        rgb,
        matrix=colour.matrix,
        colour_range=colour.range,
        primaries=colour.primaries,
        transfer=colour.transfer,
    )


def _first_rgb(path: Path) -> np.ndarray:
    return next(iter(read_frames(path))).rgb


@pytest.mark.parametrize("case", CASES)
def test_probe_reports_colour_tags(tmp_path: Path, case: str) -> None:
    colour = CASES[case]
    info = probe(_clip(tmp_path, colour, colour_gradient()))
    assert info.colour == colour


@pytest.mark.parametrize("case", CASES)
def test_decode_uses_the_inputs_matrix_and_range(tmp_path: Path, case: str) -> None:
    colour, rgb = CASES[case], colour_gradient()
    got = _first_rgb(_clip(tmp_path, colour, rgb))
    assert colour_error(got, rgb) <= 1.0


@pytest.mark.parametrize("case", ["bt601-limited", "bt709-limited", "bt709-full"])
def test_a_matrix_mix_up_would_be_caught(tmp_path: Path, case: str) -> None:
    """The measure above is sensitive enough: 601 read as 709 (or back) is off by far more than 1."""
    colour, rgb = CASES[case], colour_gradient()
    wrong = BT709 if colour.matrix == BT601 else BT601
    yuv = rgb_to_yuv(rgb, colour.matrix, colour.range)
    assert colour_error(np.clip(yuv_to_rgb(yuv, wrong, colour.range), 0, 255), rgb) > 2.0
    # And through the decoder: a clip whose matrix tag lies decodes visibly wrong.
    lying = make_colour_clip(
        tmp_path / "lying.mkv",
        rgb,
        matrix=wrong,
        colour_range=colour.range,
        encode_matrix=colour.matrix,
    )
    assert colour_error(_first_rgb(lying), rgb) > 2.0


def test_a_range_mix_up_would_be_caught(tmp_path: Path) -> None:
    rgb = colour_gradient()
    lying = make_colour_clip(tmp_path / "lying.mkv", rgb, matrix=BT709, colour_range=RANGE_LIMITED)
    truthful = make_colour_clip(tmp_path / "full.mkv", rgb, matrix=BT709, colour_range=RANGE_FULL)
    full_pixels_read_as_limited = _first_rgb(truthful)
    assert colour_error(full_pixels_read_as_limited, rgb) <= 1.0
    with av.open(str(lying)) as c:
        assert c.streams.video[0].codec_context.color_range == RANGE_LIMITED
    # Same pixels as the full-range clip, tagged limited: the decoder must follow the tag.
    mislabelled = make_colour_clip(
        tmp_path / "mislabelled.mkv", rgb, matrix=BT709, colour_range=RANGE_LIMITED
    )
    yuv_full = rgb_to_yuv(rgb, BT709, RANGE_FULL)
    as_limited = np.clip(yuv_to_rgb(yuv_full, BT709, RANGE_LIMITED), 0, 255)
    assert colour_error(as_limited, rgb) > 2.0
    assert colour_error(_first_rgb(mislabelled), rgb) <= 1.0


@pytest.mark.parametrize(("height", "matrix"), [(64, BT601), (720, BT709)])
def test_untagged_input_follows_the_height_convention(
    tmp_path: Path, height: int, matrix: int
) -> None:
    """No matrix tag: BT.601 below 720 lines, BT.709 from 720 up, as FFmpeg and players assume."""
    assert default_matrix(height) == matrix
    rgb = colour_gradient(width=48, height=height)
    clip = make_colour_clip(
        tmp_path / "untagged.mkv", rgb, matrix=None, colour_range=None, encode_matrix=matrix
    )
    assert probe(clip).colour == ColourInfo()
    assert colour_error(_first_rgb(clip), rgb) <= 1.0


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_writer_carries_colour(tmp_path: Path, case: str, suffix: str) -> None:
    colour, rgb = CASES[case], colour_gradient()
    src = _clip(tmp_path, colour, rgb)
    out = tmp_path / f"out{suffix}"
    copy_through(src, out, LOSSLESS, colour=probe(src).colour)
    assert probe(out).colour == colour
    assert colour_error(_first_rgb(out), rgb) <= 1.0


def test_writer_makes_an_unspecified_matrix_explicit(tmp_path: Path) -> None:
    """An untagged SD input, written with its (empty) description: the output is converted and
    tagged with the matrix the input was read with, and limited range, so no player guesses."""
    rgb = colour_gradient()
    src = make_colour_clip(tmp_path / "in.mkv", rgb, matrix=None, colour_range=None)
    out = tmp_path / "out.mkv"
    copy_through(src, out, LOSSLESS, colour=probe(src).colour)
    assert probe(out).colour == ColourInfo(matrix=BT601, range=RANGE_LIMITED)
    assert colour_error(_first_rgb(out), rgb) <= 1.0


def test_writer_without_colour_is_unchanged(tmp_path: Path) -> None:
    rgb = colour_gradient()
    src = make_colour_clip(tmp_path / "in.mkv", rgb, matrix=None, colour_range=None)
    out = tmp_path / "out.mkv"
    copy_through(src, out, LOSSLESS, colour=None)
    assert probe(out).colour == ColourInfo()
    assert colour_error(_first_rgb(out), rgb) <= 1.0


@pytest.mark.parametrize("case", ["bt601-limited", "bt709-full"])
def test_writer_carries_colour_through_420(tmp_path: Path, case: str) -> None:
    """The default 4:2:0 output: converted with the input's matrix, then chroma subsampled. On
    this fast hue sweep, 4:2:0 itself costs up to ~2.5 code values (checked in numpy), so the bound
    here is looser than the 4:4:4 tests'; it still proves the tags and catches a gross error."""
    colour, rgb = CASES[case], colour_gradient()
    src = _clip(tmp_path, colour, rgb)
    out = tmp_path / "out.mp4"
    options = EncodeOptions(codec="libx264", crf=0, preset="ultrafast", pix_fmt="yuv420p")
    copy_through(src, out, options, colour=probe(src).colour)
    assert probe(out).colour == colour
    assert colour_error(_first_rgb(out), rgb) <= 3.0


@pytest.mark.parametrize("case", CASES)
def test_device_conversion_equals_the_host_one(case: str) -> None:
    """rgb_to_planes (torch, where the model's frames are) gives rgb_to_ycbcr's code values at
    4:4:4, and at 4:2:0 the same luma with 2x2 means of its chroma."""
    import torch

    from skipsr_cli.media.colour import output_colour, rgb_to_planes, rgb_to_ycbcr

    rgb = colour_gradient()[:64, :96]
    colour = output_colour(CASES[case], 64)
    host = rgb_to_ycbcr(rgb, colour)  # (3, H, W)
    image = torch.from_numpy(rgb).permute(2, 0, 1).double() / 255
    assert np.array_equal(rgb_to_planes(image, colour, "yuv444p").numpy(), host)
    planes = rgb_to_planes(image, colour, "yuv420p").numpy()
    assert planes.shape == (96, 96)
    assert np.array_equal(planes[:64], host[0])
    chroma = planes[64:].reshape(2, 32, 48).astype(np.float64)
    means = host[1:].astype(np.float64).reshape(2, 32, 2, 48, 2).mean(axis=(2, 4))
    assert np.abs(chroma - means).max() <= 1.0


@pytest.mark.parametrize("case", ["bt601-limited", "bt709-full"])
def test_writer_takes_device_planes_with_the_same_colours(tmp_path: Path, case: str) -> None:
    """The path `skipsr upscale` takes for 4:2:0 and 4:4:4 outputs: planes made by rgb_to_planes."""
    import torch

    from skipsr_cli.media.colour import rgb_to_planes

    colour, rgb = CASES[case], colour_gradient()
    src = _clip(tmp_path, colour, rgb)
    for pix_fmt, bound in (("yuv420p", 3.0), ("yuv444p", 1.0)):
        out = tmp_path / f"out_{pix_fmt}.mp4"
        options = EncodeOptions(codec="libx264", crf=0, preset="ultrafast", pix_fmt=pix_fmt)
        with writer_like(src, out, options, colour=probe(src).colour) as writer:
            assert writer.planes_format == pix_fmt
            for frame in read_frames(src):
                image = torch.from_numpy(frame.rgb).permute(2, 0, 1).float() / 255
                planes = rgb_to_planes(image, writer.colour, pix_fmt).numpy()
                writer.write_planes(planes, frame.pts)
        assert probe(out).colour == colour
        assert colour_error(_first_rgb(out), rgb) <= bound


def exact_rgb(y: float, cb: float, cr: float, kr: float, kb: float) -> np.ndarray:
    """The BT.601 / BT.709 formula for limited-range 8-bit code values, in floating point."""
    luma, blue, red = (y - 16) / 219, (cb - 128) / 224, (cr - 128) / 224
    r, b = luma + 2 * (1 - kr) * red, luma + 2 * (1 - kb) * blue
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.array([r, g, b]) * 255, 0, 255)


@pytest.mark.parametrize("height, kr, kb", [(64, 0.299, 0.114), (720, 0.2126, 0.0722)])
def test_decoding_flat_colours_has_no_bias(height: int, kr: float, kb: float) -> None:
    """4:2:0 frames of one colour decode to the formula's RGB, rounded: swscale's default
    conversion came out about one code value dark, which models trained on it learnt to undo."""
    from skipsr_cli.media.video_io import frame_to_rgb

    rng = np.random.default_rng(0)
    errors = []
    for _ in range(40):
        y, cb, cr = rng.integers(16, 236), rng.integers(40, 216), rng.integers(40, 216)
        planes = np.empty((height * 3 // 2, 64), np.uint8)
        planes[:height], planes[height : height * 5 // 4], planes[height * 5 // 4 :] = y, cb, cr
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")  # no tags: by its height
        errors.append(
            frame_to_rgb(frame)[height // 2, 32].astype(np.float64) - exact_rgb(y, cb, cr, kr, kb)
        )
    errors = np.array(errors)
    assert np.abs(errors).max() <= 0.5 + 1e-9  # rounding only
    assert np.abs(errors.mean(axis=0)).max() < 0.15


def test_codec_round_trips_of_training_and_evaluation_keep_the_colours() -> None:
    """The H.264 and JPEG round trips that make low-resolution inputs change detail, not colour."""
    import torch

    from skipsr_cli.train.degrade import h264_round_trip, jpeg_round_trip

    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(
        torch.rand(4, 3, 64, 64, generator=gen) * 0.8 + 0.1, 5, 1, 2
    )
    # x264 at CRF 0 and JPEG at quality 100 are nearly lossless: what is left is the conversions
    # (swscale's decoding alone was -0.7 to -1.2). At CRF 12 the codec's own rounding adds a little.
    for out, bound in (
        (h264_round_trip(smooth, 0), 0.1),
        (jpeg_round_trip(smooth, 100), 0.1),
        (h264_round_trip(smooth, 12), 0.2),
    ):
        shift = (out - smooth).mean(dim=(0, 2, 3)) * 255  # per channel, in code values
        assert shift.abs().max() < bound, shift


@pytest.mark.parametrize(
    "fmt, height, width",
    [("yuv420p", 64, 96), ("yuvj420p", 63, 95), ("yuv422p", 48, 61), ("yuv440p", 31, 40)],
)
def test_planes_converted_on_the_device_equal_the_host_conversion(
    fmt: str, height: int, width: int
) -> None:
    """The pipeline uploads 8-bit planes and converts whole chunks with torch; every value must be
    the host's, turned as the host turns its RGB (odd sizes, whose partial chroma blocks sit at the
    right and bottom edges, every subsampling and every quarter turn), or a video's frames would
    depend on where they were converted."""
    import torch

    from skipsr_cli.media.video_io import DecodedFrame, frame_to_rgb, ycbcr8
    from skipsr_cli.run.device_frames import frames_to_device

    rng = np.random.default_rng(height)
    cpu = torch.device("cpu")
    pictures = []
    for i in range(3):
        frame = av.VideoFrame(width, height, fmt)
        for plane in frame.planes:
            view = np.frombuffer(plane, np.uint8)
            view[:] = rng.integers(0, 256, view.size, dtype=np.uint8)
        if i:
            frame.colorspace = (5, 6)[i - 1]  # tagged; the first follows its height
        pictures.append((frame, ycbcr8(frame)))
    for turns in range(4):
        for frame, planes in pictures:
            want = np.rot90(frame_to_rgb(frame), turns)
            decoded = DecodedFrame(planes.rotated(turns), 0, 0)
            assert np.array_equal(decoded.rgb, want)
            got = frames_to_device([decoded, decoded], cpu)[0, :, 1].permute(1, 2, 0)
            assert np.array_equal(got.mul(255).round().byte().numpy(), want)
    mixed = [DecodedFrame(p, i, i) for i, (_, p) in enumerate(pictures)]  # colours differ: host
    got = frames_to_device(mixed, cpu)[0, :, 2].permute(1, 2, 0)
    assert np.array_equal(got.mul(255).round().byte().numpy(), mixed[2].rgb)
