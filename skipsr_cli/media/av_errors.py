"""What PyAV raises for media it cannot read or write, in one place for every module of `media`."""

from __future__ import annotations

import av

# Its own FFmpegError family, plus the plain OSError / ValueError it uses for bad paths,
# unsupported codec and container pairs, and bad arguments.
AV_ERRORS = (av.FFmpegError, OSError, ValueError)


def said(error: BaseException) -> str:
    """An error of PyAV or of the OS in words, for a message that names the file itself: FFmpeg's
    text without the errno (AVERROR_INVALIDDATA is 1094995529) and the path, then FFmpeg's last
    logged line where it kept one; anything else as it is."""
    text = getattr(error, "strerror", None)
    if not isinstance(text, str) or not text:
        return str(error)
    log = getattr(error, "log", None)
    if isinstance(log, tuple) and len(log) == 3 and log[2]:
        text += f" ({log[1]}: {log[2]})" if log[1] else f" ({log[2]})"
    return text
