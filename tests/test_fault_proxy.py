"""Tests of the fault-injecting proxy (tests/fault_proxy.py) with plain sockets and one real WebSocket client.

Timing assertions are lower bounds only: a fault must cost at least its delay.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import websocket
from fault_proxy import FaultProxy, Faults

from cartesia_sync.testing import FakeCartesia

WAIT = 5.0
QUERY = "?model=ink-whisper&encoding=pcm_s16le&sample_rate=16000"


def proxy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fault-proxy-")]


@pytest.fixture(autouse=True)
def no_proxy_thread_left() -> Iterator[None]:
    """Every test stops its proxies: no fault-proxy-* thread survives it."""
    yield
    assert not proxy_threads(), f"fault proxy threads survived the test: {proxy_threads()}"


class TcpServer:
    """A loopback TCP server: each connection echoes (or just records) what it receives.

    ``received[i]`` holds connection i's bytes and ``recv_sizes[i]`` the size of each
    ``recv``; ``eof[i]`` is set on a clean EOF, ``errors[i]`` holds a socket error.
    """

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.received: list[bytearray] = []
        self.recv_sizes: list[list[int]] = []
        self.eof: list[threading.Event] = []
        self.errors: list[OSError | None] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._accept, name="test-tcp-accept", daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(0.05)
            self.conns.append(conn)
            self.received.append(bytearray())
            self.recv_sizes.append([])
            self.errors.append(None)
            self.eof.append(threading.Event())  # last: wait_conn() watches it
            thread = threading.Thread(
                target=self._serve, args=(len(self.conns) - 1,), name="test-tcp-conn", daemon=True
            )
            self.threads.append(thread)
            thread.start()

    def _serve(self, i: int) -> None:
        conn = self.conns[i]
        try:
            while not self.stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    self.eof[i].set()
                    return
                self.received[i] += data
                self.recv_sizes[i].append(len(data))
                if self.echo:
                    conn.sendall(data)
        except OSError as exc:
            self.errors[i] = exc
        finally:
            conn.close()

    def wait_conn(self, i: int) -> bool:
        """Wait until connection ``i`` was accepted."""
        return wait_for(lambda: len(self.eof) > i)

    def wait_received(self, i: int, n: int, timeout: float = WAIT) -> bytes:
        wait_for(lambda: len(self.received) > i and len(self.received[i]) >= n, timeout)
        return bytes(self.received[i]) if len(self.received) > i else b""

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(WAIT)
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[TcpServer]:
    server = TcpServer(echo=True)
    yield server
    server.stop()


@pytest.fixture
def sink() -> Iterator[TcpServer]:
    server = TcpServer(echo=False)
    yield server
    server.stop()


def connect(proxy: FaultProxy, timeout: float = WAIT, sndbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", proxy.port))
    return sock


def connection(proxy: FaultProxy, index: int):
    assert proxy.wait_connections(index + 1)
    return proxy.connections[index]


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def connect_and_read(proxy: FaultProxy) -> OSError | None:
    """Connect and read to the end: the socket error (a reset may already fail the connect), None on EOF."""
    try:
        with connect(proxy) as client:
            return recv_until_end(client)[1]
    except OSError as exc:
        return exc


def recv_until_end(sock: socket.socket) -> tuple:
    """Read until EOF or a socket error: (bytes, None) on EOF, (bytes, error) on an error."""
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError as exc:
            return bytes(data), exc
        if not chunk:
            return bytes(data), None
        data += chunk


def fill_until_blocked(sock: socket.socket, cap: int = 64 << 20, timeout: float = 0.3) -> int | None:
    """Send until one send makes no progress for ``timeout`` s; the bytes sent, or None if ``cap`` went through."""
    sock.settimeout(timeout)
    chunk, sent = b"x" * 65536, 0
    while sent < cap:
        try:
            sent += sock.send(chunk)
        except TimeoutError:
            return sent
    return None


# -- forwarding, latency, bandwidth, slicing ---------------------------------------------------


def test_forwards_both_ways_byte_exact(echo):
    payload = bytes(range(256)) * 4000  # 1 MB, every byte value
    with FaultProxy(echo.port) as proxy, connect(proxy) as client:
        sender = threading.Thread(target=client.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(client, len(payload)) == payload
        sender.join(WAIT)
        assert bytes(echo.received[0]) == payload
        conn = connection(proxy, 0)
        assert wait_for(lambda: conn.bytes_down == len(payload))  # counted just after the write returns
        assert (conn.bytes_up, conn.state) == (len(payload), "open")
        assert proxy.accepted == 1 and proxy.url() == f"ws://127.0.0.1:{proxy.port}/stt/websocket"
        client.shutdown(socket.SHUT_WR)  # the FIN passes through, and the echo server's comes back
        assert client.recv(1) == b""
        assert conn.ended.wait(WAIT) and conn.state == "closed"


def test_latency_delays_each_direction(echo):
    with FaultProxy(echo.port, faults=Faults(latency=0.15)) as proxy, connect(proxy) as client:
        start = time.monotonic()
        client.sendall(b"ping")
        assert recv_exactly(client, 4) == b"ping"
        assert time.monotonic() - start >= 0.3  # 0.15 s up, 0.15 s down


def test_jitter_keeps_byte_order(echo):
    messages = [f"<{i}>".encode() for i in range(40)]
    with FaultProxy(echo.port, faults=Faults(latency=0.02, jitter=0.02)) as proxy, connect(proxy) as client:
        for message in messages:
            client.sendall(message)
            time.sleep(0.002)
        expected = b"".join(messages)
        assert recv_exactly(client, len(expected)) == expected


@pytest.mark.parametrize("direction", ["up", "down"])
def test_bandwidth_limits_each_direction(sink, direction):
    rate, size = 200_000, 100_000
    with FaultProxy(sink.port, faults=Faults(bandwidth=rate)) as proxy, connect(proxy) as client:
        assert sink.wait_conn(0)
        start = time.monotonic()
        if direction == "up":
            client.sendall(b"u" * size)
            assert len(sink.wait_received(0, size)) == size
        else:
            sink.conns[0].sendall(b"d" * size)
            assert recv_exactly(client, size) == b"d" * size
        # a 1/20 s burst may go at once; the rest at the rate
        assert time.monotonic() - start >= (size - rate / 20) / rate - 0.01


def test_slices_writes(sink):
    payload = bytes(range(250)) * 2  # 500 bytes: 5 slices of 100
    with FaultProxy(sink.port, faults=Faults(slice_size=100, slice_delay=0.05)) as proxy, connect(proxy) as client:
        start = time.monotonic()
        client.sendall(payload)
        assert sink.wait_received(0, len(payload)) == payload
        assert time.monotonic() - start >= 4 * 0.05  # four pauses: it went out in five writes
        assert len(sink.recv_sizes[0]) >= 2


# -- reset, close, black hole --------------------------------------------------------------------


def test_reset_after_up_gives_connection_reset(echo):
    with FaultProxy(echo.port, faults=Faults(reset_after_up=10)) as proxy, connect(proxy) as client:
        client.sendall(b"a" * 100)
        data, error = recv_until_end(client)
        assert isinstance(error, ConnectionResetError), (data, error)
        conn = connection(proxy, 0)
        assert conn.ended.wait(WAIT)
        assert (conn.state, conn.bytes_up) == ("reset", 10)
        assert echo.wait_conn(0) and len(echo.received[0]) <= 10


def test_reset_after_down_cuts_the_download(sink):
    with FaultProxy(sink.port, faults=Faults(reset_after_down=50)) as proxy, connect(proxy) as client:
        assert sink.wait_conn(0)
        sink.conns[0].sendall(b"d" * 100)
        data, error = recv_until_end(client)
        assert isinstance(error, ConnectionResetError) and len(data) <= 50
        assert connection(proxy, 0).ended.wait(WAIT) and connection(proxy, 0).bytes_down == 50


def test_close_after_up_forwards_exactly_n_then_fin(sink):
    payload = bytes(range(100))
    with FaultProxy(sink.port, faults=Faults(close_after_up=40)) as proxy, connect(proxy) as client:
        client.sendall(payload)
        assert client.recv(10) == b""  # FIN, not a reset
        assert sink.wait_conn(0) and sink.eof[0].wait(WAIT) and sink.errors[0] is None
        assert bytes(sink.received[0]) == payload[:40]
        client.close()
        conn = connection(proxy, 0)
        assert conn.ended.wait(WAIT) and (conn.state, conn.bytes_up) == ("closed", 40)


def test_close_after_down_forwards_exactly_n_then_fin(sink):
    payload = bytes(range(100))
    with FaultProxy(sink.port, faults=Faults(close_after_down=30)) as proxy, connect(proxy) as client:
        assert sink.wait_conn(0)
        sink.conns[0].sendall(payload)
        assert recv_until_end(client) == (payload[:30], None)
        assert sink.eof[0].wait(WAIT)


def test_blackhole_drop_reads_and_discards(sink):
    with (
        FaultProxy(sink.port, faults=Faults(blackhole_after_up=10)) as proxy,
        connect(proxy, timeout=10, sndbuf=32768) as client,
    ):
        client.sendall(b"0123456789")
        assert sink.wait_received(0, 10) == b"0123456789"
        client.sendall(b"y" * (4 << 20))  # far more than the buffers hold: the proxy keeps reading
        sink.conns[0].sendall(b"down")
        time.sleep(0.2)
        assert bytes(sink.received[0]) == b"0123456789" and not sink.eof[0].is_set()
        client.settimeout(0.3)
        with pytest.raises(socket.timeout):
            client.recv(10)
        conn = connection(proxy, 0)
        assert (conn.state, conn.bytes_up, conn.bytes_down) == ("blackholed", 10, 0)
        assert not conn.ended.is_set()


def test_blackhole_stall_blocks_both_senders(sink):
    with (
        FaultProxy(sink.port, faults=Faults(blackhole_after_up=10, blackhole_mode="stall")) as proxy,
        connect(proxy, sndbuf=32768) as client,
    ):
        client.sendall(b"0123456789")
        assert sink.wait_received(0, 10) == b"0123456789"
        assert fill_until_blocked(client) is not None  # a drop would let all 64 MB through
        client.settimeout(0.3)
        with pytest.raises(socket.timeout):
            client.sendall(b"z" * (8 << 20))
        assert fill_until_blocked(sink.conns[0]) is not None
        assert bytes(sink.received[0]) == b"0123456789"
        assert connection(proxy, 0).state == "blackholed"


def test_refuse_resets_without_contacting_the_target(echo):
    with FaultProxy(echo.port) as proxy:
        assert not proxy.wait_connections(1, timeout=0.05)
        proxy.refuse = True
        assert isinstance(connect_and_read(proxy), ConnectionResetError)
        assert proxy.wait_connections(1) and connection(proxy, 0).state == "reset"
        proxy.refuse = False
        with connect(proxy) as client:
            client.sendall(b"hi")
            assert recv_exactly(client, 2) == b"hi"
        assert len(echo.conns) == 1 and proxy.wait_connections(2)


def test_target_down_resets_the_client():
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with FaultProxy(port) as proxy:
        assert isinstance(connect_and_read(proxy), ConnectionResetError)
        assert connection(proxy, 0).state == "reset"


def test_faults_per_connection_index(echo):
    faults = lambda i: Faults(reset_after_up=5) if i == 0 else Faults()  # noqa: E731
    with FaultProxy(echo.port, faults=faults) as proxy:
        with connect(proxy) as first:
            first.sendall(b"hello world")
            assert isinstance(recv_until_end(first)[1], ConnectionResetError)
        with connect(proxy) as second:
            second.sendall(b"hello world")
            assert recv_exactly(second, 11) == b"hello world"
        assert [c.state for c in proxy.connections] == ["reset", "open"]


# -- live control ------------------------------------------------------------------------------------


def test_reset_all_resets_every_live_connection(echo):
    with FaultProxy(echo.port) as proxy, connect(proxy) as a, connect(proxy) as b:
        for client in (a, b):
            client.sendall(b"x")
            assert client.recv(1) == b"x"
        proxy.reset_all()
        for client in (a, b):
            assert isinstance(recv_until_end(client)[1], ConnectionResetError)
        assert all(c.ended.wait(WAIT) and c.state == "reset" for c in proxy.connections)


def test_blackhole_all_then_heal(echo):
    with FaultProxy(echo.port, faults=Faults(latency=0.01)) as proxy, connect(proxy) as a:
        a.sendall(b"x")
        assert a.recv(1) == b"x"
        proxy.blackhole_all()
        a.sendall(b"y")
        a.settimeout(0.3)
        with pytest.raises(socket.timeout):
            a.recv(1)
        assert connection(proxy, 0).state == "blackholed"
        proxy.set_faults(Faults(close_after_up=3))
        with connect(proxy) as b:
            b.sendall(b"abcdef")
            assert recv_until_end(b) == (b"", None)  # FIN after 3 bytes up; the echo never comes back
        proxy.heal()
        with connect(proxy) as c:
            c.sendall(b"healed")
            assert recv_exactly(c, 6) == b"healed"
        assert [conn.faults for conn in proxy.connections] == [Faults(latency=0.01), Faults(close_after_up=3), Faults()]
        assert echo.wait_received(1, 3) == b"abc"


def test_stop_closes_everything_and_joins_all_threads(echo):
    proxy = FaultProxy(
        echo.port,
        faults=lambda i: Faults(latency=0.5) if i == 0 else Faults(blackhole_after_up=0, blackhole_mode="stall"),
    )
    proxy.start()
    with connect(proxy) as slow, connect(proxy) as stalled:
        slow.sendall(b"in flight")
        stalled.sendall(b"stuck")
        assert wait_for(lambda: len(proxy_threads()) == 1 + 2 * 4)  # accept, plus 4 per connection
        proxy.stop()
        assert not proxy_threads()
        assert all(c.ended.is_set() for c in proxy.connections)
        for client in (slow, stalled):
            assert recv_until_end(client)[0] == b""
    proxy.stop()  # idempotent


def test_rejects_non_loopback_targets_and_bad_faults():
    for host in ("10.0.0.1", "example.com", "0.0.0.0"):
        with pytest.raises(ValueError):
            FaultProxy(80, target_host=host)
    FaultProxy(80, target_host="localhost")
    FaultProxy(80, target_host="::1")
    with pytest.raises(ValueError):
        Faults(blackhole_mode="sideways")
    with pytest.raises(ValueError):
        Faults(latency=-1)


# -- a real WebSocket conversation through the proxy -------------------------------------------------


def transcribe_over(url: str, audio: bytes, chunk: int = 3200) -> list[dict]:
    ws = websocket.create_connection(url + QUERY, timeout=WAIT)
    try:
        for i in range(0, len(audio), chunk):
            ws.send_binary(audio[i : i + chunk])
        ws.send("done")
        messages: list[dict] = []
        while not messages or messages[-1].get("type") != "done":
            messages.append(json.loads(ws.recv()))
        return messages
    finally:
        ws.close()


def test_websocket_round_trip_through_sliced_delayed_proxy():
    audio = bytes(range(256)) * 125  # 32000 bytes: one second of 16 kHz s16le
    with FakeCartesia() as fake, FaultProxy(fake.port, faults=Faults(latency=0.01, slice_size=7)) as proxy:
        messages = transcribe_over(proxy.url(), audio)
        assert messages[-1]["type"] == "done"
        texts = "".join(m.get("text", "") for m in messages if m.get("type") == "transcript" and m.get("is_final"))
        assert "32000b" in texts
        record = fake.wait_finished()
        assert record.close_code == 1000
        assert connection(proxy, 0).bytes_up > len(audio)


def test_websocket_reset_on_first_connection_only():
    audio = b"\x00\x01" * 16000
    faults = lambda i: Faults(reset_after_up=20000) if i == 0 else Faults()  # noqa: E731
    with FakeCartesia() as fake, FaultProxy(fake.port, faults=faults) as proxy:
        with pytest.raises((OSError, websocket.WebSocketException)):
            transcribe_over(proxy.url(), audio)
        assert transcribe_over(proxy.url(), audio)[-1]["type"] == "done"
        assert [c.state for c in proxy.connections][0] == "reset"
        assert connection(proxy, 0).bytes_up == 20000
        fake.wait_finished(0)
