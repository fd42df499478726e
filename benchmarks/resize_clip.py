"""Write a copy of a video resized to WIDTH x HEIGHT (x264 CRF 12), of FRAMES frames when given:
fewer than the source's cuts it short, more plays the source again from its start (a long input
from a short clip). Inputs of a chosen size and length for the end-to-end benchmarks.
Usage: python3 benchmarks/resize_clip.py IN OUT WIDTH HEIGHT [FRAMES]"""

import sys
from fractions import Fraction

import av

src, dst, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
limit = int(sys.argv[5]) if len(sys.argv) > 5 else None


def frames():
    """The source's frames, resized, again and again until `limit` (once when no limit)."""
    while True:
        with av.open(src) as inp:
            for frame in inp.decode(inp.streams.video[0]):
                yield frame.reformat(
                    width=width, height=height, format="yuv420p", interpolation="BICUBIC"
                )
        if limit is None:
            return


with av.open(src) as probe:
    rate = probe.streams.video[0].average_rate or Fraction(30)
with av.open(dst, "w") as out:
    stream = out.add_stream("libx264", rate=rate, options={"crf": "12", "preset": "fast"})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for index, frame in enumerate(frames()):
        if limit is not None and index >= limit:
            break
        frame.pts, frame.time_base = index, 1 / Fraction(rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
