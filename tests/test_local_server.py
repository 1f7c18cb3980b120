"""The local server end to end through the client: protocol, validation, auth, idle timeout, concurrency."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import numpy as np
import pytest
import websocket
from conftest import pcm

import cartesia_sync
from cartesia_sync import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    ServerError,
    SessionClosedError,
)
from cartesia_sync.local import LocalServer, ScriptedEngine, available_engines
from cartesia_sync.testing import FakeCartesia, facts_text


def client_for(server, **kwargs):
    kwargs.setdefault("load_entrypoints", False)
    return cartesia_sync.Client(url=server.url, **kwargs)


def raw_exchange(url: str, *frames, timeout: float = 5.0):
    """Open a raw websocket-client connection, send frames, and read every message until the close."""
    ws = websocket.create_connection(url, timeout=timeout)
    for frame in frames:
        ws.send(frame, websocket.ABNF.OPCODE_BINARY if isinstance(frame, bytes) else websocket.ABNF.OPCODE_TEXT)
    messages = []
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            ws.shutdown()
            return messages, code
        if opcode == websocket.ABNF.OPCODE_TEXT:
            messages.append(json.loads(data))


def test_protocol_end_to_end_with_facts_that_prove_integrity():
    rng = np.random.default_rng(7)
    first, second = rng.integers(-3000, 3000, 16000, dtype=np.int16), rng.integers(-3000, 3000, 8000, dtype=np.int16)
    with FakeCartesia() as server:
        with client_for(server).connect() as session:
            for chunk in np.array_split(first, 7):
                session.send(chunk)
            session.finalize(timeout=5)
            session.send(second)
        record = server.wait_finished()
    assert session.text == " " + facts_text(1, first.tobytes()) + " " + facts_text(2, second.tobytes())
    assert record.sha256() == hashlib.sha256(first.tobytes() + second.tobytes()).hexdigest()
    assert record.texts == ["finalize", "done"]
    assert session.words[1].start == pytest.approx(1.0) and session.words[1].end == pytest.approx(1.5)
    assert record.close_code == 1000


def test_scripted_segments_are_sent_verbatim_then_facts():
    with FakeCartesia(["Hello", " world."]) as server:
        with client_for(server).connect() as session:
            for _ in range(3):
                session.send(pcm(0.1))
                session.finalize(timeout=5)
    assert session.text.startswith("Hello world. seg3:3200b:")


def test_segment_bytes_makes_finals_without_finalize_and_interims_in_between():
    with FakeCartesia(segment_bytes=6400, interim_bytes=3200) as server:
        with client_for(server).connect() as session:
            session.send(pcm(0.5))
    finals = [w.word.split(":")[1] for w in session.words]
    assert finals == ["6400b", "6400b", "3200b"]
    assert session.stats.interim_transcripts == 3


def test_every_message_has_the_documented_shape():
    with FakeCartesia(interim_bytes=3200) as server:
        messages, code = raw_exchange(
            server.url.replace("websocket", "websocket?model=ink-whisper&sample_rate=16000"),
            pcm(0.2),
            "finalize",
            pcm(0.1),
            "close",
        )
    kinds = [m["type"] for m in messages]
    assert kinds == ["transcript", "transcript", "flush_done", "transcript", "transcript", "done"]
    assert [m.get("is_final") for m in messages] == [False, True, None, False, True, None]
    request_ids = {m["request_id"] for m in messages}
    assert len(request_ids) == 1
    final = messages[1]
    assert set(final) == {"type", "request_id", "is_final", "text", "duration", "language", "words"}
    assert final["is_final"] is True and final["duration"] == 0.2 and final["language"] == "en"
    assert code == 1000


@pytest.mark.parametrize(
    "query,code,fragment",
    [
        ("model=whisper-9000", "model_not_found", "whisper-9000"),
        ("", "model_required", "model"),
        ("model=ink-whisper&encoding=pcm_u8", "invalid_encoding", "pcm_u8"),
        ("model=ink-whisper&sample_rate=96000", "invalid_sample_rate", "96000"),
        ("model=ink-whisper&sample_rate=abc", "invalid_sample_rate", "abc"),
        ("model=ink-whisper&min_volume=2", "invalid_min_volume", "min_volume"),
        ("model=ink-whisper&max_silence_duration_secs=-1", "invalid_max_silence_duration_secs", "max_silence"),
    ],
)
def test_query_validation_errors(query, code, fragment):
    with FakeCartesia() as server:
        messages, close_code = raw_exchange(server.url + "?" + query)
    assert len(messages) == 1
    error = messages[0]
    assert error["type"] == "error" and error["status_code"] == 400 and error["error_code"] == code
    assert error["done"] is True and fragment in error["message"] and error["title"]
    assert close_code == 1008


def test_validation_error_reaches_the_client_as_a_server_error():
    with FakeCartesia() as server:
        session = client_for(server, model="ink-nonexistent").connect()
        with pytest.raises(ServerError) as caught:
            session.finalize(timeout=5)
        session.close()
    assert caught.value.status_code == 400 and caught.value.error_code == "model_not_found"


class DecodedScripted(ScriptedEngine):
    """The scripted engine, but fed what a real engine gets: 16 kHz s16le."""

    raw_audio = False


@pytest.mark.parametrize(
    "encoding,rate,audio",
    [
        ("pcm_s16le", 8000, np.full(8000, 1000, dtype="<i2").tobytes()),
        ("pcm_s32le", 16000, np.full(16000, 1000 << 16, dtype="<i4").tobytes()),
        ("pcm_f32le", 48000, np.full(48000, 0.25, dtype="<f4").tobytes()),
        ("pcm_f16le", 16000, np.full(16000, 0.25, dtype="<f2").tobytes()),
        ("pcm_mulaw", 8000, bytes([0x9F]) * 8000),
        ("pcm_alaw", 8000, bytes([0xD5]) * 8000),
    ],
)
def test_every_encoding_and_rate_reaches_the_engine_as_16k_s16le(encoding, rate, audio):
    received = []
    engine = DecodedScripted(text=lambda n, pcm: received.append(pcm) or f" got{n}")
    with LocalServer(engine, load_entrypoints=False) as server:
        with client_for(server, encoding=encoding, sample_rate=rate).connect() as session:
            session.send(audio)
    assert session.text == " got1"
    samples = np.frombuffer(received[0], dtype="<i2")
    assert abs(len(samples) - 16000) <= 16  # one second, whatever the wire format
    middle = samples[2000:14000]
    assert middle.min() != 0 and (middle > 0).all() == (middle > 0).any()  # steady, signed as sent


def test_the_scripted_engine_sees_the_bytes_exactly_as_sent():
    audio = bytes(range(256)) * 40
    with FakeCartesia() as server:
        with client_for(server, encoding="pcm_mulaw", sample_rate=8000).connect() as session:
            session.send(audio)
    assert session.text == " " + facts_text(1, audio)


def test_unknown_text_command_is_a_non_fatal_error():
    with FakeCartesia() as server:
        messages, _ = raw_exchange(server.url + "?model=ink-whisper", "hello?", pcm(0.1), "done")
    assert messages[0]["type"] == "error" and messages[0]["done"] is False
    assert [m["type"] for m in messages[1:]] == ["transcript", "done"]


def test_wrong_path_is_404():
    with FakeCartesia() as server:
        with pytest.raises(cartesia_sync.ConnectError) as caught:
            cartesia_sync.Client(url=server.url.replace("/stt/websocket", "/tts"), load_entrypoints=False).connect()
    assert caught.value.status_code == 404


# -- authentication -------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["header", "query"])
def test_key_is_required_when_configured(auth):
    with FakeCartesia(api_key="sk_local_1") as server:
        with pytest.raises(AuthenticationError) as caught:
            client_for(server, api_key="sk_wrong", auth=auth).connect()
        assert caught.value.status_code == 401 and "Invalid API key" in caught.value.body
        with pytest.raises(AuthenticationError):
            client_for(server, api_key=None).connect()
        with client_for(server, api_key="sk_local_1", auth=auth).connect() as session:
            session.send(pcm(0.1))
    assert session.text.startswith(" seg1:")
    assert all(record.query_dict().get("api_key", "***") == "***" for record in server.connections)
    assert all(record.headers.get("x-api-key", "***") == "***" for record in server.connections)


def test_bearer_authorization_is_accepted():
    with FakeCartesia(api_key="sk_local_2") as server:
        ws = websocket.create_connection(
            server.url + "?model=ink-whisper", header={"Authorization": "Bearer sk_local_2"}
        )
        ws.close()


def test_server_refuses_non_loopback_bind_unless_asked():
    with pytest.raises(ConfigurationError, match="loopback"):
        LocalServer(ScriptedEngine(), host="0.0.0.0")


# -- idle timeout, concurrency, shutdown ------------------------------------------------------


def test_idle_connections_are_closed_and_the_idle_session_ends_cleanly():
    with FakeCartesia(idle_timeout=0.8) as server:
        session = client_for(server, keepalive_interval=None).connect()
        session.send(pcm(0.1))
        session.finalize()
        assert server.wait_finished(timeout=5).close_code == 1000
        deadline = time.monotonic() + 5
        while session.ended_by_server is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "connection idle timeout" in session.ended_by_server
        with pytest.raises(SessionClosedError, match="the server closed the idle session .*connection idle timeout"):
            session.send(pcm(0.1))
        session.close()  # nothing to drain, nothing to raise
    assert session.error is None and session.errors == ()
    assert session.text.startswith(" seg1:3200b") and session.stats.reconnects == 0


def test_keepalive_keeps_the_session_past_the_idle_timeout():
    with FakeCartesia(idle_timeout=0.4) as server:
        with client_for(server, keepalive_interval=0.1).connect() as session:
            session.send(pcm(0.1))
            time.sleep(1.0)
            session.send(pcm(0.1))
    assert session.error is None and session.text.startswith(" seg1:")


def test_concurrent_sessions_get_their_own_results():
    audio = {n: np.full(1600 * n, n, dtype=np.int16) for n in range(1, 21)}
    results = {}
    with FakeCartesia() as server:

        def run(n):
            with client_for(server).connect() as session:
                session.send(audio[n])
            results[n] = session.text

        threads = [threading.Thread(target=run, args=(n,)) for n in audio]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {n: " " + facts_text(1, audio[n].tobytes()) for n in audio}


def test_stop_closes_open_connections_and_is_idempotent():
    server = FakeCartesia().start()
    session = client_for(server, reconnect=False).connect()
    session.send(pcm(0.1))
    server.stop()
    server.stop()
    deadline = time.monotonic() + 5
    while session.error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert isinstance(session.error, ConnectionLostError)
    session.abort()


def test_a_connection_whose_handler_starts_after_stop_is_closed_too():
    # The handshake completes before the server's handler runs; stop() may run in between.
    class SlowToHandle(FakeCartesia):
        handler_may_run = threading.Event()

        def _handle(self, conn):  # test code: delays the private handler to open the window
            self.handler_may_run.wait(5)
            super()._handle(conn)

    server = SlowToHandle().start()
    session = client_for(server, reconnect=False).connect()
    session.send(pcm(0.1))
    stopper = threading.Thread(target=server.stop, name="test-stopper")
    stopper.start()
    deadline = time.monotonic() + 5
    while server._server is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    SlowToHandle.handler_may_run.set()  # the handler now runs after stop() looked for connections
    stopper.join(10)
    deadline = time.monotonic() + 5
    while session.error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        # The server closed the late connection with 1001 ("going away") and then its socket. Which of the
        # client's two threads notices first (the receiver reading the close frame, or the sender writing into
        # the socket the server already closed) is a race, so the message names one or the other; either way
        # the session ended. (A write failing because the receiver shut the socket after the close frame is
        # not taken for the cause: tests/test_session_failures.py pins that.)
        assert isinstance(session.error, ConnectionLostError)
        message = str(session.error)
        assert "1001" in message or "shutting down" in message or "sending failed" in message
    finally:
        session.abort()


def test_engine_failure_becomes_a_500_error():
    class Broken(ScriptedEngine):
        def open_stream(self, options):
            stream = super().open_stream(options)

            def explode(audio):
                raise RuntimeError("decoder crashed")

            stream.feed = explode
            return stream

    with LocalServer(Broken(), load_entrypoints=False) as server:
        session = client_for(server, reconnect=False).connect()
        session.send(pcm(0.1))
        with pytest.raises(ServerError) as caught:
            session.finalize(timeout=5)
        session.close()
    assert caught.value.status_code == 500 and "decoder crashed" in str(caught.value)


def test_engines_are_listed():
    assert {"pocketsphinx", "scripted"} <= set(available_engines(load_entrypoints=False))


def test_repr_hides_the_key():
    with FakeCartesia(api_key="sk_secret_repr") as server:
        assert "sk_secret_repr" not in repr(server)


def test_scripted_word_times_follow_the_wire_rate_and_encoding():
    with FakeCartesia() as server:
        with client_for(server, encoding="pcm_mulaw", sample_rate=8000).connect() as session:
            session.send(b"\xff" * 4000)
            session.finalize()
            session.send(b"\xff" * 8000)
    assert [(w.start, w.end) for w in session.words] == [(0.0, 0.5), (0.5, 1.5)]
