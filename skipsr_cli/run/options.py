"""The options of one upscale, checked once and turned into the run's config objects.

`UpscaleOptions` mirrors the command line's options (`skipsr upscale --help`) field for field, so
the command and the Python API (`skipsr_cli.upscale`) build the same job from the same object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from models import PRESETS
from models.skipsr import Settings, SkipSR
from skipsr_cli import weights
from skipsr_cli.errors import InputError, ModelError, UsageError
from skipsr_cli.media.encoding import (
    X264_PRESETS,
    EncodeOptions,
    container_holds,
    default_codec,
    lossless_options,
    takes_pix_fmt,
)
from skipsr_cli.media.image_io import PNG_FORMATS, is_image_output
from skipsr_cli.media.quantiser import mean_qp
from skipsr_cli.run.chunking import CHUNK_FRAMES, OVERLAP
from skipsr_cli.run.pipeline import UpscaleJob
from skipsr_cli.run.ranges import parse_frames

# Full-resolution VAE work runs this many frames at a time (exact; bounds memory at large sizes).
FRAME_SLICE = 4

SEED_MAX = 2**63 - 1  # what torch's generators take

AUTO = "auto"  # --denoise from the input

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class UpscaleOptions:
    """Everything one upscale can be told; the defaults are the command line's."""

    # Model: a preset name (base, debug, seedvr2-3b) or, with `weights`, a .safetensors file.
    model: str = "base"
    weights: Path | None = None
    random_weights: bool = False  # untrained weights, for tests and benchmarks
    # 0: the weights as they are; up to 1: blended towards the weights for compressed sources
    # (`denoise_weights`, or the preset's own `_denoise` file); "auto": from the input's quantiser,
    # and 0 where there is nothing to blend towards (see `effective_denoise`)
    denoise: float | str = AUTO
    denoise_weights: Path | None = None
    device: str | torch.device = "auto"  # auto, cuda, cpu (or a torch.device)
    dtype: str | torch.dtype = "auto"  # auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32
    # Quality and speed
    scale: int = 2  # 2 or 4
    size: tuple[int, int] | str | None = None  # (width, height) or "WIDTHxHEIGHT"; overrides scale
    threshold: float | None = None  # tau in dB; None: the model's own
    skip: bool = True  # False keeps every token (the dense baseline)
    steps: int = 1  # flow-matching steps
    seed: int = 0
    chunk_frames: int = CHUNK_FRAMES
    overlap: int = OVERLAP
    scene_cuts: bool = True  # a chunk's shots go through the model apart (run/scenes.py)
    tile: int | None = None  # decode in tiles of this many latent pixels
    # Encoding
    codec: str | None = None  # None: libx264 (libvpx-vp9 for .webm, gif for .gif, png for frames)
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str | None = None
    lossless: bool = False
    # Streams
    copy_audio: bool = True
    copy_subtitles: bool = True
    audio_bitrate: int | None = None  # kb/s of audio that must be re-encoded
    # Output
    overwrite: bool = False
    mask_out: Path | None = None  # also write the skip mask as a video
    frames: str | tuple[int, int | None] | None = None  # "START:END" or (start, end): a range
    # Farms: part I of N ("I/N" or "auto") into the parts folder (OUTPUT.parts unless `parts`)
    segment: str | None = None
    # N parts: for --segment auto where the scheduler does not say it; else the run's own split
    segments: int | None = None
    parts: Path | None = None
    # Ray: segments as tasks on a cluster (an address, "auto", or "" for a local Ray), then stitched
    ray: str | None = None
    workers: int | None = None  # Ray actors [default: one per GPU of the cluster]
    # one video on several devices of this machine ("0,1", "all", "cpu,cpu"), in segments
    devices: str | None = None
    strict: bool = False  # damaged input (frames lost or unreadable) is an error, not a warning


def check_threshold(threshold: float | None) -> None:
    """tau must be a number of dB: NaN would skip every token, and infinities mean nothing."""
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"--threshold must be a finite number of dB, not {threshold}")


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1920x1080") from None
    if w < 1 or h < 1 or w > 16384 or h > 16384:
        raise UsageError(f"--size {text!r}: width and height must be between 1 and 16384")
    return w, h


def resolve_device(choice: str | torch.device) -> torch.device:
    """auto: CUDA when there is one, else the CPU."""
    if isinstance(choice, torch.device):
        return choice
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use --device cpu)")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda" if choice == "auto" else choice)


def resolve_dtype(choice: str | torch.dtype, device: torch.device) -> torch.dtype:
    """auto: bf16 on CUDA, fp32 on the CPU."""
    if isinstance(choice, torch.dtype):
        return choice
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if choice not in DTYPES:
        raise UsageError(f"--dtype must be auto or one of {', '.join(DTYPES)}, not {choice!r}")
    return DTYPES[choice]


def check_options(input: Path, options: UpscaleOptions) -> None:
    """Refuse what is wrong in the options themselves, before the input is even probed."""
    check_threshold(options.threshold)
    if isinstance(options.size, str):  # a batch's one size: refused once, not file by file
        parse_size(options.size)
    if options.scale not in (2, 4) and options.size is None:
        raise UsageError(
            f"--scale must be 2 or 4, not {options.scale} (or give --size WIDTHxHEIGHT)"
        )
    if not 0 <= options.seed <= SEED_MAX:
        raise UsageError(f"--seed must be between 0 and {SEED_MAX} (2**63-1), not {options.seed}")
    if options.segments is not None and options.segments < 1:
        raise UsageError(f"--segments must be 1 or more, not {options.segments}")
    if options.weights is not None and options.random_weights:
        raise UsageError("--weights and --random-weights exclude each other")
    if effective_denoise(options) not in (0, AUTO):
        _check_denoise(options)
    if not input.exists() and "%" not in input.name:  # a %d pattern names an image sequence
        raise InputError(f"input not found: {input}")


def _check_denoise(options: UpscaleOptions) -> None:
    """A blend needs trained weights and a file to blend towards."""
    if options.random_weights:
        raise UsageError("--denoise blends trained weights: not with --random-weights")
    if options.denoise_weights is not None:
        return
    if options.weights is not None:
        raise UsageError(
            "--denoise with --weights needs --denoise-weights: the file to blend towards"
        )
    if options.model in PRESETS and not weights.denoise_path(options.model).exists():
        raise ModelError(f"preset {options.model!r} ships no weights for --denoise")


def parse_denoise(value: float | str) -> float | str:
    """AUTO, or an amount from 0 to 1 (a number, or a number's text)."""
    given = value  # the message names what was given, not what it was read as
    if isinstance(value, str):
        if value.strip().lower() == AUTO:
            return AUTO
        try:
            value = float(value)
        except ValueError:
            value = math.nan
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise UsageError(f"--denoise must be auto or a number from 0 to 1, not {given!r}")
    return float(value)


def effective_denoise(options: UpscaleOptions) -> float | str:
    """--denoise as it acts: auto is 0 for a network with nothing to blend towards (random
    weights, a weights file without --denoise-weights, a preset that ships no such weights)."""
    denoise = parse_denoise(options.denoise)
    if denoise == AUTO and (
        options.random_weights
        or weights.blend_target(options.model, options.weights, options.denoise_weights) is None
    ):
        return 0.0
    return denoise


def denoise_amount(options: UpscaleOptions, input: Path) -> float:
    """The blend this input gets: the amount given, or with auto the one its quantiser implies
    (a video whose codec reports none, an image or a sequence: 0)."""
    denoise = effective_denoise(options)
    if denoise != AUTO:
        return denoise
    return weights.auto_denoise(mean_qp(input) if input.is_file() else None)


def for_loaded_model(options: UpscaleOptions) -> UpscaleOptions:
    """The options for a network the caller loaded: it is blended already, so auto means 0 for it
    and an amount is refused."""
    denoise = parse_denoise(options.denoise)
    if denoise == AUTO:
        return replace(options, denoise=0.0)
    if denoise != 0:
        raise UsageError("denoise blends the weights skipsr loads: give load_model the amount")
    return options


def with_denoise_for(options: UpscaleOptions, input: Path) -> UpscaleOptions:
    """The options with --denoise auto resolved for this input, so that every worker, segment
    and resumed run of it loads the same network."""
    return replace(options, denoise=denoise_amount(options, input))


def load_network(options: UpscaleOptions, device: torch.device, dtype: torch.dtype) -> SkipSR:
    """The network the options name, on `device` in `dtype` (--denoise auto resolved before:
    `with_denoise_for`)."""
    denoise = parse_denoise(options.denoise)
    if denoise == AUTO:
        raise ValueError("load_network needs --denoise resolved for an input: with_denoise_for")
    return weights.load_model(
        options.model,
        options.weights,
        random_weights=options.random_weights,
        device=device,
        dtype=dtype,
        seed=options.seed,
        denoise=denoise,
        denoise_weights=options.denoise_weights,
    )


def settings_of(options: UpscaleOptions) -> Settings:
    """The model's per-run settings."""
    return Settings(
        threshold=options.threshold,
        skip=options.skip,
        steps=options.steps,
        seed=options.seed,
        decode_tile=options.tile,
        frame_slice=FRAME_SLICE,
    )


def encode_options_of(options: UpscaleOptions, output: Path) -> EncodeOptions:
    """The encoder and its settings, from the options and the output's extension."""
    if is_image_output(output):  # PNG frames: lossless already, RGB, no encoder options
        if options.codec not in (None, "png"):
            raise UsageError(f"PNG frames are written with the png encoder, not {options.codec}")
        return EncodeOptions(codec="png", crf=None, preset=None, pix_fmt=options.pix_fmt)
    if options.lossless:
        check_lossless(output)
        return lossless_options(output.suffix, options.codec, options.pix_fmt, options.preset)
    return EncodeOptions(
        codec=options.codec or default_codec(output.suffix),
        crf=options.crf,
        preset=options.preset,
        pix_fmt=options.pix_fmt,
    )


def mask_encode_options(options: UpscaleOptions, mask: Path, main: EncodeOptions) -> EncodeOptions:
    """The mask video's encoder: what an output at the mask's own path would get from the same
    options (mask.gif beside out.mp4: GIF, which cannot hold the output's x264), less what cannot
    apply there: a --codec its container cannot hold, --lossless into a GIF, a --pix-fmt its
    encoder does not take. On the output's own encoder (`main`) it takes the output's settings;
    on another, --crf stays at its default (a CRF is a scale of the output's encoder), and
    --preset, a speed, carries over. (An odd size's 4:4:4 is chosen in `prepare`, which knows it.)"""
    video = not is_image_output(mask)
    held = video and options.codec is not None and container_holds(mask, options.codec)
    defaults = UpscaleOptions()
    mine = replace(
        options,
        codec=options.codec if held else None,
        lossless=options.lossless and video and can_be_lossless(mask),
        crf=defaults.crf,
        pix_fmt=None,
        preset=options.preset if options.preset in (None, *X264_PRESETS) else defaults.preset,
    )
    own = encode_options_of(mine, mask)
    if own.codec == main.codec:
        return main
    if options.pix_fmt is not None and _takes(own.codec, options.pix_fmt, video):
        own = encode_options_of(replace(mine, pix_fmt=options.pix_fmt), mask)
    return own


def _takes(codec: str, pix_fmt: str, video: bool) -> bool:
    """Whether the mask's encoder takes the --pix-fmt given (PNG frames: only the PNG formats)."""
    return takes_pix_fmt(codec, pix_fmt) if video else pix_fmt in PNG_FORMATS


def can_be_lossless(output: Path) -> bool:
    """A GIF cannot: 256 colours a frame."""
    return output.suffix.lower() != ".gif"


def check_lossless(output: Path) -> None:
    """--lossless into a container that can hold a lossless encoding (a GIF cannot: 256 colours)."""
    if not can_be_lossless(output):
        raise UsageError(
            f"--lossless: {output} is a GIF, which cannot be lossless (256 colours a frame); "
            "write .mkv, .mp4, .mov or .webm, or leave out --lossless"
        )


def job_of(input: Path, output: Path, options: UpscaleOptions) -> UpscaleJob:
    """The job the pipeline runs: options checked and turned into config objects."""
    settings = settings_of(options)
    encode = encode_options_of(options, output)
    mask = options.mask_out
    size = parse_size(options.size) if isinstance(options.size, str) else options.size
    return UpscaleJob(
        input,
        output,
        options.scale,
        size,
        options.chunk_frames,
        options.overlap,
        settings,
        encode,
        options.overwrite,
        options.mask_out,
        copy_audio=options.copy_audio,
        copy_subtitles=options.copy_subtitles,
        audio_kbps=options.audio_bitrate,
        frames=parse_frames(options.frames),
        strict=options.strict,
        scene_cuts=options.scene_cuts,
        denoise=_known(effective_denoise(options)),
        mask_encode=None if mask is None else mask_encode_options(options, mask, encode),
    )


def _known(denoise: float | str) -> float | None:
    """The amount a job reports: None while --denoise auto is not yet resolved for its input."""
    return None if denoise == AUTO else denoise
