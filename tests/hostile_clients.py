"""Raw-socket WebSocket clients that misbehave on purpose, for the local server's hostile-client tests.

Nothing here uses a WebSocket library: the tests need clients that send what
no library would (duplicate headers, bytes outside ASCII, frames larger than
allowed, no close reply) and that stop reading when told to. Every socket has
a timeout, so a test cannot hang on one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x1, 0x2, 0x8, 0x9
STT_QUERY = "/stt/websocket?model=ink-whisper&encoding=pcm_s16le&sample_rate=16000"


@dataclass
class HttpAnswer:
    """The server's answer to a handshake."""

    status: int  # 0: the server closed the socket without an answer
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(path: str = STT_QUERY, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """A WebSocket upgrade request with ``headers`` (raw bytes, repeated names allowed) added."""
    key = base64.b64encode(os.urandom(16))
    lines = [
        b"GET " + path.encode() + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
    ]
    lines += [name + b": " + value for name, value in headers or []]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that stops reading fills up quickly
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a command goes out at once, not after an ACK
    return sock


def read_answer(sock: socket.socket) -> tuple[HttpAnswer, bytes]:
    """Read an HTTP response head (and a body of Content-Length); returns it and any bytes after it."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    if b"\r\n\r\n" not in data:
        return HttpAnswer(0), b""
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0")) if status != 101 else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return HttpAnswer(status, headers, rest[:length]), rest[length:]


def handshake(
    port: int, headers: list[tuple[bytes, bytes]] | None = None, path: str = STT_QUERY, timeout: float = 5.0
) -> tuple[HttpAnswer, socket.socket]:
    """Send an upgrade request; returns the answer and the socket (open: the caller closes it)."""
    sock = connect(port, timeout)
    sock.sendall(request_bytes(path, headers))
    answer, _ = read_answer(sock)
    return answer, sock


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    """One client frame (masked, as clients must, unless told otherwise)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    if payload:
        import numpy as np

        data = np.frombuffer(payload, dtype=np.uint8)
        mask = np.resize(np.frombuffer(key, dtype=np.uint8), len(data))
        payload = (data ^ mask).tobytes()
    return head + key + payload


def text(message: str) -> bytes:
    return frame(OP_TEXT, message.encode())


def audio(data: bytes) -> bytes:
    return frame(OP_BINARY, data)


class FrameReader:
    """Reads server frames (unmasked) from a socket."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self.buffer = leftover

    def _need(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the socket")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def next(self) -> tuple[int, bytes]:
        first, second = self._need(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        return first & 0x0F, self._need(n)

    def next_json(self) -> dict[str, Any]:
        """The next text message as JSON (skipping pings); raises EOFError at a close frame."""
        while True:
            opcode, payload = self.next()
            if opcode == OP_TEXT:
                return json.loads(payload)
            if opcode == OP_CLOSE:
                raise EOFError(f"close frame {close_code(payload)}")

    def until_close(self, timeout: float) -> tuple[list[dict[str, Any]], int | None]:
        """Every JSON message until the server's close frame; returns them and the close code."""
        self.sock.settimeout(timeout)
        messages = []
        while True:
            opcode, payload = self.next()
            if opcode == OP_TEXT:
                messages.append(json.loads(payload))
            elif opcode == OP_CLOSE:
                return messages, close_code(payload)


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def open_session(port: int, path: str = STT_QUERY, timeout: float = 5.0) -> tuple[socket.socket, FrameReader]:
    """A completed handshake: the socket and a reader for the server's frames."""
    sock = connect(port, timeout)
    sock.sendall(request_bytes(path))
    answer, rest = read_answer(sock)
    assert answer.status == 101, f"handshake answered {answer.status}: {answer.body[:200]!r}"
    return sock, FrameReader(sock, rest)


def finalize_latency(sock: socket.socket, reader: FrameReader, audio_bytes: bytes) -> float:
    """Send audio then ``finalize``; seconds until ``flush_done`` arrives."""
    sock.sendall(audio(audio_bytes))
    started = time.monotonic()
    sock.sendall(text("finalize"))
    while reader.next_json().get("type") != "flush_done":
        pass
    return time.monotonic() - started


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True when the server ends the connection (EOF, reset, or a close frame's TCP end) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


# -- a server in its own process, for memory and Ctrl-C ----------------------------------------------------------

SERVER_SCRIPT = """
import json, sys
from cartesia_sync.local import LocalServer
options = json.loads(sys.argv[1])
engine = options.pop("engine", "scripted")
server = LocalServer(engine, load_entrypoints=False, **options)
server.start()
print(server.port, flush=True)
try:
    sys.stdin.read()  # runs until the test closes stdin
finally:
    server.stop()
"""


class ServerProcess:
    """A :class:`LocalServer` in a child process (``python -c``), stopped by closing its stdin."""

    def __init__(self, **options: Any) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            self.process.kill()
            raise RuntimeError("the server process did not start")
        self.port = int(line)
        self.pid = self.process.pid

    def stop(self, timeout: float = 15.0) -> int:
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process.poll() is None:
            self.stop()


SERVING = re.compile(r"serving ws://127\.0\.0\.1:(\d+)/")
