"""Scenarios: scripted misbehaviour of the local server, for testing clients against faults.

The default :class:`Scenario` is a well-behaved server. Each field turns on one
fault the hosted API (or the network in front of it) can produce, so that a
test can prove its code survives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Scenario", "DEFAULT_ERROR"]

#: The error message sent by ``error_after_bytes`` unless another is given (2026 structured format).
DEFAULT_ERROR: dict[str, Any] = {
    "type": "error",
    "done": True,
    "status_code": 500,
    "error_code": "internal_error",
    "title": "Internal error",
    "message": "the engine failed",
}


@dataclass(frozen=True)
class Scenario:
    """What the local server does besides speaking the protocol correctly.

    Byte counts are of audio received on one connection.

    :ivar reject_status: refuse every handshake with this HTTP status.
    :ivar reject_body: the body of that refusal. Batch and token requests
        (``POST /stt``, ``/audio/transcriptions``, ``/access-token``) count as
        connections here: ``reject_status`` answers them too, with
        ``reject_body`` as the message of the structured error.
    :ivar reject_headers: headers added to that refusal, e.g. ``(("Retry-After", "0"),)``.
    :ivar reply_delay: seconds a batch or token request takes at least before it
        is answered (a slow server).
    :ivar answer_finalize: answer ``finalize`` (finals, then ``flush_done``).
    :ivar answer_end: answer ``done``/``close`` (finals, ``done``, close).
    :ivar end_delay: seconds to wait before answering ``done``/``close``.
    :ivar close_after_done: close the socket after ``done``.
    :ivar on_open: frames sent right after the handshake: dicts go as JSON,
        ``str`` as text frames, ``bytes`` as binary frames (junk, on purpose).
    :ivar before_done: frames sent right before the answer to ``done``/``close``.
    :ivar error_after_bytes: send ``error_message`` once this much audio arrived.
    :ivar error_message: the error to send (``request_id`` is filled in).
    :ivar error_closes: close the connection (1011) after that error.
    :ivar drop_after_bytes: drop the TCP connection, no close frame, after this much audio.
    :ivar close_after_bytes: close cleanly with ``close_code``/``close_reason`` after this much audio.
    :ivar close_code: see ``close_after_bytes``.
    :ivar close_reason: see ``close_after_bytes``.
    :ivar faulty_connections: the faults apply to this many connections, the
        first ones the server accepts; later ones are well behaved (to test
        that a client's reconnect gets past a fault). ``None``: all of them.
    """

    reject_status: int | None = None
    reject_body: str = ""
    reject_headers: tuple[tuple[str, str], ...] = ()
    reply_delay: float = 0.0
    answer_finalize: bool = True
    answer_end: bool = True
    end_delay: float = 0.0
    close_after_done: bool = True
    on_open: tuple[Any, ...] = ()
    before_done: tuple[Any, ...] = ()
    error_after_bytes: int | None = None
    error_message: Any = field(default_factory=lambda: dict(DEFAULT_ERROR), hash=False)
    error_closes: bool = True
    drop_after_bytes: int | None = None
    close_after_bytes: int | None = None
    close_code: int = 1011
    close_reason: str = ""
    faulty_connections: int | None = None

    def applies_to(self, index: int) -> bool:
        """Whether the faults apply to the connection accepted ``index``-th (from 0)."""
        return self.faulty_connections is None or index < self.faulty_connections
