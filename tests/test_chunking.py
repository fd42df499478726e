"""Chunk planning and the overlap-add blend: full coverage, and chunked = whole for a local model."""

from __future__ import annotations

import pytest
import torch

from skipsr_cli.run.chunking import Chunk, OverlapAdd, iter_chunks, transition_weights


@pytest.mark.parametrize(
    ("total", "length", "overlap"),
    [(1, 8, 2), (8, 8, 2), (9, 8, 2), (30, 8, 3), (31, 5, 0), (100, 16, 4)],
)
def test_every_frame_gets_full_weight(total, length, overlap):
    weight = torch.zeros(total, dtype=torch.float64)
    chunks = list(iter_chunks(range(total), length, overlap))
    for chunk in chunks:
        assert chunk.items == list(range(chunk.start, chunk.stop))  # consecutive frames, in order
        assert len(chunk.items) <= length
        weight[chunk.start : chunk.stop] += transition_weights(chunk)
    torch.testing.assert_close(weight, torch.ones(total, dtype=torch.float64), rtol=0, atol=1e-12)
    assert chunks[-1].stop == total and chunks[-1].overlap_after == 0
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.stop - b.start == overlap == a.overlap_after == b.overlap_before


def test_chunks_stream_without_reading_ahead_more_than_a_chunk():
    pulled = []

    def source():
        for i in range(50):
            pulled.append(i)
            yield i

    for chunk in iter_chunks(source(), 10, 2):
        assert max(pulled) < chunk.stop + 8  # at most the next chunk's fresh frames were read
        if chunk.start > 20:
            break


def local_model(frames: torch.Tensor) -> torch.Tensor:
    """Temporally local: each output frame depends on its own input frame only."""
    return torch.tanh(frames * 3.0) + frames.mean(dim=(1, 2), keepdim=True)


@pytest.mark.parametrize(("length", "overlap"), [(7, 3), (8, 0), (16, 5)])
def test_chunked_processing_with_overlap_equals_whole_clip(length, overlap):
    video = torch.randn(37, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    whole = local_model(video)
    blend, out = OverlapAdd(), []
    for chunk in iter_chunks(list(video), length, overlap):
        for index, frame in blend.add(chunk, local_model(torch.stack(chunk.items))):
            assert index == len(out)  # released in order, exactly once
            out.append(frame)
    blend.close()
    torch.testing.assert_close(torch.stack(out), whole, rtol=1e-12, atol=1e-12)


def test_a_gap_between_chunks_is_caught():
    blend = OverlapAdd()
    list(blend.add(Chunk(0, [0, 1, 2, 3], 0, 1), torch.zeros(4)))
    with pytest.raises(AssertionError, match="uncovered"):
        list(blend.add(Chunk(5, [5, 6], 1, 0), torch.zeros(2)))


def test_missing_weight_is_caught():
    blend = OverlapAdd()
    with pytest.raises(AssertionError, match="weight"):
        list(
            blend.add(Chunk(0, [0, 1, 2], 1, 0), torch.zeros(3))
        )  # claims an overlap nobody filled


@pytest.mark.parametrize(("length", "overlap"), [(0, 0), (4, 2), (4, -1)])
def test_bad_plans_are_refused(length, overlap):
    with pytest.raises(ValueError):
        list(iter_chunks(range(10), length, overlap))
