"""How coarsely a video was compressed, read from its own bitstream: the mean quantiser (QP) that
the H.264 decoder reports for the first frames (FFmpeg's per-macroblock encoding parameters).

This is what `--denoise auto` goes by: a QP near 12 is a near-lossless file, near 28 a web
encode. Other codecs report no quantiser here (HEVC and AV1 export none; VP9 only a frame-level
index on another scale), and neither do images: for them there is no estimate.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

FRAMES = 24  # about a second: enough to cover an I frame and the P and B frames after it


def mean_qp(source: str | Path | BinaryIO, frames: int = FRAMES) -> float | None:
    """The mean H.264 QP over the macroblocks of the first `frames` frames of the first video
    stream, or None where there is none to read (another codec, an image, a damaged file)."""
    try:
        with av.open(source if not isinstance(source, Path) else str(source)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            if stream.codec_context.name != "h264":
                return None
            stream.codec_context.options = {"export_side_data": "venc_params"}
            means = []
            for frame in container.decode(stream):
                qp = _frame_qp(frame)
                if qp is not None:
                    means.append(qp)
                if len(means) >= frames:
                    break
    except (av.FFmpegError, OSError, RuntimeError, ValueError):
        return None
    return float(np.mean(means)) if means else None


def _frame_qp(frame: av.VideoFrame) -> float | None:
    for data in frame.side_data:
        if getattr(data, "type", None) == SideDataType.VIDEO_ENC_PARAMS:
            blocks = data.qp_map()
            return float(np.mean(blocks)) if blocks is not None and blocks.size else None
    return None
