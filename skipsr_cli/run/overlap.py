"""Run a producer or a consumer in a helper thread behind a bounded queue, so I/O overlaps compute.

PyAV releases the GIL while it decodes and encodes, so a decoder thread and an encoder thread run
beside the model even on the CPU. Both helpers keep three promises:

- bounded memory: at most `depth` items wait in the queue;
- errors cross threads unchanged: the helper thread's exception (InputError, OutputError, ...) is
  re-raised, as the same object, in the calling thread at its next call;
- no thread outlives its helper: closing (or leaving the `with` block, also on KeyboardInterrupt)
  stops the thread and joins it, and no call blocks forever on a queue whose other side is gone.

On Linux each helper thread also carries its name in the system (`top -H`, /proc/PID/task/*/comm),
as do threads started from it that FFmpeg does not name itself: a run's CPU can be told apart by
stage (skipsr-decode beside FFmpeg's own av:h264:df0..., skipsr-encode, and the process's name for
the model's thread and the encoder's threads, which open with the output file).
"""

from __future__ import annotations

import contextlib
import ctypes
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_POLL_S = 0.05  # how often a blocked put/get looks at the other side's state
_END = object()  # end of stream, in either direction


def _put(q: queue.Queue[object], item: object, give_up: Callable[[], bool]) -> bool:
    """Put `item`, waiting for room, unless `give_up()` turns true first. True if it was put."""
    while not give_up():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _drain(q: queue.Queue[object]) -> None:
    with_items = True
    while with_items:
        try:
            q.get_nowait()
        except queue.Empty:
            with_items = False


PR_SET_NAME = 15  # Linux prctl: the calling thread's name, 15 bytes at most


def name_this_thread(name: str) -> None:
    """Give the calling thread `name` in the system too (Linux; elsewhere nothing happens).
    Threads it starts later inherit the name."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


class Prefetcher(Generic[T]):
    """Iterate `source` in a thread, `depth` items ahead of the consumer.

    A failure in `source` is raised by the consumer's next `next()`, before any item still
    buffered: the run fails anyway, so there is no point finishing the buffered work first.
    """

    def __init__(self, source: Iterable[T], depth: int, name: str = "prefetch") -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._done = False
        self.waited = 0.0  # seconds the consumer waited for an item: the producer was behind
        self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _run(self, source: Iterable[T]) -> None:
        name_this_thread(self._thread.name)
        try:
            iterator = iter(source)
            try:
                for item in iterator:
                    if not _put(self._queue, item, self._stop.is_set):
                        return
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()  # a generator's cleanup (closing its file) runs in its own thread
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._error = e
        finally:
            _put(self._queue, _END, self._stop.is_set)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        began = time.perf_counter()
        item = self._queue.get() if self._error is None else _END
        self.waited += time.perf_counter() - began
        if self._error is not None:
            self._done = True
            raise self._error
        if item is _END:
            self._done = True
            raise StopIteration
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the producer and join it. Safe to call more than once."""
        self._done = True
        self._stop.set()
        _drain(self._queue)  # frees the buffered items and unblocks a producer waiting for room
        self._thread.join()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()


class BackgroundWriter(Generic[T]):
    """Call `write(item)` in a thread, in order, for each item `put`, with `depth` items in flight.

    A failure in `write` stops the thread; the next `put` or the `close` raises it. Leaving the
    `with` block cleanly drains the queue (every item is written, or the error raised); leaving
    it on an exception drops what is still queued.
    """

    def __init__(self, write: Callable[[T], None], depth: int, name: str = "writer") -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.idle = 0.0  # seconds the writer waited for an item: the producer was behind
        self.first_wait = 0.0  # of which, until the first item: the producer's start
        # and until the queue was first full: the writer's start, while it takes in items faster
        # than they come (x264 takes about 50 frames into its lookahead before it encodes one)
        self.fill_wait = 0.0
        self._got_one = self._filled = False
        self.blocked = 0.0  # seconds `put` waited for room: the writer was behind
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        name_this_thread(self._thread.name)
        while True:
            began = time.perf_counter()
            item = self._queue.get()
            self.idle += time.perf_counter() - began
            if not self._got_one:  # the start's waits hold this one even where the producer
                # filled the queue before this thread took its first item
                self.first_wait = self.fill_wait = self.idle
                self._got_one = True
            elif not self._filled:
                self.fill_wait = self.idle
            if item is _END or self._stop.is_set():
                return
            try:
                self._write(item)  # type: ignore[arg-type]
            except BaseException as e:  # handed to the producer, which re-raises it
                self._error = e
                return

    def _gone(self) -> bool:
        return self._error is not None or not self._thread.is_alive()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Queue one item, waiting for room; raises the writer's error if it has failed."""
        self._raise_error()
        if self._stop.is_set():
            raise RuntimeError("put() after close()")
        self._filled = self._filled or self._queue.full()
        began = time.perf_counter()
        _put(self._queue, item, self._gone)
        self.blocked += time.perf_counter() - began
        self._raise_error()

    def close(self) -> None:
        """Write everything queued, join the thread, and raise the writer's error if any."""
        if not self._stop.is_set():
            _put(self._queue, _END, self._gone)
            self._thread.join()
            self._stop.set()
        self._raise_error()

    def abort(self) -> None:
        """Drop what is queued and join the thread; an item being written finishes first."""
        self._stop.set()
        _drain(self._queue)
        _put(self._queue, _END, lambda: not self._thread.is_alive())
        self._thread.join()

    def __enter__(self) -> BackgroundWriter[T]:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class InlineWriter(Generic[T]):
    """BackgroundWriter's interface without the thread: `put` writes at once (overlap off)."""

    def __init__(self, write: Callable[[T], None]) -> None:
        self._write = write
        self.idle = self.first_wait = self.fill_wait = self.blocked = 0.0

    def put(self, item: T) -> None:
        self._write(item)

    def close(self) -> None:
        pass

    def __enter__(self) -> InlineWriter[T]:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        pass
