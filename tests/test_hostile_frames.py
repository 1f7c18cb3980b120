"""Hostile servers after the handshake: the client's memory stays bounded whatever the server sends.

Every server is a raw socket on loopback (tests/hostile_server.py):

1. oversized frames: a header announcing 1 TiB (text, binary, continuation),
   a fragmented message whose fragments add up past ``max_message_size``, a
   control frame over 125 bytes: each ends the session with a ProtocolError
   before the payload is read, tells the server why (close 1009 or 1002), and
   is not retried by a reconnect;
2. the limit's edge: a message of exactly ``max_message_size`` is read (and
   reported as junk, the stream goes on), one byte more ends the session; a
   message in 4096 fragments is read, in 4097 it ends the session, and so does
   an endless stream of empty fragments;
3. frames that break RFC 6455 (reserved bits, reserved opcodes) end the
   session with a ProtocolError too;
4. a flood of junk frames, in a child process: the errors kept stay bounded
   (first 100 and the latest, every one counted), resident memory stays flat,
   and the session still closes at once;
5. the option itself: validated, passed one by one or in SessionOptions.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CANARY_KEY
from hostile_server import HostileServer, frame, frame_header, read_frames, upgrade

import cartesia_sync
from cartesia_sync import ConfigurationError, ConnectionLostError, ProtocolError, SessionOptions

pytestmark = pytest.mark.timeout(90)

TEXT, BINARY, CONT, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9
TIB = 1 << 40
WAIT = 5.0


def client(url: str, **kwargs: Any) -> cartesia_sync.Client:
    kwargs.setdefault("connect_timeout", 3.0)
    return cartesia_sync.Client(api_key=CANARY_KEY, url=url, load_entrypoints=False, **kwargs)


def wait_for_error(session: cartesia_sync.Session, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while session.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return session.error


def then_send(data: bytes, *, junk_after: int = 0) -> Any:
    """A script that upgrades, sends ``data`` and ``junk_after`` bytes more, and records the client's frames."""

    def script(conn: socket.socket, server: HostileServer) -> None:
        upgrade(conn)
        conn.sendall(data)
        sent = 0
        try:
            while sent < junk_after and not server.stop.is_set():
                conn.sendall(b"\x00" * 65536)
                sent += 65536
        except OSError:
            pass
        server.notes.append(("sent", len(data) + sent))
        server.notes.append(("frames", read_frames(conn, timeout=2.0)))

    return script


def client_frames(server: HostileServer) -> list[tuple[int, bytes]]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for kind, value in server.notes:
            if kind == "frames":
                return value
        time.sleep(0.02)
    raise AssertionError("the server never finished reading the client's frames")


def close_codes(frames: list[tuple[int, bytes]]) -> list[int]:
    return [struct.unpack("!H", payload[:2])[0] for opcode, payload in frames if opcode == CLOSE and payload]


# -- 1. oversized frames -----------------------------------------------------------------------------


OVERSIZED = [
    ("text-1TiB", frame_header(TEXT, TIB), "announcing 1099511627776 bytes", 1009),
    ("binary-1TiB", frame_header(BINARY, TIB), "announcing 1099511627776 bytes", 1009),
    ("text-2^63", frame_header(TEXT, (1 << 63) - 1), "over max_message_size=4194304", 1009),
    ("continuation-1TiB", frame(TEXT, b'{"type":', fin=False) + frame_header(CONT, TIB), "earlier fragments", 1009),
    (
        "fragments-add-up",
        b"".join(frame(TEXT if i == 0 else CONT, b"x" * 60000, fin=False) for i in range(70)),
        "after 4140000 bytes of earlier fragments",
        1009,
    ),
    ("ping-over-125", frame_header(PING, 126) + b"p" * 126, "control frame (opcode 0x9) announcing 126", 1002),
    ("close-1TiB", frame_header(CLOSE, TIB), "control frame (opcode 0x8)", 1002),
]


@pytest.mark.parametrize("name, data, says, code", OVERSIZED, ids=[case[0] for case in OVERSIZED])
def test_an_oversized_frame_ends_the_session_with_a_protocol_error_before_its_payload(name, data, says, code):
    with HostileServer(then_send(data, junk_after=64 << 20)) as server:
        session = client(server.url).connect()
        try:
            started = time.monotonic()
            error = wait_for_error(session)
            elapsed = time.monotonic() - started
        finally:
            session.abort()
        frames = client_frames(server)
        sent = dict(note for note in server.notes if note[0] == "sent")["sent"]

    assert isinstance(error, ProtocolError), error
    assert says in str(error)
    assert elapsed < 3.0
    assert close_codes(frames) == [code]  # the server is told why
    assert server.accepted == 1 and session.stats.reconnects == 0  # a broken server is not retried
    assert session.stats.protocol_errors == 1
    # what the server got into the socket before the client hung up: the announced payload was not read
    assert sent < 64 << 20


def test_an_oversized_frame_is_raised_by_the_next_call():
    with HostileServer(then_send(frame_header(TEXT, TIB))) as server:
        session = client(server.url).connect()
        try:
            wait_for_error(session)
            with pytest.raises(ProtocolError, match="max_message_size"):
                session.send(b"\x00\x00" * 1600)
        finally:
            session.abort()


def test_a_smaller_limit_is_enforced_and_says_how_to_raise_it():
    data = frame_header(TEXT, 70000)
    with HostileServer(then_send(data, junk_after=1 << 20)) as server:
        session = client(server.url, max_message_size=65536).connect()
        try:
            error = wait_for_error(session)
        finally:
            session.abort()

    assert isinstance(error, ProtocolError)
    assert "max_message_size=65536" in str(error) and "Raise max_message_size" in str(error)
    assert error.raw == "frame header: opcode 0x1, length 70000"


# -- 2. the edge of the limit ------------------------------------------------------------------------


@pytest.mark.parametrize("fragments", [1, 4], ids=["whole", "fragmented"])
def test_a_message_of_exactly_the_limit_is_read_and_one_byte_more_is_not(fragments):
    limit = 65536

    def message(size: int) -> bytes:
        payload = b"j" * size
        step = -(-size // fragments)
        parts = [payload[i : i + step] for i in range(0, size, step)]
        return b"".join(frame(TEXT if i == 0 else CONT, part, fin=i == len(parts) - 1) for i, part in enumerate(parts))

    with HostileServer(then_send(message(limit) + message(limit + 1))) as server:
        session = client(server.url, max_message_size=limit, raise_errors=False).connect()
        try:
            error = wait_for_error(session)
            errors = session.errors
        finally:
            session.abort()

    assert isinstance(error, ProtocolError) and f"at least {limit + 1} bytes" in str(error)
    assert len(errors) == 2  # the first message was read whole, and reported as junk (it is not JSON)
    assert isinstance(errors[0], ProtocolError) and "max_message_size" not in str(errors[0])
    assert errors[1] is error


@pytest.mark.parametrize("fragments, accepted", [(4096, True), (4097, False)], ids=["4096", "4097"])
def test_a_message_may_be_split_into_at_most_4096_fragments(fragments, accepted):
    done = b'{"type":"done","request_id":"r1"}'
    message = frame(TEXT, done, fin=False) + frame(CONT, b"", fin=False) * (fragments - 2) + frame(CONT, b"")
    with HostileServer(then_send(message)) as server:
        session = client(server.url).connect()
        try:
            error = wait_for_error(session, timeout=1.5 if accepted else WAIT)
            request_id = session.request_id
        finally:
            session.abort()

    if accepted:
        assert error is None and request_id == "r1"
    else:
        assert isinstance(error, ProtocolError) and "more than 4096 fragments" in str(error)


def test_an_endless_stream_of_empty_fragments_ends_the_session():
    endless = frame(TEXT, b"{", fin=False) + frame(CONT, b"", fin=False) * 100_000
    with HostileServer(then_send(endless)) as server:
        session = client(server.url).connect()
        try:
            started = time.monotonic()
            error = wait_for_error(session)
            elapsed = time.monotonic() - started
        finally:
            session.abort()
        frames = client_frames(server)

    assert isinstance(error, ProtocolError) and "fragments" in str(error)
    assert elapsed < 3.0
    assert close_codes(frames) == [1009]


# -- 3. framing violations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [bytes((0xC1, 2)) + b"{}", bytes((0x83, 2)) + b"{}", bytes((0x8B, 0)), frame(CONT, b"orphan")],
    ids=["rsv1-set", "reserved-opcode-3", "reserved-control-0xB", "continuation-without-start"],
)
def test_a_frame_breaking_rfc_6455_ends_the_session_with_a_protocol_error(data):
    with HostileServer(then_send(data)) as server:
        session = client(server.url).connect()
        try:
            error = wait_for_error(session)
        finally:
            session.abort()
        frames = client_frames(server)

    assert isinstance(error, ProtocolError) and "framing rules" in str(error)
    assert close_codes(frames) == [1002]
    assert server.accepted == 1


# -- 4. a flood of junk, in a child process ------------------------------------------------------------

FLOOD_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, struct, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    from hostile_server import HostileServer, frame, upgrade
    from process_memory import tree_rss_mib
    import cartesia_sync

    logging.getLogger("cartesia_sync").setLevel(logging.CRITICAL)
    KIND, COUNT, BATCH = sys.argv[2], int(sys.argv[3]), 2000
    TINY = [
        b'{"type":"flush_done","request_id":"r"}',
        b'{"type":"transcript","is_final":false,"text":"hi %d","duration":0.1,"request_id":"r"}',
        b'{"type":"what_is_this","n":%d}',
        b"",
    ]

    def message(i):
        if KIND == "junk":
            return frame(1, b"junk %d" % i)
        if i % 5 == 4:
            return frame(9, b"p")  # a ping, answered with a pong
        return frame(1, TINY[i % 5].replace(b"%d", str(i).encode()))

    batch = b"".join(message(i) for i in range(BATCH))
    go = threading.Event()
    counted = {"junk": 1, "tiny": 4 / 5}[KIND]

    def until_done(conn):
        # Parse the client's masked frames until its end command, a text frame saying done.
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
            while len(data) >= 6:
                opcode, size, at = data[0] & 15, data[1] & 127, 2
                if size == 126:
                    size, at = struct.unpack("!H", data[2:4])[0], 4
                if len(data) < at + 4 + size:
                    break
                key, body = data[at : at + 4], data[at + 4 : at + 4 + size]
                data = data[at + 4 + size :]
                if opcode == 1 and bytes(b ^ key[i % 4] for i, b in enumerate(body)) == b'{"type":"done"}':
                    return
                if opcode == 1 and b"done" in bytes(b ^ key[i % 4] for i, b in enumerate(body)):
                    return

    def script(conn, server):
        upgrade(conn)
        conn.sendall(batch)  # warm up: every code path allocated once before the baseline
        go.wait(30)
        for _ in range(COUNT // BATCH):
            conn.sendall(batch)
        conn.settimeout(30)
        until_done(conn)
        conn.sendall(frame(1, b'{"type":"done","request_id":"r"}') + frame(8, b"\\x03\\xe8"))
        server.stop.wait(2)

    def seen(session):
        return session.stats.errors_reported if KIND == "junk" else session.stats.messages_received

    with HostileServer(script) as server:
        session = cartesia_sync.Client(
            api_key="k", url=server.url, load_entrypoints=False, raise_errors=False, keepalive_interval=None,
            ping_interval=None,
        ).connect()
        while seen(session) < BATCH * counted:
            time.sleep(0.01)
        before = tree_rss_mib(os.getpid())
        go.set()
        started = time.monotonic()
        while seen(session) < (COUNT + BATCH) * counted and time.monotonic() - started < 120:
            time.sleep(0.05)
        flood_seconds = time.monotonic() - started
        after = tree_rss_mib(os.getpid())
        started = time.monotonic()
        session.close(timeout=5)
        close_seconds = time.monotonic() - started
        print(json.dumps({
            "before": before, "after": after, "reported": session.stats.errors_reported,
            "received": session.stats.messages_received, "kept": len(session.errors),
            "first": str(session.errors[0]) if session.errors else "", "last": str(session.errors[-1]) if
            session.errors else "", "flood_seconds": flood_seconds, "close_seconds": close_seconds,
            "closed": session.closed, "error": repr(session.error),
        }))
    """
)


def run_flood(tmp_path: Path, kind: str, count: int) -> dict[str, Any]:
    script = tmp_path / "flood.py"
    script.write_text(FLOOD_SCRIPT)
    tests = str(Path(__file__).parent)
    run = subprocess.run(
        [sys.executable, str(script), tests, kind, str(count)], capture_output=True, text=True, timeout=150, cwd=tests
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_junk_flood_keeps_memory_and_kept_errors_bounded(tmp_path: Path):
    count = 60000
    figures = run_flood(tmp_path, "junk", count)

    assert figures["reported"] == count + 2000
    assert figures["kept"] == 101  # the first 100 and the latest
    assert "junk 0" in figures["first"] and "junk 1999" in figures["last"]
    assert figures["after"] - figures["before"] < 20, figures  # MiB; unbounded, 60k errors took 200
    assert figures["close_seconds"] < 3.0 and figures["closed"], figures  # still responsive after the flood
    assert figures["error"] == "None"


@pytest.mark.slow
def test_a_flood_of_tiny_messages_and_pings_keeps_memory_bounded(tmp_path: Path):
    count = 60000
    figures = run_flood(tmp_path, "tiny", count)

    assert figures["received"] >= (count + 2000) * 4 // 5
    assert figures["kept"] <= 101  # empty frames are junk: kept within bounds
    assert figures["after"] - figures["before"] < 20, figures
    assert figures["close_seconds"] < 3.0 and figures["closed"], figures
    assert figures["error"] == "None"


def test_the_error_book_keeps_the_first_errors_the_failure_and_the_latest():
    from cartesia_sync._error_book import KEPT_ERRORS, ErrorBook
    from cartesia_sync._stats import StatsCounter

    stats = StatsCounter(32000)
    book = ErrorBook(stats)
    junk = [ProtocolError(f"junk {i}") for i in range(5000)]
    for error in junk[:2500]:
        book.keep(error)
    failure = ConnectionLostError("lost")
    assert book.record(failure, fatal=True)
    for error in junk[2500:]:
        book.keep(error)

    kept = book.errors
    assert kept == (*junk[:KEPT_ERRORS], failure, junk[-1])
    assert stats.snapshot().errors_reported == 5001 and stats.snapshot().protocol_errors == 5000
    raised = []
    while (error := book.take()) is not None:
        raised.append(error)
    assert raised == [failure, *junk[:KEPT_ERRORS]]  # the failure first, then at most KEPT_ERRORS others


# -- 5. the option ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1023, -1, 1 << 31, True, 4.5, "4MB", None])
def test_a_bad_max_message_size_is_refused(value):
    with pytest.raises(ConfigurationError, match="max_message_size must be a whole number of bytes between 1024"):
        cartesia_sync.Client(api_key="k", load_entrypoints=False, max_message_size=value)


def test_max_message_size_is_a_session_option_with_a_default_of_4_mib():
    assert SessionOptions().max_message_size == 4 * 1024 * 1024
    assert SessionOptions(max_message_size=1024).max_message_size == 1024
    built = cartesia_sync.Client(api_key="k", load_entrypoints=False, options=SessionOptions(max_message_size=2048))
    assert built.options.max_message_size == 2048
