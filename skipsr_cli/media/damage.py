"""What a decode met on its way: the packets it could not read, and how far its frames reached.

The decoder (video_io) fills a DecodeDamage in as it goes; the pipeline and the farm's split read
it to tell a damaged input from a healthy one whose frame count was only estimated (Matroska and
MPEG-TS: the duration times the nominal rate, which a variable frame rate does not fill).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

# Longest pause between two frames that a variable frame rate is taken to make (phones drop to
# about 10 fps in low light); a longer one, in a file whose count is only estimated, is a hole
# (bytes lost from the middle keep the timestamps after them), so the shortfall is damage.
HOLE_S = 0.25


@dataclass
class DecodeDamage:
    """Filled in by the decoder as it goes (in its own thread), read by the pipeline once the last
    frame is out, to say how many frames were lost."""

    errors: int = 0  # packets the demuxer or the decoder could not read
    first: str | None = None  # the first of those errors, for the message
    # seconds of the latest frame shown, and the longest pause between two in a row: whether a
    # stream whose count is only estimated reached its stated end without a hole
    latest: float | None = None
    widest: float = 0.0

    def note(self, where: str, error: BaseException) -> None:
        self.errors += 1
        if self.first is None:
            self.first = f"{where}: {error}"

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
