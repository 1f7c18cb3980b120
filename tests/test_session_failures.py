"""Failures: server errors in every format, junk, drops, timeouts, failing plugins, misuse from hooks."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time

import pytest
from conftest import pcm

import cartesia_sync
from cartesia_sync import (
    ConnectionLostError,
    PluginError,
    ProtocolError,
    ServerError,
    SessionClosedError,
    StreamTimeout,
    hookimpl,
)
from cartesia_sync.testing import Scenario

# -- server error messages -------------------------------------------------------

ERROR_FORMATS = [
    pytest.param(
        {"type": "error", "error": "Audio decode failed", "request_id": "r-2025"},
        dict(message="Audio decode failed", status_code=None, request_id="r-2025"),
        id="2025-docs-error-field",
    ),
    pytest.param(
        {"type": "error", "message": "boom", "request_id": "r-2x"},
        dict(message="boom", status_code=None, request_id="r-2x"),
        id="sdk-2x-message",
    ),
    pytest.param(
        {"type": "error", "message": "too many", "code": 429},
        dict(message="too many", status_code=429),
        id="livekit-code",
    ),
    pytest.param(
        {
            "type": "error",
            "message": "Invalid model",
            "status_code": 400,
            "title": "Bad request",
            "doc_url": "https://docs.example/x",
            "error_code": "model_not_found",
        },
        dict(
            message="Invalid model",
            status_code=400,
            title="Bad request",
            error_code="model_not_found",
            doc_url="https://docs.example/x",
        ),
        id="sdk-4x",
    ),
    pytest.param(
        {
            "type": "error",
            "done": True,
            "status_code": 429,
            "error_code": "concurrency_limited",
            "title": "Concurrency limited",
            "message": "Too many sessions",
            "request_id": "r-26",
        },
        dict(
            message="Too many sessions",
            status_code=429,
            error_code="concurrency_limited",
            title="Concurrency limited",
            request_id="r-26",
        ),
        id="2026-structured",
    ),
    pytest.param(
        "Invalid model: The model is not valid",
        dict(message="The model is not valid", title="Invalid model"),
        id="plain-text-title-message",
    ),
]


@pytest.mark.parametrize(
    "scenario,fields",
    [
        pytest.param(Scenario(error_after_bytes=3200, error_message=case.values[0]), case.values[1], id=case.id)
        for case in ERROR_FORMATS
    ],
)
def test_every_server_error_format_reaches_the_caller(server, make_client, recorder, fields):
    session = make_client().connect()
    session.send(pcm(0.2))
    with pytest.raises(ServerError) as caught:
        session.finalize(timeout=5)
    error = caught.value
    for name, value in fields.items():
        assert getattr(error, name) == value, name
    assert fields["message"] in str(error)
    assert session.error is error
    assert recorder.payloads("on_error") == [error]
    with pytest.raises(SessionClosedError):
        session.send(pcm(0.1))
    session.close()  # the error was raised once already
    assert session.closed


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(
            error_after_bytes=3200,
            error_closes=False,
            error_message={"type": "error", "done": False, "message": "minor"},
        )
    ],
)
def test_non_fatal_server_error_is_raised_once_and_the_stream_goes_on(make_client):
    session = make_client().connect()
    session.send(pcm(0.2))
    with pytest.raises(ServerError, match="minor"):
        session.finalize(timeout=5)
    session.send(pcm(0.1))
    session.finalize(timeout=5)
    session.close()
    assert session.text.startswith(" seg1:")


# -- junk from the server ---------------------------------------------------------

JUNK = [
    "not json at all",
    b"\x00\x01binary",
    "[1, 2, 3]",
    '{"no_type": 1}',
    '{"type": "transcript", "is_final": "yes", "text": "x"}',
    '{"type": "transcript", "text": 5}',
    '{"type": "transcript", "text": "x", "is_final": true, "words": [{"word": "a", "start": "0"}]}',
    '{"type": "transcript", "text": "x", "duration": NaN}',
    b"\xff\xfe not utf-8".decode("latin-1"),
]


@pytest.mark.parametrize("scenario", [Scenario(on_open=tuple(JUNK) + ('{"type": "brand_new_type", "x": 1}',))])
def test_junk_never_crashes_the_receiver(make_client, recorder, caplog):
    client = make_client(raise_errors=False)
    with caplog.at_level(logging.WARNING, logger="cartesia_sync"):
        with client.connect() as session:
            session.send(pcm(0.2))
            session.finalize(timeout=5)
            session.send(pcm(0.1))
    assert session.text == " seg1:6400b seg2:3200b"
    errors = recorder.payloads("on_error")
    assert len(errors) == len(JUNK) and all(isinstance(e, ProtocolError) for e in errors)
    assert session.stats.protocol_errors == len(JUNK)
    unknown = [e for e in recorder.payloads("on_event") if isinstance(e, cartesia_sync.UnknownMessage)]
    assert [u.message_type for u in unknown] == ["brand_new_type"]
    assert sum("not json" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("scenario", [Scenario(on_open=("{broken",))])
def test_junk_is_raised_once_at_the_next_finalize_by_default(make_client):
    session = make_client().connect()
    session.send(pcm(0.1))
    with pytest.raises(ProtocolError, match="not JSON"):
        session.finalize(timeout=5)
    session.finalize(timeout=5)  # raised once only; the stream went on
    session.close()
    assert session.text == " seg1:3200b"


# -- dropped connections --------------------------------------------------------------


@pytest.mark.parametrize("scenario", [Scenario(drop_after_bytes=6400)])
def test_abrupt_drop_mid_stream_raises_connection_lost(make_client, recorder):
    session = make_client(reconnect=False).connect()
    with pytest.raises((ConnectionLostError, SessionClosedError)):
        for _ in range(200):
            session.send(pcm(0.1))
            time.sleep(0.005)
    deadline = time.monotonic() + 5
    while session.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(session.error, ConnectionLostError)
    session.close()
    assert isinstance(recorder.payloads("on_error")[0], ConnectionLostError)


@pytest.mark.parametrize("scenario", [Scenario(close_after_bytes=3200, close_code=1011, close_reason="engine restart")])
def test_server_close_mid_stream_carries_code_and_reason(make_client):
    session = make_client(reconnect=False).connect()
    session.send(pcm(0.2))
    with pytest.raises(ConnectionLostError) as caught:
        session.finalize(timeout=5)
    assert caught.value.close_code == 1011
    assert caught.value.close_reason == "engine restart"
    assert "1011" in str(caught.value)
    session.close()


@pytest.mark.parametrize("scenario", [Scenario(close_after_bytes=16_000, close_code=1008, close_reason="policy")])
def test_the_close_code_is_the_error_even_when_the_sender_is_writing_at_that_moment(make_client):
    """The receiver shuts the socket after the close frame; a write failing because of it is not the cause.

    Unpaced audio keeps the sender writing when the close frame arrives; over many sessions, a
    "sending failed" error would win the race now and then if the sender's failure counted.
    """
    for attempt in range(12):
        session = make_client(reconnect=False).connect(realtime=False)
        try:
            with contextlib.suppress(ConnectionLostError, SessionClosedError):
                for _ in range(100):
                    session.send(pcm(0.05))
            deadline = time.monotonic() + 5
            while session.error is None and time.monotonic() < deadline:
                time.sleep(0.01)
            error = session.error
            assert isinstance(error, ConnectionLostError), (attempt, error)
            assert error.close_code == 1008 and "policy" in str(error), (attempt, str(error))
        finally:
            session.abort()


# -- the server never answers ------------------------------------------------------------


@pytest.mark.parametrize("scenario", [Scenario(answer_finalize=False)])
def test_finalize_without_flush_done_times_out(make_client):
    with make_client().connect() as session:
        session.send(pcm(0.1))
        started = time.monotonic()
        with pytest.raises(StreamTimeout, match="flush_done"):
            session.finalize(timeout=0.3)
        assert time.monotonic() - started < 5
    assert session.text == " seg1:3200b"  # done still flushed it


@pytest.mark.parametrize("scenario", [Scenario(answer_end=False)])
def test_close_without_done_times_out_and_releases_everything(make_client, recorder):
    session = make_client().connect()
    session.send(pcm(0.1))
    started = time.monotonic()
    with pytest.raises(StreamTimeout, match="done"):
        session.close(timeout=0.3)
    assert time.monotonic() - started < 5
    assert session.closed
    assert recorder.names()[-1] == "on_session_end"
    assert isinstance(recorder.payloads("on_error")[0], StreamTimeout)


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(
            end_delay=0.4,
            before_done=tuple(
                {"type": "transcript", "is_final": True, "text": f" late{n}", "request_id": "req-1"} for n in range(3)
            ),
        )
    ],
)
def test_close_drains_results_that_arrive_late(make_client):
    with make_client().connect() as session:
        session.send(pcm(0.1))
    assert session.text == " late0 late1 late2 seg1:3200b"


@pytest.mark.parametrize("scenario", [Scenario(close_after_done=False)])
def test_server_that_keeps_the_socket_open_after_done(make_client):
    with make_client(close_grace=0.2).connect() as session:
        session.send(pcm(0.1))
    assert session.text == " seg1:3200b"


# -- plugins that fail or misuse the session ----------------------------------------------


class Exploding:
    name = "exploding"

    @hookimpl
    def on_transcript(self, transcript):
        raise ValueError("plugin bug")


class ExplodingOnError:
    name = "exploding-on-error"

    @hookimpl
    def on_error(self, error):
        raise RuntimeError("error handler bug")


def test_failing_plugin_is_isolated_and_reported(make_client, recorder, caplog):
    client = make_client(plugins=[recorder, Exploding(), ExplodingOnError()], raise_errors=False)
    with caplog.at_level(logging.ERROR, logger="cartesia_sync"):
        with client.connect() as session:
            session.send(pcm(0.1))
            session.finalize(timeout=5)
            session.send(pcm(0.1))
    assert len(recorder.payloads("on_transcript")) == 2  # the recorder still saw everything
    errors = recorder.payloads("on_error")
    assert len(errors) == 2 and all(isinstance(e, PluginError) for e in errors)
    assert errors[0].hook_name == "on_transcript" and errors[0].plugin_name == "exploding"
    assert isinstance(errors[0].__cause__, ValueError)
    assert session.stats.plugin_errors == 2
    tracebacks = [r.getMessage() for r in caplog.records if "Traceback (most recent call last)" in r.getMessage()]
    assert any("ValueError: plugin bug" in text for text in tracebacks)
    assert any("RuntimeError: error handler bug" in text for text in tracebacks)
    assert session.text == " seg1:3200b seg2:3200b"


def test_failing_plugin_is_raised_at_close_by_default(make_client, recorder):
    session = make_client(plugins=[recorder, Exploding()]).connect()
    session.send(pcm(0.1))
    with pytest.raises(PluginError, match="exploding"):
        session.close()
    assert session.closed and session.text == " seg1:3200b"


class ClosesFromHook:
    name = "closes-from-hook"

    def __init__(self):
        self.raised = []

    @hookimpl
    def on_transcript(self, session):
        for method in (session.close, session.abort, session.finalize):
            try:
                method()
            except RuntimeError as exc:
                self.raised.append(str(exc))


def test_close_from_a_hook_is_a_clear_error_not_a_deadlock(make_client, recorder):
    plugin = ClosesFromHook()
    client = make_client(plugins=[recorder, plugin], raise_errors=False)
    with client.connect() as session:
        session.send(pcm(0.1))
        session.finalize(timeout=5)
        session.send(pcm(0.1))
    assert len(plugin.raised) == 6  # close, abort and finalize, for both finals
    assert all("from a hook" in text for text in plugin.raised)
    assert session.closed


def test_close_from_another_thread_while_sending(make_client):
    # close() sends what is queued first, paced: keep the buffer small so that takes little time
    session = make_client(max_buffer_seconds=0.5).connect(realtime=True)
    outcome = {}

    def keep_sending():
        try:
            while True:
                session.send(pcm(0.1))
        except SessionClosedError as exc:
            outcome["stopped"] = exc

    sender = threading.Thread(target=keep_sending)
    sender.start()
    time.sleep(0.3)
    session.close(timeout=5)
    sender.join(10)
    assert not sender.is_alive()
    assert isinstance(outcome.get("stopped"), SessionClosedError)
    assert session.closed


def test_close_from_two_threads_at_once(make_client, recorder):
    session = make_client().connect()
    session.send(pcm(0.1))
    threads = [threading.Thread(target=session.close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert session.closed
    assert recorder.names().count("on_session_end") == 1
    assert recorder.names().count("on_done") == 1


def test_plugin_failing_in_session_start_does_not_stop_the_session(make_client, recorder):
    class BadStart:
        name = "bad-start"

        @hookimpl
        def on_session_start(self):
            raise OSError("cannot open log")

    with pytest.raises(PluginError, match="on_session_start"):
        with make_client(plugins=[recorder, BadStart()]).connect() as session:
            session.send(pcm(0.1))
    assert session.text == " seg1:3200b"


@pytest.mark.parametrize(
    "scenario", [Scenario(error_after_bytes=0, error_message={"type": "error", "message": "x", "status_code": 500})]
)
def test_errors_are_json_safe_in_raw(make_client, server):
    session = make_client(reconnect=False).connect()
    session.send(pcm(0.1))
    with pytest.raises(ServerError) as caught:
        session.close()
    json.dumps(caught.value.raw)


def test_a_plugin_exception_holding_the_key_is_scrubbed_from_the_logged_traceback(make_client, recorder, caplog):
    from conftest import CANARY_KEY

    class Leaky:
        name = "leaky"

        @hookimpl
        def on_transcript(self, session):
            raise ValueError(f"cannot use {session.settings.api_key.reveal()}")

    client = make_client(plugins=[recorder, Leaky()], api_key=CANARY_KEY, raise_errors=False)
    with caplog.at_level(logging.DEBUG):
        with client.connect() as session:
            session.send(pcm(0.1))
    client_records = [
        r
        for r in caplog.records  # the fake server's own logs show its side of the handshake
        if r.name.startswith("cartesia_sync") and not r.name.startswith("cartesia_sync.local")
    ]
    logged = "\n".join(r.getMessage() for r in client_records)
    assert "ValueError: cannot use ***" in logged
    assert CANARY_KEY not in logged
    assert CANARY_KEY not in str(recorder.payloads("on_error")[0])
