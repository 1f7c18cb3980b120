"""close() and finalize() wait as long as the server makes headway, and time out only when it stalls.

A server working through a backlog (the local engine decodes at a fraction of
real time, so an unpaced file is on the wire long before it is recognised)
must be waited for however long that takes; a server that says nothing, even
one that still answers pings, must time out after the configured seconds of
silence. Every error raised carries what was recognised as ``partial_result``.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import HandlerServer, record_then
from slow_engine import BYTES_PER_SECOND, SlowEngine

import cartesia_sync
from cartesia_sync import StreamTimeout, TranscriptionResult
from cartesia_sync.local import LocalServer
from cartesia_sync.testing import FakeCartesia, Scenario


def _client(url: str, **options) -> cartesia_sync.Client:
    return cartesia_sync.Client(url=url, load_entrypoints=False, **options)


def test_close_waits_for_a_slow_server_that_keeps_talking():
    audio = b"\x00\x01" * (20 * BYTES_PER_SECOND // 2)  # 20 s, decoded at 0.3x: about 6 s of work
    with LocalServer(SlowEngine(0.3)) as server:
        session = _client(server.url, close_timeout=1.0).connect(realtime=False)
        session.send(audio)
        started = time.monotonic()
        session.close()
        waited = time.monotonic() - started
    assert session.text == " all 20.0 s"
    assert session.result().complete
    assert waited > 2.0, "the server had seconds of backlog: close() must have waited well past close_timeout"


def test_finalize_waits_for_a_slow_server_that_keeps_talking():
    with LocalServer(SlowEngine(0.3)) as server:
        with _client(server.url, finalize_timeout=1.0).connect(realtime=False) as session:
            session.send(b"\x00\x01" * (20 * BYTES_PER_SECOND // 2))
            flush = session.finalize()
            assert flush.type == "flush_done"
            assert session.text == " all 20.0 s"


def test_close_times_out_when_the_server_works_silently_longer_than_the_timeout():
    """Headway is what the server says; a server that says nothing is stalled, however busy it is."""
    with LocalServer(SlowEngine(0.3, talk=False)) as server:
        session = _client(server.url, close_timeout=1.0).connect(realtime=False)
        session.send(b"\x00\x01" * (20 * BYTES_PER_SECOND // 2))
        with pytest.raises(StreamTimeout, match="sent nothing for 1 s") as raised:
            session.close()
    assert session.closed
    assert isinstance(raised.value.partial_result, TranscriptionResult)
    assert not raised.value.partial_result.complete


def test_a_server_that_pings_but_never_sends_done_times_out():
    """Pings are not headway: a stuck server whose connection is alive does not hold close() forever."""
    pinging = threading.Event()

    def ping_forever(conn, record, text):
        if text == "done":
            pinging.set()
            while True:  # alive, as far as the connection goes; stuck, as far as the work goes
                conn.ping()
                time.sleep(0.1)
        return False

    with HandlerServer(record_then(ping_forever)) as fake:
        session = _client(fake.url, close_timeout=1.5).connect(realtime=False)
        session.send(b"\x00" * 16000)
        started = time.monotonic()
        with pytest.raises(StreamTimeout, match="sent nothing for 1.5 s"):
            session.close()
        assert pinging.is_set()
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("scenario", [Scenario(answer_finalize=False)])
def test_finalize_times_out_on_a_stuck_server_with_what_was_recognised(server):
    with _client(server.url).connect(realtime=False) as session:
        session.send(b"\x00" * 16000)
        with pytest.raises(StreamTimeout, match="no flush_done") as raised:
            session.finalize(timeout=0.5)
        partial = raised.value.partial_result
        assert isinstance(partial, TranscriptionResult) and not partial.complete
        assert partial.audio_seconds == 0.5
        session.abort()


@pytest.mark.parametrize("scenario", [Scenario(end_delay=3.0)])
def test_a_second_closer_waits_as_long_as_the_first(server):
    """close() from another thread while one is draining waits for it, by the same headway rule."""
    session = _client(server.url, close_timeout=5).connect(realtime=False)
    session.send(b"\x00" * 16000)
    first = threading.Thread(target=session.close)
    first.start()
    time.sleep(0.2)
    session.close(timeout=0.1)  # returns when the first close finished, without error
    first.join(10)
    assert session.closed and session.text == " seg1:16000b"


def test_the_budget_without_headway_is_still_bounded():
    """A fake server that never reads: the end command cannot go out, and close() gives up in bounded time."""
    with FakeCartesia(scenario=Scenario(answer_end=False)) as fake:
        session = _client(fake.url, close_timeout=0.5, send_timeout=0.5).connect(realtime=False)
        started = time.monotonic()
        with pytest.raises(StreamTimeout):
            session.close()
        assert time.monotonic() - started < 10
