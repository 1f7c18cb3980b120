"""Test your own code against a fake Cartesia: a local server with a deterministic engine and faults.

Plain objects::

    from cartesia_sync.testing import FakeCartesia, Scenario

    with FakeCartesia(segments=["Hello", " world."]) as fake:
        client = cartesia_sync.Client(url=fake.url)
        ...                                     # your code under test
        assert fake.wait_finished().texts[-1] == "done"

    with FakeCartesia(scenario=Scenario(drop_after_bytes=32000)) as fake:
        ...                                     # prove your code survives a dropped connection

As a pytest plugin (``pytest_plugins = ["cartesia_sync.testing"]`` in your
``conftest.py``), the fixture ``fake_cartesia`` gives a running server with
the default scripted engine, and ``fake_cartesia_factory(**options)`` builds
others that are stopped at the end of the test.

Batch transcription (``POST /stt``, ``POST /audio/transcriptions``) is served
on the same port: point ``Client(base_url=fake.base_url)`` or the official SDK
at it. Each upload runs through the scripted engine (its first segment's text,
or the facts of the audio), or answers ``batch_text`` when given, with words
spread over the upload's duration. Every request is recorded in
:attr:`~FakeCartesia.connections` (path, query, headers without the key, the
form fields)::

    with FakeCartesia(batch_text="Hello world.") as fake:
        result = cartesia_sync.Client(base_url=fake.base_url, api_key="k").transcribe("a.wav", mode="batch")
        assert result.text == "Hello world."

    # 429 with Retry-After once, then success: proves your code retries
    FakeCartesia(scenario=Scenario(reject_status=429, reject_headers=(("Retry-After", "0"),), faulty_connections=1))
    # a slow answer: proves your timeout
    FakeCartesia(scenario=Scenario(reply_delay=5.0))

Scenarios: an error message mid-stream (``error_after_bytes``), an abrupt
drop (``drop_after_bytes``), a clean close with a chosen code
(``close_after_bytes``), no answer to ``finalize`` (``answer_finalize=False``)
or to ``done`` (``answer_end=False``), a slow ``done`` (``end_delay``), junk
frames (``on_open``/``before_done``), and a refused handshake with a chosen
status (``reject_status``, which batch and token requests get too, with
``reject_headers``), a slow batch or token answer (``reply_delay``).
``faulty_connections=1`` limits the faults to the
first connection, to prove that a client's reconnect gets past them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .local._http_routes import MAX_UPLOAD_BYTES
from .local._recording import ConnectionRecord, Received
from .local._scenario import DEFAULT_ERROR, Scenario
from .local._scripted_engine import ScriptedEngine, facts_text
from .local._server import LocalServer

__all__ = [
    "FakeCartesia",
    "Scenario",
    "ScriptedEngine",
    "ConnectionRecord",
    "Received",
    "DEFAULT_ERROR",
    "facts_text",
    "fake_cartesia",
    "fake_cartesia_factory",
]


class FakeCartesia(LocalServer):
    """A :class:`~cartesia_sync.local.LocalServer` with the scripted engine that records every connection.

    :param segments: scripted texts, sent verbatim (see :class:`ScriptedEngine`).
    :param scenario: faults to inject.
    :param api_key: require this key at the handshake.
    :param idle_timeout: close connections idle this long.
    :param record_secrets: keep the key in the connection records (to check how it was sent).
    :param request_id: give every connection this ``request_id`` instead of a fresh UUID.
    :param batch_text: the text of every batch answer (default: what the scripted engine makes of the upload).
    :param max_upload_bytes: the largest batch upload; a larger one gets HTTP 413.
    :param max_connections: sessions at once (the scripted engine is cheap, so
        the default is high enough for load tests); one more gets HTTP 429.
    :param engine_options: more :class:`ScriptedEngine` options
        (``segment_bytes``, ``interim_bytes``, ``text``...).
    """

    def __init__(
        self,
        segments: Sequence[str] | None = None,
        *,
        scenario: Scenario | None = None,
        api_key: str | None = None,
        idle_timeout: float = 20.0,
        record_secrets: bool = False,
        request_id: str | None = None,
        max_connections: int = 1024,
        batch_text: str | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        **engine_options: Any,
    ) -> None:
        super().__init__(
            ScriptedEngine(segments, **engine_options),
            scenario=scenario,
            api_key=api_key,
            idle_timeout=idle_timeout,
            record=True,
            record_secrets=record_secrets,
            request_id=request_id,
            load_entrypoints=False,
            max_connections=max_connections,
            max_upload_bytes=max_upload_bytes,
        )
        self._batch_text = batch_text


try:  # the fixtures exist only where pytest does
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_cartesia_factory() -> Iterator[Callable[..., FakeCartesia]]:
        """Build running :class:`FakeCartesia` servers; all are stopped after the test."""
        servers: list[FakeCartesia] = []

        def build(*args: Any, **kwargs: Any) -> FakeCartesia:
            server = FakeCartesia(*args, **kwargs).start()
            servers.append(server)
            return server

        yield build
        for server in servers:
            server.stop()

    @pytest.fixture
    def fake_cartesia(fake_cartesia_factory: Callable[..., FakeCartesia]) -> FakeCartesia:
        """A running :class:`FakeCartesia` with the default scripted engine and no faults."""
        return fake_cartesia_factory()
