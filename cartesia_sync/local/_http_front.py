"""Plain HTTP on the WebSocket port: which handler gets a socket, and the HTTP/1.1 exchange loop.

The hosted API serves every route on one host, and the official SDK derives
them all from one ``base_url``; so does the local server. Its WebSocket side
stays on the ``websockets`` sync server, whose behaviour the server's tests pin
(admission counts, hostile handshakes, bounded stop, flow control). That server
reads only ``GET`` requests without bodies, so each accepted socket is looked
at first (:func:`dispatcher`): a request that starts with ``GET`` goes to
``websockets`` as before (the WebSocket upgrade, and ``GET /`` answered by its
``process_request``); any other method goes to :func:`serve_http`, where
``h11`` (the well-kept sans-I/O HTTP/1.1 parser under httpx, already a
dependency of the client) parses requests, bodies (``Content-Length`` or
chunked) and keep-alive. Swapping the whole server for aiohttp or an ASGI
stack would have meant rewriting the threaded engine plumbing and re-proving
every hostile-client property at once; this keeps the proven path untouched
and adds a small, separately tested one.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h11

__all__ = ["dispatcher", "serve_http", "HttpRequest", "HttpReply", "BodyTooLarge", "ClientGone"]

logger = logging.getLogger("cartesia_sync.local.server")

SocketHandler = Callable[[socket.socket, Any], None]

#: The longest request head (request line and headers) accepted.
MAX_HEAD_BYTES = 16 * 1024
#: After a response that did not read the whole request body, read and drop the rest for this long, so
#: the client (which sends its body before it reads) sees the answer rather than a connection reset.
DRAIN_SECONDS = 5.0
RECV_BYTES = 64 * 1024


def dispatcher(websocket: SocketHandler, http: SocketHandler, timeout: float) -> SocketHandler:
    """A per-socket handler: ``GET`` requests to ``websocket``, any other method to ``http``.

    The socket is peeked (nothing is consumed) for up to ``timeout`` seconds
    (the handshake timeout); a socket that has not sent its method by then is
    closed, as ``websockets`` closes one whose handshake times out.
    """

    def dispatch(sock: socket.socket, addr: Any) -> None:
        word = _first_word(sock, timeout)
        if word == b"GET":
            websocket(sock, addr)
            return
        try:
            if word is not None:
                http(sock, addr)
        finally:
            _close(sock)
            websocket(sock, addr)  # given the closed socket it fails at once and websockets forgets the thread

    return dispatch


def _first_word(sock: socket.socket, timeout: float) -> bytes | None:
    """The request's method (or its first 8 bytes); None when the client closed or was silent too long."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            head = sock.recv(8, socket.MSG_PEEK)
            if not head:
                return None
            if b" " in head or len(head) >= 8:
                return head.split(b" ", 1)[0]
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)  # a partial method: peeking again at once would spin
    except OSError:
        return None
    finally:
        try:
            sock.settimeout(None)
        except OSError:
            pass


@dataclass
class HttpRequest:
    """One request: its head, and its body as an iterator of chunks (read on demand)."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: Iterator[bytes]
    content_length: int | None

    def header(self, name: str) -> list[str]:
        """Every value of the header ``name`` (case-insensitive)."""
        lower = name.lower()
        return [value for key, value in self.headers if key == lower]


@dataclass
class HttpReply:
    """One response."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


class BodyTooLarge(Exception):
    """The request body passed the size limit while it was read."""


class ClientGone(Exception):
    """The client closed, stalled past the timeout, or sent a malformed request."""


def serve_http(
    sock: socket.socket,
    answer: Callable[[HttpRequest], HttpReply],
    *,
    head_timeout: float,
    idle_timeout: float,
    on_head: Callable[[], None] = lambda: None,
    server_header: str = "cartesia-sync-local",
) -> None:
    """Serve HTTP/1.1 requests on ``sock`` until the client closes or goes idle.

    :param answer: turns a request into a reply; it may read the body or not.
    :param head_timeout: seconds the first request head may take to arrive.
    :param idle_timeout: seconds of client silence after which the connection is closed
        (between requests, or while a body is being read).
    :param on_head: called once, when the first request head has arrived.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    timeout = head_timeout
    first = True
    while True:
        try:
            event = _next_event(conn, sock, timeout)
        except ClientGone:
            return
        if isinstance(event, h11.ConnectionClosed) or event is h11.NEED_DATA:
            return
        if not isinstance(event, h11.Request):
            return
        if first:
            on_head()
            first = False
        request = HttpRequest(
            method=event.method.decode("ascii", "replace"),
            target=event.target.decode("ascii", "replace"),
            headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers],
            body=_body(conn, sock, idle_timeout),
            content_length=_content_length(event.headers),
        )
        try:
            reply = answer(request)
        except ClientGone:
            return
        except Exception:
            logger.exception("the local server failed to answer %s %s", request.method, request.target.split("?")[0])
            reply = HttpReply(
                500, b'{"error_code":"internal_error","title":"Internal error","message":"the server failed"}'
            )
        if request.method == "HEAD":
            reply = HttpReply(reply.status, b"", reply.headers, reply.content_type)
        complete = conn.their_state is h11.DONE
        if not _send(conn, sock, reply, server_header, keep_alive=complete):
            return
        if not complete:
            _drain(sock)
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return
        timeout = idle_timeout


def _next_event(conn: h11.Connection, sock: socket.socket, timeout: float) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            _send_error(conn, sock, exc)
            raise ClientGone(str(exc)) from exc
        if event is not h11.NEED_DATA:
            return event
        sock.settimeout(timeout)
        try:
            data = sock.recv(RECV_BYTES)
        except OSError as exc:  # a timeout, a reset, or the server stopping
            raise ClientGone(str(exc)) from exc
        conn.receive_data(data)
        if not data and conn.their_state is h11.IDLE:
            return h11.ConnectionClosed()


def _body(conn: h11.Connection, sock: socket.socket, timeout: float) -> Iterator[bytes]:
    if conn.they_are_waiting_for_100_continue:  # curl asks before a large body; answer once the body is wanted
        try:
            sock.sendall(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        except OSError as exc:
            raise ClientGone(str(exc)) from exc
    while True:
        event = _next_event(conn, sock, timeout)
        if isinstance(event, h11.Data):
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return
        else:
            raise ClientGone("the request body ended early")


def _content_length(headers: Any) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _send(conn: h11.Connection, sock: socket.socket, reply: HttpReply, server: str, keep_alive: bool) -> bool:
    headers = [
        ("Content-Type", reply.content_type),
        ("Content-Length", str(len(reply.body))),
        ("Server", server),
        *reply.headers,
    ]
    if not keep_alive:
        headers.append(("Connection", "close"))
    try:
        data = conn.send(h11.Response(status_code=reply.status, headers=headers))
        data += conn.send(h11.Data(data=reply.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        sock.sendall(data or b"")
    except (OSError, h11.LocalProtocolError):
        return False
    return True


def _send_error(conn: h11.Connection, sock: socket.socket, exc: h11.RemoteProtocolError) -> None:
    """Answer a malformed request with its status (400, 413 for a head too long, ...) if a response may go."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = (
        b'{"error_code":"bad_request","title":"Bad request","message":"the HTTP request is malformed: '
        + str(exc).replace('"', "'").encode("ascii", "replace")
        + b'"}'
    )
    status = exc.error_status_hint
    try:
        sock.settimeout(1.0)
        sock.sendall(
            f"HTTP/1.1 {status} Bad Request\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
    except OSError:
        pass


def _drain(sock: socket.socket) -> None:
    """Read and drop what the client still sends (up to :data:`DRAIN_SECONDS`), then let the caller close."""
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        sock.shutdown(socket.SHUT_WR)
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            if not sock.recv(RECV_BYTES):
                return
    except OSError:
        return


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
