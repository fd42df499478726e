"""Frames onto the model's device and back: a chunk's decoded pictures up as one clip (8-bit
YCbCr as its planes, converted there), and each finished frame down as its writer takes it
(planes made on the device, or RGB at the output's depth), with the mask video's tinted frame."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from models import SkipSR
from models.skipsr import Result
from skipsr_cli.media.colour import ColourInfo, rgb_to_planes, ycbcr_to_rgb_tensor
from skipsr_cli.media.image_io import ImageWriter
from skipsr_cli.media.video_io import DecodedFrame
from skipsr_cli.media.video_writer import VideoWriter

Writer = VideoWriter | ImageWriter
# Per writer: its colour, the planar pix_fmt it takes from the device (None: RGB frames), and
# the depth of its RGB frames (8: uint8, more: uint16).
OutFormat = tuple[ColourInfo | None, str | None, int]
MASK_TINT = (0.15, 0.35, 1.0)  # skipped regions in the mask video lean blue
MASK_ALPHA = 0.45


def frames_to_device(frames: list[DecodedFrame], device: torch.device) -> Tensor:
    """Decoded frames -> (1, 3, T, H, W) fp32 in [0, 1] on the device. 8-bit YCbCr goes up as its
    planes and is converted there (the same values as on the host); other frames go up as RGB."""
    planes = [f.ycbcr for f in frames]
    first = planes[0]
    same = lambda p: (p.colour, p.turns, p.y.shape, p.cb.shape)  # noqa: E731
    if first is not None and all(p is not None and same(p) == same(first) for p in planes):
        y, cb, cr = (
            torch.from_numpy(np.stack([getattr(p, name) for p in planes])).to(
                device, non_blocking=True
            )
            for name in ("y", "cb", "cr")
        )
        rgb = ycbcr_to_rgb_tensor(y, cb, cr, first.colour)  # (3, T, H, W)
        if first.turns:  # as np.rot90 turns the host's pictures
            rgb = torch.rot90(rgb, first.turns, dims=(2, 3)).contiguous()
        return rgb[None]
    stacked = np.stack([f.rgb for f in frames])
    top = 255 if stacked.dtype == np.uint8 else 65535
    if stacked.dtype == np.uint16:
        stacked = stacked.astype(np.int32)  # torch has no uint16 arithmetic on every device
    clip = torch.from_numpy(stacked).to(device, non_blocking=True)
    return clip.permute(3, 0, 1, 2)[None].to(torch.float32).div(top)


def write_frame(writer: Writer, image: np.ndarray, pts: int | None) -> None:
    """Hand one finished frame to its writer: device-made planes where it takes them, else RGB."""
    if writer.planes_format is None:
        writer.write(image, pts)
    else:
        writer.write_planes(image, pts)


def skipped_map(model: SkipSR, result: Result, size: tuple[int, int]) -> Tensor:
    """Per output pixel, 1 where its token was skipped: (T, 1, H, W) float on the device."""
    ft, th, tw = model.args.token_pixels
    skipped = (~result.keep[0]).float()  # (T', H', W') on the padded token grid
    full = skipped.repeat_interleave(ft, 0).repeat_interleave(th, 1).repeat_interleave(tw, 2)
    t = result.frames.shape[2]
    return full[:t, None, : size[0], : size[1]]


def finish(frames: list[Tensor], formats: list[OutFormat]) -> list[np.ndarray]:
    """The output frame, and the tinted mask frame if any, for each writer: uint8 planes in the
    writer's planes format converted on the frame's device, else (H, W, 3) RGB at the writer's
    depth (uint8, or uint16 above 8 bits)."""
    image = frames[0]  # (3, H, W) in [0, 1]
    images = [image]
    if len(frames) > 1:
        tint = image.new_tensor(MASK_TINT)[:, None, None]
        alpha = MASK_ALPHA * frames[1]
        images.append(image * (1 - alpha) + tint * alpha)
    return [
        to_integer(img, depth)
        if pix_fmt is None
        else rgb_to_planes(img, colour, pix_fmt).cpu().numpy()
        for img, (colour, pix_fmt, depth) in zip(images, formats, strict=True)
    ]


def to_integer(image: Tensor, depth: int = 8) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) RGB, rounded: uint8 for 8-bit outputs, else uint16
    over the full 0-65535 range (the writer converts to the output's depth)."""
    top, dtype = (255, torch.uint8) if depth <= 8 else (65535, torch.int32)
    out = image.clamp(0, 1).mul(top).round().to(dtype).permute(1, 2, 0).contiguous().cpu()
    return out.numpy() if depth <= 8 else out.numpy().astype(np.uint16)
