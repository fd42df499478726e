"""What PyAV raises for media it cannot read or write, in one place for every module of `media`."""

from __future__ import annotations

import av

# Its own FFmpegError family, plus the plain OSError / ValueError it uses for bad paths,
# unsupported codec and container pairs, and bad arguments.
AV_ERRORS = (av.FFmpegError, OSError, ValueError)
