"""Cue segmentation and SRT/WebVTT formatting (cartesia_sync_plugins.subtitle_cues): properties, units, golden files."""

from __future__ import annotations

import html
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartesia_sync import Word
from cartesia_sync_plugins.subtitle_cues import (
    VTT_HEADER,
    Cue,
    CueBuilder,
    CueRules,
    clean_word,
    ends_sentence,
    escape_vtt,
    format_srt_cue,
    format_timestamp,
    format_vtt_cue,
    layout_lines,
    segment_words,
    to_ms,
)
from cartesia_sync_plugins.subtitles import write_subtitles

GOLDEN = Path(__file__).resolve().parent / "golden"
SRT_TS = r"\d{2,}:[0-5]\d:[0-5]\d,\d{3}"
VTT_TS = r"\d{2,}:[0-5]\d:[0-5]\d\.\d{3}"
SRT_TIMING = re.compile(rf"^{SRT_TS} --> {SRT_TS}$")
VTT_TIMING = re.compile(rf"^{VTT_TS} --> {VTT_TS}$")

PROPERTY = settings(
    max_examples=int(os.environ.get("SUBTITLE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------
# strategies

REAL_WORDS = [
    "the",
    "a",
    "coffee",
    "Hello,",
    "world.",
    "why?",
    "yes!",
    "Dr.",
    "e.g.",
    "well…",
    "naïve",
    "Zürich",
    "東京。",
    "AT&T",
    "<b>",
    "x-->y",
    "a>b",
    "&amp;",
    "“quoted.”",
    "don't",
    "(aside)",
    "—",
    "🙂",
    "42%",
]
ALPHABET = st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"), include_characters="&<>.?!,\n\t\x00-")
PLAIN = ["and", "the", "coffee", "morning", "everyone", "recognition", "of", "a", "water", "please", "I", "would"]
word_text = st.one_of(
    st.sampled_from(PLAIN),
    st.sampled_from(PLAIN),
    st.sampled_from(REAL_WORDS),
    st.text(ALPHABET, min_size=1, max_size=12),
    st.text(st.characters(codec="utf-8", categories=("L",)), min_size=43, max_size=70),  # longer than a line
)


@st.composite
def chaotic_words(draw) -> list[Word]:
    """Any times: zero, negative and huge durations, overlaps, words out of order."""
    out = []
    for text in draw(st.lists(word_text, min_size=1, max_size=60)):
        start = draw(st.one_of(st.floats(0, 120, allow_nan=False), st.sampled_from([0.0, 0.5, 59.9996, 3599.9995])))
        length = draw(st.one_of(st.sampled_from([0.0, -0.3, 0.01]), st.floats(-1, 9)))
        out.append(Word(text, start, max(0.0, start + length) if draw(st.booleans()) else start + length))
    return out


@st.composite
def ordered_words(draw) -> list[Word]:
    """Well-behaved times: each word starts at or after the previous one's end and lasts >= 10 ms."""
    out, t = [], draw(st.floats(0, 5))
    for text in draw(st.lists(word_text, min_size=3, max_size=80)):
        t += draw(st.one_of(st.just(0.0), st.just(0.0), st.floats(0, 0.6), st.floats(0.45, 1.5)))
        length = draw(st.one_of(st.just(0.01), st.floats(0.01, 0.4), st.floats(0.01, 0.4), st.floats(5, 9)))
        out.append(Word(text, round(t, 3), round(t + length, 3)))
        t = round(t + length, 3)
    return out


rules_strategy = st.one_of(
    st.just(CueRules()),
    st.builds(
        CueRules,
        max_chars_per_line=st.integers(8, 42),
        max_lines=st.integers(1, 3),
        min_duration=st.sampled_from([0.0, 0.833, 1.5]),
        max_duration=st.sampled_from([2.0, 7.0]),
        pause_split=st.sampled_from([0.2, 0.5, 2.0]),
        min_gap=st.sampled_from([0.0, 0.083]),
        linger=st.sampled_from([0.0, 0.5]),
    ),
)


def chunked(words: Sequence[Word], cuts: Sequence[int]) -> list[list[Word]]:
    bounds = sorted({min(c, len(words)) for c in cuts} | {0, len(words)})
    return [list(words[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


# ---------------------------------------------------------------------------
# the checks: every rule of §A5 and the formats


def expected_words(words: Sequence[Word]) -> list[str]:
    """The words the cues must hold: cleaned, empties dropped, and exact repeats behind the committed time dropped."""
    kept, seen, watermark, last_start = [], set(), 0, 0
    for w in words:
        text = clean_word(w.word)
        if not text:
            continue
        start, end = max(0, to_ms(w.start)), max(0, to_ms(w.end))
        key = (w.word, w.start, w.end)
        if key in seen and start < watermark - 5:
            continue
        seen.add(key)
        last_start = max(start, last_start)
        watermark = max(watermark, end, last_start)
        kept.append(text)
    return kept


def check_layout(cue: Cue, rules: CueRules) -> None:
    assert 1 <= len(cue.lines) <= rules.max_lines
    texts = [w.word for w in cue.words]
    i = 0
    for line in cue.lines:  # each line is a run of whole words, in order
        assert line and line == line.strip()
        j = i + 1
        while j <= len(texts) and " ".join(texts[i:j]) != line:
            j += 1
        assert j <= len(texts), f"line {line!r} is not made of whole words {texts[i:]}"
        assert len(line) <= rules.max_chars_per_line or j - i == 1, f"line too long: {line!r}"
        i = j
    assert i == len(texts)
    if len(" ".join(texts)) <= rules.max_chars_per_line:
        assert len(cue.lines) == 1, "text that fits one line is on one line"
    for line in cue.lines:
        assert "\n" not in line and "-->" not in line and "\x00" not in line


def check_timing(cues: Sequence[Cue], rules: CueRules) -> None:
    min_ms, max_ms, gap = to_ms(rules.min_duration), to_ms(rules.max_duration), to_ms(rules.min_gap)
    for i, cue in enumerate(cues):
        assert 0 <= cue.start_ms < cue.end_ms, "no zero-length or backwards cue"
        assert cue.end_ms - cue.start_ms <= max_ms
        if i + 1 < len(cues):
            nxt = cues[i + 1]
            assert cue.start_ms < nxt.start_ms and cue.end_ms <= nxt.start_ms, "no overlap, sorted"
            speech_end = max(to_ms(w.end) for w in cue.words)
            limit = max(nxt.start_ms - gap, min(speech_end, nxt.start_ms))  # the gap never cuts into speech
            limit = limit if limit > cue.start_ms else nxt.start_ms
            assert cue.end_ms <= limit, "the gap before the next cue is kept when there is room"
            assert cue.end_ms >= min(cue.start_ms + min_ms, limit), "short cues are extended to the minimum"
        else:
            assert cue.end_ms - cue.start_ms >= min_ms


def check_ordered(words: Sequence[Word], cues: Sequence[Cue], rules: CueRules) -> None:
    """With well-behaved times, cue times follow the words exactly and every break has a reason."""
    pause, max_ms = to_ms(rules.pause_split), to_ms(rules.max_duration)
    for i, cue in enumerate(cues):
        first, last = cue.words[0], cue.words[-1]
        assert cue.start_ms == to_ms(first.start), "start is never moved"
        speech_end = max(to_ms(w.end) for w in cue.words)
        bound = cues[i + 1].start_ms if i + 1 < len(cues) else speech_end
        assert cue.end_ms >= min(speech_end, bound, cue.start_ms + max_ms), "the cue covers its speech"
        for a, b in zip(cue.words, cue.words[1:], strict=False):
            assert to_ms(b.start) - to_ms(a.end) < pause, "a pause inside a cue"
            assert not ends_sentence(a.word), "a sentence end inside a cue"
        if i + 1 < len(cues):
            nxt = cues[i + 1].words[0]
            reasons = [
                to_ms(nxt.start) - speech_end >= pause,
                ends_sentence(last.word),
                layout_lines([w.word for w in cue.words] + [nxt.word], rules) is None,
                max(speech_end, to_ms(nxt.end)) - cue.start_ms > max_ms,
            ]
            assert any(reasons), f"cue {i} was split for no reason"


def srt_text(cues: Sequence[Cue]) -> str:
    return "".join(format_srt_cue(i, c) for i, c in enumerate(cues, 1))


def vtt_text(cues: Sequence[Cue]) -> str:
    return VTT_HEADER + "".join(format_vtt_cue(c) for c in cues)


def check_formats(cues: Sequence[Cue]) -> None:
    s, v = srt_text(cues), vtt_text(cues)
    s.encode("utf-8"), v.encode("utf-8")  # valid UTF-8: no lone surrogates
    if cues:
        assert s.endswith("\n\n") and "\n\n\n" not in s
    assert v.startswith("WEBVTT\n\n") and v.endswith("\n\n") and "\n\n\n" not in v
    # strict shapes, block by block
    for i, block in enumerate(s.split("\n\n")[:-1], 1):
        lines = block.split("\n")
        assert lines[0] == str(i) and SRT_TIMING.match(lines[1]) and len(lines) >= 3
    for block in v.split("\n\n")[1:-1]:
        lines = block.split("\n")
        assert VTT_TIMING.match(lines[0]) and len(lines) >= 2
        assert all("<" not in ln and "-->" not in ln for ln in lines[1:])
        assert not re.search(r"&(?!amp;|lt;|gt;)", "\n".join(lines[1:])), "a raw & in VTT text"
    # round trip through the strict parsers
    parsed = list(srt.parse(s, ignore_errors=False))
    assert len(parsed) == len(cues)
    for sub, cue in zip(parsed, cues, strict=False):
        assert abs(sub.start.total_seconds() - cue.start) <= 0.0005
        assert abs(sub.end.total_seconds() - cue.end) <= 0.0005
        assert sub.content == cue.text
    captions = webvtt.from_string(v).captions
    again = webvtt.from_buffer(io.StringIO(v)).captions
    assert len(captions) == len(again) == len(cues)
    for cap, cue in zip(captions, cues, strict=False):
        assert abs(cap.start_time.in_milliseconds() / 1000 - cue.start) <= 0.0005
        assert abs(cap.end_time.in_milliseconds() / 1000 - cue.end) <= 0.0005
        assert html.unescape(cap.raw_text) == cue.text


def check_all(words: Sequence[Word], cues: Sequence[Cue], rules: CueRules) -> None:
    assert [w.word for c in cues for w in c.words] == expected_words(words), "every word once, in order"
    for cue in cues:
        check_layout(cue, rules)
    check_timing(cues, rules)
    check_formats(cues)


# ---------------------------------------------------------------------------
# properties


def build_in_chunks(words, rules, cuts):
    """Feed ``words`` to a CueBuilder in the chunks ``cuts`` make, then finish; all the cues."""
    builder = CueBuilder(rules)
    cues = []
    for chunk in chunked(words, cuts):
        cues.extend(builder.add_words(chunk))
    cues.extend(builder.finish())
    return cues


@PROPERTY
@given(words=chaotic_words(), rules=rules_strategy, cuts=st.lists(st.integers(0, 40), max_size=6))
def test_any_word_stream_gives_valid_subtitles(words, rules, cuts):
    cues = build_in_chunks(words, rules, cuts)
    check_all(words, cues, rules)


@PROPERTY
@given(words=ordered_words(), rules=rules_strategy, cuts=st.lists(st.integers(0, 60), max_size=6))
def test_well_timed_words_follow_every_segmentation_rule(words, rules, cuts):
    cues = build_in_chunks(words, rules, cuts)
    check_all(words, cues, rules)
    check_ordered(words, cues, rules)
    assert cues == segment_words(words, rules), "chunking does not change the cues"


@PROPERTY
@given(words=ordered_words(), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_flushes_keep_subtitles_valid(words, cuts):
    builder = CueBuilder()
    cues = []
    for chunk in chunked(words, cuts):
        cues.extend(builder.add_words(chunk))
        cues.extend(builder.flush())
    cues.extend(builder.finish())
    check_all(words, cues, CueRules())


@PROPERTY
@given(ms=st.one_of(st.integers(0, 10**10), st.sampled_from([0, 999, 1000, 59_999, 60_000, 3_599_999, 3_600_000])))
def test_timestamps_are_exact_and_well_formed(ms):
    for sep in ",.":
        ts = format_timestamp(ms, sep)
        h, m, rest = ts.split(":")
        s, frac = rest.split(sep)
        assert len(m) == len(s) == 2 and len(frac) == 3 and len(h) >= 2
        assert int(m) < 60 and int(s) < 60
        assert ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(frac) == ms


@PROPERTY
@given(seconds=st.floats(0, 360000, allow_nan=False))
def test_seconds_round_once_to_the_nearest_millisecond(seconds):
    assert abs(to_ms(seconds) / 1000 - seconds) <= 0.0005 + 1e-9


# ---------------------------------------------------------------------------
# units


def words_at(text: str, start: float = 0.0, step: float = 0.3, length: float = 0.25) -> list[Word]:
    return [
        Word(w, round(start + i * step, 3), round(start + i * step + length, 3)) for i, w in enumerate(text.split())
    ]


def test_timestamp_rounding_never_prints_60_seconds_or_1000_ms():
    assert format_timestamp(to_ms(59.9996), ",") == "00:01:00,000"
    assert format_timestamp(to_ms(3599.9996), ".") == "01:00:00.000"
    assert format_timestamp(to_ms(0.0004), ",") == "00:00:00,000"
    assert format_timestamp(to_ms(100 * 3600 + 0.5), ".") == "100:00:00.500"
    with pytest.raises(ValueError):
        format_timestamp(-1)
    with pytest.raises(ValueError):
        to_ms(float("nan"))


def test_a_pause_starts_a_new_cue():
    cues = segment_words(words_at("one two") + words_at("three", start=1.1))
    assert [c.text for c in cues] == ["one two", "three"]


def test_a_sentence_end_starts_a_new_cue_but_an_abbreviation_does_not():
    cues = segment_words(words_at("I met Dr. Smith. Then we left! Why? Because"))
    assert [c.text for c in cues] == ["I met Dr. Smith.", "Then we left!", "Why?", "Because"]


def test_two_balanced_lines_and_a_new_cue_when_full():
    text = "this is a rather long stream of words that keeps going on and on without any sentence end at all"
    cues = segment_words(words_at(text, step=0.05, length=0.04))
    assert len(cues) == 2
    first = cues[0]
    assert len(first.lines) == 2 and all(len(line) <= 42 for line in first.lines)
    assert abs(len(first.lines[0]) - len(first.lines[1])) <= 8
    assert " ".join(c.text.replace("\n", " ") for c in cues) == text


def test_a_word_longer_than_a_line_gets_its_own_line():
    long = "x" * 50
    cues = segment_words(words_at(f"see {long} here"))
    assert cues[0].lines == ("see", long, "here") or [len(c.lines) for c in cues] != [3]
    assert all(line == long or len(line) <= 42 for c in cues for line in c.lines)
    assert layout_lines([long], CueRules()) == (long,)


def test_short_cues_are_extended_to_the_minimum_but_never_over_the_next():
    cues = segment_words([Word("Hi.", 1.0, 1.1), Word("Yes.", 1.5, 1.6), Word("Go.", 5.0, 5.1)])
    assert [(c.start_ms, c.end_ms) for c in cues] == [(1000, 1500), (1500, 2333), (5000, 5833)]


def test_a_cue_never_exceeds_the_maximum_duration():
    cues = segment_words([Word("long", 0.0, 20.0), Word("word", 20.0, 20.2)])
    assert cues[0].end_ms - cues[0].start_ms == 7000
    words = [Word(f"w{i}", i * 0.45, i * 0.45 + 0.4) for i in range(30)]
    assert all(c.duration <= 7.0 for c in segment_words(words))


def test_messy_times_are_clamped():
    words = [
        Word("b", 2.0, 1.0),
        Word("a", 1.5, 1.5),
        Word("c", -0.2, 0.0),
        Word("d.", float("nan"), 1.0),
        Word("  ", 3.0, 3.1),
        Word("e.", 3.0, 3.0),
        Word("f", 3.0, 3.0),
    ]
    cues = segment_words(words)
    assert [w.word for c in cues for w in c.words] == ["b", "a", "c", "e.", "f"]
    check_timing(cues, CueRules())
    check_formats(cues)


def test_a_repeated_word_list_is_ignored():
    first = words_at("hello there friend")
    builder = CueBuilder()
    builder.add_words(first)
    builder.add_words(first + words_at("again", start=0.9))  # a final that repeats the utterance
    cues = builder.finish()
    assert cues[0].text == "hello there friend again"
    assert builder.dropped_words == 3


def test_text_is_cleaned_and_escaped():
    assert clean_word(" a\tb\n\nc\x00d ") == "a b cd"
    assert clean_word("x-->y") == "x→y"
    assert clean_word("\ud800ok") == "\ufffdok"  # a lone surrogate marks where the text broke
    assert escape_vtt("A<B & C>D") == "A&lt;B &amp; C&gt;D"
    cue = Cue(0, 1000, ("A<B & C>D",))
    assert format_vtt_cue(cue) == "00:00:00.000 --> 00:00:01.000\nA&lt;B &amp; C&gt;D\n\n"
    assert format_srt_cue(1, cue) == "1\n00:00:00,000 --> 00:00:01,000\nA<B & C>D\n\n"
    assert format_vtt_cue(cue, "7").startswith("7\n00:00:00.000")
    with pytest.raises(ValueError):
        format_srt_cue(1, Cue(5, 5, ("zero",)))
    with pytest.raises(ValueError):
        format_vtt_cue(Cue(0, 5, ("  ",)))


def test_finish_is_idempotent_and_final():
    builder = CueBuilder()
    builder.add_words(words_at("last words"))
    assert [c.text for c in builder.finish()] == ["last words"]
    assert builder.finish() == []
    with pytest.raises(RuntimeError):
        builder.add_words(words_at("more"))


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_chars_per_line=0),
        dict(max_lines=1.5),
        dict(min_duration=-1),
        dict(max_duration=float("inf")),
        dict(min_duration=8.0),
        dict(max_duration=0),
    ],
)
def test_bad_rules_are_refused(bad):
    with pytest.raises(ValueError):
        CueRules(**bad)


def test_rules_are_frozen():
    with pytest.raises(Exception):
        CueRules().max_lines = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------
# golden files: a fixed, realistic word stream

REALISTIC = [
    # (word, start, end): a short meeting with pauses, punctuation, markup-like text and non-ASCII
    ("Good", 0.32, 0.52),
    ("morning", 0.52, 0.9),
    ("everyone.", 0.9, 1.42),
    ("Today", 2.1, 2.38),
    ("we're", 2.38, 2.55),
    ("reviewing", 2.55, 3.0),
    ("the", 3.0, 3.08),
    ("Q3", 3.08, 3.4),
    ("numbers", 3.4, 3.8),
    ("for", 3.8, 3.92),
    ("R&D", 3.92, 4.4),
    ("and", 4.4, 4.52),
    ("the", 4.52, 4.6),
    ("café", 4.6, 4.95),
    ("project", 4.95, 5.35),
    ("in", 5.35, 5.45),
    ("Zürich,", 5.45, 6.0),
    ("which", 6.0, 6.2),
    ("grew", 6.2, 6.45),
    ("by", 6.45, 6.55),
    ("<", 6.55, 6.6),
    ("5%", 6.6, 7.0),
    ("but", 7.0, 7.15),
    ("beat", 7.15, 7.4),
    ("expectations.", 7.4, 8.2),
    ("Any", 9.5, 9.7),
    ("questions?", 9.7, 10.3),
    ("Yes!", 10.3, 10.3),  # zero-length word
    ("What", 12.0, 12.2),
    ("about", 12.2, 12.4),
    ("the", 12.4, 12.5),
    ("antidisestablishmentarianism-related-paperwork", 12.5, 14.1),
    ("we", 14.1, 14.2),
    ("filed", 14.2, 14.5),
    ("last", 14.5, 14.7),
    ("week", 14.7, 14.95),
    ("—", 14.95, 14.95),
    ("is", 15.0, 15.1),
    ("it", 15.1, 15.2),
    ("done", 15.2, 15.5),
    ("yet", 15.5, 15.9),
]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_golden_files(tmp_path, fmt):
    words = [Word(*w) for w in REALISTIC]
    out = tmp_path / f"meeting.{fmt}"
    write_subtitles(words, **{fmt: out})
    produced = out.read_bytes()
    golden = GOLDEN / f"meeting.{fmt}"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(produced)
    assert produced == golden.read_bytes()
    assert not produced.startswith(b"\xef\xbb\xbf") and b"\r" not in produced
    check_all(words, segment_words(words), CueRules())
