"""The bundled plugins with turn sessions: event log, subtitles and live captions."""

from __future__ import annotations

import io

import numpy as np
import srt
import webvtt
from turns_server import TurnsServer

import cartesia_sync
from cartesia_sync_plugins.event_log import EventLog, read_event_log, transcript_from_events, turns_from_events
from cartesia_sync_plugins.live_captions import LiveCaptions
from cartesia_sync_plugins.subtitles import SubtitleWriter


def speech(seconds: float, level: int) -> bytes:
    samples = np.full(int(seconds * 16000), level, dtype="<i2")
    samples[1::2] = -level
    return samples.tobytes()


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(seconds * 16000)


AUDIO = silence(0.2) + speech(0.6, 800) + silence(0.8) + speech(0.4, 900) + silence(0.8)


def run(*plugins: object, realtime: float | bool = 4.0) -> cartesia_sync.TurnSession:
    with TurnsServer() as server:
        client = cartesia_sync.Client(base_url=server.base_url, plugins=list(plugins), load_entrypoints=False)
        with client.connect_turns(realtime=realtime) as session:
            session.send(AUDIO)
    return session


def test_the_event_log_records_turn_events_and_rebuilds_the_turns(tmp_path):
    path = tmp_path / "turns.jsonl"
    session = run(EventLog(path))
    records = read_event_log(path)
    kinds = [r["event"] for r in records]
    assert kinds[0] == "session_start" and kinds[-1] == "session_end"
    assert kinds.count("turn.start") == 2 and kinds.count("turn.end") == 2 and "connected" in kinds
    assert list(records)[-1]["turn_count"] == 2
    assert turns_from_events(records) == session.turns
    text, words = transcript_from_events(records)
    assert text == session.text == " level800:600ms level900:400ms" and words == ()


def test_subtitles_get_one_cue_group_per_turn(tmp_path):
    srt_path, vtt_path = tmp_path / "t.srt", tmp_path / "t.vtt"
    session = run(SubtitleWriter(srt=srt_path, vtt=vtt_path))
    cues = list(srt.parse(srt_path.read_text(), ignore_errors=False))
    assert [c.content for c in cues] == ["level800:600ms", "level900:400ms"]
    first, second = session.turns
    assert abs(cues[0].start.total_seconds() - first.start) < 0.01
    assert cues[0].end <= cues[1].start  # one group per turn, in order, never overlapping
    assert len(list(webvtt.from_string(vtt_path.read_text()))) == 2


def test_live_captions_show_the_open_turn_and_commit_it_at_its_end():
    out = io.StringIO()
    run(LiveCaptions(stream=out))  # not a terminal: one line per committed turn
    assert out.getvalue().splitlines() == ["level800:600ms", "level900:400ms"]
