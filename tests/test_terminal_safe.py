"""terminal_safe(): what a peer's text may not carry to a terminal, and what it keeps."""

from __future__ import annotations

import io
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartesia_sync import Transcript, terminal_safe
from cartesia_sync_plugins.live_captions import LiveCaptions

BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
#: The parts escape sequences are made of, so that random text often holds whole and broken ones.
PIECES = ["\x1b", "[", "]", "P", "_", "\\", "\x07", "\x9b", "\x9c", "\x9d", ";", "2", "J", "\r", "\n", *BIDI]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world.", "Hello world."),
        ("café, 中文, עברית, emoji \U0001f600", "café, 中文, עברית, emoji \U0001f600"),
        ("clear\x1b[2J\x1b[Hscreen", "clearscreen"),  # CSI, parameters and all
        ("red\x1b[1;31mtext\x1b[0m", "redtext"),
        ("\x1b]0;owned title\x07title", "title"),  # OSC ended by BEL
        ("\x1b]52;c;ZXZpbA==\x1b\\clip", "clip"),  # clipboard write, ended by ST
        ("\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\", "click"),  # hyperlink
        ("\x1bP+q544e\x1b\\dcs", "dcs"),  # DCS (a terminal query)
        ("\x1b_apc\x1b\\a", "a"),
        ("reset\x1bc", "reset"),  # ESC c: full reset
        ("charset\x1b(0x", "charsetx"),
        ("eight\x9b2Jbit\x9d0;t\x9c", "eightbit"),  # 8-bit CSI and OSC
        ("c1\x85\x8d\x90x", "c1\nx"),  # NEL is a line break; RI and a lone DCS go
        ("bel\x07nul\x00del\x7fbs\x08", "belnuldelbs"),
        ("lone\x1b", "lone"),
        ("unterminated \x1b]0;title", "unterminated 0;title"),  # the introducer goes; the rest is plain text
        ("half \x1b[31", "half 31"),
        ("\u202egnp.exe\u202c", "gnp.exe"),  # right-to-left override
        ("a\u2066b\u2069c", "abc"),  # isolates
        ("one\r\ntwo\rthree\nfour", "one\ntwo\nthree\nfour"),
        ("tab\there", "tab here"),
        ("lone \udc80 surrogate", "lone \ufffd surrogate"),
        ("keep\u200ethe\u00a0marks", "keep\u200ethe\u00a0marks"),  # LRM and NBSP are not controls
    ],
)
def test_what_is_dropped_and_what_is_kept(text, expected):
    assert terminal_safe(text) == expected


def test_one_line_mode_turns_line_breaks_into_spaces():
    assert terminal_safe("one\r\ntwo\rthree\nfour\u2028five", multiline=False) == "one two three four five"


def test_printable_text_is_returned_as_it_is():
    text = "Plain words, 42 of them."
    assert terminal_safe(text) is text


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=st.one_of(st.characters(exclude_categories=()), st.sampled_from(PIECES)), max_size=200),
    st.booleans(),
)
def test_nothing_a_terminal_acts_on_survives(text, multiline):
    safe = terminal_safe(text, multiline=multiline)
    allowed = {"\n"} if multiline else set()
    assert not [ch for ch in safe if unicodedata.category(ch) == "Cc" and ch not in allowed]
    assert not [ch for ch in safe if ch in BIDI or unicodedata.category(ch) == "Cs"]
    safe.encode("utf-8")  # always encodable
    assert terminal_safe(safe, multiline=multiline) == safe  # idempotent


def test_a_long_run_of_unterminated_control_strings_takes_linear_time():
    """A hostile peer's megabyte of string introducers must not cost quadratic time."""
    import time

    text = ("\x1b]" + "x" * 50 + "\x9d" + "y" * 50) * 10_000
    started = time.perf_counter()
    safe = terminal_safe(text)
    elapsed = time.perf_counter() - started
    assert "\x1b" not in safe and "\x9d" not in safe and len(safe) >= 1_000_000
    assert elapsed < 5.0  # quadratic would be minutes


def test_live_captions_draw_no_escape_from_the_server():
    out = io.StringIO()
    view = LiveCaptions(stream=out)
    view.on_transcript(Transcript(text="Hi \x1b]52;c;ZXZpbA==\x07there\u202e \x9b2J", is_final=True))
    view.on_transcript(Transcript(text="two\nlines \udc80", is_final=True))
    view.on_session_end()
    assert out.getvalue() == "Hi there\ntwo lines \ufffd\n"
