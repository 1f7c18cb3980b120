"""The local server's turns endpoint with the real engine; the library's TurnSession and the official SDK as clients."""

from __future__ import annotations

import json
import threading
import wave
from pathlib import Path

import pytest

pytest.importorskip("pocketsphinx")

from websockets.exceptions import ConnectionClosedOK  # noqa: E402

import cartesia_sync  # noqa: E402
from cartesia_sync.local import LocalServer  # noqa: E402
from cartesia_sync.local._metrics import word_error_rate  # noqa: E402

pytestmark = pytest.mark.timeout(120)

DATA = Path(__file__).parent / "data"


def wav(name: str) -> bytes:
    with wave.open(str(DATA / name)) as w:
        return w.readframes(w.getnframes())


def truth(name: str) -> str:
    return dict(line.split("\t") for line in (DATA / "fixtures.tsv").read_text().splitlines())[name]


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * 16000))


TWO_UTTERANCES = silence(0.3) + wav("utt01.wav") + silence(1.5) + wav("utt05.wav") + silence(1.5)


@pytest.fixture
def server():
    with LocalServer() as local:  # pocketsphinx
        yield local


def turns_client(server: LocalServer, **options) -> cartesia_sync.Client:
    stream_url = server.url
    return cartesia_sync.Client(url=stream_url, load_entrypoints=False, **options)


def test_a_turn_session_gets_two_turns_with_the_spoken_words(server):
    with turns_client(server).connect_turns(realtime=False) as session:
        session.send(TWO_UTTERANCES)
    assert len(session.turns) == 2, session.turns
    assert word_error_rate([truth("utt01.wav")], [session.turns[0].text]) < 0.35
    assert word_error_rate([truth("utt05.wav")], [session.turns[1].text]) < 0.35
    assert all(t.text.startswith(" ") for t in session.turns)  # joined verbatim, the text reads as text
    assert session.text == session.turns[0].text + session.turns[1].text
    assert not session.errors and session.request_id


def test_close_in_the_middle_of_a_turn_ends_it(server):
    with turns_client(server).connect_turns(realtime=False) as session:
        session.send(silence(0.3) + wav("utt02.wav")[: 16000 * 2 * 2])  # two seconds, then close
    assert len(session.turns) == 1 and session.turns[0].text.strip()


def test_config_mid_session_is_applied_and_a_bad_one_is_a_non_fatal_error(server):
    with turns_client(server, raise_errors=False).connect_turns(realtime=False) as session:
        session._core.queue_command(  # a hand-written config: spaces, newlines, an invalid value
            cartesia_sync._audio_queue.Command('{ "type" : "config",\n "turn": {"end_timeout_ms": 99999} }'),
            on_queued=lambda: None,
        )
        session.configure(end_timeout_ms=2000, end_threshold=0.05)
        session.send(silence(0.3) + wav("utt04.wav") + wav("utt06.wav") + silence(2.0))
    messages = [str(e) for e in session.errors]
    assert any("end_timeout_ms=99999" in m for m in messages), messages  # the bad config, reported
    assert len(session.turns) == 1  # the about 1 s pause between the two recordings is no longer an end


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("model=ink-whisper&encoding=pcm_s16le&sample_rate=16000", "not valid for this endpoint"),
        ("model=ink-2&sample_rate=16000", "encoding query parameter is required"),
        ("model=ink-2&encoding=pcm_s16le&sample_rate=16000&turn_end_threshold=0.9", "out of range"),
        (
            "model=ink-2&encoding=pcm_s16le&sample_rate=16000&turn_start_threshold=0.5&turn_eager_end_threshold=0.5",
            "greater",
        ),
    ],
)
def test_a_bad_query_is_an_error_event_then_a_close(server, query, message):
    from websockets.sync.client import connect

    url = server.url.replace("/stt/websocket", "/stt/turns/websocket") + "?" + query
    with connect(url) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "error" and first["status_code"] == 400 and message in first["message"]
        assert first["done"] is True


def test_an_unknown_command_is_a_non_fatal_error_event(server):
    from websockets.sync.client import connect

    query = "?model=ink-2&encoding=pcm_s16le&sample_rate=16000"
    with connect(server.url.replace("/stt/websocket", "/stt/turns/websocket") + query) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connected"
        ws.send("finalize")
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["error_code"] == "unknown_command" and error["done"] is False
        ws.send('{"type": "close"}')
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=10)


def test_the_official_sdk_streams_two_utterances_to_the_local_server(server):
    cartesia = pytest.importorskip("cartesia")
    client = cartesia.Cartesia(
        api_key="local", base_url=server.url.replace("ws://", "http://").replace("/stt/websocket", "")
    )
    events: list[dict] = []
    with client.stt.auto_finalize.websocket(model="ink-2", encoding="pcm_s16le", sample_rate=16000) as ws:

        def send_all() -> None:
            for i in range(0, len(TWO_UTTERANCES), 3200):
                ws.send_raw(TWO_UTTERANCES[i : i + 3200])
            ws.send({"type": "close"})

        sender = threading.Thread(target=send_all, name="test-sdk-sender")
        sender.start()
        for event in ws:
            events.append(event.to_dict() if hasattr(event, "to_dict") else dict(event))
        sender.join(30)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "connected"
    assert kinds.count("turn.start") == 2 and kinds.count("turn.end") == 2
    ends = [e["transcript"] for e in events if e["type"] == "turn.end"]
    assert word_error_rate([truth("utt01.wav")], [ends[0]]) < 0.35
    assert word_error_rate([truth("utt05.wav")], [ends[1]]) < 0.35
    assert len({e.get("request_id") for e in events}) == 1


# -- FakeCartesia scripts turns for users' tests (the scripted engine, no model) ----------------------


def tone(seconds: float, level: int = 3000) -> bytes:
    import numpy as np

    samples = np.full(int(seconds * 16000), level, dtype="<i2")
    samples[1::2] = -level
    return samples.tobytes()


def test_fake_cartesia_scripts_turn_texts_eager_ends_and_resumes():
    from cartesia_sync.testing import FakeCartesia

    kinds: list[str] = []

    class Spy:
        @cartesia_sync.hookimpl
        def on_event(self, event):
            kinds.append(event.type)

    audio = (
        silence(0.2)
        + tone(0.5)
        + silence(1.5)  # a pause longer than the end: a second turn
        + tone(0.4)
        + silence(0.8)  # longer than the eager end, shorter than the end: eager end, then resume
        + tone(0.4)
        + silence(1.5)
    )
    with FakeCartesia(segments=["Hello there.", " Bye.", " Really."], silence_split=0.2) as fake:
        client = cartesia_sync.Client(url=fake.url, plugins=[Spy()], load_entrypoints=False)
        with client.connect_turns(realtime=False) as session:
            session.send(audio)
    assert [t.text for t in session.turns] == ["Hello there.", " Bye. Really."]
    assert session.turns[1].eager
    turn_kinds = [k for k in kinds if k.startswith("turn.") and k != "turn.update"]
    assert turn_kinds == [
        "turn.start", "turn.eager_end", "turn.end",
        "turn.start", "turn.eager_end", "turn.resume", "turn.eager_end", "turn.end",
    ]  # fmt: skip


def test_fake_cartesia_turns_with_a_scripted_error_and_a_drop():
    from cartesia_sync.testing import FakeCartesia, Scenario

    error = {"type": "error", "status_code": 500, "message": "engine hiccup", "done": True}
    audio = silence(0.2) + tone(0.5) + silence(1.5) + tone(0.5) + silence(1.5)
    scenario = Scenario(error_after_bytes=len(silence(0.2) + tone(0.5) + silence(1.2)), error_message=error)
    with FakeCartesia(segments=["One.", " Two."], silence_split=0.2, scenario=scenario) as fake:
        client = cartesia_sync.Client(url=fake.url, load_entrypoints=False, reconnect=False, raise_errors=False)
        with client.connect_turns(realtime=False) as session:
            session.send(audio)
    assert isinstance(session.error, cartesia_sync.ServerError) and "engine hiccup" in str(session.error)
    assert [t.text for t in session.turns] == ["One."]  # what ended before the error is kept


def test_an_idle_turn_session_is_ended_by_the_server_without_an_error():
    import time

    from cartesia_sync import SessionClosedError

    with LocalServer(idle_timeout=0.5) as local:
        session = turns_client(local).connect_turns(realtime=False)
        deadline = time.monotonic() + 10
        while session.ended_by_server is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.ended_by_server and "idle" in session.ended_by_server
        with pytest.raises(SessionClosedError):
            session.send(silence(0.1))
        session.close()  # releases it, no error
    assert session.closed and session.error is None
