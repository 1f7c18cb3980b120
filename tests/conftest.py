"""Fixtures: a scripted server on loopback, a recording plugin, and the thread-leak guard."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator, List, Tuple

import numpy as np
import pytest

import cartesia_sync
from cartesia_sync import hookimpl

from scripted_server import Script, ScriptedServer

CANARY_KEY = "sk_canary_7f3a9c_DO_NOT_LEAK"


def session_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cartesia-sync-")]


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Every test ends with no cartesia-sync-* thread alive."""
    yield
    deadline = time.monotonic() + 5
    while session_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    leftover = session_threads()
    assert not leftover, f"threads survived the test: {[t.name for t in leftover]}"


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[ScriptedServer]:
    with ScriptedServer(script) as srv:
        yield srv


class Recorder:
    """A plugin that appends every hook call to ``calls`` as (hook, payload)."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Any]] = []
        self.threads: List[str] = []

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

    def names(self, exclude: Tuple[str, ...] = ("on_event",)) -> List[str]:
        return [name for name, _ in self.calls if name not in exclude]

    def payloads(self, hook: str) -> List[Any]:
        return [payload for name, payload in self.calls if name == hook]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_client(server: ScriptedServer, recorder: Recorder):
    """Build a client for the scripted server with the recorder registered and entry points off."""

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
