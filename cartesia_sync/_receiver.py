"""The receiver thread: the only reader of the socket.

It reads frames, parses each text frame once, and hands the result to the
session, which updates the transcript and dispatches hooks, in arrival order.
When a connection ends, the session may hand it the next one (a reconnect);
when the server stays silent too long, it declares the connection dead.
Junk (a frame that is not valid JSON, a binary frame, a message with missing
fields) is reported and skipped; the stream goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ._events import AnyEvent
from ._liveness import Liveness
from ._stats import StatsCounter
from ._wire import ConnectionBroken, WireConnection
from .errors import ProtocolError

__all__ = ["Receiver", "MessageSink"]

logger = logging.getLogger("cartesia_sync.receiver")


class MessageSink(Protocol):
    """What the receiver reports to (the session implements it)."""

    def handle_event(self, event: AnyEvent) -> None:
        """A parsed server message."""

    def handle_junk(self, error: ProtocolError) -> None:
        """A frame that could not be understood."""

    def connection_ended(self) -> None:
        """The reader reached the end of the current connection (called before its socket is shut)."""

    def handle_close(self, code: int | None, reason: str) -> WireConnection | None:
        """The server sent a close frame; returns the next connection to read, if the session reconnected."""

    def handle_lost(self, detail: str, *, retry: bool = True) -> WireConnection | None:
        """The connection ended without a close frame; returns the next connection to read, if any.

        ``retry`` is false when the end was this thread's own failure, not the network's.
        """


class Receiver(threading.Thread):
    """Reads a session's connections, one after the other, until the last one closes.

    :param ws: the first open WebSocket; no other thread reads it.
    :param sink: receives every message, junk report and the end of each connection.
    :param stats: counters to update.
    :param liveness: told whenever the server is heard; judged whenever a read times out.
    :param parse: turns a text frame into an event (raises ``ProtocolError`` for junk).
    """

    def __init__(
        self,
        ws: WireConnection,
        sink: MessageSink,
        stats: StatsCounter,
        liveness: Liveness,
        *,
        parse: Callable[[str | bytes], AnyEvent],
        name: str = "cartesia-sync-receiver",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._ws: WireConnection | None = ws
        self._sink = sink
        self._stats = stats
        self._liveness = liveness
        self._parse = parse

    def run(self) -> None:
        try:
            while self._ws is not None:
                ws = self._ws
                code, reason, lost = self._read(ws)
                self._sink.connection_ended()  # first: a write that fails once the socket is shut is no news
                # Nothing more can arrive after a close frame or the end of the stream: release the
                # TCP connection now, as the peer expects once the close handshake is complete.
                ws.shutdown()
                self._ws = self._sink.handle_lost(lost) if lost is not None else self._sink.handle_close(code, reason)
        except BaseException as exc:  # a bug, or SystemExit in a hook, must not leave the session hanging
            logger.exception("the receiver thread failed")
            self._sink.handle_lost(f"the receiver thread failed: {type(exc).__name__}: {exc}", retry=False)
        finally:
            if self._ws is not None:
                self._ws.shutdown()

    def _read(self, ws: WireConnection) -> tuple[int | None, str, str | None]:
        """Read one connection to its end: ``(close code, close reason, None)`` or ``(None, "", what went wrong)``."""
        liveness = self._liveness
        liveness.restart()
        while True:
            try:
                incoming = ws.read()
            except ConnectionBroken as exc:
                return None, "", str(exc)
            if incoming is None:  # nothing for a poll interval: is the server still there?
                silence = liveness.silence(time.monotonic())
                if silence is not None:
                    return (
                        None,
                        "",
                        (
                            f"nothing arrived from the server for {silence:.1f} s, not even a pong: "
                            "the connection is half-open or the server hung"
                        ),
                    )
                continue
            liveness.heard()
            if incoming.kind == "close":
                return incoming.close_code, incoming.close_reason, None
            if incoming.kind == "control":
                continue  # ping and pong: the ping was answered already
            self._stats.add("messages_received")
            if incoming.kind == "binary":
                self._sink.handle_junk(
                    ProtocolError(
                        f"server sent a binary frame of {len(incoming.data)} bytes; only JSON text frames are expected",
                        raw=repr(incoming.data[:60]),
                    )
                )
            else:
                try:
                    event = self._parse(incoming.data)
                except ProtocolError as exc:
                    self._sink.handle_junk(exc)
                else:
                    self._sink.handle_event(event)
            liveness.heard()  # the time spent in hooks is not silence
