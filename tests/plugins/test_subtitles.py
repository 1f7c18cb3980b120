"""The subtitles plugin (SubtitleWriter) over real sessions with the fake server, and the live caption view."""

from __future__ import annotations

import html
import io
import threading
import time
from pathlib import Path

import pytest
import srt
import webvtt

import cartesia_sync
from cartesia_sync import Transcript, Word, hookimpl
from cartesia_sync.testing import FakeCartesia, Scenario
from cartesia_sync_plugins.live_captions import LiveCaptions
from cartesia_sync_plugins.subtitles import CueRules, SubtitleWriter, write_subtitles

SECOND = b"\0" * 32000  # 1 s of 16 kHz s16le silence


def client_for(fake: FakeCartesia, *plugins) -> cartesia_sync.Client:
    return cartesia_sync.Client(url=fake.url, plugins=list(plugins), load_entrypoints=False)


def parse_srt(path: Path) -> list[srt.Subtitle]:
    return list(srt.parse(path.read_text(encoding="utf-8"), ignore_errors=False))


def parse_vtt(path: Path):
    return webvtt.from_string(path.read_text(encoding="utf-8")).captions


def check_files(srt_path: Path, vtt_path: Path) -> list[srt.Subtitle]:
    subs = parse_srt(srt_path)
    caps = parse_vtt(vtt_path)
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert [s.content for s in subs] == [html.unescape(c.raw_text) for c in caps]
    for a, b in zip(subs, subs[1:], strict=False):
        assert a.start < a.end <= b.start
    raw = srt_path.read_bytes()
    raw.decode("utf-8")
    assert raw.endswith(b"\n\n") and vtt_path.read_bytes().startswith(b"WEBVTT\n\n")
    return subs


# ---------------------------------------------------------------------------
# real sessions


def test_a_session_writes_srt_and_vtt(tmp_path):
    segments = [
        "Good morning everyone.",
        " This is a test of the subtitle writer that keeps going",
        " and going until the end of it.",
    ]
    writer = SubtitleWriter(srt=tmp_path / "s.srt", vtt=tmp_path / "s.vtt")
    with FakeCartesia(segments=segments, word_per_segment=False) as fake:
        with client_for(fake, writer).connect() as session:
            for _ in segments:
                session.send(SECOND * 2)
                session.finalize(timeout=10)
    subs = check_files(tmp_path / "s.srt", tmp_path / "s.vtt")
    text = " ".join(s.content.replace("\n", " ") for s in subs)
    assert text == "".join(segments).strip()
    assert subs[0].content == "Good morning everyone."
    assert subs[0].start.total_seconds() == 0
    assert subs[-1].end.total_seconds() <= 6.0 + 0.833
    assert all(len(line) <= 42 for s in subs for line in s.content.split("\n"))
    assert session.text == "".join(segments)


def test_cues_are_on_disk_before_the_session_ends(tmp_path):
    """A cue is written as soon as it closes: seen from a later hook, and after a finalize."""
    path = tmp_path / "live.srt"
    seen_in_hook: list[str] = []

    class Probe:
        name = "probe"
        finals = 0

        @hookimpl
        def on_transcript(self, transcript):
            if transcript.is_final:
                self.finals += 1
                if self.finals == 2:
                    seen_in_hook.append(path.read_text(encoding="utf-8"))

    segments = ["First sentence here.", " Second one follows.", " Third and last"]
    with FakeCartesia(segments=segments, word_per_segment=False) as fake:
        with client_for(fake, SubtitleWriter(srt=path), Probe()).connect() as session:
            session.send(SECOND)
            session.finalize(timeout=10)
            after_first = path.read_text(encoding="utf-8")
            session.send(SECOND)
            session.send(SECOND)  # not finalized yet: still in the server's segment
            session.finalize(timeout=10)
            after_second = path.read_text(encoding="utf-8")
            session.send(SECOND)
    assert [s.content for s in srt.parse(after_first)] == ["First sentence here."]
    assert "First sentence here." in seen_in_hook[0]
    assert [s.content for s in srt.parse(after_second)] == ["First sentence here.", "Second one follows."]
    assert [s.content for s in parse_srt(path)][-1] == "Third and last"


def test_cues_closed_by_later_words_are_written_before_done(tmp_path):
    path = tmp_path / "d.srt"
    at_done: list[str] = []

    class Probe:
        name = "probe"

        @hookimpl
        def on_done(self):
            at_done.append(path.read_text(encoding="utf-8"))

    segments = ["One. Two. Three. Four"]
    with FakeCartesia(segments=segments, word_per_segment=False) as fake:
        with client_for(fake, SubtitleWriter(srt=path), Probe()).connect() as session:
            session.send(SECOND * 4)
    assert [s.content for s in srt.parse(at_done[0])][:3] == ["One.", "Two.", "Three."]
    assert [s.content for s in parse_srt(path)] == ["One.", "Two.", "Three.", "Four"]


@pytest.mark.parametrize("how", ["close-timeout", "abort"])
def test_the_last_cue_is_written_when_done_never_comes(tmp_path, how):
    """No ``done`` and no ``flush_done``: the server ends segments by itself; the open cue is written at session end."""
    srt_path, vtt_path = tmp_path / "x.srt", tmp_path / "x.vtt"
    segments = ["Hello there.", " This is the last cue"]
    with FakeCartesia(
        segments=segments, word_per_segment=False, segment_bytes=32000, scenario=Scenario(answer_end=False)
    ) as fake:
        session = client_for(fake, SubtitleWriter(srt=srt_path, vtt=vtt_path)).connect()
        try:
            session.send(SECOND * 2)
            deadline = time.monotonic() + 10
            while session.text != "".join(segments) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [s.content for s in parse_srt(srt_path)] == ["Hello there."]  # the open cue is not written yet
            if how == "abort":
                session.abort()
            else:
                with pytest.raises(cartesia_sync.StreamTimeout):
                    session.close(timeout=0.3)
        finally:
            session.abort()
    subs = check_files(srt_path, vtt_path)
    assert [s.content for s in subs] == ["Hello there.", "This is the last cue"]
    assert srt_path.read_text(encoding="utf-8").count("This is the last cue") == 1
    assert subs[-1].end.total_seconds() == 2.0


def test_the_last_cue_is_written_once_when_done_and_session_end_both_come(tmp_path):
    out = io.StringIO()
    with FakeCartesia(segments=["Only words here"], word_per_segment=False) as fake:
        with client_for(fake, SubtitleWriter(srt=out)).connect() as session:
            session.send(SECOND)
    assert [s.content for s in srt.parse(out.getvalue())] == ["Only words here"]
    assert not out.closed  # a caller's file is flushed, never closed


def test_an_empty_session_leaves_valid_files(tmp_path):
    srt_path, vtt_path = tmp_path / "e.srt", tmp_path / "e.vtt"
    with FakeCartesia(segments=[]) as fake:
        with client_for(fake, SubtitleWriter(srt=srt_path, vtt=vtt_path)).connect():
            pass
    assert srt_path.read_text() == "" and vtt_path.read_text() == "WEBVTT\n\n"
    assert parse_vtt(vtt_path) == []


# ---------------------------------------------------------------------------
# the writer without a session


def final(words, is_final=True):
    return Transcript(text=" ".join(w.word for w in words), is_final=is_final, words=tuple(words))


def test_interims_are_ignored_and_finals_used():
    out = io.StringIO()
    writer = SubtitleWriter(vtt=out)
    writer.on_transcript(final([Word("maybe", 0.0, 0.4)], is_final=False))
    writer.on_transcript(final([Word("A<B", 0.0, 0.4), Word("&", 0.4, 0.6)]))
    writer.on_done()
    writer.on_session_end()
    assert out.getvalue() == "WEBVTT\n\n00:00:00.000 --> 00:00:00.833\nA&lt;B &amp;\n\n"
    assert [c.text for c in writer.cues] == ["A<B &"]


def test_writer_arguments_and_one_session_only(tmp_path):
    with pytest.raises(ValueError):
        SubtitleWriter()
    with pytest.raises(TypeError):
        SubtitleWriter(srt=io.BytesIO())
    writer = SubtitleWriter(srt=tmp_path / "a.srt", rules=CueRules(max_chars_per_line=10))
    assert writer.name == "subtitles" and writer.rules.max_chars_per_line == 10
    writer.on_session_start()
    with pytest.raises(RuntimeError):
        writer.on_session_start()
    writer.on_session_end()
    writer.on_session_end()  # idempotent


def test_write_subtitles_for_a_word_list(tmp_path):
    words = [Word("Hello", 0.0, 0.3), Word("world.", 0.3, 0.7), Word("Again", 2.0, 2.4)]
    cues = write_subtitles(words, srt=tmp_path / "w.srt", vtt=str(tmp_path / "w.vtt"))
    assert [c.text for c in cues] == ["Hello world.", "Again"]
    assert check_files(tmp_path / "w.srt", tmp_path / "w.vtt")[1].start.total_seconds() == 2.0


# ---------------------------------------------------------------------------
# live captions


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_live_captions_on_a_pipe_print_finals_only():
    out = io.StringIO()
    view = LiveCaptions(stream=out)
    view.on_transcript(Transcript(text="hel", is_final=False))
    view.on_transcript(Transcript(text="Hello world.", is_final=True))
    view.on_transcript(Transcript(text=" and", is_final=False))
    view.on_transcript(Transcript(text=" And more\x1b[2J", is_final=True))
    view.on_transcript(Transcript(text="  ", is_final=True))
    view.on_session_end()
    assert out.getvalue() == "Hello world.\nAnd more\n"  # the escape sequence dropped whole


def test_live_captions_on_a_terminal_rewrite_two_lines_in_place():
    out = FakeTTY()
    view = LiveCaptions(stream=out, width=20)
    view.on_transcript(Transcript(text="good mor", is_final=False))
    first = out.getvalue()
    assert first == "\x1b[2K\n\x1b[2Kgood mor"
    view.on_transcript(Transcript(text="Good morning everyone, this", is_final=True))
    second = out.getvalue()[len(first) :]
    assert second.startswith("\r\x1b[2K\x1b[1A\r\x1b[2K")  # back to the top line, cleared
    assert second.endswith("\x1b[2Keveryone, this\n\x1b[2K")  # the tail that fits 20 columns; interim cleared
    view.on_transcript(Transcript(text=" is a te", is_final=False))
    assert out.getvalue().endswith("everyone, this\n\x1b[2Kis a te")
    view.on_session_end()
    assert out.getvalue().endswith("is a te\n")
    for line in out.getvalue().replace("\x1b[2K", "").replace("\x1b[1A", "").replace("\r", "\n").split("\n"):
        assert len(line) <= 20


def test_live_captions_in_a_real_session_and_from_many_threads():
    out = FakeTTY()
    view = LiveCaptions(stream=out, width=30)
    with FakeCartesia(segments=["Hello world.", " Second part"], word_per_segment=False, interim_bytes=8000) as fake:
        with client_for(fake, view).connect() as session:
            session.send(SECOND)
            session.finalize(timeout=10)
            session.send(SECOND)
    assert "Hello world. Second part" in out.getvalue()
    assert "partial:" in out.getvalue()

    out2 = FakeTTY()
    many = LiveCaptions(stream=out2, width=30)
    threads = [
        threading.Thread(target=lambda: [many.on_transcript(Transcript(text=" x", is_final=True)) for _ in range(50)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert many.committed == " x" * 200 if len(" x" * 200) <= 120 else many.committed.endswith(" x" * 30)
    assert out2.getvalue().count("\x1b[1A") == 199  # every draw after the first moved up exactly once
