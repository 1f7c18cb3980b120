"""The event-log plugin: JSON Lines records of every hook event, crash-safe, key-free, and its reader."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import stat
import threading
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import cartesia_sync
from cartesia_sync import ConnectionLostError, PluginError, ServerError, hookimpl
from cartesia_sync.testing import FakeCartesia, Scenario
from cartesia_sync_plugins.event_log import (
    EventLog,
    EventLogCorruptError,
    LogReadResult,
    read_events,
    transcript_from_events,
)

CANARY = "sk_canary_7f3a9c_EVENTLOG_DO_NOT_LEAK"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SEGMENTS = ["Hello", " world.", " Second part", " ünïcödé\u2028line"]


def pcm(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(round(seconds * rate))) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def lines_of(path) -> list[dict[str, Any]]:
    """Every line of the file parsed independently (split on \\n only)."""
    data = open(path, "rb").read()
    assert data.endswith(b"\n")
    return [json.loads(line.decode("utf-8")) for line in data.split(b"\n")[:-1]]


def fake_session(number: int = 1, key: str = None) -> SimpleNamespace:
    api_key = SimpleNamespace(reveal=lambda: key) if key else None
    return SimpleNamespace(number=number, settings=SimpleNamespace(api_key=api_key))


def check_common(records: list[dict[str, Any]]) -> None:
    """seq gap-free per writer from 1, ts ISO UTC with ms, t monotonic per session."""
    by_writer: dict[str, list[int]] = {}
    last_t: dict[str, float] = {}
    for rec in records:
        assert rec["v"] == 1
        by_writer.setdefault(rec["writer"], []).append(rec["seq"])
        assert ISO_MS.match(rec["ts"]), rec["ts"]
        datetime.fromisoformat(rec["ts"].replace("Z", "+00:00"))
        assert rec["t"] >= last_t.get(rec["session"], 0.0)
        last_t[rec["session"]] = rec["t"]
    for seqs in by_writer.values():
        assert seqs == list(range(1, len(seqs) + 1))


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "events.jsonl"


def run_session(url: str, plugins, *, api_key=None, finalize=True, **kwargs):
    client = cartesia_sync.Client(api_key=api_key, url=url, plugins=plugins, load_entrypoints=False, **kwargs)
    with client.connect() as session:
        session.send(pcm(1.0))
        if finalize:
            session.finalize(timeout=5)
        session.send(pcm(1.0))
    return session


# -- a whole session -----------------------------------------------------------------


def test_full_session_logs_every_event(log_path):
    with FakeCartesia(segments=SEGMENTS, segment_bytes=16000) as fake:
        session = run_session(fake.url, [EventLog(log_path)])
    records = lines_of(log_path)
    check_common(records)
    events = [r["event"] for r in records]
    assert events[0] == "session_start" and events[-1] == "session_end"
    assert events.count("flush_done") == 1 and events.count("done") == 1
    assert "error" not in events
    assert len({r["session"] for r in records}) == 1
    assert records[0]["session"].startswith(f"{session.number}-")

    start = records[0]
    assert start["url"] == session.settings.display_url
    assert (start["model"], start["language"], start["encoding"], start["sample_rate"]) == (
        "ink-whisper",
        "en",
        "pcm_s16le",
        16000,
    )
    assert start["t"] < 1.0

    finals = [r for r in records if r["event"] == "transcript" and r["is_final"]]
    assert "".join(r["text"] for r in finals) == session.text  # verbatim, U+2028 included
    assert "\u2028" in session.text
    for rec in finals:
        assert set(rec) >= {"text", "is_final", "duration", "language", "words", "request_id"}
        assert all(set(w) == {"word", "start", "end"} for w in rec["words"])
        assert rec["request_id"] == session.request_id

    end = records[-1]
    assert end["stats"] == session.stats.as_dict()
    assert end["error"] is None
    assert end["text_length"] == len(session.text)
    assert end["word_count"] == len(session.words)

    # the messages the receiver dispatched are all there, once each
    assert sum(e in ("transcript", "flush_done", "done") for e in events) == session.stats.events_dispatched

    log = read_events(log_path)
    assert isinstance(log, LogReadResult) and not log.torn_tail
    assert log.events == records
    text, words = transcript_from_events(log)
    assert text == session.text and words == session.words
    assert stat.S_IMODE(os.stat(log_path).st_mode) == 0o600


def test_interim_transcripts_are_logged(log_path):
    with FakeCartesia(segments=["one two three"], interim_bytes=4000) as fake:
        session = run_session(fake.url, [EventLog(log_path)], finalize=False)
    records = lines_of(log_path)
    interims = [r for r in records if r["event"] == "transcript" and not r["is_final"]]
    assert interims and session.stats.interim_transcripts == len(interims)
    assert transcript_from_events(records)[0] == session.text


# -- errors ----------------------------------------------------------------------------


def test_server_error_session(log_path):
    scenario = Scenario(error_after_bytes=3200)
    with FakeCartesia(segments=SEGMENTS, scenario=scenario) as fake:
        client = cartesia_sync.Client(
            url=fake.url, plugins=[EventLog(log_path)], load_entrypoints=False, reconnect=False
        )
        session = client.connect()
        session.send(pcm(0.5))
        with pytest.raises(ServerError):
            session.finalize(timeout=5)
        with contextlib.suppress(cartesia_sync.CartesiaSyncError):
            session.close()
    records = lines_of(log_path)
    check_common(records)
    wire = [r for r in records if r["event"] == "server_error"]
    assert len(wire) == 1
    assert wire[0]["status_code"] == 500 and wire[0]["error_code"] == "internal_error" and wire[0]["fatal"] is True
    errors = [r for r in records if r["event"] == "error"]
    assert errors[0]["type"] == "ServerError"
    assert errors[0]["status_code"] == 500 and errors[0]["error_code"] == "internal_error"
    assert errors[0]["message"] == str(session.error)
    end = records[-1]
    assert end["event"] == "session_end" and end["error"]["type"] == "ServerError"
    assert end["stats"]["server_errors"] == 1


def test_junk_frames_are_logged_as_protocol_errors(log_path):
    with FakeCartesia(segments=SEGMENTS, scenario=Scenario(on_open=("{oops",))) as fake:
        session = run_session(fake.url, [EventLog(log_path)], raise_errors=False)
    records = lines_of(log_path)
    check_common(records)
    errors = [r for r in records if r["event"] == "error"]
    assert len(errors) == 1
    assert errors[0]["type"] == "ProtocolError" and "{oops" in errors[0]["raw"]
    assert records[-1]["event"] == "session_end" and records[-1]["stats"]["protocol_errors"] == 1
    assert transcript_from_events(records) == (session.text, session.words)


def test_unknown_messages_are_logged_with_their_type(log_path):
    scenario = Scenario(on_open=({"type": "speaker_change", "speaker": 2, "score": 0.5},))
    with FakeCartesia(segments=SEGMENTS, scenario=scenario) as fake:
        run_session(fake.url, [EventLog(log_path)])
    unknown = [r for r in lines_of(log_path) if r["event"] == "unknown"]
    assert len(unknown) == 1
    assert unknown[0]["type"] == "speaker_change" and unknown[0]["raw"]["speaker"] == 2


class Boom:
    name = "boom"

    @hookimpl
    def on_transcript(self, transcript):
        raise ValueError("boom in a hook")


def test_a_raising_plugin_is_logged_with_hook_and_plugin(log_path):
    with FakeCartesia(segments=SEGMENTS) as fake:
        session = run_session(fake.url, [EventLog(log_path), Boom()], raise_errors=False)
    records = lines_of(log_path)
    errors = [r for r in records if r["event"] == "error"]
    assert errors, records
    assert all(e["type"] == "PluginError" for e in errors)
    assert errors[0]["hook"] == "on_transcript" and errors[0]["plugin"] == "boom"
    assert errors[0]["cause"] == {"type": "ValueError", "message": "boom in a hook"}
    assert records[-1]["stats"]["plugin_errors"] == len(errors) == session.stats.plugin_errors


def test_dropped_connection(log_path):
    with FakeCartesia(segments=SEGMENTS, scenario=Scenario(drop_after_bytes=8000)) as fake:
        client = cartesia_sync.Client(
            url=fake.url, plugins=[EventLog(log_path)], load_entrypoints=False, reconnect=False
        )
        session = client.connect()
        session.send(pcm(1.0))
        with pytest.raises(ConnectionLostError):
            session.finalize(timeout=5)
        session.abort()
    records = lines_of(log_path)
    check_common(records)
    errors = [r for r in records if r["event"] == "error"]
    assert [e["type"] for e in errors] == ["ConnectionLostError"]
    assert records[-1]["event"] == "session_end"
    assert records[-1]["error"]["type"] == "ConnectionLostError"


def test_close_code_is_logged(log_path):
    scenario = Scenario(close_after_bytes=8000, close_code=4001, close_reason="bye now")
    with FakeCartesia(segments=SEGMENTS, scenario=scenario) as fake:
        client = cartesia_sync.Client(url=fake.url, plugins=[EventLog(log_path)], load_entrypoints=False)
        session = client.connect()
        session.send(pcm(1.0))
        with pytest.raises(ConnectionLostError):
            session.finalize(timeout=5)
        session.abort()
    error = [r for r in lines_of(log_path) if r["event"] == "error"][0]
    assert error["close_code"] == 4001 and error["close_reason"] == "bye now"


# -- appending, concurrency ------------------------------------------------------------


def test_sessions_append_to_one_file(log_path):
    log_path.write_bytes(b'{"event":"from before","seq":1}\n')
    with FakeCartesia(segments=SEGMENTS) as fake:
        shared = EventLog(log_path)
        first = run_session(fake.url, [shared])
        second = run_session(fake.url, [shared])
        third = run_session(fake.url, [EventLog(log_path, fsync="never")])
    log = read_events(log_path)
    assert log.events[0] == {"event": "from before", "seq": 1}
    records = log.events[1:]
    check_common(records)
    assert len(log.sessions) == 3 and len(set(r["writer"] for r in records)) == 2
    sids = log.sessions
    for sid, session in zip(sids, (first, second, third), strict=False):
        assert transcript_from_events(log, session=sid) == (session.text, session.words)
    for number, session in enumerate((first, second, third), start=1):  # numbered in file order
        assert transcript_from_events(log, session=number) == (session.text, session.words)
    assert [(s.number, s.id) for s in log.session_summaries()] == [(1, sids[0]), (2, sids[1]), (3, sids[2])]
    with pytest.raises(ValueError, match="sessions"):
        transcript_from_events(log)
    with pytest.raises(ValueError, match="no-such-session"):
        transcript_from_events(log, session="no-such-session")
    with pytest.raises(ValueError, match="numbered 1 to 3"):
        transcript_from_events(log, session=4)


def test_concurrent_sessions_share_one_writer(log_path):
    writer = EventLog(log_path)
    results = []
    with FakeCartesia(segments=SEGMENTS, segment_bytes=8000) as fake:
        threads = [threading.Thread(target=lambda: results.append(run_session(fake.url, [writer]))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(results) == 4
    records = lines_of(log_path)
    check_common(records)
    log = read_events(log_path)
    for session in results:
        sid = next(s for s in log.sessions if s.startswith(f"{session.number}-"))
        assert transcript_from_events(log, session=sid) == (session.text, session.words)


def test_concurrent_writers_never_interleave(log_path):
    writers = [EventLog(log_path, fsync="never") for _ in range(3)]
    big = "x" * 20000  # longer than io.DEFAULT_BUFFER_SIZE
    n = 150

    def hammer(writer, number):
        session = fake_session(number)
        for i in range(n):
            writer.record(session, "stress", i=i, payload=big if i % 10 == 0 else "ä\u2028" * (i % 7))

    threads = [threading.Thread(target=hammer, args=(writers[k % 3], k)) for k in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = log_path.read_bytes()
    # every line parses on its own; an empty line may appear where a writer opening the file
    # saw another's long line half-written and ended it (see read_events)
    records = [json.loads(line) for line in data.split(b"\n")[:-1] if line]
    assert data.endswith(b"\n") and len(records) == 9 * n
    check_common(records)
    assert read_events(log_path).events == records


# -- the reader ------------------------------------------------------------------------


def test_torn_tail_at_every_byte_offset(tmp_path):
    writer = EventLog(tmp_path / "full.jsonl")
    session = fake_session(3)
    writer.record(session, "first", text="a")
    writer.record(session, "second", text='ünï\u2028code "quoted"\nnewline', n=float("nan"))
    writer.record(session, "third", words=[{"word": "w", "start": 0.0, "end": 1.5}])
    writer.close()
    data = (tmp_path / "full.jsonl").read_bytes()
    full = read_events(tmp_path / "full.jsonl").events
    ends = [i + 1 for i, b in enumerate(data) if b == 0x0A]
    assert len(full) == len(ends) == 3
    cut = tmp_path / "cut.jsonl"
    for offset in range(len(data) + 1):
        cut.write_bytes(data[:offset])
        log = read_events(cut)
        complete = sum(1 for e in ends if e <= offset)
        assert log.events == full[:complete], offset
        assert log.torn_tail == (offset not in ends and offset != 0), offset
        if log.torn_tail:
            assert log.torn_line == complete + 1
            assert log.torn_bytes == offset - (ends[complete - 1] if complete else 0)
            with pytest.raises(EventLogCorruptError):
                read_events(cut, strict=True)


def test_zero_filled_tail_is_torn(tmp_path):
    path = tmp_path / "z.jsonl"
    path.write_bytes(b'{"seq":1}\n{"seq":2}\n\x00\x00\x00\x00')
    log = read_events(path)
    assert [e["seq"] for e in log] == [1, 2] and log.torn_tail and log.torn_line == 3


@pytest.mark.parametrize("bad", [b"{not json", b"  ", b"[1,2]", b'{"x":NaN}', b"\xff\xfe{}"])
def test_a_corrupt_middle_line_raises_with_its_number(tmp_path, bad):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"seq":1}\n{"seq":2}\n' + bad + b'\n{"seq":4}\n')
    with pytest.raises(EventLogCorruptError) as caught:
        read_events(path)
    assert caught.value.line_number == 3 and "line 3" in str(caught.value)
    log = read_events(path, skip_corrupt=True)
    assert [e["seq"] for e in log] == [1, 2, 4] and log.corrupt_lines == [3]


def test_blank_lines_are_skipped_and_counted():
    log = read_events(io.BytesIO(b'{"seq":1}\n\n{"seq":2}\n\r\n'))
    assert [e["seq"] for e in log] == [1, 2] and log.blank_lines == 2 and not log.torn_tail


def test_reader_takes_file_objects_and_crlf():
    log = read_events(io.BytesIO(b'{"seq":1}\r\n{"seq":2}\n{"se'))
    assert [e["seq"] for e in log] == [1, 2] and log.torn_tail
    assert [e["seq"] for e in read_events(io.StringIO('{"seq":1}\n'))] == [1]


def test_writer_ends_a_torn_line_left_by_a_crash(log_path):
    log_path.write_bytes(b'{"seq":1}\n{"seq":2,"tex')
    writer = EventLog(log_path)
    writer.record(fake_session(), "after_crash")
    writer.close()
    with pytest.raises(EventLogCorruptError) as caught:
        read_events(log_path)  # the torn line is now in the middle: reported, not glued to ours
    assert caught.value.line_number == 2
    log = read_events(log_path, skip_corrupt=True)
    assert [e.get("event") for e in log][-1] == "after_crash"


# -- secrets ---------------------------------------------------------------------------


class LeakyPlugin:
    """Raises an error whose text holds the key: the library scrubs it, the log must too."""

    name = "leaky"

    @hookimpl
    def on_done(self, session):
        raise RuntimeError(f"leaking {session.settings.api_key.reveal()}")


def assert_no_canary(data: bytes) -> None:
    assert data
    for form in (CANARY, CANARY.replace("_", "%5F"), CANARY[4:-4]):
        assert form.encode() not in data


@pytest.mark.parametrize("auth", ["header", "query"])
def test_the_canary_key_never_reaches_the_file_or_the_logs(log_path, caplog, auth):
    caplog.set_level(logging.DEBUG)
    with FakeCartesia(segments=SEGMENTS, api_key=CANARY) as fake:
        session = run_session(fake.url, [EventLog(log_path, fsync="always")], api_key=CANARY, auth=auth)
    assert_no_canary(log_path.read_bytes())
    records = lines_of(log_path)
    assert records[0]["url"] == session.settings.display_url
    assert transcript_from_events(records) == (session.text, session.words)
    # the client's side (the fake server's own DEBUG log shows the handshake it received)
    client_side = [r for r in caplog.records if not r.name.startswith(("websockets.server", "cartesia_sync.local"))]
    assert client_side
    assert not [r.name for r in client_side if CANARY in r.getMessage() or CANARY in (r.exc_text or "")]


def test_the_key_is_scrubbed_by_value_wherever_it_comes_from(log_path):
    # the server echoes the key, a plugin puts it in its exception, a future hook passes it on
    scenario = Scenario(on_open=({"type": "echo", "api_key": CANARY, "note": f"key={CANARY}"},))
    writer = EventLog(log_path, fsync="always")
    with FakeCartesia(segments=SEGMENTS, scenario=scenario, api_key=CANARY) as fake:
        session = run_session(fake.url, [writer, LeakyPlugin()], api_key=CANARY, raise_errors=False)
        writer.record(session, "future_hook", detail=f"url?api_key={CANARY}", nested={"x": [CANARY]})
    assert_no_canary(log_path.read_bytes())
    records = lines_of(log_path)
    echo = next(r for r in records if r["event"] == "unknown")
    assert echo["raw"]["api_key"] == "***" and echo["raw"]["note"] == "key=***"
    assert any(r["event"] == "error" and r["plugin"] == "leaky" for r in records)
    assert records[-1]["detail"] == "url?api_key=***"


def test_scrubs_escaped_and_url_encoded_forms(log_path):
    key = 'k/ey+wi"th&odd=chars'
    writer = EventLog(log_path)
    session = fake_session(key=key)
    from urllib.parse import quote, quote_plus

    writer.record(session, "x", a=key, b=quote(key, safe=""), c=quote_plus(key), d={"token": "t0k3n", "Api_Key": 1})
    writer.close()
    data = log_path.read_bytes()
    rec = lines_of(log_path)[0]
    assert rec["a"] == rec["b"] == rec["c"] == "***"
    assert rec["d"] == {"token": "***", "Api_Key": "***"}
    assert b"odd=chars" not in data


# -- JSON safety, the generic path -----------------------------------------------------


def test_non_finite_floats_become_null(log_path):
    writer = EventLog(log_path)
    writer.record(
        fake_session(),
        "numbers",
        nan=float("nan"),
        inf=[float("inf"), -float("inf"), 1.5],
        nested={"x": {"y": float("nan")}},
    )
    writer.close()
    text = log_path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    rec = json.loads(text, parse_constant=lambda c: pytest.fail(c))
    assert rec["nan"] is None and rec["inf"] == [None, None, 1.5] and rec["nested"] == {"x": {"y": None}}


def test_generic_record_for_future_hooks(log_path):
    writer = EventLog(log_path)
    error = ConnectionLostError("lost", close_code=1006)
    rec = writer.record(
        fake_session(),
        "reconnect",
        attempt=2,
        delay=1.5,
        error=error,
        word=cartesia_sync.Word("hi", 0.0, 0.5),
        blob=b"\x00" * 10,
        state=cartesia_sync.SessionState.OPEN,
    )
    writer.close()
    assert lines_of(log_path) == [rec]
    assert rec["event"] == "reconnect" and rec["attempt"] == 2
    assert rec["error"] == {"type": "ConnectionLostError", "message": "lost", "close_code": 1006}
    assert rec["word"] == {"word": "hi", "start": 0.0, "end": 0.5}
    assert rec["blob"] == {"bytes": 10}
    assert isinstance(rec["state"], str)


def test_unknown_event_objects_take_the_generic_path(log_path):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Reconnected:
        attempt: int
        raw: dict

        type = "reconnected"

    writer = EventLog(log_path)
    writer.on_event(fake_session(), Reconnected(3, {"secret": "stuff"}))
    writer.close()
    rec = lines_of(log_path)[0]
    assert rec["event"] == "reconnected" and rec["fields"] == {"attempt": 3}


# -- file objects, fsync, failures ----------------------------------------------------


@pytest.mark.parametrize("kind", ["binary", "text", "bytesio", "stringio"])
def test_works_with_open_file_objects(tmp_path, kind):
    path = tmp_path / "f.jsonl"
    f = {
        "binary": lambda: open(path, "ab"),
        "text": lambda: open(path, "a", encoding="utf-8", newline="\n"),
        "bytesio": io.BytesIO,
        "stringio": io.StringIO,
    }[kind]()
    with FakeCartesia(segments=SEGMENTS) as fake:
        session = run_session(fake.url, [EventLog(f, fsync="always")])
    assert not f.closed  # the caller's file stays open
    if kind in ("bytesio", "stringio"):
        data = f.getvalue()
        data = data.encode("utf-8") if isinstance(data, str) else data
    else:
        f.close()
        data = path.read_bytes()
    log = read_events(io.BytesIO(data))
    assert not log.torn_tail and log.events[-1]["event"] == "session_end"
    assert transcript_from_events(log) == (session.text, session.words)


@pytest.mark.parametrize("policy", ["never", "final", "always", 3600, 0])
def test_fsync_policies(log_path, monkeypatch, policy):
    calls = []
    real = os.fsync

    def counting(fd):
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    with FakeCartesia(segments=SEGMENTS, segment_bytes=16000) as fake:
        run_session(fake.url, [EventLog(log_path, fsync=policy)])
    records = lines_of(log_path)
    finals = sum(
        1
        for r in records
        if r["event"] in ("flush_done", "done", "error", "session_end")
        or (r["event"] == "transcript" and r["is_final"])
    )
    expected = {"never": 0, "final": finals, "always": len(records), 3600: 1, 0: len(records)}[policy]
    assert len(calls) == expected
    assert finals < len(records)  # "final" really is fewer than "always"


def test_bad_fsync_policy():
    for bad in ("sometimes", -1, float("nan"), True):
        with pytest.raises(ValueError):
            EventLog(io.BytesIO(), fsync=bad)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_is_raised_as_plugin_error():
    writer = EventLog("/dev/full")
    with FakeCartesia(segments=SEGMENTS) as fake:
        client = cartesia_sync.Client(url=fake.url, plugins=[writer], load_entrypoints=False)
        with pytest.raises(PluginError) as caught:  # raised to the caller at finalize()
            with client.connect() as session:
                session.send(pcm(0.5))
                session.finalize(timeout=5)
        session2 = run_session(fake.url, [EventLog("/dev/full")], raise_errors=False)
    assert caught.value.plugin_name == "event-log" and caught.value.hook_name == "on_session_start"
    assert isinstance(caught.value.__cause__, OSError)
    assert session2.text == "".join(SEGMENTS[:2])  # the stream goes on
    assert [e.hook_name for e in session2.errors] == ["on_session_start"]
    assert isinstance(writer.failed, OSError) and writer.dropped > 0


class FullDisk(io.RawIOBase):
    """A file that takes ``limit`` bytes, then writes short, then fails with ENOSPC."""

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        room = self.limit - len(self.data)
        if room <= 0:
            raise OSError(28, "No space left on device")
        chunk = bytes(b[:room])
        self.data += chunk
        return len(chunk)


def test_write_failure_never_corrupts_earlier_lines():
    disk = FullDisk(limit=1200)
    writer = EventLog(disk, fsync="never")
    with FakeCartesia(segments=SEGMENTS, segment_bytes=8000) as fake:
        session = run_session(fake.url, [writer], raise_errors=False)
    failures = [e for e in session.errors if isinstance(e, PluginError) and e.plugin_name == "event-log"]
    assert len(failures) == 1 and isinstance(failures[0].__cause__, OSError)
    assert writer.dropped > 0
    log = read_events(io.BytesIO(bytes(disk.data)))
    assert log.torn_tail  # only the last line is partial
    assert [r["seq"] for r in log] == list(range(1, len(log) + 1))
    assert log.events[0]["event"] == "session_start"


def test_closed_file_object_is_reported(tmp_path):
    f = open(tmp_path / "closed.jsonl", "ab")
    f.close()
    with FakeCartesia(segments=SEGMENTS) as fake:
        session = run_session(fake.url, [EventLog(f)], raise_errors=False)
    failures = [e for e in session.errors if isinstance(e, PluginError)]
    assert failures and isinstance(failures[0].__cause__, ValueError)


class FinalSeen:
    """Sets ``reached`` once a final transcript's words reach ``end`` seconds (on the receiver thread)."""

    name = "final-seen"

    def __init__(self, end: float) -> None:
        self.end = end
        self.reached = threading.Event()

    @hookimpl
    def on_transcript(self, transcript):
        if transcript.is_final and transcript.words and transcript.words[-1].end >= self.end:
            self.reached.set()


def test_a_reconnect_is_logged_and_the_logged_transcript_stays_continuous(log_path):
    # The server makes a final every 0.25 s of audio and drops the connection when the frame that
    # crosses 20,000 bytes (0.625 s) arrives. The second final (0.5 s) must have been read before
    # that: a sender that finds the socket broken shuts it, and a final still unread in the socket
    # is then never read, so the session would resume at 0.25 s. Sending the audio in two parts,
    # the second only once the 0.5 s final arrived, makes that order certain on a loaded machine too.
    scenario = Scenario(drop_after_bytes=20000, faulty_connections=1)
    seen = FinalSeen(0.5)
    with FakeCartesia(scenario=scenario, segment_bytes=8000) as fake:
        client = cartesia_sync.Client(
            url=fake.url, plugins=[EventLog(log_path), seen], load_entrypoints=False, reconnect_delay=0.05
        )
        with client.connect(realtime=8.0) as session:
            for _ in range(6):  # 19,200 bytes: two finals, no drop yet
                session.send(pcm(0.1))
            assert seen.reached.wait(10), "the final ending at 0.5 s never arrived"
            assert session.stats.reconnects == 0
            for _ in range(4):  # the first of these crosses 20,000 bytes: the server drops the connection
                session.send(pcm(0.1))
    records = lines_of(log_path)
    check_common(records)
    [reconnect] = [r for r in records if r["event"] == "reconnect"]
    assert reconnect["error"]["type"] == "ConnectionLostError" and reconnect["attempts"] >= 1
    assert reconnect["gap"] == 0.0 and reconnect["resumed_at"] == 0.5 and reconnect["replayed"] > 0
    text, words = transcript_from_events(records)
    assert (text, words) == (session.text, session.words) and session.stats.reconnects == 1
    assert [w.end for w in words] == [0.25, 0.5, 0.75, 1.0]
    assert records[-1]["event"] == "session_end" and records[-1]["error"] is None
