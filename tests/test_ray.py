"""Ray: segments rendered by actors that keep the model loaded, stitched into the whole run."""

from __future__ import annotations

import av
import numpy as np
import pytest
from media import make_clip

from skipsr_cli import api

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as f:
        return [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]


def test_ray_renders_the_whole_run_and_resumes(local_ray, tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=17, audio=True)
    run = dict(model="debug", random_weights=True, chunk_frames=8, overlap=2, lossless=True)
    api.upscale(clip, tmp_path / "whole.mkv", device="cpu", **run)
    out = tmp_path / "out.mkv"
    assert api.upscale(clip, out, ray="local", segments=3, workers=2, **run) == 17
    assert all(
        np.array_equal(a, b)
        for a, b in zip(frames(out), frames(tmp_path / "whole.mkv"), strict=True)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mkv", "whole.mkv"]
    kept = dict(ray="local", segments=3, workers=2, overwrite=True, parts=tmp_path / "parts")
    assert api.upscale(clip, out, **kept, **run) == 17  # a named parts folder stays
    parts = sorted((tmp_path / "parts").glob("part-*.mkv"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    assert len(parts) == 3
    assert api.upscale(clip, out, **kept, **run) == 17
    assert [p.stat().st_mtime_ns for p in parts] == stamps  # finished parts were kept
