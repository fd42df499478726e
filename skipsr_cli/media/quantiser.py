"""How coarsely a video was compressed, read from its own bitstream: the mean quantiser (QP) that
the H.264 decoder reports for the first frames (FFmpeg's per-macroblock encoding parameters).

This is what `--denoise auto` goes by. On 8-bit x264 encodes of camera footage, CRF 12 reads as
QP 12-18 and CRF 28 as 30-35 (lower on still shots, whose reused blocks x264 codes finer). Deeper
video is put on the 8-bit scale (FFmpeg reports 6 more per extra bit). Other codecs report no
quantiser here (HEVC and AV1 export none; VP9 only a frame-level index on another scale), and
neither do images: for them there is no estimate.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

from skipsr_cli.errors import InputError
from skipsr_cli.media.video_io import video_stream

FRAMES = 24  # about a second: enough to cover an I frame and the P and B frames after it


def mean_qp(source: str | Path | BinaryIO, frames: int = FRAMES) -> float | None:
    """The mean H.264 QP (8-bit scale) over the macroblocks of the first `frames` frames of the
    video, or None where they report none (another codec, an image, a damaged file)."""
    name = str(source) if isinstance(source, Path) else source
    try:
        with av.open(name) as container:
            stream = video_stream(container, Path(str(name)))
            if stream.codec_context.name != "h264":
                return None
            stream.codec_context.options = {"export_side_data": "venc_params"}
            means = []
            for decoded, frame in enumerate(container.decode(stream), 1):
                qp = _frame_qp(frame)
                if qp is not None:
                    means.append(qp - 6 * (frame.format.components[0].bits - 8))
                if decoded >= frames:  # a stream that reports no quantiser is not read to its end
                    break
    except (av.FFmpegError, InputError, OSError, RuntimeError, ValueError, AttributeError):
        return None
    return float(np.mean(means)) if means else None


def _frame_qp(frame: av.VideoFrame) -> float | None:
    # A lookup by type: iterating the container yields the side data in PyAV 18 but its types in 19
    data = frame.side_data.get(SideDataType.VIDEO_ENC_PARAMS)
    if data is None:
        return None
    blocks = data.qp_map()
    return float(np.mean(blocks)) if blocks is not None and blocks.size else None
