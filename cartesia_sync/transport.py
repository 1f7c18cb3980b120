"""Opening the WebSocket with websocket-client, and turning its failures into our errors.

Callers of cartesia_sync never need to import websocket-client: every failure
of the handshake becomes a :class:`~cartesia_sync.ConnectError` subclass that
carries the HTTP status and the server's body, with the key scrubbed.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Optional, Type
from urllib.parse import urlsplit

import websocket

from .config import ConnectionSettings
from .errors import (
    AuthenticationError,
    ConnectError,
    PaymentRequiredError,
    RateLimitError,
)
from .frames import SOCKET_POLL, StreamSocket
from .secrets import redact

__all__ = ["new_socket", "open_websocket", "shutdown_socket", "send_close_frame"]

logger = logging.getLogger(__name__)

_BODY_LIMIT = 500

_STATUS_ERRORS: dict = {
    401: (AuthenticationError, "the server refused the API key; check CARTESIA_API_KEY or api_key="),
    403: (AuthenticationError, "the API key is not allowed to use this endpoint; check its permissions"),
    402: (PaymentRequiredError, "the account has no credits left; top it up and try again"),
    429: (RateLimitError, "too many concurrent connections for this plan; close other sessions or retry later"),
}


def new_socket(settings: ConnectionSettings) -> StreamSocket:
    """An unconnected socket object for :func:`open_websocket`, with TLS verification on."""
    sslopt = {"cert_reqs": ssl.CERT_REQUIRED, "check_hostname": True}
    if settings.ca_certs:
        sslopt["ca_certs"] = settings.ca_certs
    return StreamSocket(sslopt=sslopt, enable_multithread=True, skip_utf8_validation=True)


def open_websocket(settings: ConnectionSettings, ws: Optional[StreamSocket] = None) -> StreamSocket:
    """Open a WebSocket to the endpoint and complete the handshake.

    The socket gets the short timeout :data:`~cartesia_sync.frames.SOCKET_POLL`
    (see :mod:`cartesia_sync.frames`); the session's threads stop it with
    :func:`shutdown_socket`, and every wait of the session has its own timeout.
    Redirects are not followed, so the key is only ever sent to the host named
    in the URL. TLS certificates and host names are always verified.

    :param ws: the socket object to connect (made here if not given); another
        thread may interrupt the handshake with :func:`shutdown_socket` on it.

    :raises AuthenticationError: HTTP 401 or 403.
    :raises PaymentRequiredError: HTTP 402.
    :raises RateLimitError: HTTP 429.
    :raises ConnectError: any other refused handshake, DNS, TCP or TLS failure,
        or a timeout after ``settings.connect_timeout`` seconds.
    """
    if ws is None:
        ws = new_socket(settings)
    options = {}
    error: Optional[ConnectError] = None
    try:
        if settings.is_loopback and settings.url.startswith("ws://"):
            # Open the socket ourselves: a proxy from the environment ($http_proxy) must never
            # carry a plaintext handshake, which holds the key.
            options["socket"] = socket.create_connection(
                (settings.host, urlsplit(settings.url).port or 80), timeout=settings.connect_timeout
            )
        ws.connect(
            settings.handshake_url(),
            header=settings.handshake_headers(),
            timeout=settings.connect_timeout,
            suppress_origin=True,
            redirect_limit=0,
            **options,
        )
    except (websocket.WebSocketException, OSError, ValueError) as exc:
        # translated here, raised below outside this block, so no __context__ keeps the raw text
        error = _translate(exc, ws, settings)
    if error is not None:
        raise error
    ws.settimeout(SOCKET_POLL)
    sock = ws.sock
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not every socket family has it
            pass
    return ws


def _translate(exc: Exception, ws: websocket.WebSocket, settings: ConnectionSettings) -> ConnectError:
    """Turn a failure of websocket-client's connect into our error, with the key scrubbed."""
    where = settings.display_url
    if isinstance(exc, websocket.WebSocketBadStatusException):
        return _status_error(int(exc.status_code), exc.status_message, exc.resp_body, settings)
    response = getattr(ws, "handshake_response", None)
    if response is not None and 300 <= int(response.status) < 400:
        location = (response.headers or {}).get("location", "")
        body = f"Location: {location}" if location else None
        return _status_error(int(response.status), None, body.encode() if body else None, settings)
    if isinstance(exc, websocket.WebSocketTimeoutException) or isinstance(exc, socket.timeout):
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


def _status_error(status: int, status_message: Optional[str], resp_body: Optional[bytes],
                  settings: ConnectionSettings) -> ConnectError:
    body = ""
    if resp_body:
        raw = resp_body if isinstance(resp_body, bytes) else str(resp_body).encode()
        body = redact(raw[:_BODY_LIMIT].decode("utf-8", errors="replace"), settings.api_key).strip()
    cls: Type[ConnectError]
    if status in _STATUS_ERRORS:
        cls, advice = _STATUS_ERRORS[status]
    elif 300 <= status < 400:
        cls, advice = ConnectError, "the server answered with a redirect, which is not followed; use the final URL"
    elif status >= 500:
        cls, advice = ConnectError, "the server failed; try again later"
    else:
        cls, advice = ConnectError, "check the URL and the query parameters"
    reason = f" {status_message}" if status_message else ""
    detail = f": {body}" if body else ""
    message = f"handshake refused with HTTP {status}{reason} by {settings.display_url}{detail}; {advice}"
    return cls(message, status_code=status, body=body or None)


def shutdown_socket(ws: websocket.WebSocket) -> None:
    """Wake every thread blocked on the socket, then close it. Never raises."""
    sock: Optional[socket.socket] = ws.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        ws.shutdown()
    except Exception:  # pragma: no cover - websocket-client swallows most of these itself
        logger.debug("closing the socket failed", exc_info=True)


def send_close_frame(ws: StreamSocket, wait: float = 1.0) -> None:
    """Send a normal close frame, waiting at most ``wait`` seconds for room on the socket. Never raises."""
    try:
        ws.write_patience = wait
        ws.send_close(1000, b"")
    except Exception:
        logger.debug("could not send the close frame", exc_info=True)
