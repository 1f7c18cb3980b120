"""Subtitle cues from a stream of final words: segmentation and SRT/WebVTT formatting.

Pure functions and one small state machine, no I/O and no threads, so the
subtitle plugin and offline tools (an event-log replay, say) share them::

    builder = CueBuilder(CueRules())
    for chunk in final_word_chunks:
        for cue in builder.add_words(chunk):      # the cues these words closed
            out.write(format_srt_cue(index, cue))
    for cue in builder.finish():                  # the last open cue
        ...

Segmentation (research notes §A5): a cue holds at most ``max_lines`` lines of
at most ``max_chars_per_line`` characters (Unicode code points), lasts
``min_duration`` to ``max_duration`` seconds, and a new cue starts after a
pause of ``pause_split`` seconds or after a word that ends a sentence. Lines
break only between words; a single word longer than a line sits alone on its
own line. All times are integer milliseconds, rounded once from the words'
seconds, so timestamps never print ``60`` seconds or ``1000`` ms.

Hostile input (whatever a transcript holds, the files stay valid):

- text: :func:`clean_word` (white space and line breaks become single spaces,
  escape sequences, control characters and bidi overrides go, lone surrogates
  become U+FFFD, arrows become ``→``); :func:`escape_vtt` for WebVTT. A word
  left empty is dropped.
- times: a time that is not a number (``None``, a string, a bool), NaN or
  infinite drops its word; so does a time after :data:`MAX_TIME_MS`
  (99:59:59.999, the most SRT can write): clamped, one absurd time would push
  every later word after it. A negative time is clamped to 0, an end before its
  start to the start, a start before the previous word's start to that start
  (cues are written as they close, so they can only go forward).
- a word list the server repeats (same word, same times, already behind the
  committed time) is ignored.
- cues never overlap, never have zero length and never go backwards: when
  messy times leave no room, the later cue's start moves forward by the few
  milliseconds needed. A word that would need a cue starting at the cap is
  dropped. Every dropped word is counted in :attr:`CueBuilder.dropped_words`.

Costs are linear: a word is compared with the open cue's words only (at most
``max_lines`` lines of them), so 100,000 words or a megabyte word take
seconds at most.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cartesia_sync import Word, terminal_safe

__all__ = [
    "CueRules",
    "Cue",
    "CueBuilder",
    "segment_words",
    "clean_word",
    "word_ms",
    "ends_sentence",
    "layout_lines",
    "to_ms",
    "format_timestamp",
    "format_srt_cue",
    "format_vtt_cue",
    "escape_vtt",
    "VTT_HEADER",
    "MAX_TIME_MS",
    "SENTENCE_ENDS",
    "ABBREVIATIONS",
]

VTT_HEADER = "WEBVTT\n\n"
SENTENCE_ENDS = ".?!…。？！"
_CLOSERS = "\"'”’)]}»"
ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "e.g.", "i.e.", "a.m.", "p.m.", "no.", "mt."}
)
#: The latest time a cue may end, in milliseconds: 99:59:59.999, the most SRT's two-digit hours can
#: write. WebVTT gets the same cap, so both files of a session hold the same cues.
MAX_TIME_MS = 100 * 3_600_000 - 1
_MAX_SECONDS = MAX_TIME_MS / 1000
# "-->" and what lenient SRT readers also take for the timing arrow (``srt``: ``-[ -] *>``).
_ARROW = re.compile(r"-[ -] *>")
# A line that is only a number, followed by a line starting with a timestamp, is where lenient SRT
# readers (``srt``) end a cue's text and look for the next cue, even without a blank line between.
_SRT_INDEX_LINE = re.compile(r"-?[0-9]+\.?[0-9]*")
_SRT_TIMESTAMP_START = re.compile(r"[0-9]+[,.:，．。：][0-9]+[,.:，．。：][0-9]+")
_CONNECTORS = frozenset(
    {
        "and",
        "but",
        "or",
        "so",
        "because",
        "if",
        "when",
        "that",
        "which",
        "who",
        "to",
        "of",
        "in",
        "on",
        "for",
        "with",
        "at",
        "from",
        "than",
        "while",
        "as",
    }
)
_REPEAT_MEMORY = 512  # committed words remembered to recognise a repeated word list
_REPEAT_TOLERANCE_MS = 5


@dataclass(frozen=True)
class CueRules:
    """Segmentation limits; the defaults follow Netflix's English template (research §A3).

    :param max_chars_per_line: characters (code points) per line.
    :param max_lines: lines per cue.
    :param min_duration: seconds; a shorter cue's end is extended, up to the next cue's start.
    :param max_duration: seconds; a cue never lasts longer (a longer single word is cut short).
    :param pause_split: a silence of at least this many seconds between words starts a new cue.
    :param min_gap: seconds kept free before the next cue when extending an end (0: cues may touch).
    :param linger: seconds a cue stays up after its last word, when the next cue leaves room.
    :param split_sentences: start a new cue after a word ending with ``.?!…`` (abbreviations excepted).
    """

    max_chars_per_line: int = 42
    max_lines: int = 2
    min_duration: float = 0.833
    max_duration: float = 7.0
    pause_split: float = 0.5
    min_gap: float = 0.0
    linger: float = 0.0
    split_sentences: bool = True

    def __post_init__(self) -> None:
        for name in ("max_chars_per_line", "max_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("min_duration", "max_duration", "pause_split", "min_gap", "linger"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if to_ms(self.max_duration) < 1:
            raise ValueError(f"max_duration must be at least 1 ms, got {self.max_duration!r}")
        if self.min_duration > self.max_duration:
            raise ValueError(f"min_duration ({self.min_duration}) is longer than max_duration ({self.max_duration})")


@dataclass(frozen=True)
class Cue:
    """One subtitle: integer-millisecond times, its lines, and the (normalised) words it holds."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    words: tuple[Word, ...] = ()

    @property
    def start(self) -> float:
        """Start in seconds."""
        return self.start_ms / 1000

    @property
    def end(self) -> float:
        """End in seconds."""
        return self.end_ms / 1000

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return (self.end_ms - self.start_ms) / 1000

    @property
    def text(self) -> str:
        """The lines joined by newlines."""
        return "\n".join(self.lines)


# ---------------------------------------------------------------------------
# words and lines


def to_ms(seconds: float) -> int:
    """Seconds to integer milliseconds, rounded once (raises ``ValueError`` for NaN/inf)."""
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite time: {seconds!r}")
    return int(round(seconds * 1000))


def word_ms(seconds: object) -> int | None:
    """A word time as integer milliseconds for a cue, or ``None`` when the word must be dropped.

    ``None`` for anything but an ``int`` or ``float`` (bools included), NaN,
    infinities and times after :data:`MAX_TIME_MS`; a negative time is 0.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    if isinstance(seconds, float) and not math.isfinite(seconds):
        return None
    if seconds > _MAX_SECONDS:  # compared before converting: an int may be far beyond the float range
        return None
    if seconds <= 0:
        return 0
    return min(to_ms(seconds), MAX_TIME_MS)


def clean_word(text: str) -> str:
    """A word as it can appear in a subtitle line.

    The server's text through :func:`cartesia_sync.terminal_safe` on one line
    (escape sequences dropped whole, other control characters and the bidi
    embedding/override/isolate controls removed, line breaks and tabs as
    spaces, lone surrogates as U+FFFD), then white-space runs collapsed to one
    space, no leading/trailing space, and ``-->`` (or ``- >``, ``-- >``, which
    lenient SRT readers take for the same arrow) replaced by ``→``.
    """
    return _ARROW.sub("→", " ".join(terminal_safe(text, multiline=False).split()))


def ends_sentence(word: str) -> bool:
    """Whether ``word`` ends a sentence: its last character (closing quotes and brackets
    aside) is one of ``.?!…`` or CJK ``。？！``, and it is not a common abbreviation."""
    core = word.rstrip(_CLOSERS)
    if not core or core[-1] not in SENTENCE_ENDS:
        return False
    return not (core.endswith(".") and not core.endswith("..") and core.lstrip("\"'“‘([{«").lower() in ABBREVIATIONS)


def _greedy(words: Sequence[str], width: int) -> list[list[str]]:
    lines: list[list[str]] = []
    length = 0
    for word in words:
        if lines and lines[-1] and length + 1 + len(word) <= width:
            lines[-1].append(word)
            length += 1 + len(word)
        else:
            lines.append([word])
            length = len(word)
    return lines


def layout_lines(words: Sequence[str], rules: CueRules) -> tuple[str, ...] | None:
    """Break ``words`` into lines, or ``None`` when they do not fit in one cue.

    One line when it fits. Otherwise the fewest lines possible, with break
    points chosen for balanced lengths, preferring a break after punctuation or
    before a conjunction/preposition, and a slightly longer bottom line. Lines
    break only between words; a word longer than a line gets a line of its own.
    """
    if not words:
        return ()
    width = rules.max_chars_per_line
    one = " ".join(words)
    if len(one) <= width or len(words) == 1:
        return (one,) if rules.max_lines >= 1 else None
    greedy = _greedy(words, width)
    count = len(greedy)
    if count > rules.max_lines:
        return None
    n = len(words)
    if math.comb(n - 1, count - 1) > 2000:  # only with unusual rules: keep the cost bounded
        return tuple(" ".join(line) for line in greedy)
    best: tuple[float, tuple[str, ...]] | None = None
    for cuts in itertools.combinations(range(1, n), count - 1):
        bounds = (0,) + cuts + (n,)
        lines = [words[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        texts = [" ".join(line) for line in lines]
        if any(len(t) > width and len(line) > 1 for t, line in zip(texts, lines, strict=False)):
            continue
        lengths = [len(t) for t in texts]
        cost: float = max(lengths) - min(lengths)
        for prev, nxt in zip(lines, lines[1:], strict=False):
            if prev[-1][-1:] in ",;:" or ends_sentence(prev[-1]):
                cost -= 4
            elif nxt[0].lower() in _CONNECTORS:
                cost -= 2
        if count == 2 and lengths[0] > lengths[1]:
            cost += 0.5
        if best is None or cost < best[0]:
            best = (cost, tuple(texts))
    return best[1] if best is not None else tuple(" ".join(line) for line in greedy)


# ---------------------------------------------------------------------------
# segmentation


class CueBuilder:
    """Turns final words into cues as they arrive (one session's words, times continuous).

    ``add_words`` returns the cues that the new words closed (a cue closes when
    a later word starts the next one, so its end can be fixed up against that
    start); ``flush`` closes the open cue now (for a ``flush_done``);
    ``finish`` closes it for good. Not thread-safe: one caller at a time.
    """

    def __init__(self, rules: CueRules | None = None) -> None:
        self.rules = rules if rules is not None else CueRules()
        r = self.rules
        self._min_ms = to_ms(r.min_duration)
        self._max_ms = to_ms(r.max_duration)
        self._pause_ms = to_ms(r.pause_split)
        self._gap_ms = to_ms(r.min_gap)
        self._linger_ms = to_ms(r.linger)
        self._open: list[Word] = []  # normalised words (times are ms / 1000)
        self._open_texts: list[str] = []
        self._open_start = 0
        self._open_end = 0
        self._floor = 0  # the next cue starts no earlier
        self._last_start = 0  # word starts never go backwards
        self._watermark = 0  # latest end of any committed word, in the server's own times
        self._server_last_start = 0  # latest start the server gave, before any adjustment
        self._recent: deque[tuple[str, object, object]] = deque(maxlen=_REPEAT_MEMORY)
        self._recent_set: dict[tuple[str, object, object], int] = {}
        self._finished = False
        self.dropped_words = 0  # words ignored: empty text, unusable times, repeats, no room left

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def has_open_cue(self) -> bool:
        return bool(self._open)

    def add_words(self, words: Iterable[Word]) -> list[Cue]:
        """Add final words in order; return the cues they closed (usually none or one)."""
        if self._finished:
            raise RuntimeError("CueBuilder.finish() was already called")
        closed: list[Cue] = []
        for word in words:
            cue = self._add(word)
            if cue is not None:
                closed.append(cue)
        return closed

    def flush(self) -> list[Cue]:
        """Close the open cue now (extended to the minimum duration); the next cue starts after it."""
        if self._finished or not self._open:
            return []
        cue = self._close(None)
        self._floor = cue.end_ms
        return [cue]

    def finish(self) -> list[Cue]:
        """Close the open cue, if any, and refuse further words. Idempotent."""
        if self._finished:
            return []
        cues = self.flush()
        self._finished = True
        return cues

    # -- internals

    def _remember(self, key: tuple[str, object, object]) -> None:
        if len(self._recent) == self._recent.maxlen:
            old = self._recent[0]
            self._recent_set[old] -= 1
            if not self._recent_set[old]:
                del self._recent_set[old]
        self._recent.append(key)
        self._recent_set[key] = self._recent_set.get(key, 0) + 1

    def _add(self, word: Word) -> Cue | None:
        # Read defensively: a hand-made Word (or something else in its place) may hold anything.
        raw_text = getattr(word, "word", None)
        raw_text = raw_text if isinstance(raw_text, str) else ""
        raw_start, raw_end = getattr(word, "start", None), getattr(word, "end", None)
        text = clean_word(raw_text)
        start_ms, end_ms = word_ms(raw_start), word_ms(raw_end)
        if not text or start_ms is None or end_ms is None:
            self.dropped_words += 1
            return None
        start, end = start_ms, end_ms
        key = (raw_text, raw_start, raw_end)
        if key in self._recent_set and start < self._watermark - _REPEAT_TOLERANCE_MS:
            self.dropped_words += 1  # a repeated word list (§A1): already committed
            return None
        self._remember(key)
        # Repeats are judged on the server's times: the adjustments below (no overlap, no
        # zero-length cue) move cue times, not what the server said.
        self._server_last_start = max(self._server_last_start, start)
        self._watermark = max(self._watermark, end, self._server_last_start)
        start = max(start, self._last_start)
        end = max(end, start)
        self._last_start = start

        closed: Cue | None = None
        if self._open and self._breaks_before(text, start, end):
            next_start = max(start, self._floor, self._open_start + 1)
            if next_start >= MAX_TIME_MS:  # no room left for another cue
                self.dropped_words += 1
                return None
            closed = self._close(next_start)
        if not self._open:
            start = max(start, self._floor)
            if closed is not None:
                start = max(start, closed.start_ms + 1, closed.end_ms)
            if start >= MAX_TIME_MS:
                self.dropped_words += 1
                return closed
            end = max(end, start)
            self._open_start = start
            self._open_end = end
            self._last_start = max(self._last_start, start)
        else:
            self._open_end = max(self._open_end, end)
        self._open.append(Word(text, start / 1000, end / 1000))
        self._open_texts.append(text)
        return closed

    def _breaks_before(self, text: str, start: int, end: int) -> bool:
        r = self.rules
        if start - self._open_end >= self._pause_ms:
            return True
        if r.split_sentences and ends_sentence(self._open_texts[-1]):
            return True
        if max(end, self._open_end) - self._open_start > self._max_ms:
            return True
        return layout_lines(self._open_texts + [text], r) is None

    def _close(self, next_start: int | None) -> Cue:
        start = self._open_start
        end = max(self._open_end, start + self._min_ms) + self._linger_ms
        end = min(end, start + self._max_ms, MAX_TIME_MS)
        if next_start is not None:
            limit = next_start - self._gap_ms  # the gap never cuts into speech
            limit = max(limit, min(self._open_end, next_start))
            if limit <= start:
                limit = next_start
            end = min(end, limit)
        end = max(end, start + 1)
        lines = layout_lines(self._open_texts, self.rules) or (" ".join(self._open_texts),)
        # Words "--" and ">" side by side make the arrow lenient SRT readers look for: replace it here,
        # so the cue holds exactly what the files will.
        lines = _unforgeable(tuple(_ARROW.sub("→", line) for line in lines))
        cue = Cue(start, end, lines, tuple(self._open))
        self._open = []
        self._open_texts = []
        return cue


def _unforgeable(lines: tuple[str, ...]) -> tuple[str, ...]:
    """``lines`` with a bare-number line that precedes a timestamp-like line joined to the line
    before it, so no SRT reader can take the two for the start of another cue (only possible with
    ``max_lines`` of 3 or more; the joined line may then exceed ``max_chars_per_line``)."""
    out = [lines[0]] if lines else []
    for i in range(1, len(lines)):
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        if _SRT_INDEX_LINE.fullmatch(lines[i]) and _SRT_TIMESTAMP_START.match(next_line):
            out[-1] += " " + lines[i]
        else:
            out.append(lines[i])
    return tuple(out)


def segment_words(words: Iterable[Word], rules: CueRules | None = None) -> list[Cue]:
    """All cues for a complete list of final words."""
    builder = CueBuilder(rules)
    cues = builder.add_words(words)
    cues.extend(builder.finish())
    return cues


# ---------------------------------------------------------------------------
# formatting


def format_timestamp(ms: int, sep: str = ",") -> str:
    """``HH:MM:SS<sep>mmm`` from integer milliseconds (``sep`` "," for SRT, "." for WebVTT)."""
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise ValueError(f"timestamp must be a non-negative integer of milliseconds, got {ms!r}")
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{sep}{millis:03d}"


def escape_vtt(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` for a WebVTT cue payload."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _payload(cue: Cue) -> list[str]:
    lines = [clean_word(line) for line in cue.lines]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"cue at {cue.start_ms} ms has no text")
    if cue.end_ms <= cue.start_ms:
        raise ValueError(f"cue at {cue.start_ms} ms does not end after it starts ({cue.end_ms} ms)")
    return lines


def format_srt_cue(index: int, cue: Cue) -> str:
    """One SRT block: index, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, the lines, a blank line.

    Times past 99:59:59,999 (:data:`MAX_TIME_MS`) are clamped there (SRT has
    two-digit hours); a :class:`CueBuilder` never makes such a cue.
    """
    lines = _payload(cue)
    start = min(cue.start_ms, MAX_TIME_MS - 1)
    end = min(cue.end_ms, MAX_TIME_MS)
    timing = f"{format_timestamp(start, ',')} --> {format_timestamp(end, ',')}"
    return f"{index}\n{timing}\n" + "\n".join(lines) + "\n\n"


def format_vtt_cue(cue: Cue, identifier: str | None = None) -> str:
    """One WebVTT cue block (escaped text, a blank line after); write :data:`VTT_HEADER` first."""
    lines = [escape_vtt(line) for line in _payload(cue)]
    head = ""
    if identifier is not None:
        if "-->" in identifier or "\n" in identifier or "\r" in identifier or not identifier.strip():
            raise ValueError(f"bad WebVTT cue identifier {identifier!r}")
        head = identifier + "\n"
    timing = f"{format_timestamp(cue.start_ms, '.')} --> {format_timestamp(cue.end_ms, '.')}"
    return head + timing + "\n" + "\n".join(lines) + "\n\n"
