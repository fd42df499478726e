"""Colour descriptions of video streams, and the RGB <-> YCbCr conventions the I/O follows.

Frames go through the model as RGB; the conversions in and out use the stream's own matrix
(BT.601, BT.709, BT.2020, ...) and range (limited or full), so the output's colours match the input's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import torch
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from torch import Tensor

# FFmpeg's "unspecified" codes (AVCOL_PRI/TRC/SPC_UNSPECIFIED = 2, AVCOL_RANGE_UNSPECIFIED = 0),
# plus the reserved primaries/transfer codes 0 and 3, all read as None: "the stream says nothing".
_UNSPECIFIED_PRI_TRC = frozenset({0, 2, 3})
_UNSPECIFIED_MATRIX = frozenset({2, 3})
_UNSPECIFIED_RANGE = frozenset({0})
# AVColorSpace (the stream's matrix code) -> swscale's SWS_CS_* constant (what reformat expects).
_SWS_MATRIX = {
    1: Colorspace.ITU709,  # BT.709
    4: Colorspace.FCC,
    5: Colorspace.ITU601,  # BT.470BG (PAL BT.601)
    6: Colorspace.ITU601,  # SMPTE 170M (NTSC BT.601), same matrix
    7: Colorspace.SMPTE240M,
    9: Colorspace.BT2020,  # BT.2020 non-constant luminance
    10: Colorspace.BT2020,  # BT.2020 constant luminance: swscale only has the NCL matrix
}
MATRIX_BT709 = 1
MATRIX_BT601 = 6  # SMPTE 170M
RANGE_LIMITED = int(ColorRange.MPEG)  # 1
RANGE_FULL = int(ColorRange.JPEG)  # 2
HD_MIN_HEIGHT = 720
# Luma weights (Kr, Kb) of each matrix the writer converts with, by AVColorSpace code.
_MATRIX_WEIGHTS = {
    1: (0.2126, 0.0722),
    4: (0.30, 0.11),
    5: (0.299, 0.114),
    6: (0.299, 0.114),
    7: (0.212, 0.087),
    9: (0.2627, 0.0593),
    10: (0.2627, 0.0593),
}
ACCURATE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
# YCbCr -> 8-bit RGB by swscale with rounding and chroma interpolated at full resolution, for the
# formats ycbcr_to_rgb does not take. swscale's default (and ACCURATE_RND alone) truncates: it
# darkens decoded pictures by 0.5 to 1.5 code values on average (per channel, flat colours against
# the exact BT.601 formula). To rgb48 from 10-bit YCbCr, FULL_CHR_H_INT gives wrong colours.
EXACT_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT

# 8-bit planar YCbCr that ycbcr_to_rgb converts itself (chroma at most half size either way).
PLANAR_8BIT = frozenset(f"yuv{j}{s}p" for j in ("", "j") for s in ("420", "422", "440", "444"))


@dataclass(frozen=True)
class ColourInfo:
    """A stream's colour description as FFmpeg's integer codes (AVColorPrimaries,
    AVColorTransferCharacteristic, AVColorSpace, AVColorRange); None where the stream says nothing.

    Common values: primaries/transfer/matrix 1 = BT.709, 5/6 = BT.601 (PAL/NTSC), 9 = BT.2020;
    transfer 16 = PQ, 18 = HLG; range 1 = limited ("tv"), 2 = full ("pc").
    """

    primaries: int | None = None
    transfer: int | None = None
    matrix: int | None = None
    range: int | None = None

    @classmethod
    def of(cls, source: object) -> ColourInfo:
        """Read the description from a codec context or a frame (both name the fields alike)."""

        def code(name: str, unspecified: frozenset[int]) -> int | None:
            value = getattr(source, name, None)
            return None if value is None or int(value) in unspecified else int(value)

        return cls(
            primaries=code("color_primaries", _UNSPECIFIED_PRI_TRC),
            transfer=code("color_trc", _UNSPECIFIED_PRI_TRC),
            matrix=code("colorspace", _UNSPECIFIED_MATRIX),
            range=code("color_range", _UNSPECIFIED_RANGE),
        )


def default_matrix(height: int) -> int:
    """FFmpeg's and players' convention for a stream that names no matrix: BT.709 for HD
    (720 lines or more), BT.601 below."""
    return MATRIX_BT709 if height >= HD_MIN_HEIGHT else MATRIX_BT601


def sws_matrix(matrix: int | None, height: int) -> Colorspace:
    """The swscale matrix for a stream's matrix code; unknown or unspecified ones follow the
    height convention of default_matrix."""
    sws = _SWS_MATRIX.get(matrix) if matrix is not None else None
    return sws if sws is not None else _SWS_MATRIX[default_matrix(height)]


def output_colour(colour: ColourInfo, height: int) -> ColourInfo:
    """The description an output is written and tagged with: the input's, with an unspecified
    matrix made explicit (the height convention, at the output's height, since that is what a
    player would assume for the output) and an unspecified range made limited. Primaries and
    transfer are carried as they are (no gamut or transfer conversion is done)."""
    matrix = colour.matrix if colour.matrix in _MATRIX_WEIGHTS else default_matrix(height)
    return ColourInfo(
        primaries=colour.primaries,
        transfer=colour.transfer,
        matrix=matrix,
        range=colour.range if colour.range in (RANGE_LIMITED, RANGE_FULL) else RANGE_LIMITED,
    )


def ycbcr_coefficients(colour: ColourInfo, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(3, 3) weights and (3,) offsets with YCbCr = weights @ RGB(0-1) + offsets, in code values
    of `bits`-bit video, for the colour's matrix and range."""
    kr, kb = _MATRIX_WEIGHTS[colour.matrix]
    m = np.array(
        [
            [kr, 1 - kr - kb, kb],
            [-0.5 * kr / (1 - kb), -0.5 * (1 - kr - kb) / (1 - kb), 0.5],
            [0.5, -0.5 * (1 - kr - kb) / (1 - kr), -0.5 * kb / (1 - kr)],
        ],
        dtype=np.float64,
    )
    step = 2 ** (bits - 8)
    if colour.range == RANGE_FULL:
        scale = np.full(3, 2**bits - 1.0)
        offset = np.array([0.0, 2 ** (bits - 1), 2 ** (bits - 1)])
    else:
        scale = np.array([219.0, 224.0, 224.0]) * step
        offset = np.array([16.0, 128.0, 128.0]) * step
    return (m * scale[:, None]).astype(np.float32), offset.astype(np.float32)


def rgb_to_ycbcr(rgb: np.ndarray, colour: ColourInfo) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) uint8 YCbCr 4:4:4 planes with the colour's matrix and range.

    Done here in floating point, rounded to nearest: swscale's own full-range conversion is biased
    by half a code value in chroma, enough to shift saturated colours by more than one.
    """
    weights, offset = ycbcr_coefficients(colour)
    yuv = np.tensordot(weights / 255, rgb.astype(np.float32), axes=([1], [2]))  # (3, H, W)
    yuv += offset[:, None, None] + 0.5
    return np.clip(yuv, 0, 255).astype(np.uint8)


# Planar formats the model's device can produce directly (PyAV's from_ndarray layouts).
DEVICE_PIX_FMTS = ("yuv420p", "yuv444p", "yuv420p10le")


@functools.lru_cache(maxsize=16)
def _device_coefficients(
    colour: ColourInfo, bits: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """ycbcr_coefficients as tensors on the device, made once per output rather than per frame
    (a host-to-device copy per frame would stall the GPU); 8-bit weights take RGB codes 0-255."""
    weights, offset = ycbcr_coefficients(colour, bits)
    if bits == 8:
        weights = weights / 255
    return torch.from_numpy(weights).to(device), torch.from_numpy(offset).to(device)


def rgb_to_planes(image: torch.Tensor, colour: ColourInfo, pix_fmt: str) -> torch.Tensor:
    """(3, H, W) float RGB in [0, 1], on any device -> planes in PyAV's from_ndarray layout:
    (3, H, W) uint8 for yuv444p; for yuv420p (uint8) and yuv420p10le (uint16) (3H/2, W), the Y
    plane then Cb and Cr, each 2x2-averaged.

    The same matrix, range and rounding as rgb_to_ycbcr, computed where the frame already is (a
    GPU), so the host receives fewer bytes and does no colour work. 8-bit output starts from the
    frame rounded to 8-bit RGB, as the host path does; 10-bit output from the float frame itself.
    """
    if pix_fmt not in DEVICE_PIX_FMTS:
        raise ValueError(f"no device conversion to {pix_fmt}")
    bits = 10 if pix_fmt == "yuv420p10le" else 8
    w, offset = _device_coefficients(colour, bits, image.device)
    rgb = image.float().clamp(0, 1)
    if bits == 8:  # the host path's arithmetic exactly: 8-bit RGB codes times weights / 255
        rgb = rgb.mul(255).round()
    yuv = torch.einsum("ij,jhw->ihw", w, rgb) + offset[:, None, None]
    top = 2**bits - 1
    store = torch.uint8 if bits == 8 else torch.int32  # no uint16 arithmetic: cast at the end
    if pix_fmt == "yuv444p":
        return yuv.add(0.5).floor().clamp(0, top).to(store)
    h, width = yuv.shape[1:]
    luma = yuv[0].add(0.5).floor().clamp(0, top)
    chroma = torch.nn.functional.avg_pool2d(yuv[None, 1:], 2)[0].add(0.5).floor().clamp(0, top)
    flat = torch.cat((luma.flatten(), chroma.flatten())).to(store)  # Y, then Cb, then Cr
    planes = flat.view(h * 3 // 2, width)
    return planes if bits == 8 else planes.to(torch.uint16)


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, colour: ColourInfo) -> np.ndarray:
    """8-bit planes (chroma at its own size) -> (H, W, 3) uint8 RGB with the colour's matrix and
    range, in floating point and rounded to nearest: no bias (swscale's default darkens by about one
    code value). Each chroma sample is repeated over the luma block it stands for, the inverse of
    the writer's block means (rgb_to_ycbcr, then 2x2 means), so an output read back keeps its
    colours. `ycbcr_to_rgb_tensor` does the same arithmetic with torch, on any device."""
    inverse, offset = _inverse(colour)
    h, w = y.shape
    ch, cw = cb.shape
    sy, sx = -(-h // ch), -(-w // cw)
    # luma's share is the same in R, G and B; chroma's is made at chroma size, then broadcast over
    # each block (the picture padded to whole blocks, then cut back)
    out = np.empty((ch, sy, cw, sx, 3), dtype=np.float32)
    luma = np.zeros((ch * sy, cw * sx), dtype=np.float32)
    luma[:h, :w] = y
    luma = (luma - offset[0]) * inverse[0, 0] + 0.5
    blue, red = cb.astype(np.float32) - offset[1], cr.astype(np.float32) - offset[2]
    for c in range(3):
        chroma = inverse[c, 1] * blue + inverse[c, 2] * red  # (ch, cw)
        np.add(luma.reshape(ch, sy, cw, sx), chroma[:, None, :, None], out=out[..., c])
    np.clip(out, 0, 255, out=out)
    return out.reshape(ch * sy, cw * sx, 3)[:h, :w].astype(np.uint8)


def ycbcr_to_rgb_tensor(y: Tensor, cb: Tensor, cr: Tensor, colour: ColourInfo) -> Tensor:
    """Batches of 8-bit planes, y (T, H, W) and cb, cr (T, h, w) uint8 on any device ->
    (3, T, H, W) float32 RGB in [0, 1]: ycbcr_to_rgb's values divided by 255, from the same
    float32 operations in the same order, none fused (CUDA divides by multiplying with the
    reciprocal: a last-place difference from the host's division, the same for every frame
    converted there). Chroma is broadcast over its blocks, never copied to full size."""
    inverse, offset = (v.tolist() for v in _inverse(colour))
    t, h, w = y.shape
    ch, cw = cb.shape[1:]
    sy, sx = -(-h // ch), -(-w // cw)
    luma = y.new_zeros(t, ch * sy, cw * sx, dtype=torch.float32)  # whole blocks, cut back below
    luma[:, :h, :w] = y
    luma = (luma - offset[0]) * inverse[0][0] + 0.5
    blocks = luma.view(t, ch, sy, cw, sx)
    blue, red = cb.float() - offset[1], cr.float() - offset[2]
    out = luma.new_empty(3, t, ch, sy, cw, sx)
    for c in range(3):
        chroma = (inverse[c][1] * blue).add_(inverse[c][2] * red)  # (T, h, w)
        torch.add(blocks, chroma[:, :, None, :, None], out=out[c])
    out = out.view(3, t, ch * sy, cw * sx).clamp_(0, 255).floor_().div_(255)
    return out if (ch * sy, cw * sx) == (h, w) else out[:, :, :h, :w].contiguous()


def _inverse(colour: ColourInfo) -> tuple[np.ndarray, np.ndarray]:
    """(3, 3) float32 RGB(0-255) = inverse @ (YCbCr - offset), and the (3,) offsets, 8-bit."""
    weights, offset = ycbcr_coefficients(colour)
    return (np.linalg.inv(weights.astype(np.float64)) * 255).astype(np.float32), offset


@dataclass(frozen=True, eq=False)
class YCbCr8:
    """A decoded 8-bit planar YCbCr picture, kept as its planes until it is converted: the
    pipeline converts whole chunks on its device (ycbcr_to_rgb_tensor), other readers on the host
    (ycbcr_to_rgb). Planes are half the bytes of RGB at 4:2:0, on the host and on the way up.
    A rotation is applied after the conversion: a partial chroma block belongs at the right and
    bottom edges, where the converters expect it."""

    y: np.ndarray  # (H, W) uint8, read-only views of the decoder's picture
    cb: np.ndarray  # (h, w) uint8: the luma's size divided by the subsampling, rounded up
    cr: np.ndarray
    colour: ColourInfo  # matrix and range resolved (output_colour)
    turns: int = 0  # quarter turns counter-clockwise to show it the right way up (np.rot90)

    def rgb(self) -> np.ndarray:
        rgb = ycbcr_to_rgb(self.y, self.cb, self.cr, self.colour)
        return np.ascontiguousarray(np.rot90(rgb, self.turns)) if self.turns % 4 else rgb

    def rotated(self, turns: int) -> YCbCr8:
        return replace(self, turns=(self.turns + turns) % 4)
