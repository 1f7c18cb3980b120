"""The wire seam: the one module that touches websocket-client (with :mod:`._bounded_frames`, its frame reader).

Everything below it (the handshake, the socket, its lock, the frames
websocket-client writes on its own) is used here and nowhere else. The rest
of the library sees a :class:`WireConnection` with a narrow interface:
:meth:`~WireConnection.open`, :meth:`~WireConnection.write_audio`,
:meth:`~WireConnection.write_text`, :meth:`~WireConnection.write_ping`,
:meth:`~WireConnection.read`, :meth:`~WireConnection.send_close` and
:meth:`~WireConnection.shutdown`; failures of the connection come out as
:class:`ConnectionBroken`, failures of the handshake as
:class:`~cartesia_sync.ConnectError` subclasses carrying the HTTP status and
the server's body, with the key scrubbed; a server that breaks the protocol
(a message over ``max_message_size``, a malformed frame) ends the connection
with :attr:`WireConnection.failure` set to the :class:`ProtocolError` saying how.

Hostile servers are expected. The opening (TCP, TLS in :mod:`._tls`, the
HTTP exchange in :mod:`._handshake`) runs under one deadline and reads within
bounds; frames are read through :mod:`._bounded_frames`, which checks each
frame's announced length before reading its payload.

Why the library writes frames itself instead of calling ``send_binary``:
:mod:`.frames` masks a deep queue of audio frames in one numpy operation and
writes them in one system call (measured: a third of websocket-client's CPU
per audio hour), and a write blocked on a full send buffer must come back
every :data:`SOCKET_POLL` so that the session can give up when it ends or the
peer stopped reading. For that, this module relies on three things of
websocket-client, pinned by ``tests/test_wire_contract.py`` for every version
the package allows: the ``lock`` and ``sock`` attributes of a connected
``WebSocket`` (writes go through that lock, so they never interleave with a
pong or close frame websocket-client writes), and that ``recv_data_frame``
answers a ping through ``self.pong(payload)`` and a close frame through
``self.send_close(...)``, which :class:`_StreamSocket` overrides to write them
patiently too.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import websocket

from . import _tls
from ._bounded_frames import CLOSE_PROTOCOL_ERROR, BoundedFrames, Fragments, MessageRefused
from ._config import DEFAULT_MAX_MESSAGE_SIZE, ConnectionSettings
from ._frames import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    close_frame_status,
    encode_binary_frames,
    encode_frame,
)
from ._handshake import HandshakeExpired, handshake
from ._secrets import redact
from ._tls import TlsExpired
from .errors import ConnectError, ProtocolError

__all__ = ["SOCKET_POLL", "ConnectionBroken", "Incoming", "WireConnection"]

logger = logging.getLogger("cartesia_sync.wire")

#: The socket timeout: how often a blocked write or an idle read comes back to look around.
SOCKET_POLL = 0.5

#: What a socket write raises when the send buffer stayed full for ``SOCKET_POLL``.
_WRITE_BLOCKED = (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, socket.timeout)


class ConnectionBroken(Exception):
    """The connection is gone (closed, reset, or the peer stopped reading); the message says how."""


@dataclass(frozen=True)
class Incoming:
    """One frame read from the server.

    :ivar kind: ``"text"``, ``"binary"``, ``"close"`` or ``"control"`` (a ping
        or pong, already answered: it only shows the peer is alive).
    :ivar data: the payload (text frames: the raw UTF-8 bytes).
    :ivar close_code: for ``"close"``, the code, if the frame had one.
    :ivar close_reason: for ``"close"``, the reason.
    """

    kind: str
    data: bytes = b""
    close_code: int | None = None
    close_reason: str = ""


_KINDS = {OPCODE_TEXT: "text", OPCODE_BINARY: "binary", OPCODE_PING: "control", OPCODE_PONG: "control"}


class WireConnection:
    """One WebSocket connection to the endpoint. Thread-safe for one reader and any number of writers.

    Made unconnected, so that another thread can interrupt the handshake with
    :meth:`shutdown`; :meth:`open` performs it.

    :param settings: the endpoint, credentials and TLS options.
    :param max_message_size: the largest message read, in bytes (the sum of
        its fragments); a frame announcing more ends the connection before its
        payload is read.
    :ivar failure: set when the server broke the protocol (a message too
        large, a malformed frame): the :class:`ProtocolError` that ended the
        connection, for whoever reports its end.
    """

    def __init__(self, settings: ConnectionSettings, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._settings = settings
        sslopt: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED, "check_hostname": True}
        if settings.ca_certs:
            sslopt["ca_certs"] = settings.ca_certs
        self._ws = _StreamSocket(max_message_size, sslopt=sslopt, enable_multithread=True, skip_utf8_validation=True)
        self._shut = False
        self.failure: ProtocolError | None = None

    @property
    def write_patience(self) -> float:
        """How long the frames websocket-client writes by itself (pong, close reply) wait for room."""
        return self._ws.write_patience

    @write_patience.setter
    def write_patience(self, seconds: float) -> None:
        self._ws.write_patience = seconds

    # -- the handshake -----------------------------------------------------------------------

    def open(self) -> WireConnection:
        """Connect and complete the handshake within ``settings.connect_timeout``; returns itself.

        One deadline covers the TCP connection, TLS and the HTTP exchange
        (:mod:`._tls`, :mod:`._handshake`), however slowly the server answers;
        the answer is read within bounds and checked as RFC 6455 section 4.1
        asks. Through a proxy from the environment (``wss://`` and
        ``https_proxy``, say), websocket-client opens the tunnel and TLS, each
        step bounded by ``connect_timeout`` on its own. A handshake to
        loopback never goes through a proxy (it may be plaintext and hold the
        key). Redirects are not followed, so the key is only ever sent to the
        host named in the URL. TLS certificates and host names are always verified.

        :raises AuthenticationError: HTTP 401 or 403.
        :raises PaymentRequiredError: HTTP 402.
        :raises RateLimitError: HTTP 429.
        :raises ConnectError: any other refused or invalid handshake, DNS, TCP
            or TLS failure, or a timeout after ``settings.connect_timeout`` seconds.
        """
        settings = self._settings
        ws = self._ws
        deadline = time.monotonic() + settings.connect_timeout
        error: ConnectError | None = None
        try:
            sock = self._open_socket(deadline)
            if self._shut:
                raise ConnectionAbortedError("the connection was shut while it was being opened")
            handshake(sock, settings, deadline)
        except ConnectError as exc:
            error = exc  # made by the handshake, already safe to show
        except (HandshakeExpired, TlsExpired) as exc:
            got = f" ({exc.received} bytes of it received)" if isinstance(exc, HandshakeExpired) else ""
            step = "the handshake answer" if isinstance(exc, HandshakeExpired) else "the TLS handshake"
            error = ConnectError(
                f"timed out after {settings.connect_timeout:g} s waiting for {step} of {settings.display_url}"
                f"{got}; the server is too slow or not a WebSocket endpoint: check the URL and the network, "
                "or raise connect_timeout"
            )
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            # translated here, raised below outside this block, so no __context__ keeps the raw text
            error = _translate(exc, settings)
        if error is not None:
            self._drop_socket()
            raise error
        ws.connected = True
        ws.settimeout(SOCKET_POLL)
        opened = ws.sock
        if opened is not None:
            try:
                opened.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not every socket family has it
                pass
        return self

    def _open_socket(self, deadline: float) -> socket.socket:
        """Open the TCP connection and TLS as ``self._ws.sock``, set as soon as it exists so shutdown() reaches it."""
        settings = self._settings
        ws = self._ws
        parts = urlsplit(settings.url)
        secure = parts.scheme == "wss"
        if not settings.is_loopback and websocket._url.get_proxy_info(settings.host, secure)[0]:
            ws.sock_opt.timeout = settings.connect_timeout
            proxy = websocket._http.proxy_info()  # type: ignore[no-untyped-call]  # none given: the environment's
            ws.sock, _ = websocket._http.connect(settings.handshake_url(), ws.sock_opt, proxy, None)
            return ws.sock
        address = (settings.host, parts.port or (443 if secure else 80))
        ws.sock = socket.create_connection(address, timeout=max(0.001, deadline - time.monotonic()))
        if secure:
            ws.sock = tls = _tls.wrap(ws.sock, settings.host, settings.ca_certs)
            if not self._shut:
                _tls.handshake(tls, deadline)
        return ws.sock

    def _drop_socket(self) -> None:
        sock, self._ws.sock = self._ws.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- writing -------------------------------------------------------------------------------

    def write_audio(self, payloads: Sequence[bytes], while_blocked: Callable[[], None]) -> None:
        """Write audio frames, one binary frame per payload, in one socket write.

        :param while_blocked: called each time the send buffer stayed full for
            :data:`SOCKET_POLL`; it may raise to give up, and the connection
            must then be dropped (part of a frame may have gone out).
        :raises ConnectionBroken: the connection is gone.
        """
        self._write(encode_binary_frames(payloads), while_blocked)

    def write_text(self, text: str, while_blocked: Callable[[], None]) -> None:
        """Write one text frame (a command). Same ``while_blocked`` and errors as :meth:`write_audio`."""
        self._write(encode_frame(OPCODE_TEXT, text.encode()), while_blocked)

    def write_ping(self, while_blocked: Callable[[], None]) -> None:
        """Write an empty ping. Same ``while_blocked`` and errors as :meth:`write_audio`."""
        self._write(encode_frame(OPCODE_PING, b""), while_blocked)

    def _write(self, data: bytes, while_blocked: Callable[[], None]) -> None:
        try:
            _write_locked(self._ws, data, while_blocked)
        except (websocket.WebSocketException, OSError) as exc:
            raise ConnectionBroken(str(exc) or type(exc).__name__) from exc

    # -- reading --------------------------------------------------------------------------------

    def read(self) -> Incoming | None:
        """The next frame, or ``None`` when nothing arrived for :data:`SOCKET_POLL` seconds.

        Pings are answered and close frames echoed before this returns. A
        frame partly read when the poll timed out is resumed by the next call.

        :raises ConnectionBroken: the connection ended without a close frame, or failed, or the
            server broke the protocol (then :attr:`failure` says how).
        """
        try:
            opcode, frame = self._ws.recv_data_frame(True)
        except websocket.WebSocketTimeoutException:
            return None
        except MessageRefused as exc:
            self._refuse(exc.error, exc.close_code)
        except (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException) as exc:
            self._refuse(ProtocolError(f"the server broke the WebSocket framing rules: {exc}"), CLOSE_PROTOCOL_ERROR)
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            raise ConnectionBroken(str(exc) or type(exc).__name__) from exc
        data = bytes(frame.data) if frame is not None and frame.data is not None else b""
        if opcode == OPCODE_CLOSE:
            code, reason = close_frame_status(data)
            return Incoming("close", data, code, reason)
        return Incoming(_KINDS.get(opcode, "control"), data)

    def _refuse(self, error: ProtocolError, close_code: int) -> NoReturn:
        """End the connection because the server broke the protocol: say why in a close frame, if there is room."""
        self.failure = error
        logger.debug("closing the connection: %s", error)
        ws = self._ws
        ws.connected = False
        if ws.lock.acquire(timeout=0.1):  # the sender may be stuck writing: then no close frame, just the end
            try:
                sock = ws.sock
                if sock is not None:
                    sock.send(encode_frame(OPCODE_CLOSE, struct.pack("!H", close_code)))
            except (OSError, ssl.SSLError):
                pass  # the send buffer is full or the peer is gone: the shutdown below is what matters
            finally:
                ws.lock.release()
        raise ConnectionBroken(str(error))

    # -- ending ---------------------------------------------------------------------------------

    def send_close(self, wait: float = 1.0) -> None:
        """Send a normal close frame, waiting at most ``wait`` seconds for room on the socket. Never raises.

        When the send buffer has no room at all, the peer has stopped reading:
        the frame is not sent, rather than waited for, so that tearing down a
        jammed connection takes no longer than tearing down any other.
        """
        sock = self._ws.sock
        try:
            if sock is not None and not select.select([], [sock], [], 0)[1]:
                logger.debug("no room on the socket for the close frame: the peer stopped reading")
                return
            self._ws.write_patience = wait
            self._ws.send_close(1000, b"")
        except Exception:
            logger.debug("could not send the close frame", exc_info=True)

    def shutdown(self) -> None:
        """Wake every thread blocked on the socket, then close it. Never raises; safe before :meth:`open`."""
        self._shut = True
        sock: socket.socket | None = self._ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        try:
            self._ws.shutdown()  # type: ignore[no-untyped-call]
        except Exception:  # pragma: no cover - websocket-client swallows most of these itself
            logger.debug("closing the socket failed", exc_info=True)


class _StreamSocket(websocket.WebSocket):
    """websocket-client's ``WebSocket``, with the frames it writes on its own (pong, close) written patiently.

    websocket-client answers a ping and echoes a close frame from inside
    ``recv_data_frame``, on the receiver thread. Written the usual way, a full
    send buffer would make them fail after one socket timeout; here they wait
    up to :attr:`write_patience` seconds for room, then give up with a
    connection error (the peer stopped reading).

    Frames are read through :class:`~._bounded_frames.BoundedFrames`, so no
    message larger than ``max_message_size`` is ever buffered.
    """

    write_patience: float = 10.0

    def __init__(self, max_message_size: int, **options: Any) -> None:
        super().__init__(**options)
        fragments = Fragments()
        self.cont_frame = fragments
        self.frame_buffer = BoundedFrames(self._recv, max_message_size, fragments)

    def pong(self, payload: str | bytes = "") -> None:
        self._write_patiently(OPCODE_PONG, payload.encode() if isinstance(payload, str) else payload, "a pong")

    def send_close(self, status: int = 1000, reason: str | bytes = b"", *args: Any, **kwargs: Any) -> None:
        # Extra arguments are accepted and ignored: websocket-client has changed this signature before.
        if not 0 <= status < 65536:
            raise ValueError("the close code must be between 0 and 65535")
        self.connected = False
        data = reason.encode() if isinstance(reason, str) else reason
        self._write_patiently(OPCODE_CLOSE, struct.pack("!H", status) + data, "the close frame")

    def _write_patiently(self, opcode: int, payload: bytes, what: str) -> None:
        deadline = time.monotonic() + self.write_patience

        def while_blocked() -> None:
            if time.monotonic() >= deadline:
                raise websocket.WebSocketConnectionClosedException(
                    f"could not write {what} for {self.write_patience:g} s: the peer stopped reading"
                )

        _write_locked(self, encode_frame(opcode, payload), while_blocked)


def _write_locked(ws: websocket.WebSocket, data: bytes, while_blocked: Callable[[], None]) -> None:
    """Write already encoded frames in one go, under websocket-client's send lock."""
    view = memoryview(data)
    with ws.lock:
        sock = ws.sock
        if sock is None:
            raise websocket.WebSocketConnectionClosedException("the socket is already closed")
        while view:
            try:
                sent = sock.send(view)
            except _WRITE_BLOCKED:
                while_blocked()
                continue
            view = view[sent:]


def _translate(exc: Exception, settings: ConnectionSettings) -> ConnectError:
    """Turn a failure to open the socket into our error, with the key scrubbed."""
    where = settings.display_url
    if isinstance(exc, (websocket.WebSocketTimeoutException, socket.timeout)):
        return ConnectError(
            f"timed out after {settings.connect_timeout:g} s connecting to {where}; "
            "check the URL and the network, or raise connect_timeout"
        )
    if isinstance(exc, websocket.WebSocketAddressException):
        return ConnectError(f"cannot resolve the host of {where}: {redact(str(exc), settings.api_key)}; check the URL")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectError(
            f"TLS certificate verification failed for {where}: {exc.verify_message or exc}; "
            "pass ca_certs= with the CA bundle that signed the server's certificate"
        )
    message = redact(str(exc), settings.api_key) or type(exc).__name__
    return ConnectError(f"cannot connect to {where}: {message}")
