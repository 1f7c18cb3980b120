"""Liveness: when the server was last heard from, when to ping it, and when to give up on it.

A connection whose peer vanished (a NAT dropped it, a host died) stays open
on this side: TCP only notices after minutes of retransmissions. So the
sender pings the server after ``ping_interval`` seconds without hearing from
it, and declares the connection dead when nothing at all (a pong, a message)
arrived for ``ping_interval + ping_timeout`` seconds. The receiver judges,
while it waits for data: time it spends running hooks is not silence.
"""

from __future__ import annotations

import threading
import time

__all__ = ["Liveness"]


class Liveness:
    """Shared by a session's receiver (which hears and judges) and sender (which pings).

    :param ping_interval: silence after which a ping is due; ``None`` never pings.
    :param ping_timeout: more silence after which the peer is dead; ``None`` never judges.
    """

    def __init__(self, ping_interval: float | None, ping_timeout: float | None) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._lock = threading.Lock()
        self._last_heard = time.monotonic()
        self._last_ping = float("-inf")

    @property
    def dead_after(self) -> float | None:
        """Seconds of silence after which the peer counts as dead, or ``None``."""
        if self.ping_interval is None or self.ping_timeout is None:
            return None
        return self.ping_interval + self.ping_timeout

    def restart(self) -> None:
        """A new connection: it has just been heard (its handshake)."""
        with self._lock:
            self._last_heard = time.monotonic()
            self._last_ping = float("-inf")

    def heard(self) -> None:
        """Something arrived from the server."""
        self._last_heard = time.monotonic()

    def ping_due(self, now: float) -> bool:
        """True when a ping should go out now (and records that it will)."""
        if self.ping_interval is None:
            return False
        with self._lock:
            if now - max(self._last_heard, self._last_ping) < self.ping_interval:
                return False
            self._last_ping = now
            return True

    def silence(self, now: float) -> float | None:
        """Seconds without hearing from the server, when that makes the peer dead; else ``None``."""
        limit = self.dead_after
        if limit is None:
            return None
        silent = now - self._last_heard
        return silent if silent >= limit else None
