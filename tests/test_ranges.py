"""Frame ranges: a range renders exactly the frames a whole run renders there, on the same grid."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import make_clip

from models import SkipSR
from skipsr_cli.errors import UsageError
from skipsr_cli.media.joiner import source_timestamps
from skipsr_cli.media.video_io import probe, read_frames
from skipsr_cli.run.chunking import Chunk, OverlapAdd
from skipsr_cli.run.pipeline import UpscaleJob, prepare, upscale
from skipsr_cli.run.ranges import parse_frames
from skipsr_cli.weights import load_model

CHUNK, OVERLAP = 8, 2


@pytest.fixture(scope="module")
def debug() -> SkipSR:
    return load_model("debug", random_weights=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("src") / "in.mp4", frames=23, audio=True)


def render(model: SkipSR, src: Path, out: Path, frames=None, plan=(CHUNK, OVERLAP)):
    job = UpscaleJob(src, out, chunk_frames=plan[0], overlap=plan[1], frames=frames)
    return upscale(model, prepare(job), torch.device("cpu"), torch.float32, emit=lambda e: None)


def pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: next(iter(read_frames(p))).rgb for p in sorted(folder.glob("*.png"))}


def test_parse_frames():
    assert parse_frames("3:10") == (3, 10)
    assert parse_frames("7:") == (7, None)
    assert parse_frames(None) is None
    assert parse_frames((2, None)) == (2, None)
    for bad in ("5", "5:5", "9:2", "-1:4", "a:b", ":4", (4, 4), (-2, 3)):
        with pytest.raises(UsageError, match="--frames"):
            parse_frames(bad)


def test_the_blend_keeps_only_its_range():
    blend = OverlapAdd(first=5, last=9)
    out = torch.arange(8.0)[:, None] + 1  # chunk [0, 8) then [6, 14), overlap 2
    released = list(blend.add(Chunk(0, list(range(8)), 0, 2), out))
    released += list(blend.add(Chunk(6, list(range(8)), 2, 2), out + 100))
    assert [i for i, _ in released] == [5, 6, 7, 8]
    assert released[0][1].item() == 6  # frame 5: weight 1 in the first chunk alone
    blend.close()  # nothing outside [5, 9) was held back


# cross-faded chunks, and chunks without overlap (the default plan's kind)
@pytest.mark.parametrize("plan", [(CHUNK, OVERLAP), (CHUNK, 0)])
def test_ranges_joined_equal_the_whole_run(debug, clip, tmp_path, plan):
    """PNG frames keep their absolute numbers: the pieces' files are the whole run's, bit for bit
    (the last range overshoots the end, as an OpenCue chunk may)."""
    (tmp_path / "whole").mkdir()
    render(debug, clip, tmp_path / "whole", plan=plan)
    whole = pngs(tmp_path / "whole")
    assert len(whole) == 23
    (tmp_path / "parts").mkdir()
    # cut inside a chunk and inside an overlap; the last range holds only the short last chunk's
    # frames and overshoots the end
    cuts = [0, 5, 14, 20, 40]
    for start, stop in zip(cuts, cuts[1:], strict=False):
        render(debug, clip, tmp_path / "parts", frames=(start, stop), plan=plan)
    parts = pngs(tmp_path / "parts")
    assert parts.keys() == whole.keys()
    for name in whole:
        assert np.array_equal(parts[name], whole[name]), name


def test_a_range_is_a_video_of_its_own(debug, clip, tmp_path):
    summary = render(debug, clip, tmp_path / "part.mkv", frames=(9, 17))
    info = probe(tmp_path / "part.mkv")
    assert info.frame_count == 8 and info.audio_streams == 0
    with av.open(str(tmp_path / "part.mkv")) as f:
        stamps = [frame.time for frame in f.decode(video=0)]
    assert stamps[0] == pytest.approx(0.0) and len(stamps) == 8
    assert any("video only" in w for w in summary.warnings)


def test_a_range_past_the_end_is_refused_before_any_work(clip, tmp_path):
    with pytest.raises(UsageError, match=r"^--frames 23:30 starts past the input's 23 frames$"):
        prepare(UpscaleJob(clip, tmp_path / "x.mkv", frames=(23, 30)))
    with pytest.raises(UsageError, match=r"^--frames 40: starts past the input's 23 frames$"):
        prepare(UpscaleJob(clip, tmp_path / "x.mkv", frames=(40, None)))


def test_the_command_line_takes_a_range(clip, tmp_path):
    from typer.testing import CliRunner

    from skipsr_cli.cli import app

    base = ["upscale", str(clip), "--model", "debug", "--random-weights", "-q", "--device", "cpu"]
    ok = CliRunner().invoke(app, [*base, str(tmp_path / "r.mkv"), "--frames", "3:9"])
    assert ok.exit_code == 0, ok.output
    assert probe(tmp_path / "r.mkv").frame_count == 6
    bad = CliRunner().invoke(app, [*base, str(tmp_path / "b.mkv"), "--frames", "9:2"])
    assert bad.exit_code == 2 and "--frames" in bad.output
    assert not (tmp_path / "b.mkv").exists()


@pytest.mark.parametrize("ext", ["mp4", "mkv", "ts"])
@pytest.mark.parametrize("start", [0, 1, 8, 13, 99])
def test_decoding_from_a_frame_seeks_and_numbers_frames_as_a_whole_decode(tmp_path, start, ext):
    """Keyframes every 8 frames and B-frames: a decode that starts at a frame seeks to the keyframe
    before it, drops what precedes it, and gives the very frames (and numbers) of a whole decode.
    100 frames: the seek reads packets only up to REORDER_WINDOW (media/seeking.py) past its frame, except for 99.
    MPEG-TS too, whose demuxer lands on the timestamp asked for, keyframe or not."""
    path = tmp_path / f"gop.{ext}"
    rng = np.random.default_rng(3)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"g": "8", "bf": "2", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(100):
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    whole = list(read_frames(path))
    part = list(read_frames(path, start=start))
    assert [f.index for f in part] == list(range(start, 100))
    assert all(
        np.array_equal(a.rgb, b.rgb) and a.pts == b.pts
        for a, b in zip(part, whole[start:], strict=True)
    )


def test_the_first_chunk_of_a_range_is_on_the_whole_run_grid():
    from skipsr_cli.run.chunking import chunk_start

    # chunks of 8 with 2 shared start at 0, 6, 12, 18: the first holding frame f
    assert [chunk_start(f, 8, 2) for f in (0, 5, 7, 8, 12, 13, 14)] == [0, 0, 0, 6, 6, 6, 12]


def test_an_edit_list_that_drops_frames_is_seeked_by_the_frames_it_shows(tmp_path):
    """`ffmpeg -ss T -i in.mp4 -c copy` keeps the packets from the keyframe before T and an edit
    list that hides those before T: they are decoded but never shown, so frame N counts only
    the frames shown, and a decode from N gives the frames of a whole decode."""
    import subprocess

    from damage import ffmpeg_exe

    ffmpeg = ffmpeg_exe()
    if ffmpeg is None:
        pytest.skip("no ffmpeg binary")
    source = make_clip(tmp_path / "src.mp4", frames=120, audio=False)
    cut = tmp_path / "cut.mp4"
    subprocess.run(
        [ffmpeg, "-v", "error", "-ss", "1.1", "-i", source, "-c", "copy", cut], check=True
    )
    whole = list(read_frames(cut))
    assert 0 < len(whole) < 120
    for start in (1, 40, len(whole) - 1):
        part = list(read_frames(cut, start=start))
        assert [f.index for f in part] == list(range(start, len(whole)))
        assert all(
            np.array_equal(a.rgb, b.rgb) and a.pts == b.pts
            for a, b in zip(part, whole[start:], strict=True)
        )


def test_a_range_past_an_estimated_end_is_no_damage(debug, tmp_path):
    """An mkv's frame count is estimated from its duration; a farm's last range that overshoots
    it stops at the end without calling the file damaged, also with --strict."""
    src = make_clip(tmp_path / "in.mkv", frames=25, audio=False)
    assert not probe(src).frames_exact
    job = UpscaleJob(src, tmp_path / "tail.mkv", frames=(20, 40), strict=True)
    summary = upscale(debug, prepare(job), torch.device("cpu"), torch.float32, emit=lambda e: None)
    assert summary.frames == 5 and summary.frames_lost == 0
    assert not any("damaged" in w for w in summary.warnings)


def test_an_avi_with_b_frames_is_numbered_and_timed_as_its_decoder_shows_it(debug, tmp_path):
    """An AVI holds no presentation times: FFmpeg gives H.264 B-frames' packets their decode
    times, which the decoded frames keep, out of order (1, 4, 3, 5, 2: a whole run's encoder
    refused them), and a seek that counts frames by them lands on the wrong ones. Frames take
    the packets' times in the order they are shown, as source_timestamps has them; a decode
    from frame N gives the whole decode's frames, and a range renders the whole run's."""
    src = make_clip(tmp_path / "in.avi", frames=30, audio=False, options={"bf": "3"})
    whole = list(read_frames(src))
    stamps = [f.pts for f in whole]
    assert stamps == source_timestamps(src)[0] and stamps == sorted(set(stamps))
    for start in (1, 9, 22):
        part = list(read_frames(src, start=start))
        assert [f.index for f in part] == list(range(start, 30))
        assert all(
            np.array_equal(a.rgb, b.rgb) and a.pts == b.pts
            for a, b in zip(part, whole[start:], strict=True)
        )
    (tmp_path / "whole").mkdir()
    render(debug, src, tmp_path / "whole")
    (tmp_path / "part").mkdir()
    render(debug, src, tmp_path / "part", frames=(10, 25))
    whole_pngs, part_pngs = pngs(tmp_path / "whole"), pngs(tmp_path / "part")
    assert len(whole_pngs) == 30 and len(part_pngs) == 15
    assert all(np.array_equal(part_pngs[name], whole_pngs[name]) for name in part_pngs)
