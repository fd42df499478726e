"""What a decode met on its way: the packets it could not read, and how far its frames reached.

The decoder (video_io) fills a DecodeDamage in as it goes; the pipeline and the farm's split read
it to tell a damaged input from a healthy one whose frame count was only estimated (Matroska and
MPEG-TS: the duration times the nominal rate, which a variable frame rate does not fill).

MPEG-TS counts nothing, so a `.ts` cut short is told by its last bytes and by its decoder. Cut
inside a transport packet of the video (ts_cut), a picture lost its rest, or all of it where the
packet was its first (the demuxer drops a partial packet without a word). Cut where a packet ends,
inside a picture, only the decoder can tell, where it flags the picture it concealed (H.264 and
MPEG-2 mostly do, HEVC mostly does not); between two pictures, the file is a shorter whole one to
every reader, and no verdict is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from skipsr_cli.errors import InputError

# Longest pause between two frames that a variable frame rate is taken to make (phones drop to
# about 10 fps in low light); a longer one, in a file whose count is only estimated, is a hole
# (bytes lost from the middle keep the timestamps after them), so the shortfall is damage.
HOLE_S = 0.25


@dataclass
class DecodeDamage:
    """Filled in by the decoder as it goes (in its own thread), read by the pipeline once the last
    frame is out, to say how many frames were lost."""

    errors: int = 0  # packets the demuxer or the decoder could not read, pictures concealed
    first: str | None = None  # the first of those errors, for the message
    # seconds of the latest frame shown, and the longest pause between two in a row: whether a
    # stream whose count is only estimated reached its stated end without a hole
    latest: float | None = None
    widest: float = 0.0
    counted: set[int] = field(default_factory=set)  # the timestamps of those errors

    def note(self, where: str, error: BaseException, pts: int | None = None) -> None:
        """One packet or picture lost (that of timestamp `pts`, where the decode knows it)."""
        self.errors += 1
        if pts is not None:
            self.counted.add(pts)
        if self.first is None:
            self.first = f"{where}: {error}"

    def met(
        self, where: str, error: BaseException, strict: bool, path: Path, pts: int | None = None
    ) -> None:
        """Damage the decode goes on past: noted, or with `strict` an InputError."""
        if strict:
            raise InputError(f"damaged input {path}: {where}: {error}")
        self.note(where, error, pts)

    def ts_end(self, path: Path, pid: int, last: int | None, strict: bool) -> None:
        """At the end of an MPEG-TS file's packets: a picture its last bytes cut short (`last`,
        the timestamp of the last packet read), unless the decode counted it already."""
        cut = ts_cut(path, pid)  # True: in the picture's first packet, which no reader sees
        if cut is True or (cut is False and last not in self.counted):
            what = (
                "a picture cut in its first packet, lost" if cut else "the last picture cut short"
            )
            self.met("the end of the file", Concealed(what), strict, path)

    def saw(self, seconds: float) -> None:
        """A frame shown at `seconds`, after those seen before (the decoder's order)."""
        if self.latest is not None and seconds > self.latest:
            self.widest = max(self.widest, seconds - self.latest)
        self.latest = seconds if self.latest is None else max(self.latest, seconds)

    def reaches(self, end: float, rate: Fraction, slack: float) -> bool:
        """Whether the frames seen reach `end` (seconds), within `slack`, with no pause longer
        than HOLE_S or four frames at the nominal `rate` between two of them."""
        hole = max(HOLE_S, 4 / float(rate))
        return self.latest is not None and self.latest >= end - slack and self.widest <= hole

    @classmethod
    def of_timestamps(cls, stamps: list[int], time_base: Fraction) -> DecodeDamage:
        """What a clean decode of frames at these timestamps would note."""
        damage = cls()
        for stamp in sorted(stamps):
            damage.saw(float(stamp * time_base))
        return damage


class Concealed(Exception):
    """A picture the decoder gave with errors concealed in it: part of its data lost or damaged."""

    def __init__(self, what: str = "the decoder concealed errors in it") -> None:
        super().__init__(what)


# MPEG-TS: 188-byte transport packets (192 in M2TS, a timestamp before each; 204 with FEC bytes
# after), each opening on a sync byte, its PID in the next two bytes with a flag for the packet
# that starts a PES (a picture, in a video stream). FFmpeg's demuxer drops a last packet cut short.
TS_SYNC, TS_PACKET, TS_STRIDES = 0x47, 188, (188, 192, 204)


def ts_cut(path: Path, pid: int) -> bool | None:
    """Where an MPEG-TS file ends inside a transport packet of stream `pid`, whether that packet
    starts a picture (True) or continues one (False); None where its last packet is whole, is
    another stream's, or too little of it is left to say whose it was. The last packet is the one
    whose sync byte has three more before it, one stride apart."""
    with open(path, "rb") as file:
        file.seek(0, 2)
        file.seek(max(0, file.tell() - 6 * max(TS_STRIDES)))
        tail = file.read()
    for stride in TS_STRIDES:
        for at in range(len(tail) - 1, 3 * stride - 1, -1):
            if all(tail[at - i * stride] == TS_SYNC for i in range(4)):
                head = tail[at : at + 3]
                if len(tail) - at >= TS_PACKET or len(head) < 3:
                    return None
                return bool(head[1] & 0x40) if (head[1] & 0x1F) << 8 | head[2] == pid else None
    return None
