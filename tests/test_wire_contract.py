"""What cartesia_sync._wire relies on in websocket-client, pinned against the real library over loopback.

The wire seam writes frames itself under websocket-client's send lock,
overrides the two frames websocket-client writes on its own (the pong and the
close reply), has websocket-client open the socket (TCP, proxy, TLS) but does
the HTTP handshake itself, and reads frames through its own subclasses of
websocket-client's frame buffer and fragment joiner. If a websocket-client release changes any of this, these tests
say which assumption broke; CI runs them against the lowest and the highest
version the package allows.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest
import websocket
from hostile_server import read_request, upgrade_answer

from cartesia_sync._frames import OPCODE_CLOSE, OPCODE_PING, OPCODE_TEXT


def server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server frame."""
    size = len(payload)
    header = bytes((128 | opcode, size)) if size < 126 else struct.pack("!BBH", 128 | opcode, 126, size)
    return header + payload


def read_client_frame(conn: socket.socket) -> tuple:
    """One masked client frame: (opcode, payload)."""
    head = _exactly(conn, 2)
    opcode, size = head[0] & 0x0F, head[1] & 0x7F
    if size == 126:
        size = struct.unpack("!H", _exactly(conn, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", _exactly(conn, 8))[0]
    key = _exactly(conn, 4)
    data = _exactly(conn, size)
    return opcode, bytes(b ^ key[i % 4] for i, b in enumerate(data))


def _exactly(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class RawServer:
    """A one-connection WebSocket server on loopback whose every byte the test scripts."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.received: list[tuple] = []
        self._script = script
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.sendall(upgrade_answer(read_request(conn)))
            with contextlib.suppress(ConnectionError, OSError):
                self._script(conn)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(5)


class Recording(websocket.WebSocket):
    """websocket-client's WebSocket, noting the calls the wire seam overrides."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple] = []

    def pong(self, payload=""):
        self.calls.append(("pong", payload))
        super().pong(payload)

    def send_close(self, *args, **kwargs):
        self.calls.append(("send_close", args, kwargs))
        super().send_close(*args, **kwargs)


def connect(port: int, cls=Recording) -> websocket.WebSocket:
    ws = cls(enable_multithread=True, skip_utf8_validation=True)
    ws.connect(f"ws://127.0.0.1:{port}/stt/websocket", timeout=5, suppress_origin=True, redirect_limit=0)
    return ws


def test_a_connected_socket_has_a_send_lock_and_a_socket():
    server = RawServer(lambda conn: conn.recv(1))
    try:
        ws = connect(server.port)
        assert isinstance(ws.sock, socket.socket)
        with ws.lock:  # the lock websocket-client holds while it writes (pong, close reply)
            pass
        assert ws.lock.acquire(timeout=1)
        ws.lock.release()
        ws.shutdown()
        assert ws.sock is None
    finally:
        server.close()


def test_a_ping_is_answered_through_pong_with_its_payload():
    def script(conn):
        conn.sendall(server_frame(OPCODE_PING, b"are you there"))
        server.received.append(read_client_frame(conn))

    server = RawServer(script)
    try:
        ws = connect(server.port)
        opcode, frame = ws.recv_data_frame(True)
        assert opcode == OPCODE_PING and frame.data == b"are you there"
        assert ws.calls == [("pong", b"are you there")]
        deadline = time.monotonic() + 5
        while not server.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.received == [(0xA, b"are you there")]
        ws.shutdown()
    finally:
        server.close()


def test_a_close_frame_is_echoed_through_send_close_and_returned():
    def script(conn):
        conn.sendall(server_frame(OPCODE_CLOSE, struct.pack("!H", 1000) + b"bye"))
        server.received.append(read_client_frame(conn))

    server = RawServer(script)
    try:
        ws = connect(server.port)
        opcode, frame = ws.recv_data_frame(True)
        assert opcode == OPCODE_CLOSE and frame.data == struct.pack("!H", 1000) + b"bye"
        assert [call[0] for call in ws.calls] == ["send_close"]
        deadline = time.monotonic() + 5
        while not server.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.received and server.received[0][0] == OPCODE_CLOSE
        ws.shutdown()
    finally:
        server.close()


def test_a_frame_cut_by_a_read_timeout_is_resumed_by_the_next_read():
    whole = server_frame(OPCODE_TEXT, b'{"type":"transcript","text":"hello"}')

    def script(conn):
        conn.sendall(whole[:7])
        time.sleep(0.6)  # longer than the read timeout below
        conn.sendall(whole[7:])
        conn.recv(1)

    server = RawServer(script)
    try:
        ws = connect(server.port)
        ws.settimeout(0.2)
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv_data_frame(True)
        opcode: int | None = None
        deadline = time.monotonic() + 5
        while opcode is None and time.monotonic() < deadline:
            try:
                opcode, frame = ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                continue
        assert opcode == OPCODE_TEXT and frame.data == b'{"type":"transcript","text":"hello"}'
        ws.shutdown()
    finally:
        server.close()


# -- what _wire and _bounded_frames take from websocket-client's internals -------------------------


def test_a_given_socket_is_used_as_it_is_and_the_environment_proxy_is_skipped(monkeypatch):
    """_wire opens plaintext loopback sockets itself and has websocket-client open the others."""
    from websocket._http import connect as open_socket
    from websocket._http import proxy_info

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # would refuse, if it were used
    given = socket.socket()
    try:
        ws = websocket.WebSocket()
        ws.sock_opt.timeout = 1.0
        sock, (host, port, resource) = open_socket("ws://127.0.0.1:1/stt?x=1", ws.sock_opt, proxy_info(), given)
        assert sock is given
        assert (host, port, resource) == ("127.0.0.1", 1, "/stt?x=1")
    finally:
        given.close()


def test_the_frame_reader_reads_the_length_through_recv_length_before_the_payload():
    """_bounded_frames checks a frame's announced length in recv_length, before any payload is read."""
    from websocket._abnf import continuous_frame, frame_buffer

    payload = b'{"type":"done"}' * 10
    data = bytearray(server_frame(OPCODE_TEXT, payload))
    taken: list[int] = []

    def recv(size: int) -> bytes:
        chunk = bytes(data[:size])
        del data[:size]
        taken.append(len(chunk))
        return chunk

    seen: list[tuple] = []

    class Watching(frame_buffer):
        def recv_length(self) -> None:
            super().recv_length()
            seen.append((self.header[4], self.length, sum(taken)))

    reader = Watching(recv, True)
    got = reader.recv_frame()
    assert got.data == payload
    assert seen == [(OPCODE_TEXT, len(payload), 4)]  # opcode, announced length, only the header read so far

    fragments = continuous_frame(False, True)
    assert fragments.cont_data is None and fragments.recving_frames is None


def test_a_websocket_reads_through_its_frame_buffer_and_cont_frame_attributes():
    """_StreamSocket swaps in its own frame_buffer and cont_frame after websocket-client's __init__."""
    ws = websocket.WebSocket(skip_utf8_validation=True)
    assert ws.frame_buffer.recv == ws._recv
    assert hasattr(ws, "cont_frame")
    assert "self.frame_buffer.recv_frame()" in _source(websocket.WebSocket.recv_frame)
    assert "self.cont_frame" in _source(websocket.WebSocket.recv_data_frame)


def _source(function: Callable) -> str:
    import inspect

    return inspect.getsource(function)


def test_the_environment_proxy_is_found_by_get_proxy_info(monkeypatch):
    """_wire lets websocket-client open the connection only when an environment proxy applies."""
    from websocket._url import get_proxy_info

    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert get_proxy_info("api.example.com", True)[0] is None
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert get_proxy_info("api.example.com", True)[:2] == ("proxy.example", 3128)
    monkeypatch.setenv("no_proxy", "api.example.com")
    assert get_proxy_info("api.example.com", True)[0] is None
