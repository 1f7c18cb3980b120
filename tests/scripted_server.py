"""A scripted Cartesia-compatible STT server for the test suite (websockets' sync server on loopback).

Its default behaviour is deterministic and protocol-faithful: it counts the
audio bytes it receives and, on ``finalize`` or the end command, answers with a
final transcript that *describes* the audio (``" seg1:3200b"``) and one word
whose times are the segment's position in the audio, then ``flush_done`` or
``done`` and a clean close. Tests change single behaviours through
:class:`Script` fields, and read back everything that arrived from
:attr:`ScriptedServer.connections`.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.sync.server import ServerConnection, serve

BYTES_PER_SECOND = 32000


@dataclass
class Script:
    """What the server does. Every field has the protocol-faithful default."""

    #: (status, body) to refuse the handshake with.
    reject: Optional[Tuple[int, str]] = None
    #: key required in X-API-Key (or api_key=) when set.
    api_key: Optional[str] = None
    #: answer finalize with finals + flush_done.
    answer_finalize: bool = True
    #: answer the end command with finals + done.
    answer_end: bool = True
    #: close the socket after done.
    close_after_done: bool = True
    #: seconds to wait before answering the end command.
    end_delay: float = 0.0
    #: send an interim transcript after every this many audio bytes.
    interim_every: Optional[int] = None
    #: messages (dicts sent as JSON, str sent as text, bytes as binary) sent right after the handshake.
    on_open: List[Any] = field(default_factory=list)
    #: messages sent right before the reply to the end command.
    before_done: List[Any] = field(default_factory=list)
    #: after this many audio bytes, send `error_message` (and close if `error_closes`).
    error_after: Optional[int] = None
    error_message: Dict[str, Any] = field(default_factory=lambda: {
        "type": "error", "done": True, "status_code": 500, "error_code": "internal_error",
        "title": "Internal error", "message": "the engine failed", "request_id": "req-1"})
    error_closes: bool = True
    #: after this many audio bytes, drop the TCP connection without a close frame.
    drop_after: Optional[int] = None
    #: after this many audio bytes, close cleanly with this (code, reason).
    close_after: Optional[Tuple[int, int, str]] = None
    #: custom text of a final segment: f(segment_number, nbytes) -> text.
    final_text: Callable[[int, int], str] = lambda n, size: f" seg{n}:{size}b"


@dataclass
class Received:
    """One frame the server received."""

    at: float
    kind: str  # "audio" or "text"
    data: Any


@dataclass
class ConnectionRecord:
    """Everything one connection showed the server."""

    path: str = ""
    query: List[Tuple[str, str]] = field(default_factory=list)
    headers: Dict[str, str] = field(default_factory=dict)
    frames: List[Received] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    closed_by_client: Optional[int] = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def texts(self) -> List[str]:
        return [f.data for f in self.frames if f.kind == "text"]

    @property
    def audio_frames(self) -> List[Received]:
        return [f for f in self.frames if f.kind == "audio"]

    def query_dict(self) -> Dict[str, str]:
        return dict(self.query)

    def sha256(self) -> str:
        return hashlib.sha256(bytes(self.audio)).hexdigest()


class ScriptedServer:
    """Runs the scripted server in a thread on 127.0.0.1 and an ephemeral port."""

    def __init__(self, script: Optional[Script] = None) -> None:
        self.script = script or Script()
        self.connections: List[ConnectionRecord] = []
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._process_request,
                             compression=None, max_size=2**22)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-server", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stt/websocket"

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def wait_finished(self, index: int = -1, timeout: float = 5.0) -> ConnectionRecord:
        deadline = time.monotonic() + timeout
        while not self.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        record = self.connections[index]
        record.finished.wait(max(0.0, deadline - time.monotonic()))
        return record

    # -- handshake ---------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Any) -> Optional[Response]:
        script = self.script
        record = ConnectionRecord(path=urlsplit(request.path).path, query=parse_qsl(urlsplit(request.path).query),
                                  headers={k.lower(): v for k, v in request.headers.raw_items()})
        self.connections.append(record)
        connection.record = record  # type: ignore[attr-defined]
        if script.reject is not None:
            record.finished.set()
            status, body = script.reject
            return _response(status, body)
        if script.api_key is not None:
            given = record.headers.get("x-api-key") or dict(record.query).get("api_key")
            if given != script.api_key:
                record.finished.set()
                return _response(401, json.dumps({"error": "Invalid API key"}))
        return None

    # -- the conversation ----------------------------------------------------

    def _handle(self, conn: ServerConnection) -> None:
        record: ConnectionRecord = conn.record  # type: ignore[attr-defined]
        script = self.script
        state = {"segment_start": 0, "segment": 0, "next_interim": script.interim_every, "errored": False}
        try:
            for message in script.on_open:
                _send(conn, message)
            for message in conn:
                now = time.monotonic()
                if isinstance(message, bytes):
                    record.frames.append(Received(now, "audio", message))
                    record.audio += message
                    if self._after_audio(conn, record, state):
                        return
                    continue
                record.frames.append(Received(now, "text", message))
                if message == "finalize":
                    if script.answer_finalize:
                        self._final(conn, record, state)
                        _send(conn, {"type": "flush_done", "request_id": "req-1"})
                elif message in ("done", "close"):
                    if not script.answer_end:
                        continue
                    if script.end_delay:
                        time.sleep(script.end_delay)
                    for extra in script.before_done:
                        _send(conn, extra)
                    self._final(conn, record, state)
                    _send(conn, {"type": "done", "request_id": "req-1"})
                    if script.close_after_done:
                        conn.close(1000, "done")
                        return
        except ConnectionClosed:
            pass
        finally:
            record.closed_by_client = conn.close_code
            record.finished.set()

    def _after_audio(self, conn: ServerConnection, record: ConnectionRecord, state: Dict[str, Any]) -> bool:
        script = self.script
        size = len(record.audio)
        if script.drop_after is not None and size >= script.drop_after:
            _drop(conn)
            return True
        if script.close_after is not None and size >= script.close_after[0]:
            conn.close(script.close_after[1], script.close_after[2])
            return True
        if script.error_after is not None and size >= script.error_after and not state["errored"]:
            state["errored"] = True
            _send(conn, script.error_message)
            if script.error_closes:
                conn.close(1011, "error")
                return True
        if state["next_interim"] is not None and size - state["segment_start"] >= state["next_interim"]:
            state["next_interim"] += script.interim_every
            pending = size - state["segment_start"]
            _send(conn, {"type": "transcript", "request_id": "req-1", "is_final": False,
                         "text": f" partial:{pending}b", "duration": pending / BYTES_PER_SECOND})
        return False

    def _final(self, conn: ServerConnection, record: ConnectionRecord, state: Dict[str, Any]) -> None:
        size = len(record.audio) - state["segment_start"]
        if size <= 0:
            return
        state["segment"] += 1
        start = state["segment_start"] / BYTES_PER_SECOND
        end = len(record.audio) / BYTES_PER_SECOND
        text = self.script.final_text(state["segment"], size)
        word = text.strip() or "_"
        _send(conn, {"type": "transcript", "request_id": "req-1", "is_final": True, "text": text,
                     "duration": end - start, "language": "en",
                     "words": [{"word": word, "start": start, "end": end}]})
        state["segment_start"] = len(record.audio)
        if self.script.interim_every is not None:
            state["next_interim"] = self.script.interim_every


def _send(conn: ServerConnection, message: Any) -> None:
    if isinstance(message, dict):
        conn.send(json.dumps(message))
    else:
        conn.send(message)


def _drop(conn: ServerConnection) -> None:
    """End the TCP connection with no close frame (the client sees 1006)."""
    sock = conn.socket
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _response(status: int, body: str) -> Response:
    from http import HTTPStatus

    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    data = body.encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                       ("Connection", "close")])
    return Response(status, reason, headers, data)
