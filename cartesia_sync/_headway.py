"""Headway: when the session last moved forward, so that waits time out on a stall, not on a clock.

A server works through what it was sent at its own speed: the hosted API in
real time, the local engine at a fraction of it, a loaded server slower. A
fixed deadline after the end command fails every long file whose tail is
still being recognised. So ``close()`` and ``finalize()`` time out only when
the session stopped moving: no message from the server acknowledged audio
or reached further into the audio sent than any before (a final or interim
transcript's last word), and the socket took nothing from the sender, for
the whole timeout. A server that is alive but stuck (it answers pings,
repeats an interim, sends errors or unknown messages) still times out: only
progress through the audio, which is bounded by what was sent, is headway.
"""

from __future__ import annotations

import time

__all__ = ["Headway"]


class Headway:
    """The monotonic time of a session's latest step forward. Marked from any thread, read from any."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def mark(self) -> None:
        """The server sent a message, or the socket took data."""
        self._last = time.monotonic()

    @property
    def last(self) -> float:
        """``time.monotonic()`` of the latest step forward (the session's start before any)."""
        return self._last

    def deadline(self, patience: float, at_least: float = float("-inf")) -> float:
        """When a wait with ``patience`` seconds of tolerance for a stall gives up, if nothing moves before."""
        return max(at_least, self._last + patience)
