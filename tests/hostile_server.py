"""A raw-socket server on loopback whose every byte a test scripts: for servers that misbehave on purpose.

:class:`HostileServer` accepts connections, each on its own thread, and hands
each to the test's ``script(conn, server)``. The helpers build what a script
sends: :func:`read_request` and :func:`upgrade` for the handshake,
:func:`frame` and :func:`frame_header` for server frames (unmasked),
:func:`read_frames` for what the client sent back.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
WAIT = 5.0

Script = Callable[[socket.socket, "HostileServer"], None]


def read_request(conn: socket.socket) -> bytes:
    """The client's handshake request, up to the blank line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def accept_key(request: bytes) -> bytes:
    """The Sec-WebSocket-Accept value for ``request``'s key."""
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def upgrade_answer(request: bytes, extra: bytes = b"") -> bytes:
    """A valid 101 answer to ``request``, with ``extra`` header lines (each ending in CRLF) added."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(request) + b"\r\n" + extra + b"\r\n"
    )


def upgrade(conn: socket.socket) -> bytes:
    """Read the request and accept it; returns the request."""
    request = read_request(conn)
    conn.sendall(upgrade_answer(request))
    return request


def frame_header(opcode: int, length: int, fin: bool = True) -> bytes:
    """An unmasked frame header announcing ``length`` bytes of payload."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A whole unmasked server frame."""
    return frame_header(opcode, len(payload), fin) + payload


def read_frames(conn: socket.socket, timeout: float = WAIT) -> list[tuple[int, bytes]]:
    """Every masked client frame until the client closes or ``timeout`` passes: ``(opcode, payload)`` each."""
    conn.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    frames = []
    while len(data) >= 2:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        at = 2
        if size == 126:
            size, at = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, at = struct.unpack("!Q", data[2:10])[0], 10
        key, body = data[at : at + 4], data[at + 4 : at + 4 + size]
        if len(body) < size:
            break
        frames.append((opcode, bytes(b ^ key[i % 4] for i, b in enumerate(body))))
        data = data[at + 4 + size :]
    return frames


class HostileServer:
    """A TCP listener on 127.0.0.1 running ``script(conn, server)`` for each connection on its own thread.

    ``stop`` is set on exit so that scripts which hold a connection can return;
    ``notes`` is free for scripts to record what they saw.
    """

    def __init__(self, script: Script) -> None:
        self._script = script
        self.accepted = 0
        self.stop = threading.Event()
        self.notes: list[Any] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stt/websocket"

    def __enter__(self) -> HostileServer:
        thread = threading.Thread(target=self._accept_loop, name="hostile-listener", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(WAIT)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(conn,), name="hostile-conn", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(WAIT)
        try:
            self._script(conn, self)
        except OSError:
            pass
        finally:
            conn.close()
