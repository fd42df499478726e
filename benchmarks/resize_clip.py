"""Write a copy of a video resized to WIDTH x HEIGHT (x264 CRF 12), optionally its first FRAMES
frames only: inputs of a chosen size for the end-to-end benchmarks.
Usage: python3 benchmarks/resize_clip.py IN OUT WIDTH HEIGHT [FRAMES]"""

import sys
from fractions import Fraction

import av

src, dst, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
limit = int(sys.argv[5]) if len(sys.argv) > 5 else None
with av.open(src) as inp, av.open(dst, "w") as out:
    stream_in = inp.streams.video[0]
    rate = stream_in.average_rate or Fraction(30)
    stream = out.add_stream("libx264", rate=rate, options={"crf": "12", "preset": "fast"})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for index, frame in enumerate(inp.decode(stream_in)):
        if limit is not None and index >= limit:
            break
        resized = frame.reformat(
            width=width, height=height, format="yuv420p", interpolation="BICUBIC"
        )
        resized.pts = None
        out.mux(stream.encode(resized))
    out.mux(stream.encode(None))
