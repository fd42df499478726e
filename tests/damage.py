"""Damaged media made on the fly (helpers, not tests): files cut short, flipped bytes, broken headers.

Each starts from a tiny clip of media.py, so a case costs milliseconds. `ffmpeg_frames` counts what
the ffmpeg command line decodes from a file, the bar skipsr must reach.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
from media import make_clip


def ffmpeg_exe() -> str | None:
    """imageio-ffmpeg's binary where it is installed, else an ffmpeg on the PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def ffmpeg_frames(path: Path) -> int | None:
    """Video frames `ffmpeg -i path -f null -` decodes (one framecrc line each); None: no ffmpeg."""
    exe = ffmpeg_exe()
    if exe is None:
        return None
    cmd = [exe, "-v", "quiet", "-i", str(path), "-map", "0:v:0", "-f", "framecrc", "-"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    return sum(1 for line in out.splitlines() if line and not line.startswith("#"))


def lavfi_clip(path: Path, *args: str) -> Path:
    """FFmpeg's testsrc2 pattern, 64x48 at 30 fps, encoded by the ffmpeg command line with
    `args` (length, filters, codec options) into `path`."""
    exe = ffmpeg_exe()
    assert exe is not None, "no ffmpeg to make test media with"
    base = [exe, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30"]
    subprocess.run([*base, *args, str(path)], check=True)
    return path


def faststart(src: Path, dst: Path) -> Path:
    """A copy of an mp4 with its index (moov) first, as players and cameras write it: cut short,
    it still opens, and the frames before the cut can be decoded."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return dst


def make_source(folder: Path, ext: str, frames: int = 10, audio: bool = False) -> Path:
    """A healthy clip of `frames` 64x48 frames (mp4 with its index first)."""
    if ext == "mp4":
        raw = make_clip(folder / "raw.mp4", frames=frames, audio=audio)
        path = faststart(raw, folder / "src.mp4")
        raw.unlink()
        return path
    return make_clip(folder / f"src.{ext}", frames=frames, audio=audio)


def truncated(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def cut_at(src: Path, dst: Path, size: int) -> Path:
    """The first `size` bytes of `src`."""
    dst.write_bytes(src.read_bytes()[:size])
    return dst


def transport_packets(path: Path) -> list[tuple[int, bool]]:
    """An MPEG-TS file's 188-byte packets: each one's PID, and whether it starts a PES."""
    data = path.read_bytes()
    return [
        ((data[i + 1] & 0x1F) << 8 | data[i + 2], bool(data[i + 1] & 0x40))
        for i in range(0, len(data), 188)
    ]


def flipped(src: Path, dst: Path, at: float, count: int = 64, start: int = 0) -> Path:
    """`count` bytes XOR-ed from `at` (a fraction of the file past `start` bytes)."""
    data = bytearray(src.read_bytes())
    first = start + int((len(data) - start) * at)
    for i in range(first, min(first + count, len(data))):
        data[i] ^= 0xA5
    dst.write_bytes(bytes(data))
    return dst
