"""Capture what C libraries (PortAudio, ALSA, JACK) write to the process's stderr, file descriptor 2.

PortAudio and the libraries under it report harmless probing failures by
writing straight to file descriptor 2 (``ALSA lib pcm.c:... Unknown PCM
cards.pcm.front``, ``jack server is not running or cannot be started``...).
Python-level redirection (``sys.stderr``, ``contextlib.redirect_stderr``)
does not see those writes, so :func:`capture_fd2` swaps the descriptor itself::

    with capture_fd2() as captured:
        pa = pyaudio.PyAudio()
    noise, other = split_noise(captured.text)

Thread safety: while a capture is active, **everything** any thread of the
process writes to file descriptor 2 goes to the capture, Python's
``sys.stderr`` and logging handlers included. Captures are meant to be brief
(around a library call, a few milliseconds) and are serialised by a
process-wide lock; a nested capture in the same thread does nothing (the outer
one gets the text). Callers should write back what :func:`split_noise` does
not recognise as library noise, so that another thread's message is delayed,
not lost.

The capture goes to an unlinked temporary file rather than a pipe: a pipe
nobody reads would block the library once it holds 64 KiB. If the process
dies inside a capture (a C assertion in PortAudio aborts it), what was
written there is lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Iterator, List, Tuple

__all__ = ["Captured", "capture_fd2", "split_noise", "NOISE"]

#: Lines known to come from the audio libraries' probing: ALSA's error handler, JACK's client
#: library, PulseAudio's ALSA plugin (which adds a blank line), and PortAudio's own checks.
NOISE = re.compile(
    r"^(?:ALSA lib |Cannot connect to server |jack server is not running|JackShmReadWritePtr|Jack[A-Za-z]*::"
    r"|Expression '.*' failed in '|\s*$)"
)

_lock = threading.RLock()  # fd 2 is one per process, so are its captures
_local = threading.local()


class Captured:
    """What was written to file descriptor 2 during a :func:`capture_fd2` block (``text`` is set at its end)."""

    def __init__(self) -> None:
        self.text = ""


@contextlib.contextmanager
def capture_fd2() -> Iterator[Captured]:
    """Redirect file descriptor 2 into a temporary file for the block; ``captured.text`` holds it afterwards.

    The original descriptor is restored in a ``finally``, also when the block raises. If file
    descriptor 2 is not open, nothing is redirected and ``text`` stays empty. See the module
    docstring for what this means for other threads.
    """
    captured = Captured()
    if getattr(_local, "active", False):  # nested: the outer capture collects the text
        yield captured
        return
    with _lock:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all (a daemon, pythonw): nothing to protect
            yield captured
            return
        _local.active = True
        try:
            with tempfile.TemporaryFile() as sink:
                _flush_python_stderr()
                os.dup2(sink.fileno(), 2)
                try:
                    yield captured
                finally:
                    _flush_python_stderr()
                    os.dup2(saved, 2)
                    sink.seek(0)
                    captured.text = sink.read().decode("utf-8", "replace")
        finally:
            os.close(saved)
            _local.active = False


def split_noise(text: str) -> Tuple[List[str], List[str]]:
    """Split captured text into ``(noise lines, other lines)``; see :data:`NOISE`. Blank lines count as noise."""
    noise: List[str] = []
    other: List[str] = []
    for line in text.splitlines():
        (noise if NOISE.match(line) else other).append(line)
    return noise, other


def _flush_python_stderr() -> None:
    stream = sys.stderr
    if stream is not None:
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing buffered can reach fd 2 anyway
            pass
