"""The receiver thread: the only reader of the socket.

It reads frames, parses each text frame once, and hands the result to the
session, which updates the transcript and dispatches hooks, in arrival order.
Junk (a frame that is not valid JSON, a binary frame, a message with missing
fields) is reported and skipped; the stream goes on.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional, Protocol

import websocket

from .errors import ProtocolError
from .events import Event, parse_message
from .stats import StatsCounter
from .transport import close_frame_status, shutdown_socket

__all__ = ["Receiver", "MessageSink"]

logger = logging.getLogger(__name__)


class MessageSink(Protocol):
    """What the receiver reports to (the session implements it)."""

    def handle_event(self, event: Event) -> None:
        """A parsed server message."""

    def handle_junk(self, error: ProtocolError) -> None:
        """A frame that could not be understood."""

    def handle_close(self, code: Optional[int], reason: str) -> None:
        """The server sent a close frame."""

    def handle_lost(self, detail: str) -> None:
        """The connection ended without a close frame."""


class Receiver(threading.Thread):
    """Reads one connection until it closes.

    :param ws: the open WebSocket; no other thread reads it.
    :param sink: receives every message, junk report and the end of the stream.
    :param stats: counters to update.
    """

    def __init__(self, ws: websocket.WebSocket, sink: MessageSink, stats: StatsCounter,
                 name: str = "cartesia-sync-receiver") -> None:
        super().__init__(name=name, daemon=True)
        self._ws = ws
        self._sink = sink
        self._stats = stats

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug, or SystemExit in a hook, must not leave the session hanging
            logger.exception("the receiver thread failed")
            self._sink.handle_lost(f"the receiver thread failed: {type(exc).__name__}: {exc}")
        finally:
            # Nothing more can arrive after a close frame or the end of the stream: release the
            # TCP connection now, as the peer expects once the close handshake is complete.
            shutdown_socket(self._ws)

    def _loop(self) -> None:
        while True:
            try:
                opcode, frame = self._ws.recv_data_frame(True)
            except (websocket.WebSocketException, OSError, ValueError) as exc:
                self._sink.handle_lost(str(exc) or type(exc).__name__)
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self._sink.handle_close(*close_frame_status(frame.data))
                return
            if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                continue  # ping and pong: websocket-client already answered pings
            self._stats.add("messages_received")
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self._sink.handle_junk(ProtocolError(
                    f"server sent a binary frame of {len(frame.data)} bytes; only JSON text frames are expected",
                    raw=repr(bytes(frame.data[:60])),
                ))
                continue
            try:
                event = parse_message(frame.data)
            except ProtocolError as exc:
                self._sink.handle_junk(exc)
                continue
            self._sink.handle_event(event)
