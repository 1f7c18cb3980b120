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

import websocket

from .config import ConnectionSettings
from .errors import (
    AuthenticationError,
    ConnectError,
    PaymentRequiredError,
    RateLimitError,
)
from .secrets import redact

__all__ = ["open_websocket", "shutdown_socket", "close_frame_status"]

logger = logging.getLogger(__name__)

_BODY_LIMIT = 500

_STATUS_ERRORS: dict = {
    401: (AuthenticationError, "the server refused the API key; check CARTESIA_API_KEY or api_key="),
    403: (AuthenticationError, "the API key is not allowed to use this endpoint; check its permissions"),
    402: (PaymentRequiredError, "the account has no credits left; top it up and try again"),
    429: (RateLimitError, "too many concurrent connections for this plan; close other sessions or retry later"),
}


def open_websocket(settings: ConnectionSettings) -> websocket.WebSocket:
    """Open a WebSocket to the endpoint and complete the handshake.

    The socket is left in blocking mode: the session's threads stop it with
    :func:`shutdown_socket`, and every wait of the session has its own timeout.
    Redirects are not followed, so the key is only ever sent to the host named
    in the URL. TLS certificates and host names are always verified.

    :raises AuthenticationError: HTTP 401 or 403.
    :raises PaymentRequiredError: HTTP 402.
    :raises RateLimitError: HTTP 429.
    :raises ConnectError: any other refused handshake, DNS, TCP or TLS failure,
        or a timeout after ``settings.connect_timeout`` seconds.
    """
    sslopt = {"cert_reqs": ssl.CERT_REQUIRED, "check_hostname": True}
    if settings.ca_certs:
        sslopt["ca_certs"] = settings.ca_certs
    ws = websocket.WebSocket(sslopt=sslopt, enable_multithread=True, skip_utf8_validation=True)
    where = settings.display_url
    try:
        ws.connect(
            settings.handshake_url(),
            header=settings.handshake_headers(),
            timeout=settings.connect_timeout,
            suppress_origin=True,
            redirect_limit=0,
        )
    except websocket.WebSocketBadStatusException as exc:
        raise _status_error(exc, settings) from None
    except websocket.WebSocketTimeoutException:
        raise ConnectError(
            f"timed out after {settings.connect_timeout:g} s connecting to {where}; "
            "check the URL and the network, or raise connect_timeout"
        ) from None
    except websocket.WebSocketAddressException as exc:
        raise ConnectError(f"cannot resolve the host of {where}: {exc}; check the URL") from None
    except ssl.SSLCertVerificationError as exc:
        raise ConnectError(
            f"TLS certificate verification failed for {where}: {exc.verify_message or exc}; "
            "pass ca_certs= with the CA bundle that signed the server's certificate"
        ) from None
    except (ssl.SSLError, socket.timeout, OSError, websocket.WebSocketException) as exc:
        message = redact(str(exc), settings.api_key) or type(exc).__name__
        raise ConnectError(f"cannot connect to {where}: {message}") from None
    ws.settimeout(None)
    sock = ws.sock
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not every socket family has it
            pass
    return ws


def _status_error(exc: websocket.WebSocketBadStatusException, settings: ConnectionSettings) -> ConnectError:
    status = int(exc.status_code)
    body = ""
    if exc.resp_body:
        raw = exc.resp_body if isinstance(exc.resp_body, bytes) else str(exc.resp_body).encode()
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
    reason = f" {exc.status_message}" if exc.status_message else ""
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


def close_frame_status(payload: bytes) -> tuple:
    """Split a close frame's payload into ``(code, reason)``; ``(None, "")`` when empty."""
    if len(payload) < 2:
        return None, ""
    code = int.from_bytes(payload[:2], "big")
    return code, payload[2:].decode("utf-8", errors="replace")
