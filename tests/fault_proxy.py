"""A loopback-only TCP proxy that injects network faults, for reliability tests (stdlib, threads).

toxiproxy is not installable here (see the design notes, section C3), so this
module plays its part: it sits between the client and a local server, forwards
raw TCP bytes (it knows nothing about WebSocket) and applies toxiproxy-like
"toxics" to each connection: latency with jitter, bandwidth, slicing, a reset
(RST) or a clean close (FIN) after N bytes, and a black hole (half-open peer)::

    with FakeCartesia() as fake, FaultProxy(fake.port, faults=lambda i: Faults(reset_after_up=60000)
                                            if i == 0 else Faults()) as proxy:
        client = cartesia_sync.Client(url=proxy.url())   # the 1st connection is reset, the 2nd is clean

Each connection has four threads, a reader and a writer per direction, joined
by a small bounded queue: the reader timestamps each chunk (arrival + latency)
and the writer sleeps until then, so latency keeps byte order without
limiting throughput, and backpressure still reaches the sender. Every blocking
call wakes every ``POLL`` seconds to look at the state, so ``stop()`` always
finishes. Threads are named ``fault-proxy-*``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import queue
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Faults", "FaultProxy", "ProxiedConnection"]

logger = logging.getLogger(__name__)

POLL = 0.05  # how often every blocking call wakes up to look at the state
CHUNK = 65536  # the largest single read
QUEUE_CHUNKS = 16  # chunks held per direction between reader and writer: at most 1 MiB
RCVBUF = 4096  # small kernel receive buffers, so a "stall" backs up into the sender quickly
CONNECT_TIMEOUT = 2.0
DRAIN_TIMEOUT = 2.0  # after an injected FIN, how long to wait for the peers' FIN before closing
JOIN_TIMEOUT = 5.0
_LINGER_RST = struct.pack("ii", 1, 0)
_Item = tuple[float, bytes] | None  # (when to forward, data); None ends the stream


@dataclass(frozen=True)
class Faults:
    """What the proxy does to one connection (toxiproxy's toxics). Immutable, so one value can serve many.

    Byte counts are of bytes forwarded on that connection, HTTP handshake included. The first
    threshold reached in a direction ends forwarding ("reset" wins ties, then "close").
    """

    latency: float = 0.0  # seconds added before forwarding each chunk, both directions; order kept
    jitter: float = 0.0  # +- uniform random extra latency (never a negative total)
    bandwidth: int | None = None  # bytes per second per direction (token bucket); None = unlimited
    slice_size: int | None = None  # forward in writes of at most this many bytes (exercises frame reassembly)
    reset_after_up: int | None = None  # after this many client->server bytes: RST both sockets
    reset_after_down: int | None = None  # same, counting server->client bytes
    close_after_up: int | None = None  # forward exactly this many client->server bytes, then FIN both sides
    close_after_down: int | None = None
    blackhole_after_up: int | None = None  # then forward nothing either way, sockets kept open (half-open peer)
    blackhole_mode: str = "drop"  # "drop": read both sides and discard; "stall": stop reading (senders block)
    slice_delay: float = 0.0  # seconds between the slices of one chunk (toxiproxy slicer's delay)

    def __post_init__(self) -> None:
        if self.blackhole_mode not in ("drop", "stall"):
            raise ValueError(f"blackhole_mode must be 'drop' or 'stall', not {self.blackhole_mode!r}")
        if min(self.latency, self.jitter, self.slice_delay) < 0:
            raise ValueError("latency, jitter and slice_delay must not be negative")
        if any(v is not None and v <= 0 for v in (self.bandwidth, self.slice_size)):
            raise ValueError("bandwidth and slice_size must be positive")
        if any(
            v is not None and v < 0
            for v in (
                self.reset_after_up,
                self.reset_after_down,
                self.close_after_up,
                self.close_after_down,
                self.blackhole_after_up,
            )
        ):
            raise ValueError("byte thresholds must not be negative")

    def limit(self, up: bool) -> tuple[int | None, str]:
        """The first byte threshold in one direction and its action ("reset" wins ties, then "close")."""
        if up:
            found = [
                (self.reset_after_up, "reset"),
                (self.close_after_up, "close"),
                (self.blackhole_after_up, "blackhole"),
            ]
        else:
            found = [(self.reset_after_down, "reset"), (self.close_after_down, "close")]
        found = [(n, action) for n, action in found if n is not None]
        return min(found, key=lambda pair: pair[0]) if found else (None, "")


class _Bucket:
    """Token bucket: ``rate`` bytes per second, in bursts of at most 1/20 s worth."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.burst = max(1, rate // 20)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def take(self, n: int) -> float:
        """Debit ``n`` bytes; return the monotonic time at which they may go out."""
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate) - n
        self.stamp = now
        return now + max(0.0, -self.tokens / self.rate)


def _rst(sock: socket.socket) -> None:
    """Close with SO_LINGER 0 so the kernel sends RST (the peer sees ECONNRESET), not FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        sock.shutdown(socket.SHUT_RD)  # wakes a thread polling this socket, so the close takes effect now
    except OSError:
        pass
    sock.close()


class ProxiedConnection:
    """One accepted client socket and its socket to the target, pumped by a reader and a writer per direction.

    ``state``: "open", then "reset" (RST sent), "closed" (FIN sent, or both sides ended) or
    "blackholed" (nothing forwarded any more, sockets kept open). ``ended`` is set once the
    four threads are done and both sockets are closed.
    """

    def __init__(
        self, proxy: FaultProxy, index: int, faults: Faults, client: socket.socket, server: socket.socket | None
    ) -> None:
        self.index, self.faults = index, faults
        self.bytes_up = 0
        self.bytes_down = 0
        self.state = "open"
        self.ended = threading.Event()
        self._proxy, self._client, self._server = proxy, client, server
        self._lock = threading.Lock()
        self._changed = threading.Event()  # set once the state leaves "open": wakes sleeping writers
        self._mode = faults.blackhole_mode
        self._drain_until = 0.0
        self._live = 0
        self._closed = False
        self._down_stopped = False  # close_after_up reached: nothing more goes to the client

    def __repr__(self) -> str:
        return f"<ProxiedConnection {self.index} {self.state} up={self.bytes_up} down={self.bytes_down}>"

    # -- state changes (idempotent, callable from any thread) ---------------------------

    def reset(self) -> None:
        """RST both sockets now."""
        with self._lock:
            if self._closed:
                return
            self._closed, self.state = True, "reset"
        self._changed.set()
        for sock in self._sockets():
            _rst(sock)

    def close(self) -> None:
        """Send FIN to both peers, forward nothing more; the sockets close once both peers finish."""
        with self._lock:
            if self.state != "open":
                return
            self.state, self._drain_until = "closed", time.monotonic() + DRAIN_TIMEOUT
        self._changed.set()
        for sock in self._sockets():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

    def blackhole(self, mode: str = "drop") -> None:
        """Forward nothing more in either direction but keep both sockets open (a half-open peer)."""
        if mode not in ("drop", "stall"):
            raise ValueError(f"mode must be 'drop' or 'stall', not {mode!r}")
        with self._lock:
            if self.state != "open":
                return
            self.state, self._mode = "blackholed", mode
        self._changed.set()

    # -- the pumps --------------------------------------------------------------------------

    def _sockets(self) -> list[socket.socket]:
        return [s for s in (self._client, self._server) if s is not None]

    def _start(self) -> None:
        if self._server is None:  # refused, or the target is down: RST the client
            self.reset()
            self._finish()
            return
        up: queue.Queue[_Item] = queue.Queue(QUEUE_CHUNKS)
        down: queue.Queue[_Item] = queue.Queue(QUEUE_CHUNKS)
        pumps = [
            ("up-read", self._read, (self._client, up)),
            ("up-write", self._write, (up, self._server, True)),
            ("down-read", self._read, (self._server, down)),
            ("down-write", self._write, (down, self._client, False)),
        ]
        self._live = len(pumps)
        for name, fn, args in pumps:
            self._proxy._spawn(f"fault-proxy-{self._proxy.port}-c{self.index}-{name}", self._run, fn, *args)

    def _run(self, fn: Callable[..., None], *args: object) -> None:
        """Run one pump; a socket error while open is passed on to both peers as a reset, like a real path."""
        try:
            fn(*args)
        except OSError:
            if self.state == "open":
                self.reset()
        except Exception:
            logger.exception("fault proxy connection %d failed", self.index)
            self.reset()
        finally:
            with self._lock:
                self._live -= 1
                last = self._live == 0
            if last:
                self._finish()

    def _finish(self) -> None:
        """Close whatever is still open and set ``ended`` (the last pump, or ``stop()``)."""
        with self._lock:
            closing, self._closed = not self._closed, True
            if self.state == "open":
                self.state = "closed"
        if closing:
            for sock in self._sockets():
                sock.close()
        self._changed.set()
        self.ended.set()

    def _stopping(self) -> bool:
        return self._proxy._stopping.is_set()

    def _read(self, src: socket.socket, out: queue.Queue[_Item]) -> None:
        """Read ``src`` into ``out``, stamped with the time to forward each chunk; a None ends the stream."""
        try:
            while not self._stopping():
                state = self.state
                if state == "reset" or (state == "closed" and time.monotonic() > self._drain_until):
                    return
                if state == "blackholed" and self._mode == "stall":
                    self._proxy._stopping.wait(POLL)  # read nothing: the sender's buffers fill up
                    continue
                try:
                    data = src.recv(CHUNK)
                except TimeoutError:
                    continue
                if not data:
                    return
                if self.state == "open":  # otherwise drop it (a black hole, or draining after a FIN)
                    f = self.faults
                    delay = max(0.0, f.latency + random.uniform(-f.jitter, f.jitter)) if f.jitter else f.latency
                    self._put(out, (time.monotonic() + delay, data))
        finally:
            self._put(out, None)

    def _put(self, out: queue.Queue[_Item], item: tuple[float, bytes] | None) -> None:
        while not self._stopping() and self.state in ("open", "blackholed"):
            try:
                out.put(item, timeout=POLL)
                return
            except queue.Full:
                continue

    def _write(self, inq: queue.Queue[_Item], dst: socket.socket, up: bool) -> None:
        """Forward chunks from ``inq`` to ``dst`` at their time, with the faults; a None passes on the FIN."""
        limit, action = self.faults.limit(up)
        if limit == 0:
            self._trigger(action)
        bucket = _Bucket(self.faults.bandwidth) if self.faults.bandwidth else None
        while not self._stopping() and self.state not in ("reset", "closed"):
            try:
                item = inq.get(timeout=POLL)
            except queue.Empty:
                continue
            if item is None:
                if self.state == "open":
                    dst.shutdown(socket.SHUT_WR)
                return
            if self.state == "open" and self._sleep_until(item[0]):
                self._forward(item[1], dst, up, limit, action, bucket)

    def _forward(
        self, data: bytes, dst: socket.socket, up: bool, limit: int | None, action: str, bucket: _Bucket | None
    ) -> None:
        step = min(self.faults.slice_size or CHUNK, bucket.burst if bucket else CHUNK)
        view = memoryview(data)
        while view and self.state == "open":
            done = self.bytes_up if up else self.bytes_down
            piece = view[: step if limit is None else min(step, limit - done)]
            if bucket is not None and not self._sleep_until(bucket.take(len(piece))):
                return
            if up and action == "close" and limit is not None and done + len(piece) >= limit:
                # The last bytes before the FIN: from here nothing more goes down, or the peer's
                # answer to them (an echo) could slip through before the close takes effect.
                self._down_stopped = True
            self._send(dst, piece, up)
            view = view[len(piece) :]
            if limit is not None and (self.bytes_up if up else self.bytes_down) >= limit:
                self._trigger(action)
                return
            pause = self.faults.slice_delay
            if view and pause and not self._sleep_until(time.monotonic() + pause):
                return

    def _send(self, dst: socket.socket, piece: memoryview, up: bool) -> None:
        while piece and not self._stopping() and self.state == "open" and (up or not self._down_stopped):
            try:
                sent = dst.send(piece)
            except TimeoutError:
                continue
            piece = piece[sent:]
            if up:
                self.bytes_up += sent
            else:
                self.bytes_down += sent

    def _sleep_until(self, deadline: float) -> bool:
        """Wait until ``deadline``; False if the connection left "open" (or the proxy stops) meanwhile."""
        while not self._stopping() and self.state == "open":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self._changed.wait(min(remaining, POLL))
        return False

    def _trigger(self, action: str) -> None:
        if action == "reset":
            self.reset()
        elif action == "close":
            self.close()
        else:
            self.blackhole(self.faults.blackhole_mode)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 (ephemeral port) to a loopback target, injecting :class:`Faults`.

    :param faults: one :class:`Faults` for every connection, or a function from the 0-based
        index of the accepted connection to its faults.
    :raises ValueError: the target is not a loopback host.

    ``refuse = True`` accepts new connections and RSTs them at once, without contacting the
    target (they are counted and listed, in state "reset").
    """

    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", faults: Faults | Callable[[int], Faults] = Faults()
    ) -> None:
        if not _is_loopback(target_host):
            raise ValueError(f"the fault proxy only forwards to loopback, not {target_host!r}")
        self.target_host, self.target_port = target_host, target_port
        self.port = 0
        self.refuse = False
        self.accepted = 0
        self.connections: list[ProxiedConnection] = []
        self._faults = faults
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._accept_thread: threading.Thread | None = None

    def url(self, path: str = "/stt/websocket", scheme: str = "ws") -> str:
        """The URL to give the client instead of the server's, e.g. ``ws://127.0.0.1:PORT/stt/websocket``."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> FaultProxy:
        """Listen on 127.0.0.1 and accept connections on a ``fault-proxy-*`` thread."""
        if self._listener is not None:
            raise RuntimeError("the fault proxy is already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)  # accepted sockets inherit it
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(POLL)
        self._listener, self.port = listener, listener.getsockname()[1]
        self._accept_thread = self._spawn(f"fault-proxy-{self.port}-accept", self._accept_loop)
        return self

    def stop(self) -> None:
        """Stop accepting, close every socket and join every thread (each join with a timeout)."""
        if self._listener is None or self._stopping.is_set():
            return
        self._stopping.set()
        deadline = time.monotonic() + JOIN_TIMEOUT
        if self._accept_thread is not None:
            self._accept_thread.join(JOIN_TIMEOUT)  # first, so that no new connection starts threads
        self._listener.close()
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        for conn in list(self.connections):
            conn._finish()
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            logger.warning("fault proxy threads still alive after stop(): %s", alive)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_faults(self, faults: Faults | Callable[[int], Faults]) -> None:
        """Use these faults for connections accepted from now on."""
        self._faults = faults

    def heal(self) -> None:
        """New connections get no faults; live ones keep theirs."""
        self._faults = Faults()

    def reset_all(self) -> None:
        """RST every live connection now."""
        for conn in list(self.connections):
            conn.reset()

    def blackhole_all(self, mode: str = "drop") -> None:
        """Every open connection goes half-open now (see ``Faults.blackhole_mode``)."""
        for conn in list(self.connections):
            conn.blackhole(mode)

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` connections were accepted; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.accepted >= n, timeout)

    def _spawn(self, name: str, fn: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=fn, args=args, name=name, daemon=True)
        with self._cond:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        """Pick the new connection's faults, connect it to the target (unless refusing) and start its pumps."""
        index, server, faults = len(self.connections), None, Faults()
        client.settimeout(POLL)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.refuse:
            try:
                faults = self._faults if isinstance(self._faults, Faults) else self._faults(index)
                server = self._connect()
            except OSError as exc:  # the target is down: the client gets a reset, as from toxiproxy
                logger.info("fault proxy: connection %d cannot reach the target: %s", index, exc)
            except Exception:
                logger.exception("fault proxy: the faults for connection %d failed", index)
        conn = ProxiedConnection(self, index, faults, client, server)
        with self._cond:
            self.connections.append(conn)
            self.accepted = len(self.connections)
            self._cond.notify_all()
        conn._start()

    def _connect(self) -> socket.socket:
        family, kind, proto, _, address = socket.getaddrinfo(
            self.target_host, self.target_port, type=socket.SOCK_STREAM
        )[0]
        if not _is_loopback(address[0]):
            raise ValueError(f"{self.target_host!r} resolved to {address[0]!r}, not loopback")
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)  # so a "stall" backs up quickly
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(POLL)
        except BaseException:
            sock.close()
            raise
        return sock


def _is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
