"""Write a long input for soak runs in seconds, not hours: the video stream of a short clip played
again and again by stream copy (its packets with shifted timestamps, no re-encoding), plus an AAC
tone of the same length, so the output's audio length can be checked too.
Usage: python3 benchmarks/loop_clip.py IN OUT SECONDS (whole plays of IN, at least SECONDS)"""

import math
import sys
from fractions import Fraction

import av
import numpy as np

src, dst, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])

with av.open(src) as inp:
    stream = inp.streams.video[0]
    packets = [p for p in inp.demux(stream) if p.size and p.pts is not None]
    tb = stream.time_base
    span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
    start = min(p.pts for p in packets)
    loops = max(1, math.ceil(seconds / float(span * tb) - 1e-9))  # at least SECONDS
    with av.open(dst, "w") as out:
        video = out.add_stream_from_template(stream)
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        for n in range(loops):
            shift = n * span - start
            for p in packets:
                copy = av.Packet(bytes(p))
                copy.pts, copy.dts = p.pts + shift, (p.dts if p.dts is not None else p.pts) + shift
                copy.duration, copy.time_base, copy.stream = p.duration, tb, video
                copy.is_keyframe = p.is_keyframe
                out.mux(copy)
        total = int(loops * span * tb * 48000)
        t = np.arange(1024) / 48000
        for i in range(0, total, 1024):
            n = min(1024, total - i)
            tone = (0.2 * np.sin(2 * np.pi * 440 * (t[:n] + i / 48000))).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(
                np.stack([tone, tone]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts, frame.time_base = 48000, i, Fraction(1, 48000)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
print(f"{dst}: {loops} plays of {float(span * tb):.2f} s = {float(loops * span * tb):.1f} s")
