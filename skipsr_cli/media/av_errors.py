"""What PyAV raises for media it cannot read or write, in one place for every module of `media`."""

from __future__ import annotations

import av

from skipsr_cli.media.partials import SUFFIX as PARTIAL

# Its own FFmpegError family, plus the plain OSError / ValueError it uses for bad paths,
# unsupported codec and container pairs, and bad arguments.
AV_ERRORS = (av.FFmpegError, OSError, ValueError)


def logged_line(error: BaseException) -> str | None:
    """FFmpeg's last logged error line where PyAV kept one with the error, on one line (FFmpeg
    ends its own with a newline); else None."""
    log = getattr(error, "log", None)
    if isinstance(log, tuple) and len(log) == 3 and str(log[2]).strip():
        return " ".join(str(log[2]).split())
    return None


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
    if name and str(name) != str(about) and PARTIAL not in str(name):
        text += f": {name}"
    line = logged_line(error)
    if line is not None:
        where = error.log[1]
        text += f" ({where}: {line})" if where else f" ({line})"
    return text
