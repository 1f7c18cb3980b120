"""A scripted turns endpoint (``/stt/turns/websocket``) on loopback, for the turn session tests.

It speaks the documented protocol with a deterministic "model": audio is
16 kHz s16le, a 10 ms block with any non-zero sample is speech, silence is
zeros. Time is measured in received audio, never the wall clock:

- speech after silence: ``turn.start``;
- every ``update_ms`` of speech: ``turn.update`` (cumulative text);
- ``eager_ms`` of silence in a turn: ``turn.eager_end``; speech again before
  ``end_ms``: ``turn.resume``;
- ``end_ms`` of silence: ``turn.end`` with the turn's text;
- ``{"type":"close"}`` (JSON, any whitespace): an open turn ends, then the
  server closes (1000); ``{"type":"config",...}`` is recorded and applied to
  ``end_ms`` (``turn.end_timeout_ms``).

A turn's text is ``" level<peak>:<speech ms>ms"``, where ``peak`` is the
largest sample of the turn's first speech block: the same audio gives the
same text on any connection, so a test can tell utterances apart by level.
``script`` replaces the model for a test that needs events out of order: a
list of JSON texts sent after the first audio.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

BLOCK = 320  # 10 ms of 16 kHz s16le


@dataclass
class TurnsRecord:
    """What one connection received."""

    path: str = ""
    audio: bytearray = field(default_factory=bytearray)
    commands: list[Any] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)


class TurnsServer:
    """The scripted turns endpoint; ``with TurnsServer() as server: server.base_url``."""

    def __init__(
        self,
        *,
        update_ms: int = 300,
        eager_ms: int = 300,
        end_ms: int = 600,
        script: list[str] | None = None,
        drop_after_bytes: int | None = None,
    ) -> None:
        self.update_ms = update_ms
        self.eager_ms = eager_ms
        self.end_ms = end_ms
        self.script = script
        self.drop_after_bytes = drop_after_bytes
        self.records: list[TurnsRecord] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TurnsServer:
        self._server = serve(self._handle, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, name="turns-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stt/turns/websocket"

    def _handle(self, conn: ServerConnection) -> None:
        record = TurnsRecord(path=conn.request.path if conn.request else "")
        with self._lock:
            self.records.append(record)
        request_id = str(uuid.uuid4())
        model = _Model(self, record, request_id, conn)
        model.send({"type": "connected"})
        scripted = list(self.script) if self.script is not None else None
        try:
            for message in conn:
                if isinstance(message, bytes):
                    record.audio += message
                    if self.drop_after_bytes is not None and len(record.audio) >= self.drop_after_bytes:
                        self.drop_after_bytes = None  # once: the reconnection gets through
                        conn.socket.close()
                        return
                    if scripted:
                        for text in scripted:
                            conn.send(text)
                        scripted = []
                    elif scripted is None:
                        model.feed(message)
                    continue
                try:
                    command = json.loads(message)
                except ValueError:
                    command = message
                record.commands.append(command)
                if isinstance(command, dict) and command.get("type") == "close":
                    model.finish()
                    conn.close(1000)
                    return
                if isinstance(command, dict) and command.get("type") == "config":
                    timeout = (command.get("turn") or {}).get("end_timeout_ms")
                    if timeout is not None:
                        model.end_ms = int(timeout)
        except ConnectionClosed:
            pass


class _Model:
    """The deterministic turn detector of one connection."""

    def __init__(self, server: TurnsServer, record: TurnsRecord, request_id: str, conn: ServerConnection) -> None:
        self.server = server
        self.record = record
        self.request_id = request_id
        self.conn = conn
        self.end_ms = server.end_ms
        self.pending = bytearray()
        self.turn = 0
        self.in_turn = False
        self.eager = False
        self.speech_ms = 0
        self.silence_ms = 0
        self.updated_at = 0
        self.level = 0

    def send(self, message: dict[str, Any]) -> None:
        message = {**message, "request_id": self.request_id}
        self.record.sent.append(message)
        self.conn.send(json.dumps(message))

    def text(self) -> str:
        return f" level{self.level}:{self.speech_ms}ms"

    def feed(self, audio: bytes) -> None:
        self.pending += audio
        while len(self.pending) >= BLOCK:
            block, self.pending = bytes(self.pending[:BLOCK]), self.pending[BLOCK:]
            self._block(max(abs(sample) for sample in memoryview(block).cast("h")))

    def _block(self, peak: int) -> None:
        if peak:
            self.silence_ms = 0
            if not self.in_turn:
                self.turn += 1
                self.in_turn, self.eager, self.speech_ms, self.updated_at = True, False, 0, 0
                self.level = peak
                self.send({"type": "turn.start"})
            elif self.eager:
                self.eager = False
                self.send({"type": "turn.resume"})
            self.speech_ms += 10
            if self.speech_ms - self.updated_at >= self.server.update_ms:
                self.updated_at = self.speech_ms
                self.send({"type": "turn.update", "transcript": self.text()})
            return
        if not self.in_turn:
            return
        self.silence_ms += 10
        if not self.eager and self.silence_ms >= self.server.eager_ms:
            self.eager = True
            self.send({"type": "turn.eager_end", "transcript": self.text()})
        if self.silence_ms >= self.end_ms:
            self._end()

    def _end(self) -> None:
        self.send({"type": "turn.end", "transcript": self.text()})
        self.in_turn = self.eager = False
        self.silence_ms = 0

    def finish(self) -> None:
        if self.in_turn:
            self._end()
