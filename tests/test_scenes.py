"""Scene cuts: found from pairs of frames, and the model never looks across one."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import SkipSR
from models.skipsr import Result
from skipsr_cli.run import pipeline
from skipsr_cli.run.memory import run_in_pieces
from skipsr_cli.run.pipeline import UpscaleJob, prepare, upscale
from skipsr_cli.run.scenes import CHANGE, FLASH, PQ, SHIFT, pair_scores, sdr_like, shot_starts
from skipsr_cli.weights import load_model

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "bbb_320x180.mp4"
CUT = 12  # where the second shot starts in `two_shots`


def sample_frames(size: tuple[int, int] | None = None) -> torch.Tensor:
    """The bundled sample (one shot of 50 frames) as (T, 3, h, w) in [0, 1]."""
    with av.open(str(SAMPLE)) as f:
        images = [frame.to_ndarray(format="rgb24") for frame in f.decode(video=0)]
    frames = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return frames if size is None else F.interpolate(frames, size=size, mode="area")


def two_shots(size: tuple[int, int] | None = None, frames: int = 24) -> torch.Tensor:
    """The sample's first CUT frames, then later frames as their mirrored negative: (T, 3, h, w)."""
    x = sample_frames(size)
    return torch.cat((x[:CUT], (1 - x[CUT:frames]).flip(-1)))


def as_clip(frames: torch.Tensor) -> torch.Tensor:
    return frames.transpose(0, 1)[None]  # (1, 3, T, h, w)


@pytest.fixture(scope="module")
def debug() -> SkipSR:
    return load_model("debug", random_weights=True)


def test_a_cut_is_found_where_the_shot_changes():
    change, shift = pair_scores(two_shots())
    assert change.shape == shift.shape == (23,)
    assert change[CUT - 1] > 0.2 and shift[CUT - 1] > 0.3  # the pair (11, 12)
    assert change[: CUT - 1].max() < 0.05 and change[CUT:].max() < 0.05
    assert shot_starts(as_clip(two_shots())) == [CUT]
    # moved on to the end of the token that holds it (the model's frames a token), so the new
    # shot's piece starts clean
    assert shot_starts(as_clip(two_shots()[1:]), step=1) == [CUT - 1]
    assert shot_starts(as_clip(two_shots()[1:]), step=4) == [12]  # frame 11 joins the old shot
    assert shot_starts(as_clip(two_shots()), step=5) == [15]
    assert shot_starts(as_clip(two_shots()[CUT - 2 :]), step=4) == [4]
    assert shot_starts(as_clip(two_shots()[1 : CUT + 1]), step=4) == []  # in the last token
    assert shot_starts(as_clip(two_shots()[3 : CUT + 1]), step=4) == []  # in a last, short one


def test_a_shot_with_motion_is_not_cut():
    """The sample's 50 frames are one shot with a moving camera. Its brightness falling by a fifth
    from one frame to the next is no cut either: the histograms move past their threshold, but
    the cells' change stays below its own."""
    assert shot_starts(as_clip(sample_frames())) == []
    x = sample_frames()[:16]
    faded = torch.cat((x[:8], x[8:] * 0.8))
    change, shift = pair_scores(faded)
    assert shift[7] >= 0.2 > change[7]
    assert shot_starts(as_clip(faded)) == []
    assert shot_starts(as_clip(x[:1])) == []


def flashed(frames: torch.Tensor, at: int, length: int) -> torch.Tensor:
    """`frames` with `length` frames from `at` washed towards white, as a flash does."""
    out = frames.clone()
    out[at : at + length] = out[at : at + length] * 0.3 + 0.7
    return out


def test_a_flash_is_no_cut():
    """One to FLASH washed-out frames cross both thresholds into the flash and out of it; the
    picture from before returns, so it is one shot. A longer flash, one the chunk ends in, and a
    real cut beside a flash are cut."""
    x = sample_frames()[:16]
    for n in range(1, FLASH + 1):
        change, shift = pair_scores(flashed(x, 5, n))
        for pair in (4, 4 + n):  # into the flash, and out of it
            assert change[pair] >= CHANGE and shift[pair] >= SHIFT
        assert shot_starts(as_clip(flashed(x, 5, n))) == []
    assert shot_starts(as_clip(flashed(x, 5, FLASH + 1))) == [5, 5 + FLASH + 1]
    assert shot_starts(as_clip(flashed(x, 14, 2))) == [14]  # the picture has not come back
    assert shot_starts(as_clip(flashed(two_shots()[:16], 8, 2))) == [CUT]
    assert shot_starts(as_clip(flashed(two_shots()[:16], 8, 2)), step=4) == [12]


def to_pq(frames: torch.Tensor) -> torch.Tensor:
    """SDR-coded frames (BT.1886's gamma) as PQ codes the same light, diffuse white at 203 nits."""
    y = (frames.clamp(0, 1) ** 2.4 * 203 / 10000) ** 0.1593017578125
    return ((0.8359375 + 18.8515625 * y) / (1 + 18.6875 * y)) ** 78.84375


def test_pq_pictures_are_scored_as_sdr_ones():
    """PQ codes an SDR picture's light below about 0.58 of its range, which roughly halves the
    cells' change at a cut: read as they are, the codes of this cut miss it; mapped to an
    SDR-like scale first, they find it, and one shot stays one."""
    x = sample_frames()
    clip = torch.cat((x[:CUT], x[38:50] * 0.7))  # a later, darker shot
    assert torch.allclose(sdr_like(to_pq(clip)), clip, atol=1e-4)
    assert shot_starts(as_clip(clip)) == [CUT]
    assert shot_starts(as_clip(to_pq(clip))) == []
    assert shot_starts(as_clip(to_pq(clip)), transfer=PQ) == [CUT]
    assert shot_starts(as_clip(to_pq(x[:16])), transfer=PQ) == []


def test_the_run_reads_cuts_with_the_input_transfer(debug, tmp_path, monkeypatch):
    """`upscale` hands the input's transfer (here PQ, 16) to the search, and no search runs
    with --no-scene-cuts."""
    from media import make_colour_clip

    seen = []

    def spy(lr, step=1, transfer=None):
        seen.append(transfer)
        return shot_starts(lr, step, transfer)

    monkeypatch.setattr(pipeline, "shot_starts", spy)
    rgb = (sample_frames((48, 64))[0] * 255).round().byte().permute(1, 2, 0).numpy()
    src = make_colour_clip(
        tmp_path / "pq.mp4", rgb, matrix=9, colour_range=1, primaries=9, transfer=16, frames=4
    )
    for cuts, out in ((True, "a"), (False, "b")):
        render(debug, src, tmp_path / out, scene_cuts=cuts)
    assert seen == [16]


def test_each_shot_runs_apart_and_the_pieces_join_in_time():
    calls = []

    def run(clip: torch.Tensor, first: int) -> Result:
        """Each piece keeps a different number of its 4 tokens a frame: 1, 2, 3."""
        calls.append((clip.shape[2], first))
        keep = torch.zeros(1, clip.shape[2], 2, 2, dtype=torch.bool)
        keep.view(1, clip.shape[2], 4)[:, :, : len(calls)] = True
        return Result(clip * 2 + first, keep, len(calls) / 4)

    lr = torch.rand(1, 3, 16, 4, 4)
    result = run_in_pieces(run, lr, [5, 12], first=32)
    assert calls == [(5, 32), (7, 37), (4, 44)]
    offsets = torch.tensor([32.0] * 5 + [37.0] * 7 + [44.0] * 4)[None, None, :, None, None]
    assert torch.equal(result.frames, lr * 2 + offsets)  # each piece in its place
    kept = result.keep.flatten(2).sum(dim=2)[0].tolist()
    assert kept == [1] * 5 + [2] * 7 + [3] * 4
    assert result.kept_fraction == pytest.approx((5 * 1 + 7 * 2 + 4 * 3) / 64)
    calls.clear()
    assert torch.equal(run_in_pieces(run, lr, [], first=0).frames, lr * 2) and calls == [(16, 0)]


def test_the_model_never_looks_across_a_cut(debug):
    """With the cut found, the second shot's frames do not change when the first shot's do; with
    the chunk run whole, they do (the debug network mixes frames in its VAE and its windows)."""
    lr = as_clip(two_shots((48, 64), frames=16))
    other = lr.clone()
    other[:, :, :CUT] = other[:, :, :CUT].flip(-2)
    size = (96, 128)
    step = debug.args.token_pixels[0]
    starts = shot_starts(lr, step)
    assert starts == [-(-CUT // step) * step] == [12]

    def run(clip, first):
        with torch.inference_mode():
            return debug(clip, size)

    a, b = (run_in_pieces(run, x, starts, 0).frames for x in (lr, other))
    assert torch.equal(a[:, :, 12:], b[:, :, 12:])
    assert not torch.equal(a[:, :, :12], b[:, :, :12])
    whole_a, whole_b = run(lr, 0).frames, run(other, 0).frames
    assert not torch.equal(whole_a[:, :, 12:], whole_b[:, :, 12:])


def write_two_shots(path: Path, size: tuple[int, int] = (54, 96), flip_first=False) -> Path:
    """`two_shots` at `size` (h, w) as a lossless H.264 file; `flip_first` turns the first shot upside
    down, leaving the second as it was."""
    shots = two_shots(size)
    if flip_first:
        shots[:CUT] = shots[:CUT].flip(-2)
    frames = (shots * 255).round().byte().permute(0, 2, 3, 1).numpy()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24, options={"preset": "ultrafast", "crf": "0"})
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for image in frames:
            out.mux(
                stream.encode(
                    av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                )
            )
        out.mux(stream.encode())
    return path


def pngs(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for p in sorted(folder.glob("*.png")):
        with av.open(str(p)) as f:
            out[p.name] = next(f.decode(video=0)).to_ndarray(format="rgb24")
    return out


def render(model, src: Path, out: Path, frames=None, scene_cuts=True, overlap=0) -> None:
    out.mkdir()
    job = UpscaleJob(
        src,
        out / "f_%04d.png",
        chunk_frames=8,
        overlap=overlap,
        frames=frames,
        scene_cuts=scene_cuts,
    )
    upscale(model, prepare(job), torch.device("cpu"), torch.float32, emit=lambda e: None)


# chunks of 8 without overlap: the cut lies inside the chunk [8, 16), on a token's start; with
# an overlap of 3 the chunks start at 0, 5, 10, ...: in [5, 13) it lies in the last token (no
# split), in [10, 18) inside the first token (split at its end, 14)
@pytest.mark.parametrize(("overlap", "holder"), [(0, (8, 16)), (3, (10, 18))])
def test_a_cut_inside_a_chunk_keeps_ranges_equal_to_the_whole_run(debug, tmp_path, overlap, holder):
    """Ranges that start on either side of the cut render the whole run's frames bit for bit;
    without cut detection only the frames of the chunk that holds it differ."""
    src = write_two_shots(tmp_path / "two.mp4")
    render(debug, src, tmp_path / "whole", overlap=overlap)
    whole = pngs(tmp_path / "whole")
    assert len(whole) == 24
    render(debug, src, tmp_path / "a", frames=(0, 10), overlap=overlap)
    render(debug, src, tmp_path / "b", frames=(10, 24), overlap=overlap)
    parts = {**pngs(tmp_path / "a"), **pngs(tmp_path / "b")}
    assert parts.keys() == whole.keys()
    assert all(np.array_equal(parts[k], whole[k]) for k in whole)
    render(debug, src, tmp_path / "plain", scene_cuts=False, overlap=overlap)
    plain = pngs(tmp_path / "plain")
    names = sorted(whole)
    differ = [i for i, k in enumerate(names) if not np.array_equal(plain[k], whole[k])]
    assert differ and min(differ) >= holder[0] and max(differ) < holder[1]
