"""What a batch upload shows on a terminal: the bytes sent, then how long the server has been transcribing.

Once the whole file is sent, the server decodes it and says nothing until the
transcript is ready: a minute for a long file on the embedded server, longer
on a busy one. A line that stopped moving then would look like a hang, so the
bar becomes ``waiting for the transcript: 00:42``, redrawn every half second
by a small thread until the reply comes (or the upload starts again on a
retry). Both are one ``tqdm`` bar on stderr, wiped when the call ends.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO

from ._progress import bar_size

__all__ = ["UploadProgress"]

#: How often the waiting line is redrawn.
REDRAW_EVERY = 0.5
_WAITING_FORMAT = "{desc}{elapsed}"  # tqdm puts ": " after a description


class UploadProgress:
    """A tqdm bar of the bytes uploaded, then of the time spent waiting for the transcript."""

    def __init__(self, total: int, stream: TextIO) -> None:
        from tqdm import tqdm

        self._total = total
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="uploading",
            leave=False,
            file=stream,
            **bar_size(),
        )
        self._upload_format = self._bar.bar_format

    def update(self, sent: int) -> None:
        """``sent`` more bytes went out; the last of them starts the waiting line."""
        with self._lock:
            self._bar.update(sent)
            finished = self._bar.n >= self._total
        if finished:
            self._start_waiting()

    def reset(self) -> None:
        """The upload starts again from its first byte (a retry)."""
        self._stop_waiting()
        with self._lock:
            self._bar.bar_format = self._upload_format
            self._bar.set_description("uploading", refresh=False)
            self._bar.reset(total=self._total)

    def close(self) -> None:
        """Stop redrawing and wipe the line (not waiting long for a terminal that does not take output)."""
        self._stop_waiting()
        if self._lock.acquire(timeout=2 * REDRAW_EVERY):
            try:
                self._bar.close()
            finally:
                self._lock.release()

    def _start_waiting(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._bar.bar_format = _WAITING_FORMAT
            self._bar.set_description("waiting for the transcript", refresh=False)
            self._bar.start_t = time.time()  # the elapsed time counts from the end of the upload
            self._bar.refresh()
            self._stop = threading.Event()  # its own: a thread that outlived its join never wakes up again
            self._thread = threading.Thread(
                target=self._redraw, args=(self._stop,), name="cartesia-sync-batch-progress", daemon=True
            )
            self._thread.start()

    def _stop_waiting(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            stop = self._stop
        stop.set()
        if thread is not None:
            thread.join(timeout=2 * REDRAW_EVERY)

    def _redraw(self, stop: threading.Event) -> None:
        while not stop.wait(REDRAW_EVERY):
            with self._lock:
                self._bar.refresh()
