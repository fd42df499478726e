"""What PyAV raises for media it cannot read or write, in one place for every module of `media`."""

from __future__ import annotations

import av

# Its own FFmpegError family, plus the plain OSError / ValueError it uses for bad paths,
# unsupported codec and container pairs, and bad arguments.
AV_ERRORS = (av.FFmpegError, OSError, ValueError)


def said(error: BaseException, about: object = None) -> str:
    """An error of PyAV or of the OS in words, for a message that names the file `about` itself:
    FFmpeg's text without the errno (AVERROR_INVALIDDATA is 1094995529), the file it is about
    where that is another (a source or a part read while the output is written; not the
    output's own partial file), then FFmpeg's last logged line where it kept one; anything else
    as it is."""
    text = getattr(error, "strerror", None)
    if not isinstance(text, str) or not text:
        return str(error)
    name = getattr(error, "filename", None)
    if name and str(name) != str(about) and ".skipsr-partial" not in str(name):
        text += f": {name}"
    log = getattr(error, "log", None)
    if isinstance(log, tuple) and len(log) == 3 and str(log[2]).strip():
        line = " ".join(str(log[2]).split())  # one line: FFmpeg ends its own with a newline
        text += f" ({log[1]}: {line})" if log[1] else f" ({line})"
    return text
