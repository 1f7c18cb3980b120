"""TurnSession: the turns endpoint on the shared session machinery, against a scripted turns server on loopback."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from fault_proxy import FaultProxy, Faults
from turns_server import TurnsServer

import cartesia_sync
from cartesia_sync import (
    ConfigurationError,
    ProtocolError,
    ServerError,
    SessionState,
    Turn,
    TurnEnd,
    TurnSession,
    hookimpl,
)

pytestmark = pytest.mark.timeout(60)


def speech(seconds: float, level: int) -> bytes:
    """A square wave of amplitude ``level``: every 10 ms block peaks at exactly ``level``."""
    samples = np.full(int(seconds * 16000), level, dtype="<i2")
    samples[1::2] = -level
    return samples.tobytes()


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(seconds * 16000)


class TurnSpy:
    name = "turn-spy"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.sessions: list[object] = []

    @hookimpl
    def on_session_start(self, session):
        self.sessions.append(session)
        self.calls.append(("start-session", ""))

    @hookimpl
    def on_turn_start(self, event):
        self.calls.append(("turn.start", ""))

    @hookimpl
    def on_turn_update(self, event):
        self.calls.append(("turn.update", event.transcript))

    @hookimpl
    def on_turn_eager_end(self, event):
        self.calls.append(("turn.eager_end", event.transcript))

    @hookimpl
    def on_turn_resume(self, event):
        self.calls.append(("turn.resume", ""))

    @hookimpl
    def on_turn_end(self, session, event):
        assert session.turns[-1].text == event.transcript  # the turn is in session.turns already
        self.calls.append(("turn.end", event.transcript))

    @hookimpl
    def on_error(self, error):
        self.calls.append(("error", type(error).__name__))

    @hookimpl
    def on_session_end(self, session):
        self.calls.append(("end-session", ""))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


def client(server: TurnsServer, *plugins: object, **options) -> cartesia_sync.Client:
    return cartesia_sync.Client(base_url=server.base_url, plugins=list(plugins), load_entrypoints=False, **options)


def test_two_utterances_make_two_turns_in_a_valid_order():
    spy = TurnSpy()
    with TurnsServer() as server:
        with client(server, spy).connect_turns(realtime=False) as session:
            assert isinstance(session, TurnSession)
            session.send(silence(0.2) + speech(1.0, 1000) + silence(1.0) + speech(0.5, 2000) + silence(1.0))
        record = server.records[0]
    assert [t.text for t in session.turns] == [" level1000:1000ms", " level2000:500ms"]
    assert session.text == " level1000:1000ms level2000:500ms"
    assert all(isinstance(t, Turn) and t.eager for t in session.turns)  # each ended right after an eager end
    first, second = session.turns
    assert first.start <= first.end <= second.start <= second.end <= 3.7  # unpaced: all sent at once
    assert session.stats.turns == 2 and session.request_id and session.state is SessionState.CLOSED
    assert spy.sessions == [session]
    kinds = spy.kinds()
    assert kinds[0] == "start-session" and kinds[-1] == "end-session"
    turn_events = [k for k in kinds if k.startswith("turn.")]
    assert turn_events == [
        "turn.start", "turn.update", "turn.update", "turn.update", "turn.eager_end", "turn.end",
        "turn.start", "turn.update", "turn.eager_end", "turn.end",
    ]  # fmt: skip
    assert record.commands == [{"type": "close"}]
    assert "error" not in kinds


def test_an_eager_end_then_resume_stays_one_turn():
    spy = TurnSpy()
    with TurnsServer() as server:
        with client(server, spy).connect_turns(realtime=False) as session:
            session.send(speech(0.5, 700) + silence(0.4) + speech(0.5, 900) + silence(1.0))
    assert [t.text for t in session.turns] == [" level700:1000ms"]
    turn_events = [k for k in spy.kinds() if k.startswith("turn.") and k != "turn.update"]
    assert turn_events == ["turn.start", "turn.eager_end", "turn.resume", "turn.eager_end", "turn.end"]


def test_close_in_the_middle_of_a_turn_ends_it():
    with TurnsServer() as server:
        session = client(server).connect_turns(realtime=False)
        session.send(speech(0.8, 1234))
        assert session.open_turn_text is None or session.open_turn_text.startswith(" level1234")
        session.close()
    assert [t.text for t in session.turns] == [" level1234:800ms"]
    assert session.open_turn_text is None


def test_configure_goes_out_in_order_with_the_audio_and_takes_effect():
    with TurnsServer() as server:
        with client(server).connect_turns(realtime=False, end_timeout_ms=640) as session:
            session.send(speech(0.5, 500) + silence(0.7))  # ends at 600 ms of silence
            session.configure(end_timeout_ms=1200, end_threshold=0.1)
            session.send(speech(0.5, 600) + silence(0.8))  # 800 ms of silence no longer ends it
        record = server.records[0]
    assert record.commands[0] == {"type": "config", "turn": {"end_timeout_ms": 1200, "end_threshold": 0.1}}
    assert record.commands[-1] == {"type": "close"}
    assert [t.text for t in session.turns] == [" level500:500ms", " level600:500ms"]
    assert session.turns[1].eager  # the second one was ended by close, after its eager end
    assert session.turn_settings.end_timeout_ms == 1200


def test_the_handshake_carries_the_turn_parameters_and_no_streaming_ones():
    with TurnsServer() as server:
        session = client(server, language="en", min_volume=0.2).connect_turns(
            realtime=False, start_threshold=0.7, eager_end_threshold=0.45, end_threshold=0.1, keyterms=["Ink two"]
        )
        session.close()
        path = server.records[0].path
    parts = urlsplit(path)
    query = parse_qs(parts.query)
    assert parts.path == "/stt/turns/websocket"
    assert query["model"] == ["ink-2"] and query["encoding"] == ["pcm_s16le"] and query["sample_rate"] == ["16000"]
    assert query["turn_start_threshold"] == ["0.7"] and query["turn_eager_end_threshold"] == ["0.45"]
    assert query["turn_end_threshold"] == ["0.1"] and query["keyterm"] == ["Ink two"]
    assert "turn_end_timeout_ms" not in query  # not given: the server's default
    assert "language" not in query and "min_volume" not in query


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"start_threshold": 0.95}, "start_threshold=0.95 is out of range: it must be between 0.5 and 0.9"),
        ({"eager_end_threshold": 0.2}, "eager_end_threshold=0.2 is out of range"),
        ({"end_threshold": 0.6}, "end_threshold=0.6 is out of range"),
        ({"end_timeout_ms": 500}, "end_timeout_ms=500 ms is out of range: it must be between 640 and 11200 ms"),
        ({"end_timeout_ms": 20000}, "between 640 and 11200 ms"),
        ({"start_threshold": 0.55, "eager_end_threshold": 0.6}, "start_threshold (0.55) must be greater than"),
        ({"eager_end_threshold": 0.3, "end_threshold": 0.3}, "eager_end_threshold (0.3) must be greater than"),
        ({"end_threshold": float("nan")}, "end_threshold must be a number"),
        ({"start_threshold": True}, "start_threshold must be a number"),
    ],
)
def test_thresholds_are_checked_before_any_connection(settings, message):
    with TurnsServer() as server:
        with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
            client(server).connect_turns(**settings)
        assert server.records == []


def test_configure_checks_the_merged_settings_and_sends_nothing_when_refused():
    with TurnsServer() as server:
        with client(server).connect_turns(realtime=False, end_threshold=0.3) as session:
            with pytest.raises(ConfigurationError, match="must be greater than end_threshold"):
                session.configure(eager_end_threshold=0.3)
            with pytest.raises(TypeError, match="unexpected keyword"):
                session.configure(**{"speed": 2})  # type: ignore[arg-type]
        assert server.records[0].commands == [{"type": "close"}]


def test_a_model_that_is_not_a_turns_model_is_refused():
    with TurnsServer() as server, pytest.raises(ConfigurationError, match="serves ink-2"):
        client(server).connect_turns(model="ink-whisper")


def test_a_streaming_url_alone_leads_to_the_turns_url_beside_it():
    with TurnsServer() as server:
        stream_url = f"ws://127.0.0.1:{server.port}/stt/websocket"
        session = cartesia_sync.Client(url=stream_url, load_entrypoints=False).connect_turns(realtime=False)
        session.close()
        assert urlsplit(server.records[0].path).path == "/stt/turns/websocket"
    with pytest.raises(ConfigurationError, match="pass base_url="):
        cartesia_sync.Client(url="ws://127.0.0.1:9/custom", load_entrypoints=False).connect_turns()


OUT_OF_ORDER = {
    "update before start": ['{"type":"turn.update","transcript":" a"}', '{"type":"turn.end","transcript":" a"}'],
    "resume without eager end": [
        '{"type":"turn.start"}',
        '{"type":"turn.resume"}',
        '{"type":"turn.end","transcript":" b"}',
    ],
    "start while a turn is open": [
        '{"type":"turn.start"}',
        '{"type":"turn.update","transcript":" first"}',
        '{"type":"turn.start"}',
        '{"type":"turn.end","transcript":" second"}',
    ],
    "eager end twice": [
        '{"type":"turn.start"}',
        '{"type":"turn.eager_end","transcript":" c"}',
        '{"type":"turn.eager_end","transcript":" c"}',
        '{"type":"turn.end","transcript":" c"}',
    ],
}


@pytest.mark.parametrize("script", list(OUT_OF_ORDER.values()), ids=list(OUT_OF_ORDER))
def test_an_ordering_violation_is_a_protocol_error_and_no_event_is_dropped(script):
    spy = TurnSpy()
    with TurnsServer(script=script) as server:
        session = client(server, spy, raise_errors=False).connect_turns(realtime=False)
        session.send(silence(0.1))
        session.close()
    sent_turn_events = [json.loads(text)["type"] for text in script]
    assert [k for k in spy.kinds() if k.startswith("turn.")] == sent_turn_events  # every event reached the hooks
    assert any(isinstance(e, ProtocolError) and "turn order" in str(e) for e in session.errors)
    assert ("error", "ProtocolError") in spy.calls
    assert session.turns and session.turns[-1].text == json.loads(script[-1])["transcript"]


def test_an_ordering_violation_is_raised_at_close_by_default():
    with TurnsServer(script=['{"type":"turn.resume"}']) as server:
        session = client(server).connect_turns(realtime=False)
        session.send(silence(0.1))
        with pytest.raises(ProtocolError, match="turn.resume came without a turn.eager_end"):
            session.close()
    assert session.closed


def test_a_fatal_error_event_ends_the_session_with_a_server_error():
    error = {"type": "error", "status_code": 400, "error_code": "model_not_found", "message": "bad model", "done": True}
    with TurnsServer(script=[json.dumps(error)]) as server:
        session = client(server, reconnect=False).connect_turns(realtime=False)
        session.send(silence(0.1))
        with pytest.raises(ServerError, match="bad model"):
            session.close()
    assert session.closed and isinstance(session.error, ServerError)


def test_a_turn_end_with_empty_text_is_a_turn():
    with TurnsServer(script=['{"type":"turn.start"}', '{"type":"turn.end","transcript":""}']) as server:
        with client(server).connect_turns(realtime=False) as session:
            session.send(silence(0.1))
    assert [t.text for t in session.turns] == [""] and session.text == ""


def test_hooks_get_turn_events_as_frozen_dataclasses():
    ends: list[TurnEnd] = []

    class Keep:
        @hookimpl
        def on_turn_end(self, event):
            ends.append(event)

    with TurnsServer() as server:
        with client(server, Keep()).connect_turns(realtime=False) as session:
            session.send(speech(0.3, 300) + silence(0.7))
    assert len(ends) == 1 and ends[0].transcript == " level300:300ms" and ends[0].request_id == session.request_id
    with pytest.raises(AttributeError):
        ends[0].transcript = "changed"  # type: ignore[misc]


def test_a_turn_session_reconnects_and_the_turns_come_out_as_without_the_fault():
    """The connection drops in the middle of the second turn: the audio since the first turn.end is resent."""
    audio = silence(0.2) + speech(0.6, 800) + silence(0.8) + speech(0.6, 1600) + silence(0.8)
    with TurnsServer() as clean:
        with client(clean).connect_turns(realtime=False) as expected:
            expected.send(audio)
    drop_at = len(silence(0.2) + speech(0.6, 800) + silence(0.8) + speech(0.3, 1600))
    with TurnsServer(drop_after_bytes=drop_at) as faulty:
        with client(faulty).connect_turns(realtime=2.0) as session:
            session.send(audio)
        connections = len(faulty.records)
    assert connections == 2
    assert session.stats.reconnects == 1
    assert (
        [t.text for t in session.turns]
        == [t.text for t in expected.turns]
        == [
            " level800:600ms",
            " level1600:600ms",
        ]
    )
    assert session.text == expected.text


# -- every fault of the fault proxy -------------------------------------------------------------

TURN_AUDIO = (
    silence(0.2) + speech(0.6, 800) + silence(0.8) + speech(0.6, 1600) + silence(0.8) + speech(0.6, 2400) + silence(0.8)
)
TURN_FAULTS = {
    "reset mid-stream": Faults(reset_after_up=60_000),
    "reset mid-receive": Faults(reset_after_down=500),
    "close after N bytes (mid-frame)": Faults(close_after_up=50_001),
    "black hole, data dropped": Faults(blackhole_after_up=40_000, blackhole_mode="drop"),
    "black hole, peer stalled": Faults(blackhole_after_up=40_000, blackhole_mode="stall"),
}


def stream_turns(url: str, **turn_settings: float) -> TurnSession:
    client = cartesia_sync.Client(
        url=url, load_entrypoints=False, ping_interval=0.3, ping_timeout=0.5, reconnect_delay=0.05
    )
    with client.connect_turns(realtime=4.0, **turn_settings) as session:
        for start in range(0, len(TURN_AUDIO), 3200):
            session.send(TURN_AUDIO[start : start + 3200])
    return session


@pytest.mark.parametrize("fault", list(TURN_FAULTS), ids=list(TURN_FAULTS))
def test_turns_come_out_the_same_through_every_fault(fault):
    with TurnsServer() as server:
        undisturbed = stream_turns(f"ws://127.0.0.1:{server.port}/stt/websocket")
        with FaultProxy(server.port, faults=lambda i: TURN_FAULTS[fault] if i == 0 else Faults()) as proxy:
            session = stream_turns(proxy.url())
            accepted = proxy.accepted
    assert [t.text for t in undisturbed.turns] == [" level800:600ms", " level1600:600ms", " level2400:600ms"]
    assert session.error is None, session.error
    assert accepted == 2 and session.stats.reconnects == 1
    assert [t.text for t in session.turns] == [t.text for t in undisturbed.turns]  # none lost, none twice
    assert session.text == undisturbed.text


def _speech_digest(number: int, audio: bytes) -> str:
    import hashlib

    return " " + hashlib.sha256(audio).hexdigest()[:8]  # the same speech gives the same text on any connection


@pytest.mark.parametrize("fault", ["reset mid-stream", "close after N bytes (mid-frame)", "black hole, data dropped"])
def test_turns_through_faults_against_the_fake_server(fault):
    from cartesia_sync.testing import FakeCartesia

    with FakeCartesia(text=_speech_digest, silence_split=0.2) as fake:
        undisturbed = stream_turns(fake.url, end_timeout_ms=700)  # the 0.8 s pauses end turns
        with FaultProxy(fake.port, faults=lambda i: TURN_FAULTS[fault] if i == 0 else Faults()) as proxy:
            session = stream_turns(proxy.url(), end_timeout_ms=700)
            accepted = proxy.accepted
    assert len(undisturbed.turns) == 3
    assert session.error is None, session.error
    assert accepted == 2 and session.stats.reconnects == 1
    assert [t.text for t in session.turns] == [t.text for t in undisturbed.turns]
