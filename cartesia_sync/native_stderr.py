"""Keeping C libraries' diagnostics off the terminal: libmpg123 (inside libsndfile) prints to file descriptor 2.

Decoding an MP3 makes libmpg123 write lines such as ``[src/libmpg123/layer3.c:...]
error: part2_3_length ... too large`` straight to fd 2, even for a file that
decodes well; Python's ``sys.stderr`` never sees them, so only moving fd 2
itself keeps them off the user's terminal. :func:`native_stderr_filtered`
points fd 2 at a temporary file for the duration of a library call and then
writes back what arrived there, except the lines of the named libraries,
which go to the ``cartesia_sync`` logger at DEBUG (shown with ``--debug``).

Other threads' writes to fd 2 during the window are kept and written back
in order, a moment late. Windows of several threads overlap safely: the first
one in redirects, the last one out restores. Where fd 2 cannot be moved (it is
closed, or the platform lacks ``dup2``), the call just runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from typing import IO, Iterator, Optional

__all__ = ["native_stderr_filtered"]

logger = logging.getLogger("cartesia_sync.native")

#: Lines that C libraries we call print as chatter; everything else written to fd 2 is passed through.
_CHATTER = re.compile(rb"^\[src/libmpg123/|^Note: |^Warning: .*mpg123", re.MULTILINE)

_lock = threading.Lock()
_depth = 0
_saved_fd: Optional[int] = None
_capture: Optional[IO[bytes]] = None


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Run the block with fd 2 captured; chatter is logged at DEBUG, anything else written back to stderr."""
    if not _enter():
        yield
        return
    try:
        yield
    finally:
        _leave()


def _enter() -> bool:
    global _depth, _saved_fd, _capture
    with _lock:
        if _depth == 0:
            try:
                capture = tempfile.TemporaryFile()
                saved = os.dup(2)
            except OSError:
                return False
            try:
                os.dup2(capture.fileno(), 2)
            except OSError:
                os.close(saved)
                capture.close()
                return False
            _saved_fd, _capture = saved, capture
        _depth += 1
        return True


def _leave() -> None:
    global _depth, _saved_fd, _capture
    with _lock:
        _depth -= 1
        if _depth or _saved_fd is None or _capture is None:
            return
        saved, capture = _saved_fd, _capture
        _saved_fd = _capture = None
        os.dup2(saved, 2)
        os.close(saved)
    with capture:
        capture.seek(0)
        written = capture.read()
    if written:
        _pass_through(written)


def _pass_through(written: bytes) -> None:
    kept = []
    for line in written.splitlines(keepends=True):
        if _CHATTER.match(line):
            logger.debug("%s", line.decode(errors="replace").rstrip())
        else:
            kept.append(line)
    if kept:
        os.write(2, b"".join(kept))
