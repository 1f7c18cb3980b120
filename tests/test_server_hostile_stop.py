"""``LocalServer.stop()`` and ``cartesia-sync serve`` on Ctrl-C return promptly whatever the clients do.

The clients: one that never reads (the server's sends to it block), one that
ignores the close handshake (keeps the socket, never answers the close frame),
one stuck halfway through its handshake request, one that connected and said
nothing, and one in the middle of a long engine call.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from hostile_clients import (
    SERVING,
    audio,
    closed_by_server,
    connect,
    open_session,
    request_bytes,
    text,
)

from cartesia_sync.local import LocalServer, ScriptedEngine
from cartesia_sync.local._server import CLOSE_GRACE

pytestmark = pytest.mark.timeout(90)


def handler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "admitted_socket" in t.name]


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def hostile_clients(port: int) -> list:
    """Open the five kinds of bad clients against ``port``; returns their sockets (the caller closes them)."""
    socks = []
    # 1. never reads: a flood of finalize commands until the server's answers fill every buffer
    never_reads, _ = open_session(port)
    never_reads.sendall(audio(b"\x00\x01" * 1600))
    never_reads.settimeout(0.5)
    try:
        for _ in range(200_000):
            never_reads.sendall(text("finalize") * 100)
    except TimeoutError:
        pass  # both directions are full now: the server is blocked sending to us
    socks.append(never_reads)
    # 2. ignores the close handshake: a session that never answers the close frame nor closes
    ignores_close, _ = open_session(port)
    socks.append(ignores_close)
    # 3. half a handshake request, 4. a silent socket
    half = connect(port, timeout=10)
    half.sendall(request_bytes()[:50])
    socks += [half, connect(port, timeout=10)]
    return socks


def test_stop_returns_promptly_with_clients_that_never_read_or_ignore_the_close():
    server = LocalServer(ScriptedEngine(), load_entrypoints=False, write_timeout=120.0, handshake_timeout=120.0)
    server.start()
    socks = hostile_clients(server.port)
    try:
        assert wait_for(lambda: len(handler_threads()) == 4, 5), len(handler_threads())
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        assert took < CLOSE_GRACE + 2.0, f"stop() took {took:.1f} s"
        assert wait_for(lambda: not handler_threads(), 2.0), [t.name for t in handler_threads()]
        for sock in socks[1:]:
            assert closed_by_server(sock, 2.0)
    finally:
        for sock in socks:
            sock.close()


def test_stop_twice_and_stop_of_a_server_never_started_are_instant():
    server = LocalServer(ScriptedEngine(), load_entrypoints=False)
    started = time.monotonic()
    server.stop()
    server.start()
    socks = hostile_clients(server.port)
    try:
        server.stop()
        server.stop()
    finally:
        for sock in socks:
            sock.close()
    assert time.monotonic() - started < CLOSE_GRACE + 3.0


def test_stop_ends_a_pocketsphinx_decode_in_progress():
    """A client sent 32 s of audio in one frame and the decoder is busy with it: stop() does not wait it out."""
    pytest.importorskip("pocketsphinx")
    server = LocalServer("pocketsphinx", load_entrypoints=False, workers=1)
    server.start()
    sock, reader = open_session(server.port)
    try:
        import numpy as np

        rng = np.random.default_rng(1)
        noise = (rng.normal(0, 3000, 16000 * 32)).astype("<i2").tobytes()  # 1 MiB: the largest message
        sock.sendall(audio(noise[: 2**20 - 16]))
        sock.sendall(text("finalize"))
        assert wait_for(lambda: server.engine.worker_pids(), 10), "the decoder never started"
        time.sleep(0.5)  # decoding now
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        assert took < 8.0, f"stop() took {took:.1f} s during a decode"
        assert wait_for(lambda: not handler_threads(), 5.0)
        assert server.engine.worker_pids() == []
    finally:
        sock.close()
        server.stop()


@pytest.mark.parametrize("engine", ["scripted", "pocketsphinx"])
def test_serve_stops_on_ctrl_c_with_hostile_clients(engine):
    if engine == "pocketsphinx":
        pytest.importorskip("pocketsphinx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cartesia_sync", "serve", "--port", "0", "--engine", engine, "--idle-timeout", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    socks = []
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = SERVING.search(line)
        assert match, line
        socks = hostile_clients(int(match.group(1)))
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        took = time.monotonic() - started
    finally:
        proc.kill()
        for sock in socks:
            sock.close()
    assert took < 5.0, f"cartesia-sync serve took {took:.1f} s to stop on Ctrl-C"
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def test_stop_returns_promptly_during_a_flood_of_silent_sockets():
    """500 sockets that never send a byte (most refused with 503, a few waiting in the handshake): stop() is prompt."""
    server = LocalServer(ScriptedEngine(), load_entrypoints=False, max_connections=5, handshake_timeout=30.0)
    server.start()
    socks = [connect(server.port, timeout=10) for _ in range(500)]
    try:
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        assert took < CLOSE_GRACE + 2.0, f"stop() took {took:.1f} s"
        assert wait_for(lambda: not handler_threads(), 2.0), len(handler_threads())
    finally:
        for sock in socks:
            sock.close()
