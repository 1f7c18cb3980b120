"""Idle and piled-up connections at the local server: no decoder without audio, caps with a clear 429/503.

Raw sockets on loopback: sessions that never send audio, sockets that never
finish (or never start) their handshake, more of them than the server takes.
"""

from __future__ import annotations

import threading
import time

import pytest
from hostile_clients import (
    STT_QUERY,
    audio,
    closed_by_server,
    connect,
    finalize_latency,
    handshake,
    open_session,
    request_bytes,
    text,
)

from cartesia_sync.errors import ConfigurationError
from cartesia_sync.local import LocalServer, ScriptedEngine

pytestmark = pytest.mark.timeout(90)


class CountingEngine(ScriptedEngine):
    """The scripted engine, counting the streams it opens and has open."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.open_now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def open_stream(self, options):
        stream = super().open_stream(options)
        with self._lock:
            self.opened += 1
            self.open_now += 1
            self.peak = max(self.peak, self.open_now)
        close = stream.close

        def counted_close() -> None:
            close()
            with self._lock:
                self.open_now -= 1

        stream.close = counted_close  # type: ignore[method-assign]
        return stream


def handler_threads() -> int:
    """Threads the websockets server started for sockets (named after our per-socket handler)."""
    return sum(1 for t in threading.enumerate() if "admitted_socket" in t.name)


def server_spoke(sock, timeout: float) -> bool:
    """True when the server sends anything or ends the connection within ``timeout``."""
    sock.settimeout(timeout)
    try:
        sock.recv(65536)
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_sessions_that_never_send_audio_open_no_engine_stream():
    engine = CountingEngine()
    with LocalServer(engine, load_entrypoints=False, max_connections=40) as server:
        idle = [open_session(server.port) for _ in range(30)]
        # commands without audio need no stream either
        sock, reader = idle[0]
        for _ in range(5):
            sock.sendall(text("finalize"))
            assert reader.next_json()["type"] == "flush_done"
        time.sleep(0.3)
        assert engine.opened == 0, f"{engine.opened} streams opened for 30 sessions without audio"
        sock, reader = idle[1]
        assert finalize_latency(sock, reader, b"\x00\x01" * 800) < 2.0
        assert engine.opened == 1
        for sock, _ in idle:
            sock.close()
        assert wait_for(lambda: engine.open_now == 0, 5), f"{engine.open_now} streams still open"


def test_a_bad_language_is_refused_at_the_handshake_even_though_the_decoder_starts_later():
    pytest.importorskip("pocketsphinx")
    with LocalServer("pocketsphinx", load_entrypoints=False, workers=1) as server:
        sock, reader = open_session(server.port, STT_QUERY + "&language=de")
        messages, code = reader.until_close(5)
        sock.close()
        assert messages[0]["status_code"] == 400 and messages[0]["error_code"] == "unsupported_option"
        assert "English" in messages[0]["message"] and code == 1008
        assert server.engine.worker_pids() == []


def test_idle_pocketsphinx_sessions_start_no_decoder_process():
    """The decoder (about 150 MB a stream) starts with the first audio: 12 idle sessions start none."""
    pytest.importorskip("pocketsphinx")
    with LocalServer("pocketsphinx", load_entrypoints=False, workers=2) as server:
        idle = [open_session(server.port) for _ in range(12)]
        for sock, reader in idle[:6]:
            sock.sendall(text("finalize"))
            assert reader.next_json()["type"] == "flush_done"
        time.sleep(0.5)
        assert server.engine.worker_pids() == [], "a decoder worker started for sessions without audio"
        for sock, _ in idle:
            sock.close()


@pytest.mark.parametrize("max_connections", [1, 4])
def test_one_session_more_than_max_connections_gets_429_concurrency_limited(max_connections):
    engine = CountingEngine()
    with LocalServer(engine, load_entrypoints=False, max_connections=max_connections) as server:
        held = [open_session(server.port) for _ in range(max_connections)]
        refusals = []
        for _ in range(5):
            answer, sock = handshake(server.port)
            sock.close()
            refusals.append(answer)
        assert [a.status for a in refusals] == [429] * 5
        body = refusals[0].json()
        assert body["error_code"] == "concurrency_limited" and str(max_connections) in body["message"]
        # a slot freed is a slot usable again, at once
        held.pop()[0].close()
        assert wait_for(lambda: server._admission.sessions == max_connections - 1, 5)
        sock, reader = open_session(server.port)
        assert finalize_latency(sock, reader, b"\x00\x01" * 800) < 2.0
        sock.close()
        for s, _ in held:
            s.close()
        assert wait_for(lambda: server._admission.sessions == 0, 5), server._admission.sessions
        assert engine.open_now == 0


def test_refused_and_failed_handshakes_give_their_slot_back():
    """404s, 401s, 400s and sockets dropped mid-request leave the session count where it was."""
    with LocalServer(CountingEngine(), load_entrypoints=False, api_key="sk_k", max_connections=2) as server:
        for _ in range(20):
            handshake(server.port, path="/elsewhere")[1].close()
            handshake(server.port, [(b"X-API-Key", b"nope")])[1].close()
            handshake(server.port, [(b"X-API-Key", b"a"), (b"X-API-Key", b"b")])[1].close()
            sock = connect(server.port)
            sock.sendall(request_bytes()[:30])
            sock.close()
        assert wait_for(lambda: (server._admission.sessions, server._admission.waiting) == (0, 0), 5)
        both = [open_session(server.port, STT_QUERY + "&api_key=sk_k") for _ in range(2)]
        answer, sock = handshake(server.port, [(b"X-API-Key", b"sk_k")])
        sock.close()
        assert answer.status == 429
        for s, _ in both:
            s.close()


def test_sockets_that_never_finish_the_handshake_are_capped_and_timed_out():
    """max_connections silent sockets fill the handshake queue: the next gets 503 at once; all are cut later."""
    with LocalServer(CountingEngine(), load_entrypoints=False, max_connections=3, handshake_timeout=1.5) as server:
        silent = [connect(server.port, timeout=10) for _ in range(2)]
        half = connect(server.port, timeout=10)
        half.sendall(request_bytes()[:40])  # a request that never ends
        assert wait_for(lambda: server._admission.waiting == 3, 3)
        started = time.monotonic()
        answer, sock = handshake(server.port)
        sock.close()
        assert answer.status == 503 and answer.json()["error_code"] == "server_busy"
        assert answer.headers.get("retry-after") == "1"
        assert time.monotonic() - started < 2.0
        # the silent ones are closed by the server after handshake_timeout, then a client gets in
        for sock in [*silent, half]:
            assert closed_by_server(sock, 1.5 + 3.0), "a socket that never finished its handshake was kept"
            sock.close()
        sock, reader = open_session(server.port)
        assert finalize_latency(sock, reader, b"\x00\x01" * 800) < 2.0
        sock.close()


def test_a_flood_of_sockets_costs_a_bounded_number_of_threads():
    """1000 sockets opened as fast as possible against max_connections=5: the server's threads stay few.

    5 sockets wait for their handshake, 5 refusals wait up to 0.5 s for their request, the rest are refused
    at once, so the threads websockets starts per socket end about as fast as they start."""
    with LocalServer(CountingEngine(), load_entrypoints=False, max_connections=5, handshake_timeout=2.0) as server:
        baseline = handler_threads()
        socks = []
        peak = 0
        for _ in range(1000):
            socks.append(connect(server.port, timeout=10))
            peak = max(peak, handler_threads() - baseline)
        time.sleep(0.2)
        peak = max(peak, handler_threads() - baseline)
        # refused sockets get their 503 within REFUSE_READ_SECONDS; at most 5 wait for a handshake
        assert wait_for(lambda: handler_threads() - baseline <= 5, 3), handler_threads() - baseline
        assert server._admission.refused_busy >= 900  # a few got in as silent ones timed out
        for sock in socks:
            sock.close()
        assert wait_for(lambda: handler_threads() - baseline == 0, 2.0 + 3), handler_threads() - baseline
        sock, reader = open_session(server.port)
        assert finalize_latency(sock, reader, b"\x00\x01" * 800) < 2.0
        sock.close()
    print(f"1000 sockets: at most {peak} socket threads at once")
    assert peak < 60, f"{peak} socket threads at once"


def test_a_client_that_stops_reading_is_disconnected_after_write_timeout():
    """Thousands of finalize commands never read: the server's sends block, then it drops the client."""
    engine = CountingEngine()
    with LocalServer(engine, load_entrypoints=False, write_timeout=1.0) as server:
        sock, reader = open_session(server.port)
        sock.sendall(audio(b"\x00\x01" * 1600))
        started = time.monotonic()
        sent = 0
        try:
            sock.settimeout(10)
            for _ in range(100_000):
                sock.sendall(text("finalize"))
                sent += 1
        except OSError:
            pass  # the server cut the connection while we were still writing
        assert wait_for(lambda: server._admission.sessions == 0, 1.0 + 5), "the non-reading client was kept"
        elapsed = time.monotonic() - started
        assert elapsed < 30, f"{elapsed:.1f} s to drop a client that never reads"
        assert engine.open_now == 0
        sock.close()
        # meanwhile the server serves others normally
        good, good_reader = open_session(server.port)
        assert finalize_latency(good, good_reader, b"\x00\x01" * 800) < 2.0
        good.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_connections", 0),
        ("max_connections", 2.5),
        ("max_message_bytes", -1),
        ("max_pending_messages", True),
        ("handshake_timeout", 0),
        ("write_timeout", float("inf")),
        ("idle_timeout", float("nan")),
    ],
)
def test_limits_must_be_positive(option, value):
    with pytest.raises(ConfigurationError, match=option):
        LocalServer(ScriptedEngine(), load_entrypoints=False, **{option: value})


def test_default_limits_are_documented_values():
    server = LocalServer(ScriptedEngine(), load_entrypoints=False)
    assert (server.max_connections, server.max_message_bytes, server.max_pending_messages) == (64, 2**20, 16)
    assert (server.handshake_timeout, server.write_timeout) == (10.0, 10.0)


def test_streams_past_max_streams_get_a_429_error_at_their_first_audio():
    engine = CountingEngine()
    with LocalServer(engine, load_entrypoints=False, max_streams=2) as server:
        sessions = [open_session(server.port) for _ in range(5)]
        served = [finalize_latency(sock, reader, b"\x00\x01" * 800) for sock, reader in sessions[:2]]
        assert max(served) < 2.0
        for sock, reader in sessions[2:]:
            sock.sendall(audio(b"\x00\x01" * 800))
            messages, code = reader.until_close(5)
            assert code == 1013
            assert messages[-1]["status_code"] == 429 and messages[-1]["error_code"] == "concurrency_limited"
            assert "2 recognition streams" in messages[-1]["message"]
            sock.close()
        assert engine.peak == 2
        sessions[0][0].close()  # its stream closes, its slot is free again
        assert wait_for(lambda: engine.open_now == 1, 5)
        sock, reader = open_session(server.port)
        assert finalize_latency(sock, reader, b"\x00\x01" * 800) < 2.0
        sock.close()
        sessions[1][0].close()
        assert wait_for(lambda: engine.open_now == 0, 5)


def test_max_streams_defaults_to_the_engines_own_limit():
    assert LocalServer(ScriptedEngine(), load_entrypoints=False, max_connections=7).max_streams == 7
    pytest.importorskip("pocketsphinx")
    server = LocalServer("pocketsphinx", load_entrypoints=False, workers=0)
    try:
        assert server.max_streams == server.engine.max_streams == 8
    finally:
        server.engine.close()


def test_a_message_trickled_byte_by_byte_is_cut_off_by_the_idle_timeout():
    """A frame header announcing 4000 bytes, then one byte every 0.2 s: the connection ends after idle_timeout."""
    with LocalServer(CountingEngine(), load_entrypoints=False, idle_timeout=1.5) as server:
        sock, _ = open_session(server.port)
        whole = audio(b"\x00\x01" * 2000)
        sock.sendall(whole[:8])
        started = time.monotonic()
        cut = False
        for byte in whole[8:200]:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            if server_spoke(sock, 0.2):  # its close frame, or the end of the connection
                cut = True
                break
        took = time.monotonic() - started
        sock.close()
        assert cut, "a trickling client was kept for 40 s"
        assert took < 1.5 + 3.0, f"cut after {took:.1f} s"
        assert wait_for(lambda: server._admission.sessions == 0, 5)
