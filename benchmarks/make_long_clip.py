"""Write a synthetic clip of a given length (moving gradient plus texture, AAC audio), for host-memory
measurements. Usage: python3 benchmarks/make_long_clip.py OUT SECONDS [WIDTH HEIGHT]"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from media import make_clip  # noqa: E402

out, seconds = Path(sys.argv[1]), float(sys.argv[2])
width, height = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (160, 90)
make_clip(out, width=width, height=height, frames=round(seconds * 25), rate=25, audio=True)
