"""Reconnecting: which failures a new connection can get past, how long to wait, and the switch itself.

Transient: a connection dropped or reset, a half-open peer, close codes
1006/1011/1012/1013/1014, a normal close (1000/1001) while the caller is still
sending (an idle close ends the session instead: see ``Session``), a handshake that timed out or got HTTP 5xx or
429 (the old connection may still count against the limit), an ``error``
message with a 5xx status. Permanent: a refused key (401/403), no credits
(402), any other 4xx, an ``error`` message with a 4xx status or none, and
the close codes that say this client did something wrong (1002, 1003, 1007,
1008, 1009, 1010) or that the server chose to end the session for good.

The switch runs on the session's receiver thread, once the old connection
has ended: the sender lets go, the unacknowledged items are taken from the
replay buffer, handshakes are tried with exponential back-off and full
jitter, and the new connection gets the replayed items first. Word times of
the new connection are shifted by the audio that came before its first byte.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ._config import ConnectionSettings, SessionOptions
from ._link import Link
from ._replay import Replay
from ._result_side import ResultSide
from ._sender import Sender
from ._stats import StatsCounter
from ._wire import WireConnection
from .errors import CartesiaSyncError, ConnectError, ConnectionLostError, ServerError

__all__ = ["Reconnected", "Reconnector", "backoff_delays", "is_transient", "TRANSIENT_CLOSE_CODES"]

logger = logging.getLogger("cartesia_sync.reconnect")

#: Close codes after which a new connection may well succeed.
TRANSIENT_CLOSE_CODES = frozenset({1000, 1001, 1006, 1011, 1012, 1013, 1014})


def is_transient(error: CartesiaSyncError) -> bool:
    """Whether a new connection could get past ``error``."""
    if isinstance(error, ConnectionLostError):
        return error.close_code is None or error.close_code in TRANSIENT_CLOSE_CODES
    if isinstance(error, ServerError):
        return error.status_code is not None and error.status_code >= 500
    if isinstance(error, ConnectError):
        status = error.status_code
        return status is None or status >= 500 or status in (408, 429)
    return False


def backoff_delays(
    first: float, most: float, attempts: int, start: int = 0, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """The wait before each attempt: uniform in ``[0, min(most, first * 2**n)]`` ("full jitter").

    Jitter keeps the clients of a restarted server from all coming back at once.
    ``start`` is how many attempts came before (their delays are skipped).
    """
    for number in range(start, start + max(0, attempts)):
        yield rand() * min(most, first * 2**number)


@dataclass(frozen=True)
class Reconnected:
    """What the ``on_reconnect`` hook is told: a failed connection was replaced.

    :ivar error: what ended the old connection.
    :ivar attempts: handshakes it took.
    :ivar downtime: seconds from the failure to the new connection.
    :ivar replayed: seconds of audio resent on the new connection.
    :ivar gap: seconds of unacknowledged audio that could not be resent
        (it had left the replay buffer); 0.0 means nothing was lost.
    :ivar resumed_at: where the new connection's audio starts, in seconds of
        the session's audio; its word times are shifted by this much.
    """

    error: CartesiaSyncError
    attempts: int
    downtime: float
    replayed: float
    gap: float
    resumed_at: float

    type = "reconnect"


class Reconnector:
    """Replaces a session's failed connection; runs on the receiver thread.

    :param link: the session's current connection.
    :param sender: the session's sender thread.
    :param results: told where each new connection's audio starts.
    :param ending: set when the session ends: every wait stops.
    :param announce: called with the :class:`Reconnected` once the new connection is in place.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        options: SessionOptions,
        link: Link,
        sender: Sender,
        stats: StatsCounter,
        results: ResultSide,
        ending: threading.Event,
        announce: Callable[[Reconnected], None],
    ) -> None:
        self._settings = settings
        self._options = options
        self._link = link
        self._sender = sender
        self._stats = stats
        self._results = results
        self._ending = ending
        self._announce = announce
        self._tried = 0  # handshakes since the session last made progress
        self._acknowledged_then = -1.0  # the acknowledged audio when the last reconnect was made

    def replace(self, error: CartesiaSyncError) -> WireConnection:
        """Open a new connection after ``error`` and hand it to the sender.

        :returns: the new connection, for the receiver to read.
        :raises CartesiaSyncError: the reconnect failed: a permanent handshake
            error as it is, or a :class:`ConnectionLostError` when every attempt
            failed (``__cause__`` is the last attempt's error), or when the
            session ended meanwhile.
        """
        started = time.monotonic()
        logger.warning("%s; reconnecting", error)
        if not self._sender.let_go(self._options.join_timeout):
            raise ConnectionLostError(f"{error}; the sender thread did not let go of the connection, so no reconnect")
        replay = self._link.replay.take()
        try:
            return self._reconnect(error, replay, started)
        except CartesiaSyncError:
            self._stats.add("audio_unsent", replay.first_send_bytes)  # it will never go out now
            raise

    def _reconnect(self, error: CartesiaSyncError, replay: Replay, started: float) -> WireConnection:
        bytes_per_second = self._settings.bytes_per_second
        acknowledged = self._stats.get("audio_acknowledged")
        if acknowledged > self._acknowledged_then:
            self._tried = 0  # the last connection got somewhere: a fresh budget
        last: ConnectError | None = None
        attempts = 0
        for delay in backoff_delays(
            self._options.reconnect_delay,
            self._options.reconnect_max_delay,
            self._options.reconnect_attempts - self._tried,
            start=self._tried,
        ):
            if self._ending.wait(delay):
                break
            attempts += 1
            self._tried += 1
            self._stats.add("reconnect_attempts")
            ws = WireConnection(self._settings, self._options.max_message_size)
            if not self._link.new_socket(ws):
                break
            try:
                ws.open()
            except ConnectError as exc:
                logger.info("reconnect attempt %d to %s failed: %s", attempts, self._settings.display_url, exc)
                last = exc
                if not is_transient(exc):
                    raise exc from None
                continue
            buffer = self._link.switch(ws, replay)
            if buffer is None:
                break
            self._results.start_connection(self._link.base / bytes_per_second)
            self._sender.resume(ws, buffer, replay.items)
            self._stats.add("reconnects")
            self._acknowledged_then = acknowledged
            self._stats.add("audio_gap", replay.gap)
            event = Reconnected(
                error,
                attempts,
                time.monotonic() - started,
                replay.replayed_bytes / bytes_per_second,
                replay.gap / bytes_per_second,
                self._link.base / bytes_per_second,
            )
            logger.warning(
                "reconnected to %s after %.2f s (%d attempt%s); resending %.2f s of audio",
                self._settings.display_url,
                event.downtime,
                attempts,
                "" if attempts == 1 else "s",
                event.replayed,
            )
            self._announce(event)
            return ws
        if self._ending.is_set():
            raise ConnectionLostError(f"{error}; the session ended before a new connection was made")
        tried = self._options.reconnect_attempts
        if last is None:  # every new connection failed again before the server confirmed anything
            raise ConnectionLostError(f"{error}; gave up after {tried} reconnects in a row that made no progress")
        lost = ConnectionLostError(
            f"{error}; {tried} reconnect attempt{'' if tried == 1 else 's'} failed, the last with: {last}",
            status_code=last.status_code,
            body=last.body,
        )
        raise lost from last
