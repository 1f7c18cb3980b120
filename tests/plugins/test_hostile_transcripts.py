"""Whatever a transcript holds, the bundled plugins' outputs stay valid and nothing hangs.

Hostile input, as a class rather than examples: text with lone surrogates,
control characters (C0, DEL, C1, escape sequences), bidi overrides, line and
paragraph separators, the subtitle formats' own syntax (``-->`` and the arrows
lenient SRT readers accept, ``<tags>``, ``&entities``, blank lines, timing
lines, ``WEBVTT``/``NOTE``), megabyte words and 100,000-word transcripts; word
times negative, reversed, overlapping, equal, NaN, infinite, huge, beyond the
float range, or not numbers at all. hypothesis generates them; a table of
named cases pins the ones known to have broken something.

Oracles, strict where they can be:

- SRT: ``srt.parse(..., ignore_errors=False)`` plus our own strict block regex
  (two-digit fields, comma, three-digit milliseconds, sequential index, a
  blank line after every block), starts never going backwards, ``start < end``,
  no overlap, nothing past 99:59:59,999;
- WebVTT: ``webvtt.from_string(..., strict=True)`` (and ``webvtt.read`` on a
  file), the same timing checks, the same text as the SRT once unescaped;
- both: UTF-8 encodable, no control character but LF, no bidi override, no
  lone surrogate, no blank line inside a cue;
- event log: every line parsed on its own by ``json.loads`` (NaN/Infinity
  refused), ``read_events`` reads every record back with nothing torn or
  corrupt, and the transcript read back equals the one the plugin was given;
- live captions: UTF-8 encodable, no control character outside its own
  cursor sequences.

Plugins are driven through their hooks with real :class:`Transcript` events,
and end to end through :class:`~cartesia_sync.testing.FakeCartesia` whose
scripted engine says the hostile text and whose scenario sends hostile word
times. Sizes are hang guards (a bound of 30 s, not a benchmark); linearity is
checked by counting work, not by timing it.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cartesia_sync
from cartesia_sync import ProtocolError, ServerErrorEvent, Transcript, UnknownMessage, Word, parse_message
from cartesia_sync.testing import FakeCartesia, Scenario
from cartesia_sync_plugins import subtitle_cues
from cartesia_sync_plugins.event_log import EventLog, read_events, transcript_from_events
from cartesia_sync_plugins.live_captions import CLEAR_LINE, CURSOR_UP, LiveCaptions
from cartesia_sync_plugins.subtitle_cues import MAX_TIME_MS, CueBuilder, CueRules, clean_word, word_ms
from cartesia_sync_plugins.subtitles import SubtitleWriter

HANG_GUARD = 30.0  # seconds: far above what linear work needs, far below a hang or quadratic blow-up
SECOND = b"\0" * 32000  # 1 s of 16 kHz s16le silence
BIDI_OVERRIDES = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# --------------------------------------------------------------------------- hostile material

NASTY_SNIPPETS = [
    "-",
    "--",
    "12",
    "-3.5",
    "00:00:01,000",
    "1:2:3.4",
    "-->",
    "--->",
    "- >",
    "-- >",
    "-  ->",
    "-\x00->",
    "-\u202e->",
    "<b>bold</b>",
    "<00:00:01.000>",
    "<v Bob>",
    "&amp;",
    "&lt;",
    "&",
    "<",
    ">",
    "{\\an8}",
    "\n\n",
    "\r\n\r\n",
    "\r",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0b\x0c",
    "\x1c\x1d\x1e\x1f",
    "\t",
    "\x00",
    "\x07",
    "\x1b[2J\x1b[31m",
    "\x9b31m",
    "\x7f",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u200f",
    "\u061c",
    "\ufeff",
    "\u200b",
    "\ufffe\uffff",
    "\ud800",
    "\udfff",
    "\ud83d",
    "\U0001f600",
    "\u0301\u0301",
    "WEBVTT",
    "NOTE",
    "STYLE",
    "1\n00:00:01,000 --> 00:00:02,000\n",
    "\n2\n00:00:01.000 --> 00:00:02.000 align:start\n",
    "00:00:60,000",
    "99:59:59,999",
    " ",
    "",
]

hostile_chars = st.characters(exclude_categories=())  # every code point, surrogates and controls included
hostile_text = st.lists(
    st.one_of(hostile_chars, st.sampled_from(NASTY_SNIPPETS), st.text(max_size=8)), max_size=12
).map("".join)

# Times: plausible ones (10 ms steps, as Cartesia rounds), then everything a Word could be built with.
plausible_time = st.integers(min_value=0, max_value=60_000).map(lambda ms: ms / 1000)
hostile_time = st.one_of(
    plausible_time,
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(
        [
            -0.0,
            -1e-9,
            5e-324,
            1e300,
            -1e300,
            10**400,
            -(10**400),
            MAX_TIME_MS / 1000,
            MAX_TIME_MS / 1000 - 0.001,
            MAX_TIME_MS / 1000 + 0.001,
            359_999.9995,
            True,
            False,
            None,
            "1.5",
            b"1",
            [1],
        ]
    ),
)


@st.composite
def hostile_words(draw: Any, max_size: int = 40) -> list[Word]:
    return [
        Word(draw(hostile_text), draw(hostile_time), draw(hostile_time))  # type: ignore[arg-type]
        for _ in range(draw(st.integers(0, max_size)))
    ]


@st.composite
def plausible_but_messy_words(draw: Any) -> list[Word]:
    """Finite times that go backwards, overlap, repeat and collapse to one instant."""
    words = []
    t = draw(st.integers(0, 5000))
    for _ in range(draw(st.integers(0, 60))):
        t = max(0, t + draw(st.integers(-3000, 3000)))
        length = draw(st.integers(-500, 2000))
        words.append(Word(draw(hostile_text), t / 1000, (t + length) / 1000))
    return words


# A stream is what the hooks see: final chunks of words, interims, and finalize answers between them.
Step = tuple[str, Any]


@st.composite
def hook_steps(draw: Any, words: st.SearchStrategy[list[Word]]) -> list[Step]:
    steps: list[Step] = []
    for chunk in draw(st.lists(words, max_size=5)):
        kind = draw(st.sampled_from(["final", "final", "interim", "flush"]))
        if kind == "flush":
            steps.append(("flush", None))
        steps.append(("final" if kind != "interim" else "interim", chunk))
    return steps


def transcript_of(words: Sequence[Word], is_final: bool = True, text: str | None = None) -> Transcript:
    if text is None:
        text = "".join(" " + w.word for w in words)
    return Transcript(text=text, is_final=is_final, words=tuple(words))


# --------------------------------------------------------------------------- oracles

SRT_TS = r"(\d{2}):([0-5]\d):([0-5]\d),(\d{3})"
SRT_BLOCK = re.compile(rf"(\d+)\n{SRT_TS} --> {SRT_TS}\n((?:[^\n]+\n)+)")
VTT_TS = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$")


def _ms(h: str, m: str, s: str, f: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(f)


def check_text_is_clean(text: str, what: str) -> None:
    """UTF-8 encodable, no control character but LF, no bidi override, no lone surrogate."""
    text.encode("utf-8")  # raises on a lone surrogate
    bad = {ch for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cs")} | (set(text) & BIDI_OVERRIDES)
    assert not bad, f"{what} holds {sorted(map(hex, map(ord, bad)))}"


def check_timings(times: list[tuple[int, int]], what: str) -> None:
    for start, end in times:
        assert 0 <= start < end <= MAX_TIME_MS, f"{what}: bad cue {start}..{end}"
    for (_, end), (start, _) in zip(times, times[1:], strict=False):
        assert end <= start, f"{what}: cues overlap or go backwards ({end} > {start})"


def check_srt(text: str) -> list[tuple[int, int, str]]:
    """Our strict reading of an SRT file, cross-checked with ``srt.parse``; returns (start, end, text)."""
    check_text_is_clean(text, "SRT")
    cues: list[tuple[int, int, str]] = []
    pos = 0
    while pos < len(text):
        match = SRT_BLOCK.match(text, pos)
        assert match, f"not an SRT block at {pos}: {text[pos : pos + 120]!r}"
        assert text[match.end() : match.end() + 1] == "\n", "an SRT block must end with a blank line"
        assert int(match.group(1)) == len(cues) + 1
        cues.append((_ms(*match.group(2, 3, 4, 5)), _ms(*match.group(6, 7, 8, 9)), match.group(10)[:-1]))
        pos = match.end() + 1
    check_timings([(s, e) for s, e, _ in cues], "SRT")
    parsed = list(srt.parse(text, ignore_errors=False))
    assert [(round(p.start.total_seconds() * 1000), round(p.end.total_seconds() * 1000)) for p in parsed] == [
        (s, e) for s, e, _ in cues
    ]
    assert [p.content for p in parsed] == [t for _, _, t in cues]
    return cues


def check_vtt(text: str, *, path: Any = None) -> list[tuple[int, int, str]]:
    """A strict WebVTT read (webvtt-py strict, our timestamp rule); returns (start, end, unescaped text)."""
    check_text_is_clean(text, "WebVTT")
    assert text.startswith("WEBVTT\n\n")
    assert "\n\n\n" not in text
    vtt = webvtt.read(str(path), strict=True) if path is not None else webvtt.from_string(text, strict=True)
    cues = []
    for caption in vtt.captions:
        stamps = []
        for stamp in (caption.start, caption.end):
            match = VTT_TS.match(stamp)
            assert match, stamp
            stamps.append(_ms(*match.groups()))
        payload = caption.raw_text
        assert payload and "-->" not in payload and "\n\n" not in payload
        assert "<" not in payload and not re.search(r"&(?!amp;|lt;|gt;)", payload), payload
        cues.append((stamps[0], stamps[1], html.unescape(payload)))
    check_timings([(s, e) for s, e, _ in cues], "WebVTT")
    blocks = text[len("WEBVTT\n\n") :].split("\n\n")
    assert blocks[-1] == "" and len(blocks) - 1 == len(cues), "every cue block is one cue"
    return cues


def check_subtitles(srt_text: str, vtt_text: str, writer: SubtitleWriter) -> None:
    srt_cues = check_srt(srt_text)
    vtt_cues = check_vtt(vtt_text)
    assert srt_cues == vtt_cues, "SRT and WebVTT hold the same cues"
    assert [(c.start_ms, c.end_ms, c.text) for c in writer.cues] == srt_cues


def json_lines(data: bytes) -> list[dict[str, Any]]:
    """Every line parsed on its own: UTF-8, JSON without NaN/Infinity, one object, no raw control byte."""
    assert data.endswith(b"\n")
    records = []
    for line in data.split(b"\n")[:-1]:
        assert not re.search(rb"[\x00-\x1f\x7f]", line), line[:200]
        text = line.decode("utf-8")
        assert not set(text) & (BIDI_OVERRIDES | {"\u2028", "\u2029", "\x85"})
        record = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the log"))
        assert isinstance(record, dict)
        records.append(record)
    return records


def same_time(logged: Any, given: Any) -> bool:
    """A word time as the log must hold it: finite numbers as they were, anything else as JSON allows."""
    if isinstance(given, float) and not math.isfinite(given):
        return logged is None
    if isinstance(given, int) and not isinstance(given, bool) and given.bit_length() > 1000:
        return logged is None
    if isinstance(given, bytes):
        return logged == {"bytes": len(given)}
    return logged == given and type(logged) is type(given) or (isinstance(given, tuple) and logged == list(given))


def fake_session(number: int = 1) -> SimpleNamespace:
    """What the event log reads from a session in its hooks."""
    settings = SimpleNamespace(
        api_key=None,
        display_url="ws://127.0.0.1:1/stt/websocket",
        model="ink-whisper",
        language="en",
        encoding="pcm_s16le",
        sample_rate=16000,
        cartesia_version="2026-01-01",
    )
    stats = SimpleNamespace(as_dict=lambda: {"audio_sent": 1.0})
    return SimpleNamespace(
        number=number, settings=settings, started_at=None, error=None, errors=(), text="", words=(), stats=stats
    )


# --------------------------------------------------------------------------- driving the plugins


def run_subtitles(
    steps: Iterable[Step], ending: str = "done", rules: CueRules | None = None
) -> tuple[str, str, SubtitleWriter]:
    srt_out, vtt_out = io.StringIO(), io.StringIO()
    writer = SubtitleWriter(srt=srt_out, vtt=vtt_out, rules=rules)
    writer.on_session_start()
    for kind, payload in steps:
        if kind == "flush":
            writer.on_flush_done()
        else:
            writer.on_transcript(transcript_of(payload, is_final=kind == "final"))
    if ending == "done":
        writer.on_done()
    writer.on_session_end()
    return srt_out.getvalue(), vtt_out.getvalue(), writer


def run_event_log(transcripts: Sequence[Transcript], target: Any = None) -> tuple[bytes, EventLog]:
    buffer = io.BytesIO() if target is None else target
    log = EventLog(buffer)
    session = fake_session()
    log.on_session_start(session)
    for transcript in transcripts:
        log.on_event(session, transcript)
        log.on_error(session, ProtocolError(f"junk {transcript.text[:50]}", raw=transcript.text[:200]))
    log.on_session_end(session)
    assert log.failed is None and log.dropped == 0
    if target is None:
        return buffer.getvalue(), log
    target.flush()
    return target.buffer.getvalue(), log


def as_json_holds(text: str) -> str:
    """``text`` as any JSON reader returns it: the same, except that a lone high surrogate followed by a
    lone low one (only a Python string can hold them apart) reads back as the pair they spell."""
    return json.loads(json.dumps(text))


def check_event_log(data: bytes, transcripts: Sequence[Transcript]) -> None:
    records = json_lines(data)
    log = read_events(io.BytesIO(data), strict=True)
    assert log.events == records and not log.torn_tail and not log.corrupt_lines and not log.blank_lines
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    logged = [r for r in records if r["event"] == "transcript"]
    assert len(logged) == len(transcripts)
    for record, transcript in zip(logged, transcripts, strict=True):
        assert record["text"] == as_json_holds(transcript.text)  # as received, lone surrogates included
        assert [w["word"] for w in record["words"]] == [as_json_holds(w.word) for w in transcript.words]
        for item, word in zip(record["words"], transcript.words, strict=True):
            assert same_time(item["start"], word.start) and same_time(item["end"], word.end), (item, word)
    errors = [r for r in records if r["event"] == "error"]
    assert [e["raw"] for e in errors] == [as_json_holds(t.text[:200]) for t in transcripts]
    text, words = transcript_from_events(log)
    assert text == as_json_holds("".join(t.text for t in transcripts if t.is_final))
    assert len(words) == sum(len(t.words) for t in transcripts if t.is_final)
    assert all(isinstance(w.start, (int, float)) and isinstance(w.end, (int, float)) for w in words)


def check_live_output(out: str) -> None:
    out.encode("utf-8")
    own = out.replace(CLEAR_LINE, "").replace(CURSOR_UP, "")
    bad = {ch for ch in own if ch not in "\n\r" and unicodedata.category(ch) in ("Cc", "Cs")}
    assert not bad and not set(own) & BIDI_OVERRIDES, sorted(map(hex, map(ord, bad)))


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def columns(text: str) -> int:
    """Terminal columns: wide and fullwidth characters take two, combining and format characters none."""
    return sum(
        0
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf")
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


def run_live(transcripts: Iterable[Transcript], width: int = 40) -> None:
    for stream in (io.StringIO(), FakeTTY()):
        view = LiveCaptions(stream=stream, width=width)
        for transcript in transcripts:
            view.on_transcript(transcript)
        view.on_session_end()
        out = stream.getvalue()
        check_live_output(out)
        if stream.isatty():  # every drawn line fits the width, so nothing wraps and the redraw stays in place
            drawn = re.split(r"\r|\n|" + re.escape(CLEAR_LINE) + "|" + re.escape(CURSOR_UP), out)
            assert max(map(columns, drawn)) <= width
        else:
            assert all(line.strip() == line and line for line in out.split("\n")[:-1])


# --------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=hook_steps(hostile_words()), ending=st.sampled_from(["done", "session_end"]))
def test_subtitles_stay_valid_for_any_words(steps: list[Step], ending: str) -> None:
    srt_text, vtt_text, writer = run_subtitles(steps, ending)
    check_subtitles(srt_text, vtt_text, writer)
    finals = [w for kind, chunk in steps if kind == "final" for w in chunk]
    kept = [w for cue in writer.cues for w in cue.words]
    usable = [w for w in finals if clean_word(w.word) and None not in (word_ms(w.start), word_ms(w.end))]
    assert len(kept) <= len(usable)
    assert len(kept) + writer.dropped_words == len(finals)


seconds = st.integers(0, 10_000).map(lambda ms: ms / 1000)


@st.composite
def any_rules(draw: Any) -> CueRules:
    max_ms = draw(st.integers(1, 10_000))
    return CueRules(
        max_chars_per_line=draw(st.integers(1, 60)),
        max_lines=draw(st.integers(1, 5)),
        min_duration=draw(st.integers(0, max_ms)) / 1000,
        max_duration=max_ms / 1000,
        pause_split=draw(seconds),
        min_gap=draw(seconds),
        linger=draw(st.just(0.0) | seconds | st.just(1e300)),
        split_sentences=draw(st.booleans()),
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=hook_steps(st.one_of(hostile_words(), plausible_but_messy_words())), rules=any_rules())
def test_subtitles_stay_valid_under_any_rules(steps: list[Step], rules: CueRules) -> None:
    srt_text, vtt_text, writer = run_subtitles(steps, rules=rules)
    check_subtitles(srt_text, vtt_text, writer)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=hook_steps(plausible_but_messy_words()))
def test_messy_finite_times_keep_every_word_in_order(steps: list[Step]) -> None:
    """Negative, reversed, overlapping and colliding times: no word with text is lost, order is kept."""
    srt_text, vtt_text, writer = run_subtitles(steps)
    check_subtitles(srt_text, vtt_text, writer)
    finals = [clean_word(w.word) for kind, chunk in steps if kind == "final" for w in chunk]
    kept = [w.word for cue in writer.cues for w in cue.words]
    # A word is dropped only as a repeat of one already committed (same text and times, behind the watermark).
    assert len(kept) + writer.dropped_words == len(finals)
    expected = iter(f for f in finals if f)
    assert all(any(word == f for f in expected) for word in kept), "kept words are a subsequence of the input"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunks=st.lists(hostile_words(max_size=15), max_size=6), texts=st.lists(hostile_text, max_size=6))
def test_the_event_log_reads_back_whatever_it_was_given(chunks: list[list[Word]], texts: list[str]) -> None:
    transcripts = [
        transcript_of(words, is_final=i % 3 != 1, text=texts[i] if i < len(texts) else None)
        for i, words in enumerate(chunks)
    ]
    data, _ = run_event_log(transcripts)
    check_event_log(data, transcripts)


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(hostile_text, min_size=1, max_size=5), encoding=st.sampled_from(["utf-8", "latin-1", "ascii"]))
def test_the_event_log_survives_a_text_file_of_any_encoding(texts: list[str], encoding: str) -> None:
    transcripts = [transcript_of([], text=text) for text in texts]
    target = io.TextIOWrapper(io.BytesIO(), encoding=encoding, newline="")
    data, _ = run_event_log(transcripts, target=target)
    check_event_log(data, transcripts)


wide_text = st.lists(
    st.sampled_from(["漢字", "😀", "ｆｕｌｌ", "e\u0301", "\u200b", " ", "a", "한국어"]), max_size=40
).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.tuples(hostile_text | wide_text, st.booleans()), max_size=8),
    width=st.integers(1, 50),
)
def test_live_captions_stay_plain_text(texts: list[tuple[str, bool]], width: int) -> None:
    run_live([Transcript(text=text, is_final=final) for text, final in texts], width=width)


# JSON as a server may send it: any structure, any text, numbers JSON can hold and ones it cannot.
wire_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=20,
)


def json_holds(value: Any) -> Any:
    """What the log must hold for ``value``: non-finite floats as null, text as JSON reads it back."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return as_json_holds(value)
    if isinstance(value, list):
        return [json_holds(v) for v in value]
    if isinstance(value, dict):
        return {as_json_holds(str(k)): json_holds(v) for k, v in value.items()}
    return value


SECRET_KEYS = {
    "authorization",
    "x-api-key",
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "token",
    "cartesia-api-key",
}


def masked(value: Any) -> Any:
    """``value`` with the event log's redaction: the values of secret-looking keys, at any depth, as ``***``."""
    if isinstance(value, dict):
        return {k: "***" if k.lower() in SECRET_KEYS else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.dictionaries(hostile_text, wire_values, max_size=6), message=hostile_text, kind=hostile_text)
def test_other_server_messages_with_hostile_content_are_logged(raw: dict[str, Any], message: str, kind: str) -> None:
    buffer = io.BytesIO()
    log = EventLog(buffer)
    session = fake_session()
    exception = ServerErrorEvent(message=message, title=kind).to_exception()
    log.on_event(session, UnknownMessage(kind, raw))
    log.on_event(session, ServerErrorEvent(message=message, title=kind, error_code=message, raw=raw))
    log.on_error(session, exception)
    assert log.failed is None
    records = json_lines(buffer.getvalue())
    assert read_events(io.BytesIO(buffer.getvalue()), strict=True).events == records
    unknown, server_error, error = records
    assert unknown["type"] == as_json_holds(kind)
    assert unknown["raw"] == masked(json_holds(raw))
    assert server_error["message"] == as_json_holds(message)
    assert error["message"] == as_json_holds(str(exception))


# --------------------------------------------------------------------------- named cases

NAMED_TEXTS = {
    "lone surrogates": ["\ud800", "a\udfffb", "\ud83d", "x\ud83d\ude00"[:2]],
    "C0 and C1 controls": ["\x00\x01\x07bell", "\x1b[31mred\x1b[0m", "\x9b2J", "del\x7f", "nel\x85line"],
    "bidi overrides": ["\u202egnp.exe", "\u2066isolated\u2069", "\u202aembedded", "שלום\u200f", "\u061cabc"],
    "timing arrows": ["-->", "x-->y", "--->", "- >", "-- >", "-\x00->", "-\u202e->", "<--", "→"],
    "arrows across words": ["-", ">", "--", ">", "-", "-", ">", "--", " >"],
    "markup": ["<b>bold</b>", "<i>", "&amp;", "&lt;", "A<B", "C&D", "<00:00:01.000>", "<v Bob>", "{\\an8}"],
    "line breaks": ["a\n\nb", "c\r\n\r\nd", "e\rf", "g\u2028h", "i\u2029j", "k\x0b\x0cl", "m\x1cn"],
    "invisible only": ["\u200b", "\ufeff", " \t ", "\u00a0", "\u0301"],
    "format keywords": ["WEBVTT", "NOTE", "STYLE", "REGION", "1", "00:00:01,000", "00:00:01.000"],
    "a forged cue": ["1\n00:00:01,000 --> 00:00:02,000\nforged\n\n2", "\n\n00:00:00.000 --> 00:00:09.000\nvtt"],
    "noncharacters and astral": ["\ufffe\uffff", "\U0001f600\U0001f469\u200d\U0001f4bb", "\U000e0001tag"],
}

NAMED_TIMES: dict[str, list[tuple[Any, Any]]] = {
    "negative": [(-5.0, -4.0), (-1e-9, 0.2), (-1e300, 1.0)],
    "reversed": [(3.0, 1.0), (2.0, 2.0), (1.0, 0.5)],
    "overlapping": [(0.0, 5.0), (0.5, 1.0), (0.6, 4.0), (0.6, 0.6)],
    "one instant": [(1.0, 1.0)] * 50,
    "not finite": [(math.nan, 1.0), (0.0, math.inf), (-math.inf, 0.0), (math.nan, math.nan)],
    "absurdly large": [(1e300, 1e300), (10**400, 10**400 + 1), (3.6e5, 3.6e5 + 1), (0.5, 1.0)],
    "at the cap": [(MAX_TIME_MS / 1000 - 0.002, MAX_TIME_MS / 1000)] * 5 + [(MAX_TIME_MS / 1000, 1e9)],
    "not numbers": [(None, 1.0), ("1.5", 2.0), (True, False), (b"1", [2])],
}


@pytest.mark.parametrize("name", sorted(NAMED_TEXTS))
def test_named_texts(name: str) -> None:
    texts = NAMED_TEXTS[name]
    words = [Word(text, i * 0.3, i * 0.3 + 0.25) for i, text in enumerate(texts)]
    srt_text, vtt_text, writer = run_subtitles([("final", words)])
    check_subtitles(srt_text, vtt_text, writer)
    shown = " ".join(c.text.replace("\n", " ") for c in writer.cues)
    # One line here: words are cleaned, joined, and an arrow the join made is replaced too.
    assert shown == re.sub(r"-[ -] *>", "→", " ".join(filter(None, (clean_word(t) for t in texts))))
    transcripts = [transcript_of(words), transcript_of(words, text="".join(texts))]
    data, _ = run_event_log(transcripts)
    check_event_log(data, transcripts)
    run_live(transcripts)


@pytest.mark.parametrize("name", sorted(NAMED_TIMES))
def test_named_times(name: str) -> None:
    words = [Word(f"w{i}", start, end) for i, (start, end) in enumerate(NAMED_TIMES[name])]
    srt_text, vtt_text, writer = run_subtitles(
        [("final", words[: len(words) // 2]), ("final", words[len(words) // 2 :])]
    )
    check_subtitles(srt_text, vtt_text, writer)
    data, _ = run_event_log([transcript_of(words)])
    check_event_log(data, [transcript_of(words)])


def test_the_documented_text_rules() -> None:
    assert clean_word("\ud800ok") == "\ufffdok"  # lone surrogate: U+FFFD
    assert clean_word("a\x00b\x1b[2Jc\x7f\x9bd") == "abc"  # controls removed, escape sequences whole
    assert clean_word("\u202egnp\u2066.exe\u2069") == "gnp.exe"  # bidi overrides and isolates removed
    assert clean_word("ab\u200fc\u061c") == "ab\u200fc\u061c"  # implicit marks kept
    assert clean_word(" a\t\n\r\u2028\u2029\x85b ") == "a b"  # any white space: one space
    assert [clean_word(s) for s in ("x-->y", "x- >y", "x-- >y", "x---->y")] == ["x→y", "x→y", "x→y", "x--→y"]
    vtt = subtitle_cues.format_vtt_cue(subtitle_cues.Cue(0, 1, ("a<b>&c",)))
    assert vtt.endswith("\na&lt;b&gt;&amp;c\n\n")


def test_a_forged_srt_block_inside_a_cue_is_defused() -> None:
    """With three lines a cue could hold a bare number over a timestamp line, where ``srt`` starts a cue."""
    words = [Word(t, 0.1 * i, 0.1 * i + 0.05) for i, t in enumerate(["abcdefgh", "12", "00:00:01,000", "x"])]
    srt_text, vtt_text, writer = run_subtitles([("final", words)], rules=CueRules(max_chars_per_line=12, max_lines=3))
    check_subtitles(srt_text, vtt_text, writer)
    assert writer.cues[0].lines == ("abcdefgh 12", "00:00:01,000", "x")


def test_the_documented_time_rules() -> None:
    cap = MAX_TIME_MS / 1000
    assert [word_ms(t) for t in (-5, -1e300, -(10**400), -0.0, 0.0004, 1.2345, cap)] == [
        0,
        0,
        0,
        0,
        0,
        1234,
        MAX_TIME_MS,
    ]
    assert [word_ms(t) for t in (math.nan, math.inf, -math.inf, 1e300, 10**400, cap + 0.001)] == [None] * 6
    assert [word_ms(t) for t in (True, False, None, "1", b"1")] == [None] * 5
    # One absurd time does not drag the words after it past the cap.
    builder = CueBuilder()
    cues = builder.add_words([Word("far", 1e300, 1e300), Word("near", 1.0, 1.5)]) + builder.finish()
    assert [(c.start_ms, c.text) for c in cues] == [(1000, "near")] and builder.dropped_words == 1


@pytest.mark.parametrize("depth", [1, 19, 20, 21, 100, 500, 800])
def test_a_deeply_nested_server_message_is_logged(depth: int) -> None:
    """Valid JSON hundreds of levels deep: logged with a bounded depth, nested secret keys still masked."""
    frame = '{"type":"weird","a":' + '{"b":' * depth + '{"token":"sk_nested_secret"}' + "}" * depth + "}"
    event = parse_message(frame)
    assert isinstance(event, UnknownMessage)
    buffer = io.BytesIO()
    log = EventLog(buffer)
    log.on_event(fake_session(), event)
    (record,) = json_lines(buffer.getvalue())
    assert record["event"] == "unknown" and b"sk_nested_secret" not in buffer.getvalue()
    value, levels = record["raw"]["a"], 0
    while isinstance(value, dict) and "b" in value:
        value, levels = value["b"], levels + 1
    assert levels == min(depth, 20) and (value == {"token": "***"} or "nested deeper than 20 levels" in value)


def test_hand_made_events_holding_the_wrong_types() -> None:
    """A Transcript built by hand may hold anything where text and words belong; no plugin raises."""
    odd_words: tuple[Any, ...] = (
        ("tuple", 0.0, 1.0),
        None,
        Word(b"bytes", 0.0, 1.0),  # type: ignore[arg-type]
        Word(None, 0.0, 1.0),  # type: ignore[arg-type]
        Word("kept", 1.0, 2.0),
        SimpleNamespace(word="duck", start=2.0, end=3.0),
    )
    transcripts = [
        Transcript(text=None, is_final=True, words=odd_words),  # type: ignore[arg-type]
        Transcript(text=b"raw", is_final=True),  # type: ignore[arg-type]
        Transcript(text=" fine", is_final=True, words=(Word("fine", 3.0, 3.5),)),
    ]
    srt_out, vtt_out = io.StringIO(), io.StringIO()
    writer = SubtitleWriter(srt=srt_out, vtt=vtt_out)
    buffer = io.BytesIO()
    log = EventLog(buffer)
    session = fake_session()
    for transcript in transcripts:
        writer.on_transcript(transcript)
        log.on_event(session, transcript)
    writer.on_session_end()
    check_subtitles(srt_out.getvalue(), vtt_out.getvalue(), writer)
    assert [w.word for c in writer.cues for w in c.words] == ["kept", "duck", "fine"]
    assert writer.dropped_words == 4
    records = json_lines(buffer.getvalue())
    assert read_events(io.BytesIO(buffer.getvalue()), strict=True).events == records
    text, words = transcript_from_events(records)
    # The log writes what is not a Word by its str(), so the duck is not read back as a word.
    assert text == " fine" and [w.word for w in words] == ["kept", "fine"]
    run_live(transcripts)


# The server-message parser keeps the strict rule that test_fuzz_messages pins: a word time that is
# not a finite JSON number makes the whole message a ProtocolError (reported through on_error, the
# stream goes on); finite times, however odd, are passed on as sent and the plugins deal with them.
@pytest.mark.parametrize(
    "start, accepted",
    [
        ("-5", True),
        ("1e300", True),
        ("0", True),
        ("1e400", False),  # valid JSON that decodes to inf
        ("1" + "0" * 400, False),  # an integer beyond the float range
        ("NaN", False),
        ("Infinity", False),
        ("-Infinity", False),
        ('"1.5"', False),
        ("true", False),
        ("null", False),
        ("[1]", False),
    ],
)
def test_word_times_from_the_server(start: str, accepted: bool) -> None:
    frame = '{"type":"transcript","is_final":true,"text":" hi","words":[{"word":"hi","start":START,"end":1}]}'
    frame = frame.replace("START", start)
    if accepted:
        event = parse_message(frame)
        assert isinstance(event, Transcript) and math.isfinite(event.words[0].start)
    else:
        with pytest.raises(ProtocolError, match="word start|not JSON"):
            parse_message(frame)


# --------------------------------------------------------------------------- size: hang guards and linear work


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - t0


@pytest.mark.timeout(120)
def test_a_megabyte_text_and_word() -> None:
    chunk = "ab\ud800\x1b[2J\u202e--> <&>\n\n"
    big = (chunk * (1_000_000 // len(chunk) + 1))[:1_000_000]
    words = [Word("x" * 1_000_000, 0.0, 1.0), Word(big, 1.0, 2.0), Word("tail", 2.0, 2.5)]
    transcripts = [transcript_of(words, text=big), Transcript(text=big, is_final=False)]

    (srt_text, vtt_text, writer), took = _timed(run_subtitles, [("final", words)])
    assert took < HANG_GUARD
    check_subtitles(srt_text, vtt_text, writer)
    assert max(len(line) for c in writer.cues for line in c.lines) >= 1_000_000  # a long word is kept whole

    (data, _), took = _timed(run_event_log, transcripts)
    assert took < HANG_GUARD and len(data) > 2_000_000
    check_event_log(data, transcripts)

    _, took = _timed(run_live, transcripts)
    assert took < HANG_GUARD


@pytest.mark.timeout(180)
@pytest.mark.parametrize("layout", ["spread", "one instant", "backwards"])
def test_a_hundred_thousand_words(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 words in one transcript and in 1,000 transcripts: bounded time, linear work."""
    n = 100_000
    if layout == "spread":
        words = [Word(f"w{i}" + ("." if i % 17 == 0 else ""), i * 0.25, i * 0.25 + 0.2) for i in range(n)]
    elif layout == "one instant":
        words = [Word("a", 5.0, 5.0) for _ in range(n)]
    else:
        words = [Word(f"<{i}>", (n - i) * 0.01, (n - i) * 0.01 - 1) for i in range(n)]

    # Work is counted, not timed: segmentation looks at the open cue's words only.
    looked_at = 0
    real_layout = subtitle_cues.layout_lines

    def counting_layout(cue_words: Sequence[str], rules: Any) -> Any:
        nonlocal looked_at
        looked_at += len(cue_words)
        return real_layout(cue_words, rules)

    monkeypatch.setattr(subtitle_cues, "layout_lines", counting_layout)
    (srt_text, vtt_text, writer), took = _timed(run_subtitles, [("final", words)])
    assert took < HANG_GUARD
    assert looked_at < 200 * n, f"{looked_at} word visits for {n} words: not linear"
    check_subtitles(srt_text, vtt_text, writer)
    assert sum(len(c.words) for c in writer.cues) == n

    one = [transcript_of(words)]
    many = [transcript_of(words[i : i + 100]) for i in range(0, n, 100)]
    for transcripts in (one, many):
        (data, _), took = _timed(run_event_log, transcripts)
        assert took < HANG_GUARD
        check_event_log(data, transcripts)
    _, took = _timed(run_live, one + many)
    assert took < HANG_GUARD


# --------------------------------------------------------------------------- end to end

HOSTILE_SEGMENTS = [
    " Hello\ud800 <b>world</b> & --> friends.",
    " \x1b[31mred\x1b[0m\u202egnp.exe\u2069 line\u2028break\n\nblank\r\nlines",
    " 1\n00:00:01,000 --> 00:00:02,000\nforged WEBVTT NOTE -- > - > \x00\x85\x9b",
    " " + "long " * 20_000,  # 100,000 characters, 20,000 words
]


def _hostile_frame(words: list[tuple[Any, Any]], text: str) -> str:
    """A final transcript frame written by hand, so times can be JSON no encoder writes (1e400)."""
    items = ",".join(f'{{"word":"w{i}","start":{s},"end":{e}}}' for i, (s, e) in enumerate(words))
    return f'{{"type":"transcript","is_final":true,"text":{json.dumps(text)},"words":[{items}]}}'


# Frames the fake server sends before its answer to the end command: word times the parser accepts
# (negative, reversed, huge) and ones it refuses (1e400 is inf, NaN is not JSON).
HOSTILE_FRAMES = (
    _hostile_frame([(-5, -4), (3, 1), ("1e300", "1e300"), (0.5, 0.5), ("-1e300", 2)], " times\ud83d"),
    _hostile_frame([("1e400", 1)], " refused"),
    '{"type":"transcript","is_final":true,"text":"nan","words":[{"word":"n","start":NaN,"end":1}]}',
    {
        "type": "transcript",
        "is_final": True,
        "text": " after\u202e",
        "words": [{"word": "after", "start": 9, "end": 8}],
    },
)


@pytest.mark.timeout(120)
def test_end_to_end_through_the_fake_server(tmp_path: Any) -> None:
    srt_path, vtt_path, log_path = tmp_path / "s.srt", tmp_path / "s.vtt", tmp_path / "events.jsonl"
    live = FakeTTY()
    writer = SubtitleWriter(srt=srt_path, vtt=vtt_path)
    log = EventLog(log_path)
    scenario = Scenario(before_done=HOSTILE_FRAMES)
    with FakeCartesia(
        segments=HOSTILE_SEGMENTS, word_per_segment=False, interim_bytes=16000, scenario=scenario
    ) as fake:
        plugins = [writer, log, LiveCaptions(stream=live)]
        # raise_errors=False: the refused frames are kept in session.errors instead of raised at close.
        client = cartesia_sync.Client(url=fake.url, plugins=plugins, load_entrypoints=False, raise_errors=False)
        t0 = time.monotonic()
        with client.connect() as session:
            for _ in HOSTILE_SEGMENTS:
                session.send(SECOND)
                session.finalize(timeout=20)
        took = time.monotonic() - t0
    assert took < HANG_GUARD
    expected = "".join(HOSTILE_SEGMENTS) + " times\ud83d" + " after\u202e"
    assert session.text == expected  # the library keeps text exactly as received
    errors = [e for e in session.errors if isinstance(e, ProtocolError)]
    assert len(errors) == 2  # the frames with a time that is not a finite number

    srt_text, vtt_text = srt_path.read_text(encoding="utf-8"), vtt_path.read_text(encoding="utf-8")
    assert check_srt(srt_text) == check_vtt(vtt_text, path=vtt_path)
    assert [(c.start_ms, c.end_ms, c.text) for c in writer.cues] == check_srt(srt_text)
    shown = " ".join(c.text.replace("\n", " ") for c in writer.cues)
    assert "Hello\ufffd <b>world</b> & → friends." in shown and "gnp.exe" in shown and "after" in shown

    data = log_path.read_bytes()
    records = json_lines(data)
    back = read_events(log_path, strict=True)
    assert back.events == records and not back.torn_tail
    assert transcript_from_events(back)[0] == expected
    assert sum(r["event"] == "error" and r["type"] == "ProtocolError" for r in records) == 2
    check_live_output(live.getvalue())
