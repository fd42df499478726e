"""The library behind `skipsr eval`: degrade high-resolution references, upscale, measure.

For each reference clip and each fixed track of `degrade.TRACKS` the low-resolution input is made
once, then upscaled by every method (the model, the model with skipping off, Lanczos, bicubic) and
compared with the reference. Several models can be measured in one run on the same inputs (their
rows are named `model:NAME`), and everything after the degradation runs on the models' device. The figures are those of `metrics`; a clip's figure is the mean over
its frames, and an average is the plain mean over clips, so every clip (an image counts as a
one-frame clip) weighs the same.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor

from models.skipsr import Result, Settings, SkipSR
from skipsr_cli.errors import InputError, ModelError, UsageError
from skipsr_cli.measure import metrics
from skipsr_cli.media.video_io import probe, read_frames, rgb8
from skipsr_cli.run.memory import run_in_pieces
from skipsr_cli.run.scenes import shot_starts
from skipsr_cli.train.degrade import TRACKS, from_uint8, resize
from skipsr_cli.weights import Blends, auto_denoise

METHODS = ("model", "no-skip", "lanczos", "bicubic")
MODEL_METHODS = frozenset({"model", "no-skip"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".ts", ".y4m"})
_RESIZE_ELEMENTS = 1 << 27  # float32 elements a Lanczos step may gather (512 MiB)


@dataclass(frozen=True)
class ClipSource:
    """One reference to evaluate: a video (its first `frames` frames) or one image."""

    path: Path
    kind: str  # "video" or "image"
    name: str  # shown in the table: the file name, or the path where names repeat
    transfer: int | None = None  # a video's transfer code (PQ: 16), for finding its shots


@dataclass(frozen=True)
class Reference:
    name: str
    frames: Tensor  # (T, 3, H, W) float32 in [0, 1], cropped so H and W divide by the scale
    crop: tuple[int, int]  # (rows, columns) removed at the bottom and the right
    transfer: int | None = None  # the video's transfer code (PQ: 16), for finding its shots


@dataclass(frozen=True)
class Row:
    track: str
    method: str
    psnr: float  # dB, RGB; identical frames count as metrics.PSNR_CAP
    ssim: float  # luma
    flicker: float | None  # 8-bit code values; None for one-frame clips
    skip: float | None  # fraction of tokens skipped; None for the classic resamplers
    denoise: float | None = None  # the blend a --denoise auto network ran at on this track


@dataclass(frozen=True)
class ClipResult:
    name: str
    path: str
    frames: int
    size: tuple[int, int]  # (H, W) measured, after the crop
    crop: tuple[int, int]
    rows: list[Row]


@dataclass(frozen=True)
class EvalResult:
    scale: int
    frames: int | None  # the frame limit asked for
    threshold: float | None  # tau; None: the model's default
    clips: list[ClipResult]
    averages: list[Row]  # per track and method, the mean over clips
    skip_fraction: float | None = None  # a fixed share of tokens skipped in place of tau


# --- sources ---------------------------------------------------------------------------------


def find_sources(paths: Sequence[Path]) -> list[ClipSource]:
    """Expand files and folders into clips; videos are probed now, so a bad file fails before work."""
    found: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if not path.exists():
            raise InputError(f"input not found: {path}")
        found.extend(_folder_sources(path) if path.is_dir() else [(path, _kind(path))])
    transfers = {p: probe(p).colour.transfer for p, kind in found if kind == "video"}
    names = [p.name for p, _ in found]
    return [
        ClipSource(p, kind, p.name if names.count(p.name) == 1 else str(p), transfers.get(p))
        for p, kind in found
    ]


def _kind(path: Path) -> str:
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def _folder_sources(folder: Path) -> list[tuple[Path, str]]:
    """Images and videos directly in `folder`, sorted by name; anything else is not media."""
    media = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in media and p.name[0] != "."
    )
    if not files:
        raise InputError(f"no images or videos in {folder}")
    return [(p, _kind(p)) for p in files]


def load_reference(source: ClipSource, scale: int, frames: int | None = None) -> Reference:
    """Decode a reference and crop it (bottom and right) so that its sides divide by `scale`."""
    rgb = _read_image(source.path) if source.kind == "image" else _read_video(source.path, frames)
    clip = to_unit(rgb)  # (T, 3, H, W)
    h, w = clip.shape[-2:]
    dh, dw = h % scale, w % scale
    if h - dh < scale or w - dw < scale:
        raise InputError(f"{source.path} is {w}x{h}: too small for x{scale}")
    crop = clip[:, :, : h - dh, : w - dw].contiguous()
    return Reference(source.name, crop, (dh, dw), source.transfer)


def to_unit(rgb: np.ndarray) -> Tensor:
    """(T, H, W, 3) uint8, or uint16 from inputs deeper than 8 bits -> (T, 3, H, W) in [0, 1]."""
    if rgb.dtype == np.uint8:
        return from_uint8(rgb)
    return torch.from_numpy(rgb.astype(np.float32) / 65535).permute(0, 3, 1, 2).contiguous()


def _read_video(path: Path, frames: int | None) -> np.ndarray:
    """(T, H, W, 3): uint8, or uint16 for deeper inputs; the first `frames` frames (all when None)."""
    stream = read_frames(path)
    try:
        images = [f.rgb for f in itertools.islice(stream, frames)]
    finally:
        stream.close()  # closes the container even when we stop early
    if not images:
        raise InputError(f"no frames decoded from {path}")
    return np.stack(images)


def _read_image(path: Path) -> np.ndarray:
    """(1, H, W, 3) uint8 from a PNG or JPEG (grey and alpha images become RGB)."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0), None)
            image = None if frame is None else rgb8(frame)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    if image is None:
        raise InputError(f"no picture in {path}")
    return image[None]


# --- upscaling -------------------------------------------------------------------------------


def upscale_model(
    model: SkipSR,
    lr: Tensor,
    size: tuple[int, int],
    settings: Settings,
    chunk_frames: int = 16,
    transfer: int | None = None,
) -> tuple[Tensor, float]:
    """Model output (T, 3, H, W) float32 on its device and its skip ratio, token-weighted over chunks.

    Chunks do not overlap: evaluation measures the network, not the cross-fade of `upscale`.
    A chunk's shots go through the model apart, as `upscale` runs them (run/scenes.py), found
    with the clip's `transfer` as `upscale` finds them.
    """
    param = next(model.parameters())
    outputs, kept, tokens = (
        [],
        0.0,
        0,
    )  # outputs stay on the model's device, where they are measured

    def shot(clip: Tensor, first: int) -> Result:
        return model(clip, size, settings)

    for start in range(0, lr.shape[0], chunk_frames):
        exact = lr[start : start + chunk_frames].to(param.device)[None].transpose(1, 2)
        x = exact.to(param.dtype)  # (1, 3, t, h, w); cuts are found in fp32, as upscale does
        try:
            with torch.inference_mode():
                starts = shot_starts(exact, model.args.token_pixels[0], transfer)
                result = run_in_pieces(shot, x, starts, start)
        except torch.cuda.OutOfMemoryError as e:
            raise ModelError("out of GPU memory: lower --chunk-frames or use --dtype bf16") from e
        except RuntimeError as e:
            raise ModelError(f"the model failed on frames from {start}: {e}") from e
        outputs.append(result.frames[0].transpose(0, 1).float())  # (t, 3, H, W)
        kept += result.kept_fraction * result.keep.numel()
        tokens += result.keep.numel()
    return torch.cat(outputs), 1.0 - kept / tokens


def upscale_classic(lr: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """`degrade.resize` a few frames at a time: Lanczos gathers 7 taps per output pixel."""
    step = max(1, _RESIZE_ELEMENTS // (3 * size[0] * size[1] * 7))
    return torch.cat([resize(lr[i : i + step], size, mode) for i in range(0, lr.shape[0], step)])


# --- evaluation ------------------------------------------------------------------------------


def measure(
    track: str,
    method: str,
    out: Tensor,
    ref: Tensor,
    skip: float | None,
    denoise: float | None = None,
) -> Row:
    """One row of figures; flicker only where there is a frame-to-frame change to compare."""
    flicker = metrics.flicker(out, ref) if ref.shape[0] > 1 else None
    psnr, ssim = metrics.psnr(out, ref), metrics.ssim(out, ref)
    return Row(track, method, psnr, ssim, flicker, skip, denoise)


# by name; the name "" labels the rows plain "model", "no-skip". A `Blends` runs every track at
# the --denoise amount its own quantiser implies (what `upscale --denoise auto` does with a file).
Models = Mapping[str, SkipSR | Blends]


def method_label(method: str, name: str) -> str:
    return f"{method}:{name}" if name else method


def evaluate_clip(
    ref: Tensor,
    scale: int,
    model: SkipSR | Models | None,
    methods: Sequence[str] = METHODS,
    threshold: float | None = None,
    chunk_frames: int = 16,
    log: Callable[[str], None] | None = None,
    skip_fraction: float | None = None,
    transfer: int | None = None,
) -> list[Row]:
    """Rows for every track and method on one reference clip (T, 3, H, W) on the CPU, coded
    with `transfer` (None: SDR); each model method gives one row per model."""
    models = _as_models(model)
    device = _device(models)
    size = (ref.shape[2], ref.shape[3])
    target = ref.to(device)
    rows = []
    auto = any(isinstance(net, Blends) for net in models.values())  # reads the track's QP
    for track in TRACKS.values():
        # (T, 3, H / scale, W / scale): the codec is CPU work
        lr, qp = track.apply_measured(ref, scale) if auto else (track.apply(ref, scale), None)
        lr = lr.to(device)
        for method in methods:
            for name, net in models.items() if method in MODEL_METHODS else [("", None)]:
                label = method_label(method, name)
                if log is not None:
                    log(f"{track.name} {label}")
                skip = amount = None
                if net is not None:
                    settings = Settings(
                        threshold=threshold, skip=method == "model", skip_fraction=skip_fraction
                    )
                    network = net
                    if isinstance(net, Blends):
                        amount = auto_denoise(qp)
                        network = net.at(amount)
                    out, skip = upscale_model(network, lr, size, settings, chunk_frames, transfer)
                else:
                    out = upscale_classic(lr, size, method)
                rows.append(measure(track.name, label, out, target, skip, amount))
                del out  # one upscaled clip alive at a time
    return rows


def _as_models(model: SkipSR | Blends | Models | None) -> dict[str, SkipSR | Blends]:
    if model is None:
        return {}
    return {"": model} if isinstance(model, SkipSR | Blends) else dict(model)


def _device(models: Mapping[str, SkipSR | Blends]) -> torch.device:
    """Where the references, the classic methods and the measures go: the models' device."""
    nets = [m.model if isinstance(m, Blends) else m for m in models.values()]
    devices = {next(m.parameters()).device for m in nets}
    if len(devices) > 1:
        raise UsageError(f"the models are on different devices: {sorted(map(str, devices))}")
    return devices.pop() if devices else torch.device("cpu")


def evaluate(
    paths: Sequence[Path],
    scale: int,
    model: SkipSR | Models | None = None,
    *,
    frames: int | None = None,
    methods: Sequence[str] = METHODS,
    threshold: float | None = None,
    chunk_frames: int = 16,
    log: Callable[[str], None] | None = None,
    skip_fraction: float | None = None,
) -> EvalResult:
    """Evaluate every clip under `paths` (files, folders) at x`scale`.

    `model` is one network, or several by name (compared on the very same inputs); `methods`
    chooses among METHODS (tests leave the model out); `log` receives one line per step, for a
    progress display on long runs.
    """
    _check_arguments(scale, _as_models(model), frames, methods, chunk_frames)
    clips = []
    for source in find_sources(paths):
        ref = load_reference(source, scale, frames)
        if log is not None:
            log(f"{source.name}: {ref.frames.shape[0]} frames")
        say = _prefixed(log, source.name)
        rows = evaluate_clip(
            ref.frames,
            scale,
            model,
            methods,
            threshold=threshold,
            chunk_frames=chunk_frames,
            log=say,
            skip_fraction=skip_fraction,
            transfer=ref.transfer,
        )
        size = (ref.frames.shape[2], ref.frames.shape[3])
        clips.append(
            ClipResult(source.name, str(source.path), ref.frames.shape[0], size, ref.crop, rows)
        )
    return EvalResult(scale, frames, threshold, clips, average_rows(clips), skip_fraction)


def _prefixed(log: Callable[[str], None] | None, name: str) -> Callable[[str], None] | None:
    return None if log is None else (lambda text: log(f"{name}: {text}"))


def _check_arguments(
    scale: int, models: Models, frames: int | None, methods: Sequence[str], chunk_frames: int
) -> None:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"methods must be among {', '.join(METHODS)}; got {list(methods)}")
    if not models and MODEL_METHODS & set(methods):
        raise UsageError("the methods model and no-skip need a model")
    if scale < 1 or chunk_frames < 1 or (frames is not None and frames < 1):
        raise UsageError("scale, frames and chunk_frames must be at least 1")


def average_rows(clips: Sequence[ClipResult]) -> list[Row]:
    """Per (track, method), the mean over clips; flicker over the clips that have one."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for clip in clips:
        for row in clip.rows:
            groups.setdefault((row.track, row.method), []).append(row)
    return [
        Row(
            track,
            method,
            _mean([r.psnr for r in rows]),
            _mean([r.ssim for r in rows]),
            _mean([r.flicker for r in rows]),
            _mean([r.skip for r in rows]),
            _mean([r.denoise for r in rows]),
        )
        for (track, method), rows in groups.items()
    ]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


# --- reporting -------------------------------------------------------------------------------


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table_rows(rows: Sequence[Row]) -> list[str]:
    wide = max([8, *(len(r.method) for r in rows)])
    lines = [
        f"  {'track':<6} {'method':<{wide}} {'PSNR':>7} {'SSIM':>7} {'flicker':>8} {'skip':>6}"
    ]
    for r in rows:
        skip = _cell(None if r.skip is None else 100 * r.skip, ".1f")
        lines.append(
            f"  {r.track:<6} {r.method:<{wide}} {r.psnr:>7.2f} {r.ssim:>7.4f} "
            f"{_cell(r.flicker, '.3f'):>8} {skip + ('%' if r.skip is not None else ''):>6}"
        )
    return lines


def format_table(result: EvalResult) -> str:
    """Plain text for a terminal or a log: each clip, then the averages over clips."""
    tau = "model default" if result.threshold is None else f"{result.threshold:g} dB"
    if result.skip_fraction is not None:
        tau = f"none: the {result.skip_fraction:.0%} of tokens scored highest skipped"
    limit = "all" if result.frames is None else str(result.frames)
    lines = [
        f"skipsr eval x{result.scale}: {len(result.clips)} clip(s), frames {limit}, tau {tau}",
        "PSNR dB (RGB), SSIM (luma), flicker in 8-bit code values, skip = tokens skipped",
    ]
    for clip in result.clips:
        h, w = clip.size
        crop = f", cropped {clip.crop[0]} rows {clip.crop[1]} cols" if any(clip.crop) else ""
        lines += ["", f"{clip.name}: {w}x{h}, {clip.frames} frame(s){crop}"]
        lines += _table_rows(clip.rows)
    moving = sum(c.frames > 1 for c in result.clips)
    note = f"; flicker over the {moving} with 2+ frames" if moving < len(result.clips) else ""
    lines += ["", f"average over {len(result.clips)} clip(s){note}"]
    lines += _table_rows(result.averages)
    return "\n".join(lines)


def result_to_json(result: EvalResult) -> dict:
    """Plain JSON types only (no NaN or infinity): missing figures are null."""
    return {
        "scale": result.scale,
        "frames": result.frames,
        "threshold": result.threshold,
        "skip_fraction": result.skip_fraction,
        "psnr_cap_db": metrics.PSNR_CAP,
        "tracks": {name: {"crf": t.crf} for name, t in TRACKS.items()},
        "clips": [
            {
                "name": c.name,
                "path": c.path,
                "frames": c.frames,
                "size": list(c.size),
                "crop": list(c.crop),
                "rows": [asdict(r) for r in c.rows],
            }
            for c in result.clips
        ],
        "averages": [asdict(r) for r in result.averages],
    }
