"""A process of tests/test_resume.py's lock stress: its own module, so that a spawned process
imports only what it needs."""

from __future__ import annotations

import os
import time
from pathlib import Path


def hold_and_release(lock: str, seconds: float, start, errors, overlaps) -> None:
    """Take the hold again and again, then take its folder back, as runs that start and end at
    once do; a mark made with O_EXCL while holding shows a second holder. All start together."""
    from skipsr_cli.batch import records
    from skipsr_cli.errors import OutputError

    lock, mark = Path(lock), Path(lock).parent.parent / "holder"
    start.wait(timeout=120)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with records.exclusive_hold(lock, "busy"):
                try:
                    fd = os.open(mark, os.O_CREAT | os.O_EXCL)
                except FileExistsError:
                    overlaps.put(1)
                else:
                    os.close(fd)
                    os.unlink(mark)
        except OutputError as e:
            if str(e) != "busy":
                errors.put(str(e))
        records.remove_empty([lock.parent])
