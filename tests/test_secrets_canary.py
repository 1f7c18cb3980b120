"""The canary key: a full session with every output surface on, a server error, a junk frame, a failing plugin
and a reconnect, and the key appears in none of the outputs.

Surfaces: log records at DEBUG of every logger (messages, arguments and tracebacks), the event log, the SRT and
VTT files, stdout and stderr, the repr of every public object, and the text, repr and whole ``__cause__`` /
``__context__`` chain of every error the session kept or raised. The server is told to keep the key, to prove
that it did travel, and only in the ``X-API-Key`` header, on both connections.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import CANARY_KEY
from fault_proxy import FaultProxy, Faults

import cartesia_sync
from cartesia_sync import hookimpl
from cartesia_sync.testing import FakeCartesia, Scenario
from cartesia_sync_plugins.event_log import EventLog
from cartesia_sync_plugins.subtitles import SubtitleWriter


def checksum_text(number: int, audio: bytes) -> str:
    return " " + hashlib.sha256(audio).hexdigest()[:8]


class Nosy:
    """A plugin that fails once, with the session (and so the client's settings) in its error's frame."""

    def __init__(self) -> None:
        self.reconnects: list[Any] = []
        self.failed = False

    @hookimpl
    def on_transcript(self, session: Any, transcript: Any) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError(f"plugin broke while looking at {session!r} and {session.settings!r}")

    @hookimpl
    def on_reconnect(self, event: Any) -> None:
        self.reconnects.append(event)


def chain(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([current.__cause__, current.__context__])


def test_the_key_never_leaks_through_a_session_with_errors_and_a_reconnect(tmp_path: Path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    log_path, srt_path, vtt_path = tmp_path / "events.jsonl", tmp_path / "out.srt", tmp_path / "out.vtt"
    nosy = Nosy()
    scenario = Scenario(
        on_open=("this is not JSON",),
        error_after_bytes=40_000,
        error_message=dict(Scenario().error_message, status_code=503),
        faulty_connections=1,
    )
    audio = (b"\x01\x02" * 16000) * 4
    raised: list[BaseException] = []
    with (
        FakeCartesia(
            text=checksum_text, segment_bytes=8000, scenario=scenario, api_key=CANARY_KEY, record_secrets=True
        ) as server,
        FaultProxy(server.port, faults=lambda i: Faults(reset_after_up=90_000) if i == 1 else Faults()) as proxy,
    ):
        client = cartesia_sync.Client(
            url=proxy.url(),
            api_key=CANARY_KEY,
            load_entrypoints=False,
            reconnect_delay=0.05,
            plugins=[EventLog(log_path), SubtitleWriter(srt=srt_path, vtt=vtt_path), nosy],
        )
        session = client.connect(realtime=8.0)
        for start in range(0, len(audio), 3200):
            session.send(audio[start : start + 3200])
        try:
            session.close(timeout=15)
        except cartesia_sync.CartesiaSyncError as exc:  # the plugin's error, raised once at close
            raised.append(exc)
        records = list(server.connections)

    # The faults happened, and the session survived them.
    assert len(nosy.reconnects) == 2 and session.stats.reconnects == 2
    kinds = {type(error).__name__ for error in session.errors}
    assert {"ServerError", "ConnectionLostError", "ProtocolError", "PluginError"} <= kinds
    assert session.error is None and len(session.words) == 16

    # The key travelled in the header, and only there, on every connection.
    assert len(records) == 3
    for record in records:
        assert record.headers["x-api-key"] == CANARY_KEY
        assert all(CANARY_KEY not in value for _, value in record.query)
        assert CANARY_KEY not in record.path

    surfaces = {
        "logs": "\n".join(
            f"{r.name} {r.getMessage()} {r.args!r} "
            f"{logging.Formatter().formatException(r.exc_info) if r.exc_info else ''}"
            for r in caplog.records
        ),
        "event log": log_path.read_text(),
        "srt": srt_path.read_text(),
        "vtt": vtt_path.read_text(),
        "stdout and stderr": "".join(capsys.readouterr()),
        "reprs": " ".join(
            repr(x) for x in (client, session, session.settings, session.options, session.stats, *nosy.reconnects)
        ),
        "errors": " ".join(
            f"{e} {e!r} {getattr(e, 'raw', '')} {getattr(e, 'body', '')}"
            for error in [*session.errors, *raised]
            for e in chain(error)
        ),
    }
    assert surfaces["event log"] and surfaces["srt"] and surfaces["logs"]
    leaked = [name for name, text in surfaces.items() if CANARY_KEY in text]
    assert not leaked, f"the key leaked into: {leaked}"


CANARY_TOKEN = "tok_canary_51be07_DO_NOT_LEAK"


def test_an_access_token_never_leaks_through_a_stream_and_a_batch_with_errors(tmp_path: Path, caplog, capsys):
    """The same surfaces with a token instead of a key: it travels as ``access_token=`` on the WebSocket and
    as ``Authorization: Bearer`` over HTTP, and appears nowhere else, even when the HTTP server echoes it."""
    from batch_server import BatchServer, Reply

    caplog.set_level(logging.DEBUG)
    log_path, srt_path = tmp_path / "events.jsonl", tmp_path / "out.srt"
    nosy = Nosy()
    raised: list[BaseException] = []
    scenario = Scenario(on_open=("this is not JSON",))
    with FakeCartesia(text=checksum_text, segment_bytes=8000, scenario=scenario, record_secrets=True) as server:
        client = cartesia_sync.Client(
            url=server.url,
            access_token=CANARY_TOKEN,
            load_entrypoints=False,
            plugins=[EventLog(log_path), SubtitleWriter(srt=srt_path), nosy],
        )
        session = client.connect()
        session.send(b"\x01\x02" * 32000)
        try:
            session.close(timeout=15)
        except cartesia_sync.CartesiaSyncError as exc:
            raised.append(exc)
        (record,) = server.connections
    assert dict(record.query)["access_token"] == CANARY_TOKEN
    assert {"ProtocolError", "PluginError"} <= {type(error).__name__ for error in session.errors}

    refusal = Reply(status=401, body={"message": f"token {CANARY_TOKEN} expired", "request_id": "r"})
    with BatchServer(refusal) as batch:
        batch_client = cartesia_sync.Client(
            base_url=batch.base_url, access_token=CANARY_TOKEN, load_entrypoints=False, plugins=[EventLog(log_path)]
        )
        try:
            batch_client.transcribe(b"\0" * 3200, mode="batch")
        except cartesia_sync.AuthenticationError as exc:
            raised.append(exc)
    assert batch.requests[0].headers["authorization"] == f"Bearer {CANARY_TOKEN}"
    assert len(raised) == 2

    surfaces = {
        # the client's logs, and the local test server's (it masks credentials in its request lines)
        "logs": "\n".join(
            f"{r.name} {r.getMessage()} {r.args!r} "
            f"{logging.Formatter().formatException(r.exc_info) if r.exc_info else ''}"
            for r in caplog.records
        ),
        "event log": log_path.read_text(),
        "srt": srt_path.read_text(),
        "stdout and stderr": "".join(capsys.readouterr()),
        "reprs": " ".join(repr(x) for x in (client, session, session.settings, batch_client)),
        "errors": " ".join(
            f"{e} {e!r} {getattr(e, 'raw', '')} {getattr(e, 'body', '')}"
            for error in [*session.errors, *raised]
            for e in chain(error)
        ),
    }
    assert surfaces["event log"] and surfaces["logs"]
    leaked = [name for name, text in surfaces.items() if CANARY_TOKEN in text]
    assert not leaked, f"the token leaked into: {leaked}"


def test_a_server_that_echoes_the_key_cannot_put_it_in_an_error_or_a_log(caplog):
    """A hostile server reads the key from the handshake and sends it back in every kind of message."""
    import socket
    import time

    from hostile_server import HostileServer, frame, read_request, upgrade_answer

    def echo_the_key(conn: socket.socket, server: HostileServer) -> None:
        request = read_request(conn)
        conn.sendall(upgrade_answer(request))
        key = next(
            line.split(b":", 1)[1].strip() for line in request.split(b"\r\n") if line.lower().startswith(b"x-api-key")
        )
        conn.sendall(
            frame(1, b"not json " + key)
            + frame(2, b"binary " + key)
            + frame(1, b'{"type":"error","done":false,"status_code":400,"message":"bad key ' + key + b'"}')
            + frame(1, b'{"type":"mystery","echo":"' + key + b'"}')
            + frame(1, b'{"type":"transcript","is_final":true,"text":"' + key + b'","words":"' + key + b'"}')
        )
        time.sleep(1.0)
        conn.close()

    caplog.set_level(logging.DEBUG)
    seen: list[Any] = []

    class Collect:
        @hookimpl
        def on_event(self, event: Any) -> None:
            seen.append(event)

    with HostileServer(echo_the_key) as server:
        client = cartesia_sync.Client(
            api_key=CANARY_KEY, url=server.url, plugins=[Collect()], load_entrypoints=False, reconnect=False
        )
        session = client.connect()
        deadline = time.monotonic() + 5
        while len(session.errors) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        session.abort()
    errors = " ".join(f"{e} {e!r} {getattr(e, 'raw', '')}" for e in session.errors)
    assert len(session.errors) >= 4, errors
    assert CANARY_KEY not in errors
    assert CANARY_KEY not in " ".join(r.getMessage() for r in caplog.records)
    assert CANARY_KEY not in repr([getattr(e, "raw", None) for e in seen])
