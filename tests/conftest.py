"""Fixtures: the fake Cartesia server on loopback, a recording plugin, and the thread-leak guard.

The ``server`` fixture is a running :class:`~cartesia_sync.testing.FakeCartesia`
that keeps the key in its records (tests check how the client sends it). Tests
change it by parametrizing the fixtures it is built from, e.g.
``@pytest.mark.parametrize("scenario", [Scenario(answer_end=False)])``:

- ``scenario``: the faults to inject (default: none);
- ``engine_options``: options of the scripted engine (default: ``text=short_facts``);
- ``server_key``: the key the server requires (default: none).

For what no Scenario does, :class:`HandlerServer` is the same fake server with its
conversation replaced by a handler of the test's own (see :func:`record_then`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

import cartesia_sync
from cartesia_sync import hookimpl
from cartesia_sync._session_core import SessionCore
from cartesia_sync.testing import ConnectionRecord, FakeCartesia, Scenario

CANARY_KEY = "sk_canary_7f3a9c_DO_NOT_LEAK"


def session_threads() -> list[threading.Thread]:
    """The threads of client sessions (sender and receiver)."""
    return [t for t in threading.enumerate() if t.name.startswith("cartesia-sync-")]


def library_threads() -> list[threading.Thread]:
    """Every thread the library starts: sessions' and local servers'."""
    return session_threads() + [t for t in threading.enumerate() if t.name == "local-stt-server"]


@pytest.fixture(autouse=True)
def audio_accounting_balances(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every session that ends during a test, whatever ended it, accounts for all its audio.

    ``audio_queued == audio_sent + audio_dropped + audio_unsent`` once a session's
    teardown has finished (its threads joined): after a clean close, a failure, a
    reconnect, an abort while a write was blocked, Ctrl-C. Checked as each session
    ends, so no session is kept alive by the check.
    """
    unbalanced: list[str] = []
    teardown = SessionCore._teardown

    def checked(self: SessionCore) -> None:
        try:
            teardown(self)
        finally:
            stats = self.stats
            queued, sent = stats.get("audio_queued"), stats.get("audio_sent")
            dropped, unsent = stats.get("audio_dropped"), stats.get("audio_unsent")
            if queued != sent + dropped + unsent:
                unbalanced.append(
                    f"session #{self.number} ({self.book.failure!r}): queued {queued} bytes, "
                    f"sent {sent} + dropped {dropped} + unsent {unsent} = {sent + dropped + unsent}"
                )

    monkeypatch.setattr(SessionCore, "_teardown", checked)
    yield
    assert not unbalanced, f"sessions lost track of audio: {unbalanced}"


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Every test ends with no session thread (cartesia-sync-*) and no local server thread alive."""
    yield
    deadline = time.monotonic() + 5
    while library_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    leftover = library_threads()
    assert not leftover, f"threads survived the test: {[t.name for t in leftover]}"


def short_facts(number: int, audio: bytes) -> str:
    """The suite's segment text, `` seg<n>:<bytes>b`` (the library's default also has a checksum)."""
    return f" seg{number}:{len(audio)}b"


@pytest.fixture
def scenario() -> Scenario:
    """The faults the ``server`` fixture injects: none."""
    return Scenario()


@pytest.fixture
def engine_options() -> dict[str, Any]:
    """Options of the ``server`` fixture's scripted engine."""
    return {"text": short_facts}


@pytest.fixture
def server_key() -> str | None:
    """The key the ``server`` fixture requires at the handshake: none."""
    return None


@pytest.fixture
def server(scenario: Scenario, engine_options: dict[str, Any], server_key: str | None) -> Iterator[FakeCartesia]:
    """A running fake Cartesia on loopback that records every connection, the key included."""
    with FakeCartesia(scenario=scenario, api_key=server_key, record_secrets=True, **engine_options) as srv:
        yield srv


class HandlerServer(FakeCartesia):
    """The fake server with its conversation replaced by ``handler(conn, record)``, for what no Scenario does.

    The handshake and the connection's :class:`ConnectionRecord` stay the fake server's own; the
    handler gets the accepted ``websockets`` connection and that record (to fill with
    ``record.add``). This overrides ``LocalServer._handle``, a private method: test code only.
    """

    def __init__(self, handler: Callable[[Any, ConnectionRecord], None]) -> None:
        super().__init__()
        self._handler = handler

    def _handle(self, conn: Any) -> None:
        record: ConnectionRecord = conn.cartesia_record
        try:
            self._handler(conn, record)
        except ConnectionClosed:
            pass
        finally:
            record.close_code = conn.close_code
            record.finished.set()


def record_then(on_text: Callable[[Any, ConnectionRecord, str], bool]) -> Callable[[Any, ConnectionRecord], None]:
    """A :class:`HandlerServer` handler: record every frame, pass each text frame to ``on_text(conn, record, text)``.

    The connection's handler returns when ``on_text`` returns true or the connection ends.
    """

    def handler(conn: Any, record: ConnectionRecord) -> None:
        for message in conn:
            if isinstance(message, bytes):
                record.add("audio", message)
            else:
                record.add("text", message)
                if on_text(conn, record, message):
                    return

    return handler


class Recorder:
    """A plugin that appends every hook call to ``calls`` as (hook, payload)."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.threads: list[str] = []

    def _add(self, hook: str, payload: Any) -> None:
        self.calls.append((hook, payload))
        self.threads.append(threading.current_thread().name)

    @hookimpl
    def on_session_start(self, session: Any) -> None:
        self._add("on_session_start", session)

    @hookimpl
    def on_event(self, event: Any) -> None:
        self._add("on_event", event)

    @hookimpl
    def on_transcript(self, transcript: Any) -> None:
        self._add("on_transcript", transcript)

    @hookimpl
    def on_flush_done(self, event: Any) -> None:
        self._add("on_flush_done", event)

    @hookimpl
    def on_done(self, event: Any) -> None:
        self._add("on_done", event)

    @hookimpl
    def on_error(self, error: Any) -> None:
        self._add("on_error", error)

    @hookimpl
    def on_session_end(self, session: Any) -> None:
        self._add("on_session_end", session)

    def names(self, exclude: tuple[str, ...] = ("on_event",)) -> list[str]:
        return [name for name, _ in self.calls if name not in exclude]

    def payloads(self, hook: str) -> list[Any]:
        return [payload for name, payload in self.calls if name == hook]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_client(server: FakeCartesia, recorder: Recorder):
    """Build a client for the fake server with the recorder registered and entry points off."""

    def build(**kwargs: Any) -> cartesia_sync.Client:
        kwargs.setdefault("url", server.url)
        kwargs.setdefault("plugins", [recorder])
        kwargs.setdefault("load_entrypoints", False)
        return cartesia_sync.Client(**kwargs)

    return build


def pcm(seconds: float, rate: int = 16000, freq: float = 440.0) -> bytes:
    """A sine tone as s16le mono bytes."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes()
