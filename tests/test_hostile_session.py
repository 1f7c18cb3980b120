"""A server that keeps talking but never ends the session: close() and abort() must still return on time.

Raw-socket servers on loopback (tests/hostile_server.py) that, after the
upgrade, send an endless stream while never answering the end command:

1. endless junk frames (each one a ProtocolError): ``close(timeout)`` returns
   within ``timeout`` and the teardown budget, ``abort()`` at once;
2. endless interim transcripts that get no further into the audio: they are
   not headway, so ``close(timeout)`` still returns within its bound.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from conftest import CANARY_KEY, session_threads
from hostile_server import HostileServer, frame, upgrade

import cartesia_sync
from cartesia_sync import StreamTimeout

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 1.0
OPTIONS: dict[str, Any] = {"join_timeout": 1.0, "close_grace": 0.5, "reconnect": False, "raise_errors": False}
BUDGET = TIMEOUT + 0.5 + 2 * 1.0 + 1.0 + 1.5  # timeout, close_grace, a join of each thread, a poll; slack


def endless(payload: bytes, interval: float) -> Any:
    """A script that upgrades, then sends ``payload`` (``%d`` numbered) every ``interval`` seconds, reading along."""

    def script(conn: socket.socket, server: HostileServer) -> None:
        upgrade(conn)
        conn.settimeout(interval or 0.001)
        number = 0
        while not server.stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                pass
            conn.sendall(frame(1, payload.replace(b"%d", str(number).encode())) * (1 if interval else 50))
            number += 1

    return script


def close_in_thread(session: cartesia_sync.Session, limit: float) -> float | None:
    """Seconds close(TIMEOUT) took, or None if it was still waiting after ``limit`` (then the session is aborted)."""
    took: list[float] = []

    def closer() -> None:
        started = time.monotonic()
        try:
            session.close(timeout=TIMEOUT)
        except StreamTimeout:
            pass
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=closer, name="test-closer", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        session.abort()
        thread.join(10)
        return None
    return took[0]


def test_close_returns_on_time_while_the_server_floods_junk():
    with HostileServer(endless(b"junk %d", 0.0)) as server:
        session = cartesia_sync.Client(api_key=CANARY_KEY, url=server.url, load_entrypoints=False, **OPTIONS).connect()
        session.send(b"\x00" * 32000)
        time.sleep(0.5)
        took = close_in_thread(session, BUDGET + 5)
        errors_seen = session.stats.errors_reported

    assert took is not None and took < BUDGET, f"close() took {took} s"
    assert errors_seen > 100 and len(session.errors) <= 102
    assert not session_threads()


def test_abort_returns_at_once_while_the_server_floods_junk():
    with HostileServer(endless(b"junk %d", 0.0)) as server:
        session = cartesia_sync.Client(api_key=CANARY_KEY, url=server.url, load_entrypoints=False, **OPTIONS).connect()
        time.sleep(0.5)
        started = time.monotonic()
        session.abort()
        took = time.monotonic() - started

    assert took < 2 * 1.0 + 1.5
    assert not session_threads()


TALK_WITHOUT_PROGRESS = {
    "numbered interims, same duration": b'{"type":"transcript","is_final":false,"text":"still %d","duration":0.1}',
    "interims whose words run past the audio sent": (
        b'{"type":"transcript","is_final":false,"text":"w","words":[{"word":"w","start":0,"end":%d}]}'
    ),
    "finals whose words run past the audio sent": (
        b'{"type":"transcript","is_final":true,"text":"w","words":[{"word":"w","start":0,"end":%d}]}'
    ),
    "the same final again and again": (
        b'{"type":"transcript","is_final":true,"text":"w%d","words":[{"word":"w","start":0,"end":0.5}]}'
    ),
    "non-fatal errors": b'{"type":"error","done":false,"status_code":400,"message":"odd %d"}',
    "unknown messages": b'{"type":"mystery","n":%d}',
}


@pytest.mark.parametrize("payload", list(TALK_WITHOUT_PROGRESS.values()), ids=list(TALK_WITHOUT_PROGRESS))
def test_close_returns_on_time_while_the_server_talks_without_getting_further(payload):
    """Only progress through the audio sent (at most 1 s here) is headway; talk is not."""
    with HostileServer(endless(payload, 0.2)) as server:
        session = cartesia_sync.Client(api_key=CANARY_KEY, url=server.url, load_entrypoints=False, **OPTIONS).connect()
        session.send(b"\x00" * 32000)
        took = close_in_thread(session, BUDGET + 3)

    assert took is not None and took < BUDGET, f"close() took {took} s"
