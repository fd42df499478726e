"""Degradations that turn high-resolution frames into realistic low-resolution inputs.

Used by `skipsr eval` (fixed, documented tracks) and by training (random draws). Frames are float
tensors (T, 3, H, W) in [0, 1]; codec round trips go through PyAV in memory.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from skipsr_cli.media.colour import (
    ACCURATE,
    MATRIX_BT601,
    RANGE_FULL,
    RANGE_LIMITED,
    ColourInfo,
    default_matrix,
    rgb_to_ycbcr,
)
from skipsr_cli.media.quantiser import mean_qp
from skipsr_cli.media.video_io import frame_to_rgb

JPEG_COLOUR = ColourInfo(matrix=MATRIX_BT601, range=RANGE_FULL)  # JPEG: BT.601, full range


def resize(frames: Tensor, size: tuple[int, int], mode: str = "bicubic") -> Tensor:
    """Antialiased resize of (T, 3, H, W) to size = (H, W); modes: bicubic, bilinear, area, lanczos."""
    if mode == "lanczos":
        return lanczos_resize(frames, size)
    if mode == "area":
        return F.interpolate(frames, size=size, mode="area")
    return F.interpolate(frames, size=size, mode=mode, align_corners=False, antialias=True).clamp(
        0, 1
    )


def lanczos_resize(frames: Tensor, size: tuple[int, int], a: int = 3) -> Tensor:
    """Separable Lanczos-a resampling (antialiased when shrinking), edge-replicated borders."""
    out = _lanczos_axis(frames, size[0], a, axis=2)
    return _lanczos_axis(out, size[1], a, axis=3).clamp(0, 1)


def _lanczos_axis(x: Tensor, n_out: int, a: int, axis: int) -> Tensor:
    n_in = x.shape[axis]
    scale = n_in / n_out
    support = a * max(scale, 1.0)  # stretch the kernel when shrinking (antialias)
    centers = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5  # (n_out,)
    taps = torch.arange(-int(np.ceil(support)), int(np.ceil(support)) + 1, dtype=torch.float64)
    pos = centers.floor()[:, None] + taps[None]  # (n_out, k) input positions
    dist = (pos - centers[:, None]) / max(scale, 1.0)
    weights = torch.sinc(dist) * torch.sinc(dist / a) * (dist.abs() < a)
    weights = weights / weights.sum(1, keepdim=True)
    index = pos.clamp(0, n_in - 1).long().to(x.device)  # replicate the edges
    moved = x.movedim(axis, -1)  # (..., n_in)
    gathered = moved[..., index]  # (..., n_out, k)
    out = (gathered * weights.to(x.device, x.dtype)).sum(-1)
    return out.movedim(-1, axis)


def to_uint8(frames: Tensor) -> np.ndarray:
    """(T, 3, H, W) in [0, 1] -> (T, H, W, 3) uint8."""
    return (
        frames.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    )


def from_uint8(frames: np.ndarray) -> Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255


def h264_round_trip(frames: Tensor, crf: int, preset: str = "medium") -> Tensor:
    """Encode with x264 (yuv420p) at `crf` and decode again, in memory. Odd sizes are edge-padded."""
    return h264_decode(h264_encode(frames, crf, preset), frames.shape)


def h264_encode(frames: Tensor, crf: int, preset: str = "medium") -> io.BytesIO:
    """(T, 3, H, W) in [0, 1] as an in-memory mp4 of x264 (yuv420p) at `crf`, edge-padded to even
    sizes."""
    h, w = frames.shape[-2:]
    ph, pw = h % 2, w % 2
    padded = F.pad(frames, (0, pw, 0, ph), mode="replicate") if ph or pw else frames
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": str(crf), "preset": preset})
        stream.width, stream.height, stream.pix_fmt = w + pw, h + ph, "yuv420p"
        stream.time_base = Fraction(1, 25)
        # converted as the writer converts (the height's matrix, limited range, block means) and
        # read back as inputs are read, so the pairs hold what users' files hold
        colour = ColourInfo(matrix=default_matrix(h + ph), range=RANGE_LIMITED)
        for i, image in enumerate(to_uint8(padded)):
            frame = yuv420_frame(image, colour)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    buffer.seek(0)
    return buffer


def h264_decode(buffer: io.BytesIO, shape: torch.Size) -> Tensor:
    """What `h264_encode` made of frames of `shape` (T, 3, H, W), decoded and cropped back."""
    t, _, h, w = shape
    buffer.seek(0)
    with av.open(buffer, "r") as src:
        decoded = [frame_to_rgb(f) for f in src.decode(video=0)]
    if len(decoded) != t:
        raise RuntimeError(f"x264 round trip returned {len(decoded)} frames for {t}")
    return from_uint8(np.stack(decoded))[:, :, :h, :w]


def yuv420_frame(image: np.ndarray, colour: ColourInfo) -> av.VideoFrame:
    """(H, W, 3) uint8 RGB (even sizes) -> a yuv420p frame: YCbCr in floating point, rounded, then
    chroma subsampled by swscale, as the video writer does it."""
    frame = av.VideoFrame.from_ndarray(rgb_to_ycbcr(image, colour), format="yuv444p")
    return frame.reformat(format="yuv420p", interpolation=ACCURATE)  # chroma only


def jpeg_round_trip(frames: Tensor, quality: int) -> Tensor:
    """JPEG (mjpeg, yuvj420p) at a quality in 1..100, frame by frame, in memory."""
    out = []
    qscale = max(
        2, min(31, round(2 + (100 - quality) * 29 / 99))
    )  # mjpeg's scale: 2 best, 31 worst
    for image in to_uint8(frames):
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height = image.shape[1], image.shape[0]
        codec.pix_fmt, codec.time_base = "yuvj420p", Fraction(1, 25)
        codec.options = {"qmin": str(qscale), "qmax": str(qscale)}
        # swscale's own RGB -> yuvj is biased: converted as the writer converts
        frame = yuv420_frame(image, JPEG_COLOUR)
        frame = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuvj420p")
        packets = codec.encode(frame)
        packets += codec.encode(None)
        decoder = av.CodecContext.create("mjpeg", "r")
        frames_out = [f for p in packets for f in decoder.decode(p)]
        out.append(frame_to_rgb(frames_out[0]))
    return from_uint8(np.stack(out))


@dataclass(frozen=True)
class Track:
    """A fixed evaluation degradation: antialiased bicubic downscale, then x264 at a CRF."""

    name: str
    crf: int

    def apply(self, hr: Tensor, scale: int) -> Tensor:
        return h264_round_trip(self.downscale(hr, scale), self.crf)

    def downscale(self, hr: Tensor, scale: int) -> Tensor:
        h, w = hr.shape[-2:]
        return resize(hr, (max(1, round(h / scale)), max(1, round(w / scale))), "bicubic")

    def apply_measured(self, hr: Tensor, scale: int) -> tuple[Tensor, float | None]:
        """The low-resolution clip and the mean QP its decoder reports (what --denoise auto reads
        from a user's file)."""
        lr = self.downscale(hr, scale)
        encoded = h264_encode(lr, self.crf)
        qp = mean_qp(encoded)
        return h264_decode(encoded, lr.shape), qp


TRACKS = {"clean": Track("clean", 12), "web": Track("web", 28)}


def random_degrade(hr: Tensor, scale: int, rng: random.Random, profile: str = "mixed") -> Tensor:
    """Training degradation of a clip (T, 3, H, W): the same draw for every frame of the clip.

    `profile` names the distribution the draw comes from (see PROFILES): what inputs the model is
    taught to expect. Every codec round trip converts colour as the writer and the reader do,
    without bias, so the pairs differ in detail only.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown degradation profile {profile!r}: one of {', '.join(PROFILES)}")
    return PROFILES[profile](hr, (hr.shape[-2] // scale, hr.shape[-1] // scale), rng)


def _mixed(hr: Tensor, size: tuple[int, int], rng: random.Random) -> Tensor:
    """Half the clips are clean downscales (bicubic, lanczos or area, antialiased), lightly
    compressed or not: a model trained only on blurred, noisy inputs over-sharpens clean ones and
    falls below the plain resamplers there. The other half get mild blur, a random kernel,
    sometimes a little noise (a fifth of them: a model taught to remove much noise also removes
    the grain of real footage, which its reference keeps), then H.264 (CRF 18 to 35) or JPEG."""
    if rng.random() < 0.5:
        x = resize(hr, size, rng.choice(["bicubic", "bicubic", "lanczos", "area"]))
        if rng.random() < 0.7:
            x = h264_round_trip(x, rng.randint(8, 24), preset="veryfast")
        return x
    x = hr
    if rng.random() < 0.4:
        x = gaussian_blur(x, rng.uniform(0.2, 1.0))
    x = resize(x, size, rng.choice(["bicubic", "bilinear", "area", "lanczos"]))
    if rng.random() < 0.2:  # was 0.4 and up to 0.02 until 2026-11-30: the model smoothed real grain
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        x = (x + torch.randn(x.shape, generator=gen) * rng.uniform(0.002, 0.012)).clamp(0, 1)
    roll = rng.random()
    if roll < 0.7:
        x = h264_round_trip(x, rng.randint(18, 35), preset="veryfast")
    elif roll < 0.95:
        x = jpeg_round_trip(x, rng.randint(40, 95))
    return x


def _video(hr: Tensor, size: tuple[int, int], rng: random.Random) -> Tensor:
    """What a video upscaler is fed: a downscale by a random antialiased kernel, then H.264 at a
    CRF spread evenly over near-lossless to web quality (8 to 34), sometimes (one clip in ten) after
    a slight blur. No added noise and no JPEG: the grain of the source stays in the pair."""
    x = gaussian_blur(hr, rng.uniform(0.2, 0.6)) if rng.random() < 0.1 else hr
    x = resize(x, size, rng.choice(["bicubic", "bicubic", "lanczos", "area", "bilinear"]))
    return h264_round_trip(x, rng.randint(8, 34), preset="veryfast")


def _clean(hr: Tensor, size: tuple[int, int], rng: random.Random) -> Tensor:
    """Clean downscales only (bicubic, lanczos or area), H.264 at CRF 8 to 16 or none."""
    x = resize(hr, size, rng.choice(["bicubic", "bicubic", "lanczos", "area"]))
    return h264_round_trip(x, rng.randint(8, 16), preset="veryfast") if rng.random() < 0.8 else x


def _delivery(hr: Tensor, size: tuple[int, int], rng: random.Random) -> Tensor:
    """Delivered video: a clean downscale (bicubic, lanczos or area), then x264 at CRF 8 to 30 with
    the preset drawn as well (veryfast, medium or slow: their artefacts differ, and users' files
    come from all of them; the other profiles encode veryfast only); one clip in ten unencoded."""
    x = resize(hr, size, rng.choice(["bicubic", "bicubic", "lanczos", "area"]))
    if rng.random() < 0.1:
        return x
    crf, preset = rng.randint(8, 30), rng.choice(["veryfast", "medium", "medium", "slow"])
    return h264_round_trip(x, crf, preset=preset)


def _web(hr: Tensor, size: tuple[int, int], rng: random.Random) -> Tensor:
    """Web and streamed video, the far end of --denoise: a clean downscale (bicubic, lanczos or
    area), then x264 at CRF 22 to 34, the preset drawn as in `delivery`; every clip encoded."""
    x = resize(hr, size, rng.choice(["bicubic", "bicubic", "lanczos", "area"]))
    crf, preset = rng.randint(22, 34), rng.choice(["veryfast", "medium", "medium", "slow"])
    return h264_round_trip(x, crf, preset=preset)


def _plain(hr: Tensor, size: tuple[int, int], rng: random.Random) -> Tensor:
    """The antialiased bicubic downscale alone, no draw at all (tests and ablations)."""
    return resize(hr, size, "bicubic")


PROFILES = {
    "mixed": _mixed,
    "video": _video,
    "clean": _clean,
    "delivery": _delivery,
    "web": _web,
    "none": _plain,
}


def gaussian_blur(frames: Tensor, sigma: float) -> Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    xs = torch.arange(-radius, radius + 1, dtype=frames.dtype)
    kernel = torch.exp(-0.5 * (xs / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = frames.shape[1]
    x = F.pad(frames, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
