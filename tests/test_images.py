"""Still images: one picture, numbered sequences (folder or pattern) in, PNG frames (8 or 16 bit) out."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import make_clip

from models import SkipSR
from skipsr_cli.errors import InputError, OutputError, UsageError
from skipsr_cli.media.image_io import sequence_files
from skipsr_cli.media.video_io import probe, read_frames
from skipsr_cli.run.pipeline import UpscaleJob, prepare, upscale
from skipsr_cli.weights import load_model


@pytest.fixture(scope="module")
def debug() -> SkipSR:
    return load_model("debug", random_weights=True)


def run(model: SkipSR, job: UpscaleJob) -> None:
    upscale(model, prepare(job), torch.device("cpu"), torch.float32, emit=lambda e: None)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    fmt = "rgb24" if rgb.dtype == np.uint8 else "rgb48be"
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = rgb.shape[1], rgb.shape[0], fmt
    source = av.VideoFrame.from_ndarray(rgb, format="rgb24" if fmt == "rgb24" else "rgb48le")
    path.write_bytes(b"".join(bytes(p) for p in codec.encode(source.reformat(format=fmt))))
    return path


def picture(seed: int, height: int = 48, width: int = 64, dtype=np.uint8) -> np.ndarray:
    top = 255 if dtype == np.uint8 else 65535
    return np.random.default_rng(seed).integers(0, top + 1, (height, width, 3)).astype(dtype)


def read_png(path: Path) -> np.ndarray:
    return next(iter(read_frames(path))).rgb


def test_a_single_image_becomes_a_single_png(debug, tmp_path):
    src = write_png(tmp_path / "photo.png", picture(0))
    info = probe(src)
    assert (info.width, info.height, info.frame_count or 1) == (64, 48, 1)
    out = tmp_path / "big.png"
    run(debug, UpscaleJob(src, out))
    assert read_png(out).shape == (96, 128, 3)
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_a_folder_of_numbered_images_reads_in_numeric_order(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for n in (1, 2, 10):  # 10 sorts after 2 by number, before it by name
        write_png(folder / f"shot_{n}.png", picture(n))
    files = sequence_files(folder)
    assert [f.name for f in files] == ["shot_1.png", "shot_2.png", "shot_10.png"]
    frames = list(read_frames(folder))
    assert [f.pts for f in frames] == [0, 1, 2]
    assert np.array_equal(frames[2].rgb, picture(10))
    assert probe(folder).frame_count == 3


def test_a_pattern_sequence_to_png_frames_and_to_video(debug, tmp_path):
    for n in (1, 2, 5):  # the output's frames keep the input's numbers, gaps included
        write_png(tmp_path / f"f_{n:04d}.png", picture(n))
    pattern = tmp_path / "f_%04d.png"
    out = tmp_path / "up"
    out.mkdir()
    run(debug, UpscaleJob(pattern, out, chunk_frames=3, overlap=0))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["frame_000001.png", "frame_000002.png", "frame_000005.png"]
    run(debug, UpscaleJob(pattern, tmp_path / "big_%03d.png", chunk_frames=3, overlap=0))
    assert sorted(p.name for p in tmp_path.glob("big_*")) == [
        "big_001.png",
        "big_002.png",
        "big_005.png",
    ]
    video = tmp_path / "seq.mp4"
    run(debug, UpscaleJob(pattern, video, chunk_frames=3, overlap=0))
    assert probe(video).frame_count == 3 and probe(video).width == 128


def test_sixteen_bit_pngs_stay_sixteen_bit(debug, tmp_path):
    src = write_png(tmp_path / "deep.png", picture(3, dtype=np.uint16))
    assert probe(src).bit_depth == 16
    out = tmp_path / "deep_x2.png"
    run(debug, UpscaleJob(src, out))
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt in ("rgb48be", "rgb48le")
    assert read_png(out).dtype == np.uint16


def test_png_frames_of_a_video_keep_existing_files_unless_overwriting(debug, tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3, audio=True)
    out = tmp_path / "frames"
    out.mkdir()
    (out / "frame_000001.png").write_bytes(b"precious")
    job = UpscaleJob(src, out, chunk_frames=3, overlap=0)
    with pytest.raises(OutputError, match="exists"):
        run(debug, job)
    assert (out / "frame_000001.png").read_bytes() == b"precious"
    summary = upscale(
        debug,
        prepare(UpscaleJob(src, out, chunk_frames=3, overlap=0, overwrite=True)),
        torch.device("cpu"),
        torch.float32,
        emit=lambda e: None,
    )
    assert len(list(out.glob("frame_*.png"))) == 3
    assert any("audio" in w and "PNG" in w for w in summary.warnings)


def test_one_png_for_many_frames_is_refused_before_any_work(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3, audio=False)
    with pytest.raises(UsageError, match="pattern"):
        prepare(UpscaleJob(src, tmp_path / "one.png"))


def test_bad_sequences_get_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no files match"):
        probe(tmp_path / "none_%04d.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images"):
        probe(empty)


def test_an_existing_file_with_a_percent_in_its_name_is_that_file(debug, tmp_path):
    src = write_png(tmp_path / "100%done.png", picture(4))
    assert sequence_files(src) is None and probe(src).width == 64
    run(debug, UpscaleJob(src, tmp_path / "out.png"))
    assert read_png(tmp_path / "out.png").shape == (96, 128, 3)


def test_one_png_for_an_input_of_unknown_length_fails_and_leaves_nothing(debug, tmp_path):
    src = tmp_path / "raw.h264"  # a raw stream: no container, so no frame count before decoding
    with av.open(str(src), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(4):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture(i), format="rgb24")))
        out.mux(stream.encode())
    assert probe(src).frame_count is None
    with pytest.raises(UsageError, match="more than one frame"):
        run(debug, UpscaleJob(src, tmp_path / "one.png", chunk_frames=2, overlap=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.h264"]


def test_png_frames_into_a_folder_that_cannot_be_written_fail_before_any_work(tmp_path):
    from skipsr_cli.media.image_io import ImageWriter

    with pytest.raises(OutputError, match="cannot write"):
        ImageWriter(tmp_path / "gone" / "f_%03d.png", width=8, height=8, pix_fmt="rgb24", frames=2)
