"""Hostile servers at the handshake: connect() fails within connect_timeout, reads within bounds, and refuses
an upgrade that RFC 6455 section 4.1 says to fail, with a ConnectError saying what was wrong.

Every server here is a raw socket on loopback (tests/hostile_server.py) that
sends exactly the bytes the test scripts:

1. slow servers: one byte a second, or just under the per-read timeout, at
   every stage of the answer;
2. oversized answers: an endless header line, endless header fields, a refusal
   announcing a huge body, a body that never ends;
3. the refusal's body in the error: bounded, without control characters or the key;
4. invalid upgrades: extensions or a subprotocol not offered, a wrong or
   missing accept key, missing Upgrade or Connection, HTTP/1.0, a status line
   that is not HTTP, malformed header lines, a 200;
5. valid variants that must still connect (letter case, token lists, the first
   frame in the same packet as the answer).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from conftest import CANARY_KEY
from hostile_server import HostileServer, read_request, upgrade_answer

import cartesia_sync
from cartesia_sync import AuthenticationError, ConnectError

pytestmark = pytest.mark.timeout(60)

SLACK = 1.5  # seconds allowed past connect_timeout: a poll, thread scheduling on a loaded machine


def client(url: str, **kwargs: Any) -> cartesia_sync.Client:
    kwargs.setdefault("connect_timeout", 2.0)
    return cartesia_sync.Client(api_key=CANARY_KEY, url=url, load_entrypoints=False, **kwargs)


def connect_fails(url: str, expected: type[BaseException] = ConnectError, **kwargs: Any) -> tuple[Any, float]:
    """connect() to ``url``; returns the error it raised and the seconds it took."""
    started = time.monotonic()
    with pytest.raises(expected) as info:
        client(url, **kwargs).connect()
    return info.value, time.monotonic() - started


def drip(data: bytes, interval: float) -> Any:
    """A script answering the handshake with ``data``, one byte every ``interval`` seconds."""

    def script(conn: socket.socket, server: HostileServer) -> None:
        request = read_request(conn)
        for byte in data.replace(b"@ACCEPT@", upgrade_answer(request).split(b"Accept: ")[1].split(b"\r\n")[0]):
            if server.stop.wait(interval):
                return
            conn.sendall(bytes((byte,)))
            server.notes.append(1)

    return script


VALID_HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: @ACCEPT@\r\n\r\n"
)


# -- 1. slow servers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interval, timeout",
    [(1.0, 1.5), (0.2, 1.0), (0.45, 1.2)],
    ids=["one-byte-a-second", "fast-drip", "just-under-the-read-poll"],
)
def test_a_server_dripping_its_answer_fails_within_connect_timeout(interval, timeout):
    with HostileServer(drip(VALID_HEAD, interval)) as server:
        error, elapsed = connect_fails(server.url, connect_timeout=timeout)

    assert type(error) is ConnectError
    assert f"timed out after {timeout:g} s" in str(error) and "connect_timeout" in str(error)
    assert elapsed < timeout + SLACK
    assert server.notes  # bytes did arrive: a per-read timeout alone would have kept waiting


def test_a_server_dripping_a_refusal_body_fails_within_connect_timeout():
    head = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 100000\r\n\r\n"

    def script(conn: socket.socket, server: HostileServer) -> None:
        read_request(conn)
        conn.sendall(head + b"invalid key")
        while not server.stop.wait(0.3):
            conn.sendall(b".")

    with HostileServer(script) as server:
        error, elapsed = connect_fails(server.url, AuthenticationError, connect_timeout=1.0)

    assert elapsed < 1.0 + SLACK
    assert error.status_code == 401 and "invalid key" in str(error)  # reported with the part that came


def test_a_server_that_accepts_and_says_nothing_fails_within_connect_timeout():
    def script(conn: socket.socket, server: HostileServer) -> None:
        read_request(conn)
        server.stop.wait(30)

    with HostileServer(script) as server:
        error, elapsed = connect_fails(server.url, connect_timeout=0.8)

    assert "timed out after 0.8 s" in str(error)
    assert 0.6 < elapsed < 0.8 + SLACK


# -- 2. oversized answers ----------------------------------------------------------------------


def flood(head: bytes, filler: bytes) -> Any:
    """A script sending ``head`` then ``filler`` again and again until the client goes away; notes bytes sent."""

    def script(conn: socket.socket, server: HostileServer) -> None:
        read_request(conn)
        conn.sendall(head)
        sent = len(head)
        try:
            while not server.stop.is_set() and sent < 1 << 30:
                conn.sendall(filler)
                sent += len(filler)
        finally:
            server.notes.append(sent)

    return script


@pytest.mark.parametrize(
    "head, filler, says",
    [
        (b"HTTP/1.1 101 Switching Protocols\r\nX-Long: ", b"a" * 4096, "KiB of status line and headers"),
        (b"HTTP/1.1 101 Switching Protocols\r\n", b"X-Many: 1\r\n" * 64, "header fields"),
        (b"HTTP/1.1 101 Switching Protocols\r\n", b"X-Pad-%d: " + b"b" * 4000 + b"\r\n", "KiB of status line"),
        (b"HTTP/1.1 401 Unauthorized" + b" x" * 2000, b" x" * 2048, "KiB of status line"),
    ],
    ids=["endless-line", "endless-fields", "big-fields", "endless-status-line"],
)
def test_a_huge_header_block_fails_fast_after_a_bounded_read(head, filler, says):
    with HostileServer(flood(head, filler)) as server:
        error, elapsed = connect_fails(server.url, connect_timeout=5.0)

    assert type(error) is ConnectError
    assert says in str(error)
    assert elapsed < 3.0  # it gave up on size, not on the clock
    assert len(str(error)) < 600
    assert CANARY_KEY not in str(error)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 1099511627776\r\n\r\n",
        b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n",
    ],
    ids=["content-length-1-TiB", "until-close", "chunked"],
)
def test_a_refusal_with_an_endless_body_is_read_within_bounds(head):
    with HostileServer(flood(head, b'{"error": "no"}' + b" " * 4081)) as server:
        error, elapsed = connect_fails(server.url, AuthenticationError, connect_timeout=5.0)

    assert elapsed < 3.0  # the body was not read to its end (there is none), nor until the deadline
    assert error.status_code == 401
    assert error.body is not None and error.body.startswith('{"error": "no"}') and len(error.body) <= 500
    assert len(str(error)) < 800


# -- 3. the refusal body shown ------------------------------------------------------------------------


def refuse_with(body: bytes, status: bytes = b"403 Forbidden") -> Any:
    def script(conn: socket.socket, server: HostileServer) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        server.stop.wait(WAIT_AFTER)

    return script


WAIT_AFTER = 2.0


def test_a_refusal_body_is_shown_sanitised():
    body = (
        b"denied\r\nX-Injected: yes\x1b[31mRED\x1b[0m\x00nul \xe2\x80\xaeevil\xe2\x80\xac key="
        + CANARY_KEY.encode()
        + b" \xff\xfe end"
    )
    with HostileServer(refuse_with(body)) as server:
        error, _ = connect_fails(server.url, AuthenticationError)

    for text in (str(error), error.body):
        assert CANARY_KEY not in text
        assert not any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in text)
        assert "\u202e" not in text and "\u202c" not in text
        # escape sequences and control characters are dropped whole (terminal_safe), not just their ESC
        assert "denied X-Injected: yesREDnul evil key=*** \ufffd\ufffd end" in text


def test_a_long_refusal_body_is_cut_to_500_characters():
    with HostileServer(refuse_with(b"z" * 6000, b"404 Not Found")) as server:
        error, _ = connect_fails(server.url)

    assert error.status_code == 404
    assert len(error.body) == 500 and error.body.endswith("...")
    assert "check the URL" in str(error)


def test_a_long_reason_phrase_and_location_are_cut():
    def script(conn: socket.socket, server: HostileServer) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 302 " + b"r" * 5000 + b"\r\nLocation: http://x/" + b"l" * 5000 + b"\r\n\r\n")

    with HostileServer(script) as server:
        error, _ = connect_fails(server.url)

    assert error.status_code == 302 and "redirect" in str(error)
    assert len(str(error)) < 700


# -- 4. invalid upgrades ------------------------------------------------------------------------------


def answer_with(head: bytes) -> Any:
    """A script answering with ``head`` (``@ACCEPT@`` replaced by the right accept key), then holding on."""

    def script(conn: socket.socket, server: HostileServer) -> None:
        request = read_request(conn)
        accept = upgrade_answer(request).split(b"Accept: ")[1].split(b"\r\n")[0]
        conn.sendall(head.replace(b"@ACCEPT@", accept))
        server.stop.wait(WAIT_AFTER)

    return script


UPGRADE = b"Upgrade: websocket\r\n"
CONNECTION = b"Connection: Upgrade\r\n"
ACCEPT = b"Sec-WebSocket-Accept: @ACCEPT@\r\n"
STATUS = b"HTTP/1.1 101 Switching Protocols\r\n"

INVALID_UPGRADES = [
    (
        "extension",
        STATUS + UPGRADE + CONNECTION + ACCEPT + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        ["extension 'permessage-deflate'", "did not offer", "4.1"],
    ),
    (
        "subprotocol",
        STATUS + UPGRADE + CONNECTION + ACCEPT + b"Sec-WebSocket-Protocol: chat\r\n\r\n",
        ["subprotocol 'chat'", "did not offer"],
    ),
    (
        "wrong-accept",
        STATUS + UPGRADE + CONNECTION + b"Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        ["Sec-WebSocket-Accept header does not match"],
    ),
    ("accept-wrong-case", None, ["Sec-WebSocket-Accept header does not match"]),
    ("no-accept", STATUS + UPGRADE + CONNECTION + b"\r\n", ["Sec-WebSocket-Accept header is missing"]),
    ("no-upgrade", STATUS + CONNECTION + ACCEPT + b"\r\n", ["Upgrade header is missing"]),
    ("upgrade-h2c", STATUS + b"Upgrade: h2c\r\n" + CONNECTION + ACCEPT + b"\r\n", ["Upgrade header is 'h2c'"]),
    ("no-connection", STATUS + UPGRADE + ACCEPT + b"\r\n", ["Connection header is missing"]),
    (
        "connection-close",
        STATUS + UPGRADE + b"Connection: close\r\n" + ACCEPT + b"\r\n",
        ["Connection header is 'close'"],
    ),
    (
        "http-1.0",
        b"HTTP/1.0 101 Switching Protocols\r\n" + UPGRADE + CONNECTION + ACCEPT + b"\r\n",
        ["HTTP/1.0, not HTTP/1.1"],
    ),
    (
        "http-2.0",
        b"HTTP/2.0 101 Switching Protocols\r\n" + UPGRADE + CONNECTION + ACCEPT + b"\r\n",
        ["HTTP/2.0, not HTTP/1.1"],
    ),
    (
        "two-accepts",
        STATUS + UPGRADE + CONNECTION + ACCEPT + b"Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        ["Sec-WebSocket-Accept header does not match"],
    ),
    (
        "nul-in-upgrade",
        STATUS + b"Upgrade: websocket\x00\r\n" + CONNECTION + ACCEPT + b"\r\n",
        ["Upgrade header is"],
    ),
]


def _wrong_case_head() -> bytes:
    return STATUS + UPGRADE + CONNECTION + b"Sec-WebSocket-Accept: @ACCEPT@\r\n\r\n"


@pytest.mark.parametrize("name, head, says", INVALID_UPGRADES, ids=[case[0] for case in INVALID_UPGRADES])
def test_an_invalid_upgrade_fails_the_handshake_with_a_clear_error(name, head, says):
    if head is None:  # the right key in lower case: base64 is case-sensitive

        def script(conn: socket.socket, server: HostileServer) -> None:
            request = read_request(conn)
            accept = upgrade_answer(request).split(b"Accept: ")[1].split(b"\r\n")[0]
            conn.sendall(_wrong_case_head().replace(b"@ACCEPT@", accept.swapcase()))
            server.stop.wait(WAIT_AFTER)

    else:
        script = answer_with(head)
    with HostileServer(script) as server:
        error, elapsed = connect_fails(server.url, connect_timeout=3.0, reconnect=True)

    assert type(error) is ConnectError
    message = str(error)
    assert "invalid WebSocket upgrade" in message
    for fragment in says:
        assert fragment in message
    assert "; " in message.split("upgrade: ", 1)[1]  # what to do follows what was wrong
    assert error.status_code == 101  # a protocol violation, not a network failure to retry
    assert elapsed < 1.5
    assert server.accepted == 1


@pytest.mark.parametrize("header", [b"Upgrade", b"Connection", b"Sec-WebSocket-Extensions", b"Sec-WebSocket-Protocol"])
def test_an_invalid_upgrade_quoting_the_key_does_not_show_it(header):
    echoed = header + b": x-" + CANARY_KEY.encode() + b"\x1b[2J\r\n"
    head = STATUS + echoed + UPGRADE + CONNECTION + ACCEPT + b"\r\n"
    if header in (b"Upgrade", b"Connection"):
        head = STATUS + echoed + (CONNECTION if header == b"Upgrade" else UPGRADE) + ACCEPT + b"\r\n"
    with HostileServer(answer_with(head)) as server:
        error, _ = connect_fails(server.url)

    assert "invalid WebSocket upgrade" in str(error)
    assert CANARY_KEY not in str(error) and "***" in str(error)
    assert "\x1b" not in str(error)


@pytest.mark.parametrize(
    "head, says",
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "did not answer the handshake with an HTTP status line"),
        (b"HTTP/1.1 abc Weird\r\n\r\n", "did not answer the handshake with an HTTP status line"),
        (b"HTTP/1.1 101\x1b[2J\r\n\r\n", "did not answer the handshake with an HTTP status line"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "did not answer the handshake with an HTTP"),
        (STATUS + b"Upgrade websocket\r\n" + CONNECTION + ACCEPT + b"\r\n", "malformed header line"),
        (STATUS + UPGRADE + b" folded: continuation\r\n" + CONNECTION + ACCEPT + b"\r\n", "malformed header line"),
        (STATUS + b"Bad Name: x\r\n" + UPGRADE + CONNECTION + ACCEPT + b"\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "did not upgrade the connection"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "did not switch protocols"),
    ],
    ids=[
        "ssh-banner",
        "status-not-a-number",
        "escape-in-status",
        "tls-bytes",
        "no-colon",
        "obs-fold",
        "space-in-name",
        "200-ok",
        "100-continue",
    ],
)
def test_a_malformed_answer_fails_the_handshake_with_a_clear_error(head, says):
    with HostileServer(answer_with(head)) as server:
        error, elapsed = connect_fails(server.url, connect_timeout=3.0)

    assert type(error) is ConnectError
    assert says in str(error)
    assert elapsed < 1.5
    assert "\x1b" not in str(error) and "\x16" not in str(error)


def test_a_server_closing_mid_answer_fails_at_once():
    def script(conn: socket.socket, server: HostileServer) -> None:
        read_request(conn)
        conn.sendall(STATUS + UPGRADE)

    with HostileServer(script) as server:
        error, elapsed = connect_fails(server.url, connect_timeout=3.0)

    assert "closed the connection during the handshake" in str(error)
    assert elapsed < 1.5


# -- 5. valid variants -------------------------------------------------------------------------------


VALID_VARIANTS = [
    STATUS + b"upgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-accept: @ACCEPT@\r\n\r\n",
    b"HTTP/1.1 101 \r\nUpgrade:websocket\r\nConnection:upgrade\r\nSec-WebSocket-Accept:@ACCEPT@\r\n\r\n",
    STATUS + UPGRADE + CONNECTION + ACCEPT + b"Sec-WebSocket-Extensions:\r\nServer: x\r\nServer: y\r\n\r\n",
    b"\r\n"
    + STATUS.replace(b"\r\n", b"\n")
    + b"Upgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Accept: @ACCEPT@\n\n",
]


@pytest.mark.parametrize(
    "head", VALID_VARIANTS, ids=["letter-case-and-lists", "no-spaces", "empty-extensions", "bare-newlines"]
)
def test_valid_variants_of_the_upgrade_connect(head):
    done = b'{"type":"done","request_id":"r1"}'

    def script(conn: socket.socket, server: HostileServer) -> None:
        request = read_request(conn)
        accept = upgrade_answer(request).split(b"Accept: ")[1].split(b"\r\n")[0]
        # the first frame in the same write as the answer: the handshake must not swallow it
        conn.sendall(head.replace(b"@ACCEPT@", accept) + bytes((0x81, len(done))) + done)
        server.stop.wait(WAIT_AFTER)

    with HostileServer(script) as server:
        session = client(server.url, raise_errors=False).connect()
        try:
            deadline = time.monotonic() + 3
            while session.request_id is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert session.request_id == "r1"
        finally:
            session.abort()


# -- 6. TLS ---------------------------------------------------------------------------------------------


def test_a_server_dripping_its_tls_handshake_fails_within_connect_timeout():
    """A TLS record header announcing 16 KiB, then a byte every 0.3 s: TCP, TLS and HTTP share one deadline."""

    def script(conn: socket.socket, server: HostileServer) -> None:
        conn.recv(4096)  # the ClientHello
        conn.sendall(b"\x16\x03\x03\x40\x00")
        while not server.stop.wait(0.3):
            conn.sendall(b"\x00")
            server.notes.append(1)

    with HostileServer(script) as server:
        url = f"wss://127.0.0.1:{server.port}/stt/websocket"
        error, elapsed = connect_fails(url, connect_timeout=1.5)

    assert type(error) is ConnectError
    assert "timed out after 1.5 s waiting for the TLS handshake" in str(error)
    assert elapsed < 1.5 + SLACK
    assert server.notes
