"""What C libraries write to the process's stderr (file descriptor 2), captured so that it can be filtered.

libmpg123 (inside libsndfile) prints decoder diagnostics for MP3 files that
decode well (``[src/libmpg123/layer3.c:...] error: part2_3_length ... too
large``); PortAudio, ALSA and JACK print their probing failures
(``ALSA lib pcm.c:... Unknown PCM``). They write to file descriptor 2
directly, so Python-level redirection (``sys.stderr``,
``contextlib.redirect_stderr``) does not see them: :func:`capture_native_stderr`
swaps the descriptor itself, and :func:`native_stderr_filtered` sends the
lines a caller knows to be noise to a logger at DEBUG (shown with the
command line's ``--debug``) and writes every other line back to stderr.

Thread safety: while a capture is active, **everything** any thread of the
process writes to file descriptor 2 goes to the capture, Python's
``sys.stderr`` and logging handlers included. Captures are meant to be brief
(around one library call) and are serialised by a process-wide lock; a nested
capture in the same thread does nothing (the outer one gets the text).
:func:`native_stderr_filtered` writes back what is not noise, so another
thread's message is delayed, not lost.

The capture goes to an unlinked temporary file rather than a pipe: a pipe
nobody reads would block the library once it holds 64 KiB. If the process
dies inside a capture (a C assertion aborts it), what was written there is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from re import Pattern

__all__ = ["Captured", "capture_native_stderr", "native_stderr_filtered", "split_lines"]

_lock = threading.RLock()  # fd 2 is one per process, so are its captures
_local = threading.local()


class Captured:
    """What was written to file descriptor 2 during a :func:`capture_native_stderr` block (``text``, set at its end)."""

    def __init__(self) -> None:
        self.text = ""


@contextlib.contextmanager
def capture_native_stderr() -> Iterator[Captured]:
    """Redirect file descriptor 2 into a temporary file for the block; ``captured.text`` holds it afterwards.

    The original descriptor is restored in a ``finally``, also when the block
    raises. If file descriptor 2 is not open, nothing is redirected and
    ``text`` stays empty. See the module docstring for what this means for
    other threads.
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


def split_lines(text: str, noise: Pattern[str]) -> tuple[list[str], list[str]]:
    """Split captured text into ``(noise lines, other lines)``; blank lines count as noise."""
    noisy: list[str] = []
    other: list[str] = []
    for line in text.splitlines():
        (noisy if not line.strip() or noise.match(line) else other).append(line)
    return noisy, other


@contextlib.contextmanager
def native_stderr_filtered(noise: Pattern[str], logger: logging.Logger, what: str) -> Iterator[None]:
    """Run the block with fd 2 captured: lines matching ``noise`` go to ``logger`` at DEBUG, the rest back to stderr.

    :param noise: matched (``re.match``) against each line written meanwhile.
    :param logger: where the noise is logged, as one record.
    :param what: the record's first line, naming who printed while doing what
        (``"libmpg123 printed while decoding x.mp3"``).
    """
    captured = Captured()
    try:
        with capture_native_stderr() as captured:
            yield
    finally:
        if captured.text:
            noisy, other = split_lines(captured.text, noise)
            if any(line.strip() for line in noisy):
                logger.debug("%s:\n%s", what, "\n".join(noisy))
            if other:  # not the libraries' noise (maybe another thread's output): it must not be lost
                with contextlib.suppress(OSError):
                    os.write(2, ("\n".join(other) + "\n").encode("utf-8", "replace"))


def _flush_python_stderr() -> None:
    stream = sys.stderr
    if stream is not None:
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing buffered can reach fd 2 anyway
            pass


#: libmpg123's diagnostics, as libsndfile lets them through.
DECODER_NOISE: Pattern[str] = re.compile(r"^\[src/libmpg123/|^Note: |^Warning: .*mpg123")
