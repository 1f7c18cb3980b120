"""Reconnect with continuity, dead peers and idle servers, proven by injecting the faults.

Every scenario streams the same audio through a fault-injecting proxy to a fake
server whose engine names each 0.25 s segment by a checksum of its bytes. With
reconnect on, the final text must equal the text of an undisturbed run, word for
word, and the word times must be the undisturbed ones: nothing lost, nothing
duplicated, times continuous across connections. With reconnect off, the same
fault must end the session with a clear error, and nothing may hang.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fault_proxy import FaultProxy, Faults

import cartesia_sync
from cartesia_sync import (
    AuthenticationError,
    ConnectionLostError,
    Reconnected,
    ServerError,
    SessionClosedError,
    hookimpl,
)
from cartesia_sync._reconnect import backoff_delays, is_transient
from cartesia_sync.testing import FakeCartesia, Scenario

SEGMENT = 8000  # bytes: 0.25 s of 16 kHz s16le, one final word each
AUDIO_SECONDS = 4.0


def checksum_text(number: int, audio: bytes) -> str:
    """A segment's text names its bytes, not its number: a new connection's segments read the same."""
    return " " + hashlib.sha256(audio).hexdigest()[:8]


def speech(seconds: float = AUDIO_SECONDS, seed: int = 7) -> bytes:
    """Deterministic noise: every 0.25 s of it has its own checksum."""
    rng = np.random.default_rng(seed)
    return rng.integers(-8000, 8000, int(seconds * 16000), dtype=np.int16).astype("<i2").tobytes()


class ReconnectLog:
    """A plugin keeping every ``on_reconnect`` event and every final chunk's words."""

    def __init__(self) -> None:
        self.reconnects: list[Reconnected] = []
        self.finals: list[tuple[str, tuple[Any, ...]]] = []
        self.errors: list[Exception] = []

    @hookimpl
    def on_reconnect(self, event: Reconnected) -> None:
        self.reconnects.append(event)

    @hookimpl
    def on_transcript(self, transcript: Any) -> None:
        if transcript.is_final:
            self.finals.append((transcript.text, transcript.words))

    @hookimpl
    def on_error(self, error: Exception) -> None:
        self.errors.append(error)


@pytest.fixture
def fake() -> Iterator[FakeCartesia]:
    with FakeCartesia(text=checksum_text, segment_bytes=SEGMENT) as server:
        yield server


def stream(
    url: str, audio: bytes, *, realtime: Any = 8.0, finalize_at: float = 0.0, plugins_extra: Any = (), **options: Any
):
    """Stream ``audio`` in 0.1 s pieces, optionally finalize part-way, close; return (session, plugin)."""
    log = ReconnectLog()
    options.setdefault("ping_interval", 0.3)
    options.setdefault("ping_timeout", 0.5)
    options.setdefault("reconnect_delay", 0.05)
    client = cartesia_sync.Client(url=url, plugins=[log, *plugins_extra], load_entrypoints=False, **options)
    session = client.connect(realtime=realtime)
    step = 3200
    for start in range(0, len(audio), step):
        session.send(audio[start : start + step])
        if finalize_at and start == int(finalize_at * 32000):
            session.finalize(timeout=15)
    session.close(timeout=15)
    return session, log


@pytest.fixture(scope="module")
def undisturbed() -> tuple[str, tuple[Any, ...]]:
    """The text and words of the audio with no fault."""
    with FakeCartesia(text=checksum_text, segment_bytes=SEGMENT) as server:
        session, _ = stream(server.url, speech(), realtime=False)
    assert session.error is None and len(session.words) == AUDIO_SECONDS * 4
    return session.text, session.words


def assert_continuous(session: cartesia_sync.Session, undisturbed: tuple[str, tuple[Any, ...]]) -> None:
    text, words = undisturbed
    assert session.error is None, session.error
    assert session.text == text  # no final lost, none duplicated, none reordered
    assert [(w.word, round(w.start, 6), round(w.end, 6)) for w in session.words] == [
        (w.word, round(w.start, 6), round(w.end, 6)) for w in words
    ]
    ends = [w.end for w in session.words]
    assert ends == sorted(ends)


FAULTS = {
    "reset mid-stream": Faults(reset_after_up=60_000),
    "reset mid-receive": Faults(reset_after_down=600),
    "close after N bytes (mid-frame)": Faults(close_after_up=50_001),
    "black hole, data dropped": Faults(blackhole_after_up=40_000, blackhole_mode="drop"),
    "black hole, peer stalled": Faults(blackhole_after_up=40_000, blackhole_mode="stall"),
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_a_fault_on_the_first_connection_is_survived_without_losing_a_word(fake, undisturbed, fault):
    with FaultProxy(fake.port, faults=lambda i: FAULTS[fault] if i == 0 else Faults()) as proxy:
        session, log = stream(proxy.url(), speech())
    assert_continuous(session, undisturbed)
    assert proxy.accepted == 2
    stats = session.stats
    assert stats.reconnects == 1 and len(log.reconnects) == 1
    event = log.reconnects[0]
    assert isinstance(event.error, ConnectionLostError) and event.gap == 0.0 and event.attempts >= 1
    assert stats.audio_gap == 0.0 and stats.audio_replayed == pytest.approx(event.replayed)
    assert stats.audio_sent == pytest.approx(AUDIO_SECONDS)  # each byte counted once as sent...
    assert stats.audio_acknowledged == pytest.approx(AUDIO_SECONDS)  # ...and all of it confirmed
    assert session.errors == (event.error,) and log.errors == []  # survived: kept, not raised
    if fault.startswith("black hole"):
        assert "half-open" in str(event.error)


@pytest.mark.parametrize("fault", ["reset mid-stream", "close after N bytes (mid-frame)"])
def test_a_fault_in_the_middle_of_an_unpaced_batch_of_frames_is_survived(fake, undisturbed, fault):
    # Unpaced, a deep queue goes out several frames per write: the cut falls inside such a write.
    with FaultProxy(fake.port, faults=lambda i: FAULTS[fault] if i == 0 else Faults()) as proxy:
        session, log = stream(proxy.url(), speech(), realtime=False)
    assert_continuous(session, undisturbed)
    assert proxy.accepted == 2 and session.stats.reconnects == 1
    assert session.stats.audio_sent == pytest.approx(AUDIO_SECONDS)  # a failed batch is not counted as sent
    assert session.stats.audio_acknowledged == pytest.approx(AUDIO_SECONDS) and session.stats.audio_gap == 0


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_without_reconnect_the_same_fault_is_a_clear_error_and_nothing_hangs(fake, fault):
    with FaultProxy(fake.port, faults=FAULTS[fault]) as proxy:
        started = time.monotonic()
        with pytest.raises(ConnectionLostError) as caught:
            stream(proxy.url(), speech(), reconnect=False)
        assert time.monotonic() - started < 30
    assert "open a new session and resend it" in str(caught.value)
    assert proxy.accepted == 1


def test_latency_and_a_slow_link_need_no_reconnect(fake, undisturbed):
    slow = Faults(latency=0.05, jitter=0.02, bandwidth=48_000, slice_size=700)
    with FaultProxy(fake.port, faults=slow) as proxy:
        session, log = stream(proxy.url(), speech(), realtime=2.0)
    assert_continuous(session, undisturbed)
    assert session.stats.reconnects == 0 and log.reconnects == []


@pytest.mark.parametrize("cut_after", [700, 900, 1100])
def test_a_finalize_in_flight_is_answered_on_the_new_connection(fake, cut_after):
    # The finalize ends a short segment, so the run is compared with an undisturbed run that finalizes
    # at the same place. The cuts fall around the flush_done: before it, inside it, after it.
    with FakeCartesia(text=checksum_text, segment_bytes=SEGMENT) as server:
        baseline, _ = stream(server.url, speech(), finalize_at=1.0)
    with FaultProxy(fake.port, faults=lambda i: Faults(reset_after_down=cut_after) if i == 0 else Faults()) as proxy:
        session, log = stream(proxy.url(), speech(), finalize_at=1.0)
    assert_continuous(session, (baseline.text, baseline.words))
    assert len(log.reconnects) == 1 and session.stats.reconnects == 1


def test_the_end_command_is_resent_when_the_connection_drops_while_closing(undisturbed):
    scenario = Scenario(end_delay=0.3, faulty_connections=1)
    with (
        FakeCartesia(text=checksum_text, segment_bytes=SEGMENT, scenario=scenario) as server,
        FaultProxy(server.port) as proxy,
    ):
        log = ReconnectLog()
        client = cartesia_sync.Client(url=proxy.url(), plugins=[log], load_entrypoints=False, reconnect_delay=0.05)
        session = client.connect(realtime=False)
        session.send(speech())
        session.finalize()

        def cut_during_the_drain() -> None:
            time.sleep(0.1)
            proxy.reset_all()

        import threading

        cutter = threading.Thread(target=cut_during_the_drain)
        cutter.start()
        session.close(timeout=10)
        cutter.join(5)
    assert_continuous(session, undisturbed)
    assert session.stats.reconnects == 1
    assert [r.texts[-1] for r in server.connections] == ["done", "done"]


def test_a_server_error_with_a_5xx_status_is_retried_and_a_4xx_one_is_not(undisturbed):
    transient = Scenario(error_after_bytes=40_000, faulty_connections=1)
    with FakeCartesia(text=checksum_text, segment_bytes=SEGMENT, scenario=transient) as server:
        session, log = stream(server.url, speech())
    assert_continuous(session, undisturbed)
    assert isinstance(log.reconnects[0].error, ServerError) and log.reconnects[0].error.status_code == 500

    bad_request = dict(Scenario().error_message, status_code=400, error_code="bad_request", message="no")
    permanent = Scenario(error_after_bytes=40_000, error_message=bad_request, faulty_connections=1)
    with FakeCartesia(text=checksum_text, segment_bytes=SEGMENT, scenario=permanent) as server:
        with pytest.raises(ServerError) as caught:
            stream(server.url, speech())
        assert len(server.connections) == 1
    assert caught.value.status_code == 400


def test_a_refused_key_on_reconnect_is_permanent_and_not_retried():
    with (
        FakeCartesia(text=checksum_text, segment_bytes=SEGMENT, api_key="sk_right") as server,
        FaultProxy(server.port, faults=lambda i: Faults(reset_after_up=40_000) if i == 0 else Faults()) as proxy,
    ):
        client = cartesia_sync.Client(url=proxy.url(), api_key="sk_right", load_entrypoints=False, reconnect_delay=0.05)
        session = client.connect(realtime=8.0)
        server._api_key = cartesia_sync._secrets.ApiKey("sk_rotated")  # the key is revoked mid-session
        with pytest.raises(AuthenticationError) as caught:
            for start in range(0, len(speech()), 3200):
                session.send(speech()[start : start + 3200])
            session.close(timeout=10)
        session.abort()
    assert caught.value.status_code == 401 and session.stats.reconnect_attempts == 1


def test_attempts_are_bounded_with_backoff_and_end_in_a_clear_error(fake):
    with FaultProxy(fake.port, faults=lambda i: Faults(reset_after_up=40_000) if i == 0 else Faults()) as proxy:
        client = cartesia_sync.Client(
            url=proxy.url(), load_entrypoints=False, reconnect_attempts=3, reconnect_delay=0.05, reconnect_max_delay=0.2
        )
        session = client.connect(realtime=8.0)
        proxy.refuse = True  # every new connection is refused
        with pytest.raises(ConnectionLostError) as caught:
            for start in range(0, len(speech()), 3200):
                session.send(speech()[start : start + 3200])
            session.close(timeout=10)
        session.abort()
    assert "3 reconnect attempts failed" in str(caught.value)
    assert isinstance(caught.value.__cause__, cartesia_sync.ConnectError)
    assert session.stats.reconnect_attempts == 3 and session.stats.reconnects == 0


def test_a_server_that_fails_every_connection_is_given_up_on():
    scenario = Scenario(drop_after_bytes=16_000)  # every connection drops before anything is confirmed
    with FakeCartesia(text=checksum_text, segment_bytes=64_000, scenario=scenario) as server:
        with pytest.raises(ConnectionLostError, match="3 reconnects in a row that made no progress"):
            stream(server.url, speech(), reconnect_attempts=3)
        assert len(server.connections) == 4


def test_the_replay_buffer_is_bounded_and_what_it_let_go_is_reported_as_a_gap():
    # No final arrives before the drop (one segment per 2 s), so everything is unacknowledged.
    with FakeCartesia(
        text=checksum_text, segment_bytes=64_000, scenario=Scenario(drop_after_bytes=48_000, faulty_connections=1)
    ) as server:
        session, log = stream(server.url, speech(), replay_seconds=0.5)
    assert session.error is None and len(log.reconnects) == 1
    event = log.reconnects[0]
    assert event.gap > 0 and session.stats.audio_gap == pytest.approx(event.gap)
    assert event.replayed <= 0.5 + 1e-9
    assert event.resumed_at == pytest.approx(event.gap)  # times continue after the hole
    ends = [w.end for w in session.words]
    assert ends == sorted(ends) and ends[-1] == pytest.approx(AUDIO_SECONDS)


def test_keepalive_keeps_an_idle_session_and_an_idle_close_ends_it_cleanly():
    with FakeCartesia(idle_timeout=0.8) as server:
        kept = cartesia_sync.Client(url=server.url, load_entrypoints=False, keepalive_interval=0.2).connect()
        kept.send(speech(0.2))
        time.sleep(1.5)
        assert kept.ended_by_server is None
        kept.send(speech(0.2))
        kept.close()
        assert kept.error is None and kept.stats.keepalive_sent > 0 and kept.stats.reconnects == 0

        idle = cartesia_sync.Client(url=server.url, load_entrypoints=False, keepalive_interval=None).connect()
        idle.send(speech(0.2))
        idle.finalize()
        deadline = time.monotonic() + 5
        while idle.ended_by_server is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(SessionClosedError, match="idle"):
            idle.send(speech(0.1))
        idle.close()
    assert idle.error is None and idle.stats.reconnects == 0


def test_the_half_open_watchdog_fires_within_its_budget(fake):
    with FaultProxy(fake.port, faults=Faults(blackhole_after_up=20_000)) as proxy:
        client = cartesia_sync.Client(
            url=proxy.url(), load_entrypoints=False, reconnect=False, ping_interval=0.3, ping_timeout=0.4
        )
        session = client.connect(realtime=False)
        session.send(speech(1.0))
        started = time.monotonic()
        deadline = started + 10
        while session.error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        waited = time.monotonic() - started
        session.abort()
    assert isinstance(session.error, ConnectionLostError) and "half-open" in str(session.error)
    assert waited < 10  # detected; the budget is ping_interval + ping_timeout plus one socket poll
    assert session.stats.pings_sent >= 1


def test_failures_are_classified():
    def lost(code):
        return ConnectionLostError("x", close_code=code)

    assert all(is_transient(lost(code)) for code in (None, 1000, 1001, 1006, 1011, 1012, 1013, 1014))
    assert not any(is_transient(lost(code)) for code in (1002, 1003, 1007, 1008, 1009, 1010, 4000))
    assert is_transient(ServerError("x", status_code=503)) and not is_transient(ServerError("x", status_code=400))
    assert not is_transient(ServerError("x"))
    assert not is_transient(AuthenticationError("x", status_code=401))
    assert not is_transient(cartesia_sync.PaymentRequiredError("x", status_code=402))
    assert not is_transient(cartesia_sync.ConnectError("x", status_code=404))
    assert is_transient(cartesia_sync.RateLimitError("x", status_code=429))
    assert is_transient(cartesia_sync.ConnectError("x", status_code=502))
    assert is_transient(cartesia_sync.ConnectError("timed out"))


def test_backoff_is_exponential_with_full_jitter_and_capped():
    assert list(backoff_delays(0.5, 3.0, 5, rand=lambda: 1.0)) == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert list(backoff_delays(0.5, 3.0, 2, start=1, rand=lambda: 1.0)) == [1.0, 2.0]
    assert list(backoff_delays(0.5, 3.0, 3, rand=lambda: 0.0)) == [0.0, 0.0, 0.0]


def test_subtitles_stay_monotonic_and_complete_across_a_reconnect(fake, undisturbed, tmp_path):
    import srt

    from cartesia_sync_plugins.subtitles import SubtitleWriter

    path = tmp_path / "out.srt"
    with FaultProxy(fake.port, faults=lambda i: Faults(reset_after_up=60_000) if i == 0 else Faults()) as proxy:
        session, log = stream(proxy.url(), speech(), plugins_extra=[SubtitleWriter(srt=path)])
    assert_continuous(session, undisturbed)
    assert len(log.reconnects) == 1
    cues = list(srt.parse(path.read_text(), ignore_errors=False))
    starts = [cue.start.total_seconds() for cue in cues]
    assert starts == sorted(starts) and all(a.end <= b.start for a, b in zip(cues, cues[1:], strict=False))
    assert " ".join(cue.content.replace("\n", " ") for cue in cues).split() == undisturbed[0].split()
    assert cues[-1].end.total_seconds() == pytest.approx(AUDIO_SECONDS)


def test_no_new_connection_is_installed_once_abort_began(fake):
    """abort() while a reconnect handshake is in flight: the handshake is not completed into the session."""
    import threading

    aborting = threading.Event()
    after_abort: list[Reconnected] = []

    class Watch:
        @hookimpl
        def on_reconnect(self, event: Reconnected) -> None:
            if aborting.is_set():
                after_abort.append(event)

    slow_second = lambda i: Faults(reset_after_up=20_000) if i == 0 else Faults(latency=0.12)  # noqa: E731
    with FaultProxy(fake.port, faults=slow_second) as proxy:
        client = cartesia_sync.Client(
            url=proxy.url(), plugins=[Watch()], load_entrypoints=False, reconnect_delay=0.001, ping_interval=None
        )
        session = client.connect(realtime=False)
        session.send(speech(1.0))
        assert proxy.wait_connections(2, timeout=5)  # the reconnect handshake has started
        aborting.set()
        session.abort()
        assert session.closed
    assert after_abort == [] and session.stats.reconnects == 0
    stats = session.stats
    assert stats.audio_sent + stats.audio_unsent == pytest.approx(stats.audio_queued)
