"""The opening handshake (RFC 6455 section 4): the request, and the server's answer read within bounds and checked.

The socket is opened by :mod:`._wire` (and :mod:`._tls`, or websocket-client
through a proxy); this module does the HTTP exchange on it instead of
websocket-client's ``handshake()``,
because that one trusts the server in ways a client streaming with a key
cannot afford (measured on 1.9.x):

* its socket timeout applies to each ``recv`` call, so a server that answers
  one byte a second keeps ``connect()`` waiting forever: here one deadline
  covers the whole answer;
* it reads header lines and the refusal body without a limit (a 1 GB
  ``Content-Length`` is read into memory): here the header block and the body
  read are capped (:data:`HEAD_LIMIT`, :data:`BODY_READ_LIMIT`);
* it accepts a ``Sec-WebSocket-Extensions`` or ``Sec-WebSocket-Protocol``
  the client never offered, any status line with 101 in second place, and an
  accept key in any letter case, where section 4.1 says the client must fail
  the connection;
* it keeps a process-wide cookie jar that sends cookies set by one server's
  answer to the next handshake: a client holding an API key wants none of it.

Failures come out as :class:`~cartesia_sync.ConnectError` (or its
subclasses for 401/402/403/429) saying what was wrong and what to do; a
socket error or timeout is raised as it is for the caller to translate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import socket
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ._config import ConnectionSettings
from ._retry_after import retry_after_seconds
from ._secrets import redact
from ._terminal import terminal_safe
from .errors import AuthenticationError, ConnectError, PaymentRequiredError, RateLimitError

__all__ = [
    "BODY_PATIENCE",
    "BODY_READ_LIMIT",
    "BODY_SHOWN",
    "HEAD_LIMIT",
    "HEADER_COUNT_LIMIT",
    "HandshakeExpired",
    "handshake",
]

#: The most bytes of status line and header lines read before giving up (Node.js allows 16 KiB).
HEAD_LIMIT = 32 * 1024
#: The most header fields in the answer.
HEADER_COUNT_LIMIT = 128
#: The most bytes of a refusal's body read: enough for any JSON error, however large the body announced.
BODY_READ_LIMIT = 8 * 1024
#: The longest wait for a refusal's body once its head has come (the body only makes the error clearer).
BODY_PATIENCE = 1.0
#: The most characters of a refusal's body shown in the error.
BODY_SHOWN = 500

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_STATUS_LINE = re.compile(r"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_STATUS_ERRORS: dict[int, tuple[type[ConnectError], str]] = {
    401: (AuthenticationError, "the server refused the API key; check CARTESIA_API_KEY or api_key="),
    403: (AuthenticationError, "the API key is not allowed to use this endpoint; check its permissions"),
    402: (PaymentRequiredError, "the account has no credits left; top it up and try again"),
    429: (RateLimitError, "too many concurrent connections for this plan; close other sessions or retry later"),
}

_NOT_WEBSOCKET = "check that the URL is the WebSocket endpoint, and that no proxy in between rewrites the upgrade"


class HandshakeExpired(Exception):
    """The deadline passed while the server's answer was being read; ``received`` bytes had come."""

    def __init__(self, received: int) -> None:
        super().__init__(f"{received} bytes received")
        self.received = received


@dataclass(frozen=True)
class _Answer:
    """The server's status line and header fields (names lower-cased, repeated fields in order)."""

    version: tuple[int, int]
    status: int
    reason: str
    fields: Mapping[str, list[str]]

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return ", ".join(values) if values else None


class _Reader:
    """Reads the socket until a deadline, however slowly the server sends: each wait is what is left of it."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self.received = 0

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the stream.

        :raises HandshakeExpired: the deadline passed first.
        """
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise HandshakeExpired(self.received)
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            raise HandshakeExpired(self.received) from None
        self.received += len(data)
        return data


def handshake(sock: socket.socket, settings: ConnectionSettings, deadline: float) -> None:
    """Send the upgrade request on ``sock`` and check the answer; returns once the WebSocket is open.

    Reads exactly the answer's head on success (one byte at a time, as
    websocket-client does, so no byte of the first frame is taken from the
    socket).

    :raises ConnectError: the server refused, or its answer is not a valid
        upgrade (``status_code`` is the status it sent, when it sent one).
    :raises HandshakeExpired: ``deadline`` (a ``time.monotonic()`` value) passed.
    :raises OSError: the socket failed.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    sock.sendall(_request(settings, key).encode())
    reader = _Reader(sock, deadline)
    answer = _read_head(reader, settings)
    if answer.status != 101:
        has_body = answer.status >= 200 and answer.status not in (204, 304)  # RFC 9112 section 6.3
        body = _read_body(_Reader(sock, min(deadline, time.monotonic() + BODY_PATIENCE)), answer) if has_body else b""
        raise _refusal(answer, body, settings)
    _check_upgrade(answer, key, settings)


def _request(settings: ConnectionSettings, key: str) -> str:
    parts = urlsplit(settings.handshake_url())
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default_port = 443 if parts.scheme == "wss" else 80
    if parts.port is not None and parts.port != default_port:
        host = f"{host}:{parts.port}"
    lines = [
        f"GET {resource} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{name}: {value}" for name, value in settings.handshake_headers().items()]
    return "\r\n".join(lines) + "\r\n\r\n"


# -- reading the answer ----------------------------------------------------------------------


def _read_head(reader: _Reader, settings: ConnectionSettings) -> _Answer:
    """The status line and the header fields, up to the blank line; at most :data:`HEAD_LIMIT` bytes."""
    lines: list[str] = []
    line = bytearray()
    total = 0
    while True:
        byte = reader.recv(1)
        if not byte:
            got = "nothing" if not total else f"only {total} bytes of its answer"
            raise ConnectError(
                f"the server at {settings.display_url} closed the connection during the handshake after sending "
                f"{got}; check the URL, or try again later"
            )
        total += 1
        if total > HEAD_LIMIT:
            raise ConnectError(
                f"the server at {settings.display_url} sent more than {HEAD_LIMIT // 1024} KiB of status line and "
                f"headers in its handshake answer, so the rest was not read; {_NOT_WEBSOCKET}"
            )
        if byte != b"\n":
            line += byte
            continue
        text = line.rstrip(b"\r").decode("latin-1")
        line.clear()
        if not text:
            if not lines:
                continue  # tolerate blank lines before the status line (RFC 9112 section 2.2)
            break
        lines.append(text)
        if len(lines) > HEADER_COUNT_LIMIT + 1:
            raise ConnectError(
                f"the server at {settings.display_url} sent more than {HEADER_COUNT_LIMIT} header fields in its "
                f"handshake answer, so the rest was not read; {_NOT_WEBSOCKET}"
            )
    return _parse_head(lines, settings)


def _parse_head(lines: list[str], settings: ConnectionSettings) -> _Answer:
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise ConnectError(
            f"the server at {settings.display_url} did not answer the handshake with an HTTP status line "
            f"(it began with {excerpt(lines[0], settings, 80)!r}); {_NOT_WEBSOCKET}"
        )
    fields: dict[str, list[str]] = {}
    for text in lines[1:]:
        name, colon, value = text.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise ConnectError(
                f"the server at {settings.display_url} sent a malformed header line in its handshake answer "
                f"({excerpt(text, settings, 80)!r}); {_NOT_WEBSOCKET}",
                status_code=int(match[3]),
            )
        fields.setdefault(name.lower(), []).append(value.strip(" \t"))
    return _Answer((int(match[1]), int(match[2])), int(match[3]), match[4] or "", fields)


def _read_body(reader: _Reader, answer: _Answer) -> bytes:
    """The first :data:`BODY_READ_LIMIT` bytes of a refusal's body, or what came before the deadline."""
    length = answer.get("content-length")
    chunked = "chunked" in (answer.get("transfer-encoding") or "").lower()
    want = BODY_READ_LIMIT
    if length is not None and not chunked:
        try:
            want = min(want, int(length))
        except ValueError:
            return b""
    body = bytearray()
    try:
        while len(body) < want:
            data = reader.recv(min(4096, want - len(body)))
            if not data:
                break
            body += data
    except (HandshakeExpired, OSError):
        pass  # a refusal is reported with whatever part of its body came
    return _dechunk(bytes(body)) if chunked else bytes(body)


def _dechunk(data: bytes) -> bytes:
    """The payload of a chunked body (RFC 9112 section 7.1), as far as ``data`` goes."""
    out = bytearray()
    while data:
        size_line, newline, rest = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        except ValueError:
            break
        if not newline or size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


# -- judging the answer ----------------------------------------------------------------------


def _check_upgrade(answer: _Answer, key: str, settings: ConnectionSettings) -> None:
    """RFC 6455 section 4.1: every way a 101 answer must make the client fail the connection."""
    problem = _upgrade_problem(answer, key, lambda text: repr(excerpt(text, settings, 60)))
    if problem is not None:
        what, advice = problem
        raise ConnectError(
            f"the server at {settings.display_url} answered the handshake with an invalid WebSocket upgrade: "
            f"{what}; {advice}",
            status_code=101,
        )


def _upgrade_problem(answer: _Answer, key: str, shown: Callable[[str], str]) -> tuple[str, str] | None:
    """What is wrong with a 101 answer, and what to do, or ``None``; ``shown`` makes a header value safe to quote."""
    if answer.version[0] != 1 or answer.version[1] < 1:
        return f"the answer is HTTP/{answer.version[0]}.{answer.version[1]}, not HTTP/1.1", _NOT_WEBSOCKET
    upgrade = _tokens(answer.get("upgrade"))
    if "websocket" not in upgrade:
        found = shown(answer.get("upgrade") or "") if upgrade else "missing"
        return f"the Upgrade header is {found}, not 'websocket'", _NOT_WEBSOCKET
    if "upgrade" not in _tokens(answer.get("connection")):
        found = shown(answer.get("connection") or "") if answer.get("connection") else "missing"
        return f"the Connection header is {found}, not 'Upgrade'", _NOT_WEBSOCKET
    accept = answer.get("sec-websocket-accept")
    expected = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    if accept is None:
        return "the Sec-WebSocket-Accept header is missing", _NOT_WEBSOCKET
    if not hmac.compare_digest(accept.encode("latin-1"), expected.encode()):
        return (
            "the Sec-WebSocket-Accept header does not match the key sent",
            "the server, or a proxy in between, does not implement RFC 6455; check the URL and any proxy",
        )
    extensions = answer.get("sec-websocket-extensions")
    if extensions:
        return (
            f"it turned on the extension {shown(extensions)}, which this client did not offer (RFC 6455 section 4.1)",
            "the server must not enable extensions the client did not ask for; report it to the server's operator",
        )
    protocol = answer.get("sec-websocket-protocol")
    if protocol:
        return (
            f"it chose the subprotocol {shown(protocol)}, which this client did not offer (RFC 6455 section 4.1)",
            "the server must not pick a subprotocol the client did not ask for; report it to the server's operator",
        )
    return None


def _tokens(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",")} - {""}


def _refusal(answer: _Answer, body: bytes, settings: ConnectionSettings) -> ConnectError:
    status = answer.status
    shown = excerpt(body.decode("utf-8", errors="replace"), settings, BODY_SHOWN) if body else ""
    if 300 <= status < 400:
        location = answer.get("location")
        shown = f"Location: {excerpt(location, settings, 200)}" if location else shown
    error = status_error(status, excerpt(answer.reason, settings, 80), shown, settings)
    if isinstance(error, RateLimitError):
        error.retry_after = retry_after_seconds(answer.get("retry-after-ms"), answer.get("retry-after"))
    return error


def status_error(status: int, reason: str | None, body: str, settings: ConnectionSettings) -> ConnectError:
    """The error for a handshake refused with HTTP ``status``; ``body`` is already a safe excerpt."""
    cls: type[ConnectError]
    if status in _STATUS_ERRORS:
        cls, advice = _STATUS_ERRORS[status]
    elif 300 <= status < 400:
        cls, advice = ConnectError, "the server answered with a redirect, which is not followed; use the final URL"
    elif status >= 500:
        cls, advice = ConnectError, "the server failed; try again later"
    elif status < 200:
        cls, advice = ConnectError, f"the server did not switch protocols (expected HTTP 101); {_NOT_WEBSOCKET}"
    elif status < 300:
        cls, advice = ConnectError, f"the server did not upgrade the connection to a WebSocket; {_NOT_WEBSOCKET}"
    else:
        cls, advice = ConnectError, "check the URL and the query parameters"
    reason = f" {reason}" if reason else ""
    detail = f": {body}" if body else ""
    message = f"handshake refused with HTTP {status}{reason} by {settings.display_url}{detail}; {advice}"
    return cls(message, status_code=status, body=body or None)


def excerpt(text: str, settings: ConnectionSettings, limit: int) -> str:
    """``text`` made safe to show: no key, no control or invisible characters, at most ``limit`` characters.

    Control characters (line breaks, escape sequences) become spaces and runs
    of white space one space, so a hostile body cannot forge log lines or
    colour a terminal; format characters (bidirectional overrides, zero-width
    marks) are dropped.
    """
    text = terminal_safe(redact(text, settings.api_key)[: limit * 4], multiline=False)  # escape sequences whole
    out: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc" or char.isspace():
            out.append(" ")
        elif category[0] != "C":
            out.append(char)
    shown = " ".join("".join(out).split())
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
