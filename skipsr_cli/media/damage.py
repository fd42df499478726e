"""What a decode met on its way: the packets it could not read, and how far its frames reached.

The decoder (video_io) fills a DecodeDamage in as it goes; the pipeline and the farm's split read
it to tell a damaged input (frames lost: said, or refused) from a healthy one whose frame count
was only estimated from its duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass
class DecodeDamage:
    """What a decode met on its way: packets the decoder refused and a file that ends early. The
    decoder fills it in as it goes (in its own thread); the pipeline reads it once the last frame
    is out, to say how many frames were lost."""

    errors: int = 0  # packets the demuxer or the decoder could not read
    first: str | None = None  # the first of those errors, for the message
    # seconds of the earliest and the latest frame shown: whether a stream whose count is only
    # estimated (Matroska, MPEG-TS) reached its stated end, as a variable frame rate's does
    # with fewer frames than its duration times its nominal rate
    earliest: float | None = None
    latest: float | None = None

    def note(self, where: str, error: BaseException) -> None:
        self.errors += 1
        if self.first is None:
            self.first = f"{where}: {error}"

    def saw(self, seconds: float) -> None:
        """A frame shown at `seconds`."""
        self.earliest = seconds if self.earliest is None else min(self.earliest, seconds)
        self.latest = seconds if self.latest is None else max(self.latest, seconds)

    @classmethod
    def of_timestamps(cls, stamps: list[int], time_base: Fraction) -> DecodeDamage:
        """What a clean decode of frames at these timestamps would note."""
        damage = cls()
        if stamps:
            damage.saw(float(min(stamps) * time_base))
            damage.saw(float(max(stamps) * time_base))
        return damage
