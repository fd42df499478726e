"""Workers on one host share its cores: each sizes its torch and decoder threads to its share, and
a process alone keeps those libraries' own choice; every encoder gets the host's threads, so a
video's bytes do not depend on how many workers made it (media/cpu_share.py)."""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from media import make_clip

import skipsr_cli
from skipsr_cli import api
from skipsr_cli.errors import UsageError
from skipsr_cli.farm.ray import _actors_per_node
from skipsr_cli.media import cpu_share
from skipsr_cli.media.cpu_share import ENV, CpuShare, apply_cpu_share

RUN = dict(model="debug", random_weights=True, chunk_frames=4, overlap=1)


@pytest.fixture(autouse=True)
def _own_threads():
    """What a share changes in this process (torch's pool, the share the encoders read) is put
    back after each test: later tests compare runs made with different thread counts."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    cpu_share._applied = None


# (workers, cores) -> cores each, torch threads beside a GPU; and beside a GPU, the cores its
# decoder gets threads for: twice its share, the host's at most (its idle cores go to the others)
TABLE = {
    (2, 2): (1, 1, 2),
    (3, 2): (1, 1, 2),  # never below one core
    (4, 2): (1, 1, 2),
    (2, 16): (8, 4, 16),
    (3, 16): (5, 4, 10),
    (4, 16): (4, 4, 8),
    (2, 32): (16, 4, 32),
    (3, 32): (10, 4, 20),
    (4, 32): (8, 4, 16),
}


@pytest.mark.parametrize("cores", [2, 16, 32])
@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_each_worker_gets_its_share_of_the_cores(workers, cores):
    gpu = cpu_share.cpu_share(workers, cores, env={})
    cpu = cpu_share.cpu_share(workers, cores, model_on_cpu=True, env={})
    if workers == 1:  # alone: the libraries' own choices, every core (no share at all)
        assert gpu is None and cpu is None
        return
    each, torch_beside_gpu, coding = TABLE[workers, cores]
    # the encoder's threads are none of the share's (0: the host's, encoder_threads)
    assert gpu == CpuShare(each, torch_beside_gpu, 0, min(coding, 16))
    # a model on the CPU runs in torch's pool, and its decoder is given no more than the share
    assert cpu == CpuShare(each, each, 0, decoder_threads=each)
    assert each * workers <= max(cores, workers)  # the shares fit the host, a core each at least


def test_the_share_can_be_set_by_the_environment():
    assert cpu_share.cpu_share(1, 32, env={ENV: "6"}) == CpuShare(6, 4, 9, 6)
    assert cpu_share.cpu_share(4, 2, model_on_cpu=True, env={ENV: "1"}) == CpuShare(1, 1, 1, 1)
    for bad in ("many", "0", "-1"):  # 0 and -1 were taken for 1, "many" refused
        with pytest.raises(UsageError, match=f"{ENV}='{bad}' is not a number of cores"):
            cpu_share.cpu_share(2, 16, env={ENV: bad})


@pytest.fixture
def restore_threads(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    # set through monkeypatch before the test, so its undo puts back the share this process had
    # (none): set after the yield, the undo would restore the test's share for every later test
    monkeypatch.setattr(cpu_share, "_applied", None)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_worker_applies_its_share_and_one_alone_changes_nothing(monkeypatch, restore_threads):
    monkeypatch.setattr(cpu_share, "host_cores", lambda: 8)
    before = torch.get_num_threads()
    assert apply_cpu_share(1, "cpu") is None
    assert torch.get_num_threads() == before
    assert cpu_share.decoder_threads() == 0  # libavcodec picks, as before
    # x264's own rule for 8 cores: 1.5 a core, one per two rows of 16 pixels at most
    assert cpu_share.encoder_threads(1440) == 12 and cpu_share.encoder_threads(96) == 3
    share = apply_cpu_share(2, "cpu")
    assert share == CpuShare(4, 4, 0, 4)
    assert torch.get_num_threads() == 4
    assert (cpu_share.encoder_threads(1440), cpu_share.decoder_threads()) == (12, 4)
    apply_cpu_share(4, "cuda:0")  # beside a GPU torch keeps a few threads, the decoder twice its
    assert torch.get_num_threads() == 2 and cpu_share.decoder_threads() == 4  # 2 cores'
    assert cpu_share.encoder_threads(1440) == 12  # the host's, whatever the workers


def test_ray_actors_share_a_node_by_the_live_nodes():
    def fake(alive: list[bool]) -> SimpleNamespace:
        return SimpleNamespace(nodes=lambda: [{"Alive": a} for a in alive])

    assert _actors_per_node(fake([True]), 4) == 4  # a local Ray: every actor on this host
    assert _actors_per_node(fake([True, True, False]), 3) == 2
    assert _actors_per_node(fake([]), 2) == 2


def x264_threads(path: Path) -> list[int]:
    """The `threads=` x264 wrote into each encoder run's settings (an SEI in the stream)."""
    return [int(n) for n in re.findall(rb"[^_]threads=(\d+)", path.read_bytes())]


# Outputs of 96 rows: x264 alone would pick min(1.5 a core, 3) threads (2 rows of 16 pixels each)
HOSTS_THREADS = min(cpu_share.host_cores() * 3 // 2, 3)


def test_batch_workers_encode_with_the_hosts_threads(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    (tmp_path / "in").mkdir()
    for i in range(2):
        make_clip(tmp_path / "in" / f"v{i}.mp4", frames=3, seed=i, audio=False)
    summary = skipsr_cli.upscale_batch(tmp_path / "in", tmp_path / "out", devices="cpu,cpu", **RUN)
    assert summary.done == 2
    for i in range(2):
        assert x264_threads(tmp_path / "out" / f"v{i}.mp4") == [HOSTS_THREADS]


def test_segment_workers_encode_with_the_share_the_environment_sets(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(ENV, "5")  # the spawned workers inherit it: 5 cores, 7 x264 threads each
    clip = make_clip(tmp_path / "in.mp4", frames=9, audio=False)
    out = tmp_path / "out.mp4"
    assert api.upscale(clip, out, devices="cpu,cpu", segments=2, **RUN).frames == 9
    assert x264_threads(out) == [7, 7]  # one encoder run a part
    alone = api.upscale(clip, tmp_path / "alone.mp4", **RUN)  # a farm task sharing a node
    assert alone.frames == 9 and x264_threads(tmp_path / "alone.mp4") == [7]
    monkeypatch.delenv(ENV)
    free = api.upscale(clip, tmp_path / "free.mp4", **RUN)  # alone, unset: the host's
    assert free.frames == 9 and x264_threads(tmp_path / "free.mp4") == [HOSTS_THREADS]


def test_parts_are_the_same_bytes_whether_one_process_or_two_workers_render_them(
    tmp_path: Path, monkeypatch
):
    """x264's output depends on its threads: two workers' parts, each worker with half the host,
    stitch into the very file one process makes of the same parts (a run stopped and resumed with
    other workers, or with fewer of them for want of memory, is the same file too)."""
    monkeypatch.delenv(ENV, raising=False)
    clip = make_clip(tmp_path / "in.mp4", frames=9, audio=False)
    one, two = tmp_path / "one.mp4", tmp_path / "two.mp4"
    assert api.upscale(clip, one, segments=2, **RUN).frames == 9
    assert api.upscale(clip, two, devices="cpu,cpu", segments=2, **RUN).frames == 9
    assert x264_threads(two) == x264_threads(one) == [HOSTS_THREADS] * 2
    assert two.read_bytes() == one.read_bytes()


@pytest.mark.skipif(cpu_share.host_cores() < 2, reason="needs two cores to bind to one")
def test_an_encoder_opened_by_a_thread_bound_to_one_core_takes_the_hosts_threads(tmp_path: Path):
    """x264 left to count by itself counts the cores of the thread that opens it (one, where an
    OpenMP runtime bound the model's thread): the count is the process's, read once."""
    from skipsr_cli.media.encoding import EncodeOptions
    from skipsr_cli.media.video_writer import VideoWriter

    out = tmp_path / "bound.mp4"
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})  # this thread only
    try:
        with VideoWriter(
            out, width=128, height=96, rate=Fraction(24), time_base=None, options=EncodeOptions()
        ) as writer:
            for _ in range(3):
                writer.write(np.zeros((96, 128, 3), np.uint8))
    finally:
        os.sched_setaffinity(0, cores)
    assert x264_threads(out) == [HOSTS_THREADS]
