"""Session statistics: counters the threads update, and the frozen snapshot callers read."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields

__all__ = ["SessionStats", "StatsCounter"]


@dataclass(frozen=True)
class SessionStats:
    """A snapshot of one session's accounting. Audio amounts are in seconds.

    ``audio_queued`` is what the caller handed to ``send()``/``send_file()``
    (after conversion); ``audio_sent`` what went out on the socket, keepalive
    silence excluded; ``audio_dropped`` what the ``drop_oldest`` buffer policy
    discarded (or a ``send()`` that timed out or was interrupted could not queue); ``audio_unsent``
    what was never sent because the session ended first (still queued, being
    queued, or in a write the end cut off). Once a session has ended,
    ``audio_queued == audio_sent + audio_dropped + audio_unsent``, whatever ended it.
    ``audio_acknowledged`` is how far into the session's audio the server has
    confirmed its results (by ``flush_done``, ``done`` or a final word's end;
    this clock counts keepalive silence too, as the server hears it);
    ``audio_replayed`` what was sent again after a reconnect, and
    ``audio_gap`` what a reconnect could not resend because the replay buffer
    had already let it go. ``reconnects`` counts new connections made after
    failures and ``reconnect_attempts`` the handshakes tried for them.
    ``turns`` counts the turns a turn session completed.
    ``errors_reported`` counts every error the session saw, including those
    ``Session.errors`` no longer holds (it keeps the first 100 and the latest).
    """

    audio_queued: float = 0.0
    audio_sent: float = 0.0
    audio_acknowledged: float = 0.0
    audio_replayed: float = 0.0
    audio_gap: float = 0.0
    audio_dropped: float = 0.0
    audio_unsent: float = 0.0
    keepalive_sent: float = 0.0
    frames_sent: int = 0
    commands_sent: int = 0
    messages_received: int = 0
    events_dispatched: int = 0
    interim_transcripts: int = 0
    final_transcripts: int = 0
    turns: int = 0
    protocol_errors: int = 0
    plugin_errors: int = 0
    errors_reported: int = 0
    server_errors: int = 0
    reconnects: int = 0
    reconnect_attempts: int = 0
    pings_sent: int = 0
    connect_seconds: float = 0.0
    wall_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The snapshot as a plain dict, for JSON output."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class StatsCounter:
    """Thread-safe counters behind :class:`SessionStats`.

    Byte counts are kept as integers and turned into seconds only in
    :meth:`snapshot`, so nothing accumulates rounding error over long sessions.
    """

    _BYTE_FIELDS = (
        "audio_queued",
        "audio_sent",
        "audio_acknowledged",
        "audio_replayed",
        "audio_gap",
        "audio_dropped",
        "audio_unsent",
        "keepalive_sent",
    )

    def __init__(self, bytes_per_second: int) -> None:
        self._lock = threading.Lock()
        self._bytes_per_second = bytes_per_second
        self._values: dict[str, float] = {f.name: 0 for f in fields(SessionStats)}
        self._started = time.monotonic()
        self._ended: float = 0.0

    def add(self, name: str, amount: float = 1) -> None:
        """Add ``amount`` to one counter (bytes for the audio counters)."""
        with self._lock:
            self._values[name] += amount

    def add_all(self, **amounts: float) -> None:
        """Add to several counters at once (one lock round trip); zero amounts are skipped."""
        with self._lock:
            values = self._values
            for name, amount in amounts.items():
                if amount:
                    values[name] += amount

    def set(self, name: str, value: float) -> None:
        """Set one counter."""
        with self._lock:
            self._values[name] = value

    def raise_to(self, name: str, value: float) -> None:
        """Raise one counter to ``value`` if it is below it (for high-water marks)."""
        with self._lock:
            if value > self._values[name]:
                self._values[name] = value

    def get(self, name: str) -> float:
        """Read one raw counter (bytes for the audio counters)."""
        with self._lock:
            return self._values[name]

    def mark_ended(self) -> None:
        """Freeze the wall clock of the session."""
        with self._lock:
            if not self._ended:
                self._ended = time.monotonic()

    def snapshot(self) -> SessionStats:
        """A consistent copy of every counter."""
        with self._lock:
            values = dict(self._values)
            end = self._ended or time.monotonic()
        for name in self._BYTE_FIELDS:
            values[name] = values[name] / self._bytes_per_second
        values["wall_seconds"] = end - self._started
        return SessionStats(**values)  # type: ignore[arg-type]  # counts are ints, amounts floats
