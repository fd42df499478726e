"""decode -> chunk -> model -> blend -> encode, as short named steps. Emits events; draws nothing.

Frames stream through: the decoder yields one frame at a time, chunks hold N low-resolution
frames, the blend holds only the overlap, and the encoder takes each frame as soon as it is final.
Decoding and encoding each run in a helper thread behind a bounded queue (`overlap.py`), so they
overlap with the model, which stays on the calling thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models import SkipSR
from models.skipsr import Result, Settings
from skipsr_cli.errors import InputError, ModelError, UsageError
from skipsr_cli.media.damage import DecodeDamage
from skipsr_cli.media.encoding import EncodeOptions
from skipsr_cli.media.image_io import ImageWriter, is_image_output
from skipsr_cli.media.partials import publish_together
from skipsr_cli.media.video_io import DecodedFrame, VideoInfo, probe, read_frames
from skipsr_cli.media.video_writer import VideoWriter
from skipsr_cli.run.chunking import (
    CHUNK_FRAMES,
    OVERLAP,
    Chunk,
    OverlapAdd,
    check_plan,
    chunk_start,
    iter_chunks,
)
from skipsr_cli.run.device_frames import (
    OutFormat,
    Writer,
    finish,
    frames_to_device,
    skipped_map,
    write_frame,
)
from skipsr_cli.run.host_waits import sleep_while_waiting
from skipsr_cli.run.memory import MemoryLadder, run_in_pieces
from skipsr_cli.run.overlap import BackgroundWriter, InlineWriter, Prefetcher
from skipsr_cli.run.progress import Event, Placing, RunStats, Started, Summary
from skipsr_cli.run.ranges import range_view
from skipsr_cli.run.scenes import shot_starts
from skipsr_cli.run.targets import at_input_depth, check_mask, check_output

DECODE_AHEAD_CHUNKS = 2  # decoded frames waiting for the model, in chunks
ENCODE_QUEUE_CHUNKS = 1  # finished frames waiting for the encoder, in chunks

# One finished frame for the encoder thread: (uint8 RGB per writer, pts).
Finished = tuple[list[np.ndarray], int | None]
Sink = BackgroundWriter[Finished] | InlineWriter[Finished]


@dataclass(frozen=True)
class UpscaleJob:
    input: Path
    output: Path
    scale: int = 2
    size: tuple[int, int] | None = None  # (width, height); overrides scale
    chunk_frames: int = CHUNK_FRAMES
    overlap: int = OVERLAP
    settings: Settings = field(default_factory=Settings)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    overwrite: bool = False
    mask_out: Path | None = None
    copy_audio: bool = True  # audio streams of the input, copied (re-encoded where they cannot be)
    copy_subtitles: bool = True  # subtitle streams, copied
    audio_kbps: int | None = None  # bitrate of re-encoded audio; None: the codec's default
    # [start, stop) of the input's frames to render (stop None: to the end); None: every frame
    frames: tuple[int, int | None] | None = None

    @property
    def first(self) -> int:
        return 0 if self.frames is None else self.frames[0]

    @property
    def last(self) -> int | None:
        return None if self.frames is None else self.frames[1]

    strict: bool = False  # damaged input (frames lost or unreadable) fails instead of a warning
    scene_cuts: bool = True  # each shot of a chunk through the model apart (run/scenes.py)
    denoise: float | None = None  # the blend the network was loaded with, for the summary
    # the mask video's encoder, for its own container (options.mask_encode_options); None: `encode`
    mask_encode: EncodeOptions | None = None

    @property
    def mask_options(self) -> EncodeOptions:
        return self.encode if self.mask_encode is None else self.mask_encode


def check_chunk_options(chunk_frames: int, overlap: int) -> None:
    """--chunk-frames and --overlap as a plan, or a usage error that names them."""
    try:
        check_plan(chunk_frames, overlap)
    except ValueError as e:
        raise UsageError(f"--chunk-frames/--overlap: {e}") from e


def output_size(info: VideoInfo, scale: int, size: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) of the output: an explicit size, or the input times the scale."""
    if size is not None:
        return size
    return info.width * scale, info.height * scale


@dataclass(frozen=True)
class Plan:
    """A job checked against its input: everything known before any model work."""

    job: UpscaleJob
    info: VideoInfo  # of the part rendered: a frame range's length and numbers
    out_size: tuple[int, int]  # (width, height)
    notes: tuple[str, ...] = ()  # warnings known before the run (streams a range leaves out)


def prepare(job: UpscaleJob) -> Plan:
    """Probe the input and refuse whatever can be refused before the model is even loaded."""
    info, notes = probe(job.input), []
    if job.frames is not None:
        info, notes = range_view(info, job.frames)
        job = replace(job, copy_audio=False, copy_subtitles=False)
    size = output_size(info, job.scale, job.size)  # (width, height)
    job = replace(job, encode=at_input_depth(job.output, job.encode, info))
    check_chunk_options(job.chunk_frames, job.overlap)
    check_output(job.output, job.encode, job.input, info, job.overwrite, size)
    if job.mask_out is not None:
        if job.mask_out.resolve() == job.output.resolve():
            raise UsageError("--mask-out must differ from the output path")
        mask = check_mask(job.mask_out, job.mask_options, job.input, info, job.overwrite, size)
        job = replace(job, mask_encode=mask)
    return Plan(job, info, size, tuple(notes))


def upscale(
    model: SkipSR,
    plan: Plan,
    device: torch.device,
    dtype: torch.dtype,
    emit: Callable[[Event], None],
    overlap: bool = True,
) -> Summary:
    """Run one file end to end; the output appears at job.output only if everything succeeded.

    With `overlap`, decoding and encoding run in helper threads beside the model; without it,
    everything runs in series on this thread (same output, bit for bit).
    """
    job, info, (out_w, out_h) = plan.job, plan.info, plan.out_size
    started = Started(
        job.input,
        job.output,
        info.frame_count,
        (info.width, info.height),
        (out_w, out_h),
        str(device),
    )
    stats = RunStats(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        sleep_while_waiting(device)  # the cores the model's waits would spin on are the encoder's
    emit(started)
    with contextlib.ExitStack() as stack:
        writers = open_writers(stack, job, info, out_w, out_h)
        # Entered after the writers, so it is joined before they publish or abort the files.
        sink = stack.enter_context(open_sink(writers, stats, job.chunk_frames, overlap))
        damage = DecodeDamage()
        frames = stack.enter_context(open_frames(job, overlap, damage))
        report = progress_reporter(stats, info.frame_count, emit)
        formats = [(w.colour, w.planes_format, w.depth) for w in writers]
        # lowered, and kept lower, when a chunk runs out of GPU memory
        memory = MemoryLadder(job.settings, job.chunk_frames, model.args.token_pixels[0])
        decoded = write_chunks(
            model,
            job,
            frames,
            (out_h, out_w),
            device,
            memory,
            sink,
            formats,
            stats,
            report,
            info.colour.transfer,
        )
        if decoded == 0 and job.frames is not None:
            raise UsageError(f"--frames: the input has no frames from {job.first} on")
        if decoded == 0:  # a video stream with no pictures in it: nothing to upscale
            raise InputError(f"no frames could be decoded from {job.input}")
        sink.close()  # every queued frame is encoded now, or its error raised here
        stats.waits = pipeline_waits(frames, sink)
        report()  # the encoder thread may have finished frames since the last chunk's report
        if stats.frames != decoded:
            raise AssertionError(f"decoded {decoded} frames but wrote {stats.frames}")
        # inside the writers' block: with --strict, they delete their partials
        lost, damaged = check_damage(job, info, decoded, damage)
        # all in place, or none; a part of a run in parts is not the run's output (yet)
        publish_together(writers, lambda ids: emit(Placing(ids)), listed=not job.encode.stitchable)
    # read once the writers are closed: re-encoded audio can add a warning while it is finished
    notes = (*plan.notes, *damaged, *memory.warnings, *writers[0].warnings)
    summary = stats.summary(started, notes, frames_lost=lost, denoise=job.denoise)
    emit(summary)
    return summary


def pipeline_waits(frames: object, sink: Sink) -> dict[str, float]:
    """Seconds each side waited: the model for decoded frames, and for room in the encoder's queue
    (the encoder set the pace); the encoder for the model, and of that for the first frames and
    until its queue was first full (its start, while it fills its own buffers: not yet behind)."""
    return {
        "model_waited_for_decoder": getattr(frames, "waited", 0.0),
        "model_waited_for_encoder": sink.blocked,
        "encoder_waited_for_model": sink.idle,
        "encoder_waited_for_first_frames": sink.first_wait,
        "encoder_waited_until_its_queue_filled": sink.fill_wait,
    }


def frames_lost(info: VideoInfo, decoded: int, damage: DecodeDamage) -> int:
    """Frames the input announced but did not give, or packets it could not decode: the larger.

    A count estimated from the duration (Matroska, MPEG-TS) may be a frame or two off on a
    healthy file (a variable frame rate's last frame lasts longer), so a shortfall of that size
    alone is not called damage there; nor is any shortfall of a decode without errors whose
    frames reach the stream's stated end without a hole (a variable frame rate shows fewer
    frames than its duration times its nominal rate; a file cut short ends early, and one with
    bytes lost from its middle pauses there, or fails to decode)."""
    shortfall = max(0, (info.frame_count or 0) - decoded)
    slack = max(2, (info.frame_count or 0) // 50)
    healthy = damage.errors == 0 and _reaches_end(info, damage)
    if not info.frames_exact and (shortfall <= slack or healthy):
        shortfall = 0
    return max(shortfall, damage.errors)


def _reaches_end(info: VideoInfo, damage: DecodeDamage) -> bool:
    """Whether the frames seen reach the stream's stated end, within three frames at its nominal
    rate or 2% of it (its last frame shows for a while after it starts), with no hole."""
    if info.duration is None:
        return False
    slack = max(3 / float(info.rate), info.duration / 50)
    return damage.reaches(info.start + info.duration, info.rate, slack)


def check_damage(
    job: UpscaleJob, info: VideoInfo, decoded: int, damage: DecodeDamage
) -> tuple[int, list[str]]:
    """Frames a damaged input lost and the warning that says so; with --strict, an InputError."""
    lost = frames_lost(info, decoded, damage)
    if not lost:
        return 0, []
    announced = f" of the {info.frame_count} it announces" if info.frame_count else ""
    cause = f" ({damage.first})" if damage.first else ""
    text = f"{lost} frame(s){announced} were lost or unreadable{cause}"
    if job.strict:
        raise InputError(f"damaged input {job.input}: {text}")
    return lost, [f"damaged input: {text}; the output has the {decoded} that decode"]


def output_sar(info: VideoInfo, width: int, height: int) -> Fraction | None:
    """The output's pixel aspect ratio: the input's display aspect ratio over the output's storage
    aspect (the input's own SAR under a uniform scale); None for square-pixel inputs."""
    if info.sar is None:
        return None
    display = info.sar * Fraction(info.width, info.height)
    return (display / Fraction(width, height)).limit_denominator(10_000)


def open_writers(
    stack: contextlib.ExitStack, job: UpscaleJob, info: VideoInfo, w: int, h: int
) -> list[Writer]:
    """The output (with the input's audio), and the optional mask video (video only); PNG frames
    where the path asks for them."""
    common = dict(
        width=w,
        height=h,
        rate=info.rate,
        time_base=info.time_base,
        overwrite=job.overwrite,
        colour=info.colour,  # the input's primaries, transfer, matrix and range, and its conversion
        sar=output_sar(info, w, h),  # the pixel shape that keeps the input's display aspect
    )
    streams = dict(
        # a sequence has nothing to copy; a part of a run in parts leaves the input's other
        # streams, tags and chapters to the stitch, which copies them once into OUTPUT
        copy_audio_from=None if info.sequence or job.encode.stitchable else job.input,
        hdr=info.hdr,  # HDR10 static metadata, for the output only
        copy_audio=job.copy_audio,
        copy_subtitles=job.copy_subtitles,
        audio_kbps=job.audio_kbps,
    )

    def writer(path: Path, options: EncodeOptions, copy: bool) -> Writer:
        if not is_image_output(path):
            return VideoWriter(path, options=options, **(streams if copy else {}), **common)
        pix_fmt = options.pix_fmt or ("rgb48be" if info.bit_depth > 8 else "rgb24")
        audio = [f"audio stream {i + 1}" for i in range(info.audio_streams)] if copy else []
        return ImageWriter(
            path,
            width=w,
            height=h,
            pix_fmt=pix_fmt,
            frames=info.frame_count,
            overwrite=job.overwrite,
            skipped_streams=audio if job.copy_audio else [],
            numbers=info.frame_numbers,
        )

    writers = [stack.enter_context(writer(job.output, job.encode, copy=True))]
    if job.mask_out is not None:  # in its own container's encoder (mask.gif beside out.mp4: GIF)
        writers.append(stack.enter_context(writer(job.mask_out, job.mask_options, copy=False)))
    return writers


def open_frames(
    job: UpscaleJob, overlap: bool, damage: DecodeDamage | None = None
) -> contextlib.AbstractContextManager[Iterable[DecodedFrame]]:
    """The decoded input, read ahead in a thread when overlapping.

    The file is opened here, on the calling thread, so an unreadable input fails at once. Damage
    the decoder gets past (a file cut short, a bad packet) is counted in `damage`.
    """
    start = chunk_start(job.first, job.chunk_frames, job.overlap) if job.first else 0
    frames = read_frames(job.input, damage, strict=job.strict, start=start)
    if not overlap:
        return contextlib.closing(frames)
    depth = DECODE_AHEAD_CHUNKS * job.chunk_frames
    return Prefetcher(frames, depth, name="skipsr-decode")


def open_sink(writers: list[Writer], stats: RunStats, chunk_frames: int, overlap: bool) -> Sink:
    """Where finished frames go: an encoder thread when overlapping, else straight to the writers.

    The calling thread converts frames to uint8 before queueing them, so the encoder thread touches
    only numpy and PyAV (no device or torch state), and the device memory is freed at once.
    `stats.frames` counts frames actually encoded; only the encoder thread changes it.
    """

    def encode(item: Finished) -> None:
        images, pts = item
        for writer, image in zip(writers, images, strict=True):
            write_frame(writer, image, pts)
        stats.frames += 1

    if not overlap:
        return InlineWriter(encode)
    return BackgroundWriter(encode, ENCODE_QUEUE_CHUNKS * chunk_frames, name="skipsr-encode")


def progress_reporter(
    stats: RunStats, total: int | None, emit: Callable[[Event], None]
) -> Callable[[], None]:
    """Emit progress when the count of encoded frames has moved since the last report."""
    last = -1

    def report() -> None:
        nonlocal last
        if stats.frames != last:
            last = stats.frames
            emit(stats.advanced(total))

    return report


def write_chunks(
    model: SkipSR,
    job: UpscaleJob,
    decoded_frames: Iterable[DecodedFrame],
    size: tuple[int, int],
    device: torch.device,
    memory: MemoryLadder,
    sink: Sink,
    formats: list[OutFormat],
    stats: RunStats,
    report: Callable[[], None],
    transfer: int | None = None,
) -> int:
    """Upscale chunk by chunk, blend the overlaps, hand each frame to the sink once it is final.

    `formats` has one entry per writer (two when a mask video is written beside the output);
    `transfer` is the input's transfer code, for finding scene cuts (run/scenes.py).
    Returns how many frames of the job's range were decoded, so the caller can check none was
    lost. A range runs only the chunks that touch it; its timestamps start at 0.
    """
    streams = len(formats)
    first, last = job.first, job.last
    blends = [OverlapAdd(first, last) for _ in range(streams)]
    reached = 0
    pts: dict[int, int | None] = {}
    origin: list[int] = []  # the range's first timestamp, once known
    start = chunk_start(first, job.chunk_frames, job.overlap) if first else 0
    for chunk in iter_chunks(decoded_frames, job.chunk_frames, job.overlap, start):
        reached = max(reached, chunk.stop)
        if chunk.stop <= first:  # wholly before the range: decoded, not upscaled
            continue
        if last is not None and chunk.start >= last:
            break
        result = run_chunk(model, chunk, size, memory, device, job.scene_cuts, transfer)
        stats.add_tokens(result.keep.numel(), int(result.keep.sum()))
        outputs = [result.frames[0].transpose(0, 1).float()]  # (T, 3, H, W)
        if streams > 1:
            outputs.append(skipped_map(model, result, size))
        pts.update({f.index: f.pts for f in chunk.items})
        for index, frames in _released(blends, chunk, outputs):
            stamp = pts.pop(index)
            if first and stamp is not None:
                origin = origin or [stamp]
                stamp -= origin[0]
            sink.put((finish(frames, formats), stamp))
        del result, outputs  # the chunk's device memory is free before the next chunk runs
        report()
    for blend in blends:
        blend.close()
    return max(0, min(reached, last if last is not None else reached) - first)


def _released(
    blends: list[OverlapAdd], chunk: Chunk, outputs: list[Tensor]
) -> Iterator[tuple[int, list[Tensor]]]:
    """Frames the blends complete together (the output and the mask share the chunk plan)."""
    streams = [blend.add(chunk, out) for blend, out in zip(blends, outputs, strict=True)]
    for items in zip(*streams, strict=True):
        yield items[0][0], [frame for _, frame in items]


def run_chunk(
    model: SkipSR,
    chunk: Chunk[DecodedFrame],
    size: tuple[int, int],
    memory: MemoryLadder,
    device: torch.device,
    scene_cuts: bool = True,
    transfer: int | None = None,
) -> Result:
    """One chunk through the model: decoded frames -> (1, 3, T, H, W) in [0, 1] on the device,
    each of its shots apart where `scene_cuts` finds more than one (in pictures coded with the
    input's `transfer`).

    Out of GPU memory, `memory` retries it with smaller settings (a ModelError when none fits)."""
    frames = f"frames {chunk.start}-{chunk.stop - 1}"
    try:
        # fp32 in: the model makes its fill at full precision and runs its networks in its dtype
        lr = frames_to_device(chunk.items, device)
    except torch.cuda.OutOfMemoryError as e:  # the chunk's own frames did not fit
        raise ModelError(f"out of GPU memory loading {frames}") from e
    except RuntimeError as e:  # e.g. a CUDA error of the chunk before, raised at this copy
        raise ModelError(f"the model failed on {frames}: {e}") from e
    try:
        with torch.inference_mode():
            step = model.args.token_pixels[0]
            starts = shot_starts(lr, step, transfer) if scene_cuts else []
            shot = lambda clip, first: memory.run(model, clip, size, first)  # noqa: E731
            return run_in_pieces(shot, lr, starts, chunk.start)
    except torch.cuda.OutOfMemoryError as e:  # outside the ladder: finding or joining the shots
        raise ModelError(
            f"out of GPU memory on {frames}, finding or joining its shots: free the GPU, or "
            "lower --chunk-frames, --scale or --size"
        ) from e
    except RuntimeError as e:
        raise ModelError(f"the model failed on {frames}: {e}") from e
