"""Benchmarks that print tables. Speed claims come from here, never from timed tests.

`transformer`: the masked DiT's forward time at forced kept fractions on one latent clip, the
paper's scaling claim (time should fall about in proportion to the kept fraction).
`model`: every stage of the model on one clip of real frames, in ms per frame, and model-only fps.
`run`: a whole `skipsr upscale` against its encode floor (the same pipeline with bicubic in place of
the model), plus the host stages (decode, colour conversion, encode) timed alone.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch

from models import SkipSR
from models.dit import TokenSet, patchify
from models.skipsr import Result, Settings, compose, sample, token_noise
from skipsr_cli.media.encoding import EncodeOptions
from skipsr_cli.run.chunking import CHUNK_FRAMES, OVERLAP

if TYPE_CHECKING:
    from skipsr_cli.run.progress import Event, Summary


@dataclass(frozen=True)
class TransformerRow:
    kept_fraction: float
    tokens: int  # kept tokens
    median_ms: float
    min_ms: float
    ratio: float  # median time / the dense (fraction 1.0) median time

    def as_dict(self) -> dict:
        return asdict(self)


def token_grid(model: SkipSR, out_size: tuple[int, int], frames: int) -> tuple[int, int, int]:
    """The full token grid (T', H', W') of an output clip of `frames` frames at (width, height)."""
    ft, th, tw = model.args.token_pixels
    w, h = out_size
    return -(-frames // ft), -(-h // th), -(-w // tw)


def forced_keep(
    grid: tuple[int, int, int], fraction: float, seed: int, device: torch.device
) -> torch.Tensor:
    """A keep mask with exactly round(fraction * tokens) tokens kept, at random places."""
    n = grid[0] * grid[1] * grid[2]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[: round(fraction * n)]] = True
    return keep.view(1, *grid).to(device)


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Milliseconds of one call: CUDA events on a GPU, the host clock elsewhere."""

    def run(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000

    return run


@torch.inference_mode()
def bench_transformer(
    model: SkipSR,
    grid: tuple[int, int, int],
    fractions: list[float],
    repeats: int,
    warmup: int,
    seed: int = 0,
) -> list[TransformerRow]:
    """Time mask packing + the masked DiT forward (one flow step) at each kept fraction."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    dit, measure = model.dit, timer(device)
    dim = dit.args.latent_channels * dit.args.patch_volume
    results = []
    for fraction in fractions:
        keep = forced_keep(grid, fraction, seed, device)
        n = int(keep.sum())
        x = torch.randn(n, dim, device=device, dtype=dtype)
        c = torch.randn(n, dim, device=device, dtype=dtype)
        t = torch.ones(1, device=device)

        def step(x=x, c=c, t=t, keep=keep) -> None:
            dit(x, c, t, TokenSet.from_keep(keep, dit.args.window))

        for _ in range(warmup):
            step()
        times = [measure(step) for _ in range(repeats)]
        results.append((fraction, n, statistics.median(times), min(times)))
    dense = next((r[2] for r in results if r[0] == 1.0), results[0][2])
    return [
        TransformerRow(f, n, round(med, 3), round(lo, 3), round(med / dense, 4))
        for f, n, med, lo in results
    ]


MODEL_STAGES = ("upsample", "encode", "predictor", "transformer", "compose", "decode")


@dataclass(frozen=True)
class ModelBench:
    """Per-stage median ms per output frame of the whole model on one clip, and what it skipped."""

    stage_ms: dict[str, float]  # per frame, medians over repeats
    model_fps: float  # frames / (sum of the stage medians)
    skip_ratio: float
    peak_gpu_gib: float | None  # of one whole forward call (not with a forced kept fraction)

    def as_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def bench_model(
    model: SkipSR,
    lr: torch.Tensor,
    out_size: tuple[int, int],
    settings: Settings,
    repeats: int,
    warmup: int,
    kept: float | None = None,
) -> ModelBench:
    """Time each stage of SkipSR.forward on lr (1, 3, T, h, w) in [0, 1], already on the device.

    The stages are the model's own methods called in the order forward calls them, so the sum is
    the model-only time per clip. `kept` forces a kept fraction (random places) instead of tau.
    """
    device = lr.device
    measure = timer(device)
    frames = lr.shape[2]
    patch, window = model.args.dit.patch, model.args.dit.window
    state: dict[str, torch.Tensor] = {}

    def upsample() -> None:
        state["fill"] = model._pad(model.upsample(lr, out_size))

    def encode() -> None:
        state["c"] = model.condition(state["fill"], settings.frame_slice)

    def predictor() -> None:
        if kept is None:
            state["keep"] = model.predict_keep(state["c"], settings)
        else:
            grid = patchify(state["c"], patch).shape[1:4]
            state["keep"] = forced_keep(tuple(grid), kept, settings.seed, device)

    def transformer() -> None:
        c_grid, keep = patchify(state["c"], patch), state["keep"]
        tokens = TokenSet.from_keep(keep, window)
        x = token_noise(keep, c_grid.shape[-1], settings.seed, c_grid.dtype)
        state["c_grid"] = c_grid
        state["x0"] = sample(model.dit, x, c_grid[keep], tokens, settings.steps)

    def compose_() -> None:
        state["z"] = compose(
            state["c_grid"], state["keep"], state["x0"], patch, state["c"].shape[1]
        )

    def decode() -> None:
        hr = model.decode(state["z"], state["fill"], settings.frame_slice, settings.decode_tile)
        state["hr"] = ((hr + 1) / 2).clamp(0, 1)[:, :, :frames, : out_size[0], : out_size[1]]

    stages = (upsample, encode, predictor, transformer, compose_, decode)
    steps = dict(zip(MODEL_STAGES, stages, strict=True))
    times: dict[str, list[float]] = {name: [] for name in MODEL_STAGES}
    for i in range(warmup + repeats):
        for name, fn in steps.items():
            ms = measure(fn)
            if i >= warmup:
                times[name].append(ms)
    per_frame = {k: statistics.median(v) / frames for k, v in times.items()}
    skip_ratio = 1 - state["keep"].float().mean().item()
    state.clear()  # the staged run holds every intermediate; the peak is that of one real call
    peak = None
    if device.type == "cuda" and kept is None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        model(lr, out_size, settings)
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    return ModelBench(
        stage_ms={k: round(v, 3) for k, v in per_frame.items()},
        model_fps=round(1000 / sum(per_frame.values()), 2),
        skip_ratio=round(skip_ratio, 4),
        peak_gpu_gib=None if peak is None else round(peak, 3),
    )


class Resampler(torch.nn.Module):
    """Stands in for SkipSR in the pipeline to measure the encode floor: bicubic on the device,
    with everything around it (decode, colour conversion, encode, overlap threads) unchanged."""

    # What the pipeline reads of a model's configuration: its token size (frames, rows, columns),
    # whose first entry is the frame step of the out-of-memory ladder's sub-clips.
    args = SimpleNamespace(token_pixels=(1, 1, 1))

    def forward(self, lr: torch.Tensor, size: tuple[int, int], settings: Settings) -> Result:
        b, t = lr.shape[0], lr.shape[2]
        frames = lr.float().transpose(1, 2).flatten(0, 1)
        up = torch.nn.functional.interpolate(
            frames, size=size, mode="bicubic", align_corners=False, antialias=True
        )
        up = up.clamp(0, 1).unflatten(0, (b, t)).transpose(1, 2)
        keep = torch.ones(b, t, 1, 1, dtype=torch.bool, device=lr.device)
        return Result(up, keep, 1.0)


class ModelBeside(torch.nn.Module):
    """Runs the model on every chunk, then hands on bicubic's frames in place of its own: copies of
    this, beside copies of the floor and of the upscale, tell what the model's presence in a
    process costs the encoder (its launches, its waits for the GPU) from what its frames do."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.args, self.bicubic = model, model.args, Resampler()

    def forward(self, lr: torch.Tensor, size: tuple[int, int], settings: Settings) -> Result:
        made = self.model(lr, size, settings)
        return Result(self.bicubic(lr, size, settings).frames, made.keep, made.kept_fraction)


@dataclass(frozen=True)
class HostStages:
    """Per-frame host-side costs measured in isolation, in ms per output frame."""

    decode_ms: float  # demux + decode per input frame (8-bit YCbCr is converted on the device)
    colour_ms: float  # RGB -> the output's YCbCr planes on the model's device, and the copy back
    encode_ms: float  # the encoder alone (its own threads) on the bicubic frames of the floor
    encode_model_ms: float  # the same encoder on the model's frames: detail costs encoder time

    def as_dict(self) -> dict:
        return asdict(self)


def host_stages(
    source: Path,
    frames: int,
    out_size: tuple[int, int],
    options: EncodeOptions,
    model: SkipSR,
    settings: Settings,
    device: torch.device,
    dtype: torch.dtype,
) -> HostStages:
    """Decode `frames` frames of `source`, upsample them with bicubic and with the model (both
    untimed), then time the colour conversion and the encoder on them, each alone."""
    import tempfile

    from skipsr_cli.media.video_io import probe, read_frames
    from skipsr_cli.media.video_writer import VideoWriter
    from skipsr_cli.run.device_frames import finish, frames_to_device, write_frame

    info = probe(source)
    t0 = time.perf_counter()
    decoded = list(itertools.islice(read_frames(source), frames))
    decode = (time.perf_counter() - t0) * 1000 / len(decoded)
    lr = frames_to_device(decoded, device)
    with torch.inference_mode():
        bicubic = Resampler()(lr, out_size, Settings()).frames[0].transpose(0, 1)
        upscaled = torch.cat(
            [
                model(lr[:, :, i : i + 16].to(dtype), out_size, settings).frames[0].transpose(0, 1)
                for i in range(0, lr.shape[2], 16)
            ]
        )
    h, w = out_size
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for name, images in (("floor", bicubic), ("model", upscaled)):
            with VideoWriter(
                Path(folder) / f"{name}.mkv",
                width=w,
                height=h,
                rate=info.rate,
                time_base=None,
                options=options,
                colour=info.colour,
            ) as writer:
                formats = [(writer.colour, writer.planes_format, writer.depth)]
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                converted = [finish([image], formats)[0] for image in images]  # as the pipeline
                colour = (time.perf_counter() - t0) * 1000 / len(converted)
                t0 = time.perf_counter()
                for i, item in enumerate(converted):
                    write_frame(writer, item, i)
                writer.close()
                times.append((colour, (time.perf_counter() - t0) * 1000 / len(converted)))
    (colour, encode), (_, encode_model) = times
    return HostStages(round(decode, 3), round(colour, 3), round(encode, 3), round(encode_model, 3))


# The model's stages named apart from the video's own decode and encode.
RUN_NAMES = {"encode": "vae_encode", "decode": "vae_decode"}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def bench_run(
    source: Path,
    net: SkipSR,
    scale: int,
    frames: int,
    settings: Settings,
    options: EncodeOptions,
    dev: torch.device,
    dt: torch.dtype,
) -> dict:
    """A whole upscale of `source` against its encode floor (the same pipeline with bicubic in
    place of the model), both warm, plus the stages timed alone on its first `frames` frames."""
    from skipsr_cli.media.video_io import probe, read_frames
    from skipsr_cli.run.device_frames import frames_to_device

    info = probe(source)
    out_size = (info.height * scale, info.width * scale)
    warmup_s = warm_up((net, Resampler()), source, out_size, settings, dev)
    runs = {
        name: timed_run(network, source, scale, settings, options, dev, dt)
        for name, network in (("upscale", net), ("floor", Resampler()))
    }
    lr = frames_to_device(list(itertools.islice(read_frames(source), frames)), dev).to(dt)
    stages = bench_model(net, lr, out_size, settings, repeats=3, warmup=1)
    host = host_stages(source, frames, out_size, options, net, settings, dev, dt)
    up, floor = runs["upscale"], runs["floor"]
    return {
        "input": f"{info.width}x{info.height}",
        "output": f"{out_size[1]}x{out_size[0]}",
        "frames": up.frames,
        "device": device_name(dev),
        "dtype": str(dt).removeprefix("torch."),
        "encoder": f"{options.codec} crf {options.crf} {options.preset}",
        "warmup_s": round(warmup_s, 3),
        "end_to_end_fps": up.fps,
        "floor_fps": floor.fps,
        "ratio_to_floor": round(up.fps / floor.fps, 3) if floor.fps else None,
        "model_fps": stages.model_fps,
        "skip_ratio": round(up.skip_ratio, 4),
        "peak_gpu_gib": None if up.peak_gpu_bytes is None else round(up.peak_gpu_bytes / 2**30, 3),
        "peak_host_gib": round(up.peak_host_bytes / 2**30, 3),
        "waits_s": {"upscale": up.waits, "floor": floor.waits},
        "stage_ms": {
            "decode": host.decode_ms,
            **{RUN_NAMES.get(k, k): v for k, v in stages.stage_ms.items()},
            "colour": host.colour_ms,
            "encode": host.encode_ms,
            "encode_model": host.encode_model_ms,
        },
    }


def warm_up(
    networks: tuple[torch.nn.Module, ...],
    source: Path,
    out_size: tuple[int, int],
    settings: Settings,
    dev: torch.device,
) -> float:
    """Seconds to run each network once on the first frames. Both runs start warm: the first model
    call on a GPU loads its kernels (seconds), a one-off cost of any run that would otherwise be
    charged to the first of the two runs timed."""
    from skipsr_cli.media.video_io import read_frames
    from skipsr_cli.run.device_frames import frames_to_device

    t0 = time.perf_counter()
    first = list(itertools.islice(read_frames(source), 16))
    with torch.inference_mode():
        for network in networks:
            network(frames_to_device(first, dev), out_size, settings)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


def timed_run(
    network: torch.nn.Module,
    source: Path,
    scale: int,
    settings: Settings,
    options: EncodeOptions,
    dev: torch.device,
    dt: torch.dtype,
    chunks: tuple[int, int] = (CHUNK_FRAMES, OVERLAP),
    emit: Callable[[Event], None] | None = None,
) -> Summary:
    """One whole upscale through the real pipeline, into a file thrown away; `chunks` is its
    (frames per chunk, overlap), `emit` sees its progress."""
    import tempfile

    from skipsr_cli.run.pipeline import UpscaleJob, prepare, upscale

    with tempfile.TemporaryDirectory() as folder:
        job = UpscaleJob(
            source,
            Path(folder) / "run.mkv",
            scale=scale,
            chunk_frames=chunks[0],
            overlap=chunks[1],
            settings=settings,
            encode=options,
            overwrite=True,
        )
        return upscale(network, prepare(job), dev, dt, emit=emit or (lambda e: None))
