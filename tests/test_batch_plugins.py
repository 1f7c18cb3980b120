"""A batch transcription goes through the same hooks as a stream, so the bundled plugins write the same files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import srt
import webvtt
from batch_server import TRANSCRIPT, BatchServer, Reply
from conftest import CANARY_KEY

import cartesia_sync
from cartesia_sync import BatchSession, Done, PluginError, ServerError, Transcript, hookimpl
from cartesia_sync_plugins.event_log import EventLog
from cartesia_sync_plugins.subtitles import SubtitleWriter, write_subtitles

pytestmark = pytest.mark.timeout(60)

WAV = Path(__file__).parent / "data" / "utt01.wav"


class Recorder:
    """Records every hook call with what the session showed at that moment."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.refusals: list[str] = []

    @hookimpl
    def on_session_start(self, session: Any) -> None:
        self.calls.append(("on_session_start", (session.state.value, session.text)))
        for name in ("send", "send_file", "finalize", "close", "abort"):
            try:
                getattr(session, name)(b"") if name in ("send", "send_file") else getattr(session, name)()
            except RuntimeError as exc:
                self.refusals.append(f"{name}: {exc}")

    @hookimpl
    def on_event(self, event: Any) -> None:
        self.calls.append(("on_event", type(event).__name__))

    @hookimpl
    def on_transcript(self, session: Any, transcript: Transcript) -> None:
        self.calls.append(("on_transcript", (transcript.is_final, len(transcript.words), session.text)))

    @hookimpl
    def on_done(self, event: Done) -> None:
        self.calls.append(("on_done", event.request_id))

    @hookimpl
    def on_error(self, error: Exception) -> None:
        self.calls.append(("on_error", type(error).__name__))

    @hookimpl
    def on_session_end(self, session: Any) -> None:
        result = session.result()
        self.calls.append(("on_session_end", (session.state.value, result.complete, session.stats.final_transcripts)))


def test_the_hooks_of_a_batch_transcription_come_as_a_stream_s_do():
    recorder = Recorder()
    with BatchServer() as server:
        client = cartesia_sync.Client(base_url=server.base_url, api_key="k", plugins=[recorder], load_entrypoints=False)
        client.transcribe(WAV, mode="batch")
    assert recorder.calls == [
        ("on_session_start", ("open", "")),
        ("on_event", "Transcript"),
        ("on_transcript", (True, 4, "The quick brown fox.")),
        ("on_event", "Done"),
        ("on_done", "req-batch-1"),
        ("on_session_end", ("closed", True, 1)),
    ]
    # a hook can read the session but not act on it
    assert [refusal.split(":")[0] for refusal in recorder.refusals] == [
        "send",
        "send_file",
        "finalize",
        "close",
        "abort",
    ]
    assert all("not available on a batch transcription" in refusal for refusal in recorder.refusals)
    with pytest.raises(RuntimeError, match="register plugins before"):
        client.register(Recorder())  # registration is frozen by a batch transcription too


def test_a_failed_batch_reports_on_error_then_ends():
    recorder = Recorder()
    with BatchServer(Reply(status=400, body={"message": "bad file"})) as server:
        client = cartesia_sync.Client(base_url=server.base_url, api_key="k", plugins=[recorder], load_entrypoints=False)
        with pytest.raises(ServerError):
            client.transcribe(WAV, mode="batch")
    assert recorder.calls == [
        ("on_session_start", ("open", "")),
        ("on_error", "ServerError"),
        ("on_session_end", ("closed", False, 0)),
    ]


def test_a_plugin_that_raises_is_reported_and_raised_once_with_the_whole_result():
    class Broken:
        @hookimpl
        def on_transcript(self) -> None:
            raise ValueError(f"broken plugin holding {CANARY_KEY}")

    recorder = Recorder()
    with BatchServer() as server:
        client = cartesia_sync.Client(
            base_url=server.base_url, api_key=CANARY_KEY, plugins=[Broken(), recorder], load_entrypoints=False
        )
        with pytest.raises(PluginError) as caught:
            client.transcribe(WAV, mode="batch")
    assert ("on_error", "PluginError") in recorder.calls and recorder.calls[-1][0] == "on_session_end"
    assert caught.value.partial_result is not None and caught.value.partial_result.complete
    assert caught.value.partial_result.text == "The quick brown fox." and CANARY_KEY not in str(caught.value)
    with BatchServer() as server:
        quiet = cartesia_sync.Client(
            base_url=server.base_url, api_key="k", plugins=[Broken()], raise_errors=False, load_entrypoints=False
        )
        assert quiet.transcribe(WAV, mode="batch").complete


def test_the_subtitles_plugin_writes_a_valid_srt_and_vtt_from_a_batch_result(tmp_path):
    words = [
        {"word": w, "start": round(i * 0.4, 2), "end": round(i * 0.4 + 0.3, 2)}
        for i, w in enumerate(("one two three four five six seven eight nine ten " * 4).split())
    ]
    body = dict(TRANSCRIPT, text=" ".join(w["word"] for w in words), words=words, duration=16.0)
    srt_path, vtt_path = tmp_path / "out.srt", tmp_path / "out.vtt"
    with BatchServer(Reply(body=body)) as server:
        client = cartesia_sync.Client(
            base_url=server.base_url,
            api_key="k",
            plugins=[SubtitleWriter(srt=srt_path, vtt=vtt_path)],
            load_entrypoints=False,
        )
        result = client.transcribe(WAV, mode="batch")
    cues = list(srt.parse(srt_path.read_text()))
    assert len(cues) >= 2
    assert " ".join(cue.content.replace("\n", " ") for cue in cues).split() == [w["word"] for w in words]
    assert cues[0].start.total_seconds() == 0.0 and cues[-1].end.total_seconds() == pytest.approx(words[-1]["end"])
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:], strict=False))
    assert len(webvtt.read(str(vtt_path))) == len(cues)
    # the same cues as the plain function writes from the same words (what a stream's words give)
    again = tmp_path / "again.srt"
    write_subtitles(result.words, srt=again)
    assert again.read_text() == srt_path.read_text()


def test_the_event_log_records_a_batch_like_a_stream(tmp_path):
    log = tmp_path / "events.jsonl"
    with BatchServer() as server:
        client = cartesia_sync.Client(
            base_url=server.base_url, api_key=CANARY_KEY, plugins=[EventLog(log)], load_entrypoints=False
        )
        client.transcribe(WAV, mode="batch")
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["event"] for r in records] == ["session_start", "transcript", "done", "session_end"]
    assert records[0]["url"].endswith(
        "/stt/websocket?model=ink-whisper&language=en&encoding=pcm_s16le&sample_rate=16000"
    )
    assert records[1]["is_final"] is True and len(records[1]["words"]) == 4
    assert records[-1]["word_count"] == 4 and records[-1]["request_id"] == "req-batch-1"
    assert CANARY_KEY not in text


def test_batch_session_is_exported_and_read_only():
    assert "BatchSession" in cartesia_sync.__all__
    assert BatchSession.mode == "batch"
