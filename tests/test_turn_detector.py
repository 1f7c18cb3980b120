"""The local server's turn detector, on the real engine: turns from speech and silence, in received audio time."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pocketsphinx")

from cartesia_sync.local._engine import StreamOptions  # noqa: E402
from cartesia_sync.local._metrics import word_error_rate  # noqa: E402
from cartesia_sync.local._pocketsphinx_engine import PocketSphinxEngine  # noqa: E402
from cartesia_sync.local._turn_detector import TurnDetector, TurnTiming  # noqa: E402

DATA = Path(__file__).parent / "data"
RATE = 16000
CHUNK = 3200  # 100 ms


def wav(name: str) -> bytes:
    with wave.open(str(DATA / name)) as w:
        return w.readframes(w.getnframes())


def truth(name: str) -> str:
    return dict(line.split("\t") for line in (DATA / "fixtures.tsv").read_text().splitlines())[name]


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * RATE))


@pytest.fixture(scope="module")
def engine() -> Iterator[PocketSphinxEngine]:
    eng = PocketSphinxEngine(workers=1, timeout=30)
    yield eng
    eng.close()


def detect(engine: PocketSphinxEngine, audio: bytes, timing: TurnTiming | None = None, close: bool = True):
    timing = timing or TurnTiming.from_thresholds()
    stream = engine.open_stream(StreamOptions(model="ink-2", max_silence_duration_secs=timing.end_silence))
    detector = TurnDetector(stream, timing, 2 * RATE)
    events = []
    try:
        for i in range(0, len(audio), CHUNK):
            events.extend(detector.feed(audio[i : i + CHUNK]))
        if close:
            events.extend(detector.close())
    finally:
        stream.close()
    return events


def check_order(events) -> None:
    """The four documented guarantees."""
    phase = "idle"
    for event in events:
        kind = event["type"]
        if kind == "turn.start":
            assert phase == "idle"
            phase = "speaking"
        elif kind == "turn.update":
            assert phase in ("speaking", "eager")
        elif kind == "turn.eager_end":
            assert phase == "speaking"
            phase = "eager"
        elif kind == "turn.resume":
            assert phase == "eager"
            phase = "speaking"
        elif kind == "turn.end":
            assert phase in ("speaking", "eager")
            phase = "idle"
    assert phase == "idle"


def test_two_utterances_separated_by_silence_are_two_turns(engine):
    audio = silence(0.5) + wav("utt01.wav") + silence(1.5) + wav("utt03.wav") + silence(1.5)
    events = detect(engine, audio)
    check_order(events)
    ends = [e["transcript"] for e in events if e["type"] == "turn.end"]
    assert len(ends) == 2
    assert word_error_rate([truth("utt01.wav")], [ends[0]]) < 0.35
    assert word_error_rate([truth("utt03.wav")], [ends[1]]) < 0.35
    assert all(end.startswith(" ") and not end.startswith("  ") for end in ends)  # joined verbatim: readable
    assert [e["type"] for e in events].count("turn.eager_end") >= 2  # an eager end before each end
    updates = [e["transcript"] for e in events if e["type"] == "turn.update"]
    assert updates and all(updates[i] != updates[i + 1] for i in range(len(updates) - 1))


def test_no_turn_end_without_more_audio_unless_close(engine):
    speech = silence(0.3) + wav("utt02.wav")
    open_events = detect(engine, speech, close=False)
    assert "turn.start" in [e["type"] for e in open_events]
    assert "turn.end" not in [e["type"] for e in open_events]  # the sender stopped: no time passes
    closed = detect(engine, speech, close=True)
    check_order(closed)
    assert [e["type"] for e in closed].count("turn.end") == 1
    assert word_error_rate([truth("utt02.wav")], [closed[-1]["transcript"]]) < 0.35


def test_a_short_pause_gives_an_eager_end_then_a_resume_not_a_second_turn(engine):
    timing = TurnTiming.from_thresholds(end_timeout_ms=2000, end_threshold=0.05, eager_end_threshold=0.3)
    assert timing.eager_silence == pytest.approx(0.75) and timing.end_silence == pytest.approx(1.23)
    # The recordings start and end with about 0.5 s of silence each: a pause of about 1 s between them.
    audio = silence(0.3) + wav("utt04.wav") + wav("utt06.wav") + silence(2.0)
    events = detect(engine, audio, timing)
    check_order(events)
    kinds = [e["type"] for e in events]
    assert kinds.count("turn.start") == 1 and kinds.count("turn.end") == 1
    assert "turn.resume" in kinds
    combined = truth("utt04.wav") + " " + truth("utt06.wav")
    assert word_error_rate([combined], [events[-1]["transcript"]]) < 0.35


def test_the_thresholds_map_onto_silence_windows_in_order():
    default = TurnTiming.from_thresholds()
    assert default == TurnTiming(
        start_speech=pytest.approx(0.15), eager_silence=pytest.approx(0.65), end_silence=pytest.approx(1.02)
    )
    for end in (0.05, 0.2, 0.5):
        for eager in (0.3, 0.45, 0.6):
            for timeout in (640, 5600, 11200):
                timing = TurnTiming.from_thresholds(0.8, eager, end, timeout)
                assert 0 < timing.eager_silence < timing.end_silence <= timeout / 1000
    assert TurnTiming.from_thresholds(end_timeout_ms=640).end_silence == pytest.approx(0.64)
    assert TurnTiming.from_thresholds(start_threshold=0.9).start_speech > default.start_speech
