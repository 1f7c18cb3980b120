"""The happy path through the public API: send, finalize, close, results and hooks."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest
from conftest import pcm, short_facts

import cartesia_sync
from cartesia_sync import SessionClosedError, SessionState


def test_full_session_delivers_every_final_in_order(make_client, server, recorder):
    client = make_client()
    with client.connect() as session:
        assert session.state is SessionState.OPEN
        session.send(pcm(1.0))
        flush = session.finalize(timeout=5)
        assert isinstance(flush, cartesia_sync.FlushDone)
        session.send(pcm(0.25))
    assert session.closed
    assert session.text == " seg1:32000b seg2:8000b"
    assert [w.word for w in session.words] == ["seg1:32000b", "seg2:8000b"]
    assert session.words[1].start == pytest.approx(1.0) and session.words[1].end == pytest.approx(1.25)
    assert recorder.names() == [
        "on_session_start",
        "on_transcript",
        "on_flush_done",
        "on_transcript",
        "on_done",
        "on_session_end",
    ]
    record = server.wait_finished()
    assert record.texts == ["finalize", "done"]
    assert bytes(record.audio) == pcm(1.0) + pcm(0.25)


def test_frames_are_rechunked_to_the_frame_duration(make_client, server):
    client = make_client(frame_duration=0.05)
    with client.connect() as session:
        for size in (10, 3000, 1, 7777, 2, 6400):  # odd sizes on purpose, in samples
            session.send(np.full(size, 100, dtype=np.int16))
    record = server.wait_finished()
    sizes = [len(f.data) for f in record.audio_frames]
    assert all(size == 1600 for size in sizes[:-1])
    assert 0 < sizes[-1] <= 1600
    assert sum(sizes) == 2 * (10 + 3000 + 1 + 7777 + 2 + 6400)


def test_finalize_returns_after_every_final_before_it_was_dispatched(make_client, recorder):
    client = make_client()
    seen_at_return = []
    with client.connect() as session:
        for _ in range(3):
            session.send(pcm(0.2))
            session.finalize(timeout=5)
            seen_at_return.append(session.text)
    assert seen_at_return == [" seg1:6400b", " seg1:6400b seg2:6400b", " seg1:6400b seg2:6400b seg3:6400b"]
    names = recorder.names()
    assert names.count("on_flush_done") == 3
    # each flush_done comes after the transcript it acknowledges
    for index, name in enumerate(names):
        if name == "on_flush_done":
            assert names[index - 1] == "on_transcript"


@pytest.mark.parametrize(
    "engine_options", [{"text": lambda n, audio: ["Hello", " world.", "  two  spaces ", "", "\tTab\n"][n - 1]}]
)
def test_text_is_concatenated_verbatim(make_client):
    client = make_client()
    with client.connect() as session:
        for _ in range(5):
            session.send(pcm(0.1))
            session.finalize(timeout=5)
    assert session.text == "Hello world.  two  spaces \tTab\n"


@pytest.mark.parametrize("end_command", ["done", "close"])
def test_end_command_is_selectable(make_client, server, end_command):
    with make_client(end_command=end_command).connect() as session:
        session.send(pcm(0.1))
    assert server.wait_finished().texts == [end_command]


@pytest.mark.parametrize("engine_options", [{"text": short_facts, "interim_bytes": 3200}])
def test_interim_transcripts_are_dispatched_but_not_committed(make_client, recorder):
    with make_client().connect() as session:
        session.send(pcm(0.35))
        session.finalize(timeout=5)
        interim_before_close = [t for t in recorder.payloads("on_transcript") if not t.is_final]
    assert len(interim_before_close) == 3
    assert all(" partial:" in t.text for t in interim_before_close)
    assert session.text == " seg1:11200b"
    assert session.interim is None
    assert session.stats.interim_transcripts == 3 and session.stats.final_transcripts == 1


def test_hooks_run_on_the_receiver_thread_and_lifecycle_on_the_caller(make_client, recorder):
    with make_client().connect() as session:
        session.send(pcm(0.1))
    by_hook = dict(zip(recorder.names(exclude=()), recorder.threads, strict=False))
    caller = threading.current_thread().name
    assert by_hook["on_session_start"] == caller
    assert by_hook["on_session_end"] == caller
    assert by_hook["on_transcript"].startswith("cartesia-sync-receiver-")
    assert by_hook["on_done"].startswith("cartesia-sync-receiver-")


def test_on_event_sees_every_message_once_in_order(make_client, recorder):
    with make_client().connect() as session:
        session.send(pcm(0.1))
        session.finalize(timeout=5)
        session.send(pcm(0.1))
    kinds = [event.type for event in recorder.payloads("on_event")]
    assert kinds == ["transcript", "flush_done", "transcript", "done"]
    assert session.stats.events_dispatched == 4 == session.stats.messages_received


def test_stats_account_for_every_byte(make_client, server):
    with make_client().connect() as session:
        session.send(pcm(0.73))
        session.finalize(timeout=5)
        session.send(pcm(0.5, rate=8000), sample_rate=8000)
    stats = session.stats
    received = len(server.wait_finished().audio)
    assert stats.audio_sent == pytest.approx(received / 32000)
    assert stats.audio_queued == pytest.approx(stats.audio_sent)
    assert stats.audio_dropped == 0 and stats.audio_unsent == 0
    assert stats.commands_sent == 2
    assert stats.wall_seconds > 0


def test_close_is_idempotent(make_client, recorder):
    session = make_client().connect()
    session.send(pcm(0.1))
    session.close()
    session.close()
    session.abort()
    assert recorder.names().count("on_session_end") == 1


def test_send_after_close_raises(make_client):
    session = make_client().connect()
    session.close()
    with pytest.raises(SessionClosedError, match="closed"):
        session.send(pcm(0.1))
    with pytest.raises(SessionClosedError):
        session.finalize()


def test_exception_in_with_block_aborts_and_is_not_masked(make_client, server, recorder):
    with pytest.raises(ZeroDivisionError):
        with make_client().connect() as session:
            session.send(pcm(0.1))
            1 / 0
    assert session.closed
    assert recorder.names()[-1] == "on_session_end"
    assert "done" not in server.wait_finished().texts


def test_concurrent_senders_lose_nothing(make_client, server):
    chunks = {n: np.full(1600, n, dtype=np.int16) for n in range(1, 9)}
    with make_client().connect() as session:

        def feed(n: int) -> None:
            for _ in range(25):
                session.send(chunks[n])

        threads = [threading.Thread(target=feed, args=(n,)) for n in chunks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    samples = np.frombuffer(bytes(server.wait_finished().audio), dtype="<i2")
    assert len(samples) == 8 * 25 * 1600
    values, counts = np.unique(samples, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=False)) == {n: 25 * 1600 for n in chunks}


def test_transcribe_one_call_with_an_array(server):
    result = cartesia_sync.transcribe(np.zeros(16000, dtype=np.float32), url=server.url, load_entrypoints=False)
    assert result.text == " seg1:32000b"
    assert result.audio_seconds == pytest.approx(1.0)
    assert result.words[0].end == pytest.approx(1.0)
    assert result.wall_seconds > 0 and result.realtime_factor is not None
    assert str(uuid.UUID(result.request_id)) == result.request_id  # the fake server's id for the connection


def test_transcribe_one_call_with_a_file(server, tmp_path):
    import soundfile

    path = tmp_path / "tone.flac"
    soundfile.write(path, np.zeros((44100, 2), dtype=np.float32), 44100)
    result = cartesia_sync.transcribe(str(path), url=server.url, load_entrypoints=False)
    assert result.audio_seconds == pytest.approx(1.0, abs=0.01)
    assert result.text.startswith(" seg1:")


def test_request_id_is_recorded(make_client, recorder):
    with make_client().connect() as session:
        session.send(pcm(0.1))
    # the fake server gives each connection a fresh UUID and puts it on every message
    assert str(uuid.UUID(session.request_id)) == session.request_id
    assert {event.request_id for event in recorder.payloads("on_event")} == {session.request_id}


@pytest.mark.parametrize(
    "frame_duration,sample_rate",
    [(0.005, 8000), (0.1, 16000), (1.0, 48000)],
    ids=["7-bit-length", "16-bit-length", "64-bit-length"],
)
def test_every_frame_length_encoding_arrives_intact(make_client, server, frame_duration, sample_rate):
    audio = np.random.default_rng(3).integers(-32768, 32767, sample_rate * 2, dtype=np.int16).tobytes()
    with make_client(frame_duration=frame_duration, sample_rate=sample_rate).connect() as session:
        session.send(audio)
    record = server.wait_finished()
    assert bytes(record.audio) == audio
    assert len(record.audio_frames[0].data) == round(frame_duration * sample_rate) * 2


def test_client_takes_session_options_one_by_one_or_as_one_object(server):
    import dataclasses
    import inspect

    signature = inspect.signature(cartesia_sync.Client)
    for field in dataclasses.fields(cartesia_sync.SessionOptions):  # typed, explicit, same defaults
        parameter = signature.parameters[field.name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default == field.default
    one_by_one = cartesia_sync.Client(url=server.url, close_timeout=3.0, load_entrypoints=False)
    as_object = cartesia_sync.Client(
        url=server.url, options=cartesia_sync.SessionOptions(close_timeout=3.0), load_entrypoints=False
    )
    assert one_by_one.options == as_object.options
    with as_object.connect() as session:
        session.send(b"\0" * 3200)
    assert session.text == " seg1:3200b"
    with pytest.raises(cartesia_sync.ConfigurationError, match="not both.*close_timeout"):
        cartesia_sync.Client(url=server.url, options=cartesia_sync.SessionOptions(), close_timeout=1.0)
    with pytest.raises(cartesia_sync.ConfigurationError, match="buffer_policy must be"):
        cartesia_sync.Client(url=server.url, buffer_policy="newest")
    with pytest.raises(cartesia_sync.ConfigurationError, match="unknown Client argument: close_timout"):
        cartesia_sync.Client(url=server.url, close_timout=1.0)  # type: ignore[arg-type]
