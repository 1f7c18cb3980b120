"""Turn detection for the local server's turns endpoint, from a real engine's recognitions.

The hosted turns endpoint estimates a likelihood that the speaker is in a
turn and compares it with three thresholds. The local engine has no such
model; it has a voice activity detector, an endpointer and word times. This
module maps the thresholds onto those, and decides turns in **received audio
time** (never the wall clock, so a client that stops sending gets no
``turn.end`` until it sends more audio or ``close``):

- ``turn.start``: the engine recognised words spanning at least
  ``start_speech`` seconds, ``(start_threshold - 0.5) × 0.5`` (0 to 0.2 s;
  0.15 s by default): a higher start threshold waits for more speech.
- ``turn.update``: the turn's text changed (cumulative: the engine's finals
  in the turn plus its latest interim).
- ``turn.eager_end``: ``eager_silence`` seconds of audio after the last
  recognised word, ``1.05 - eager_end_threshold`` (0.45 to 0.75 s; 0.65 s
  by default), always shorter than the end silence. (Word times reach the
  detector 0.1-0.3 s late, and pauses between words are as long: a shorter
  window would call an eager end inside most sentences.)
- ``turn.resume``: a word recognised after the eager end.
- ``turn.end``: ``end_silence`` seconds after the last word, the shorter of
  ``1.3 - 1.4 × end_threshold`` (0.6 to 1.23 s; 1.02 s by default) and
  ``end_timeout_ms``. The engine's endpointer is given the same silence
  window; if it has not ended its utterance, the detector flushes it first,
  and goes on with the turn if the flush shows speech it had not seen.
- ``close``: the engine is flushed and an open turn ends.

Every turn's text begins with a space, as the streaming endpoint's
transcripts do, so that joining the ``turn.end`` transcripts verbatim gives
readable text whatever connection each turn came on (after a reconnect the
server cannot know which turn is the session's first). An engine whose texts
carry their own spaces (the scripted engine) has them passed on exactly.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._engine import EngineStream, Recognition

__all__ = ["TurnTiming", "TurnDetector"]

_DEFAULTS = {"start_threshold": 0.8, "eager_end_threshold": 0.4, "end_threshold": 0.2, "end_timeout_ms": 5600.0}


@dataclass(frozen=True)
class TurnTiming:
    """The detector's timing, in seconds of audio, derived from the turn thresholds (see the module docs)."""

    start_speech: float
    eager_silence: float
    end_silence: float

    @classmethod
    def from_thresholds(
        cls,
        start_threshold: float | None = None,
        eager_end_threshold: float | None = None,
        end_threshold: float | None = None,
        end_timeout_ms: float | None = None,
    ) -> TurnTiming:
        """The timing for the given thresholds; ``None`` takes the documented default."""
        start = _DEFAULTS["start_threshold"] if start_threshold is None else start_threshold
        eager = _DEFAULTS["eager_end_threshold"] if eager_end_threshold is None else eager_end_threshold
        end = _DEFAULTS["end_threshold"] if end_threshold is None else end_threshold
        timeout = _DEFAULTS["end_timeout_ms"] if end_timeout_ms is None else end_timeout_ms
        end_silence = min(1.3 - 1.4 * end, timeout / 1000.0)
        eager_silence = max(0.1, min(1.05 - eager, end_silence - 0.1))
        return cls(max(0.0, (start - 0.5) * 0.5), eager_silence, end_silence)


class _Phase(enum.Enum):
    IDLE = "idle"
    SPEAKING = "speaking"
    EAGER_ENDED = "eager-ended"


class TurnDetector:
    """Turn events from one engine stream, in received audio time.

    :param stream: an open engine stream (its endpointer's silence window
        should be ``timing.end_silence``).
    :param timing: when turns start and end.
    :param bytes_per_second: of the audio fed (to measure received time).
    """

    def __init__(self, stream: EngineStream, timing: TurnTiming, bytes_per_second: int) -> None:
        self._stream = stream
        self.timing = timing
        self._bytes_per_second = bytes_per_second
        self._received = 0
        self._phase = _Phase.IDLE
        self._turns = 0
        self._committed = ""  # the engine's finals in the open turn
        self._current = ""  # the engine's latest interim in the open turn
        self._pending: list[Recognition] = []  # results before the turn is long enough to start
        self._last_word_end = 0.0
        self._sent_text = ""
        self._verbatim = False

    @property
    def received_seconds(self) -> float:
        """Seconds of audio fed so far."""
        return self._received / self._bytes_per_second

    def feed(self, audio: bytes) -> list[dict[str, Any]]:
        """Feed audio; returns the turn events it produced (``type`` and ``transcript`` where it has one)."""
        events: list[dict[str, Any]] = []
        self._received += len(audio)
        self._recognitions(self._stream.feed(audio), events)
        self._check_silence(events)
        return events

    def close(self) -> list[dict[str, Any]]:
        """Finish: the engine's last results, then the end of an open turn."""
        events: list[dict[str, Any]] = []
        self._recognitions(self._stream.flush(), events)
        if self._phase is not _Phase.IDLE:
            self._end(events)
        return events

    # -- internals ---------------------------------------------------------------------------

    def _recognitions(self, results: Iterable[Recognition], events: list[dict[str, Any]]) -> None:
        for result in results:
            if result.words:
                self._last_word_end = max(self._last_word_end, max(word.end for word in result.words))
            if self._phase is _Phase.IDLE:
                if not result.text:
                    continue
                self._pending.append(result)
                if not self._long_enough():
                    if result.is_final:  # an utterance too short to be a turn (a cough, a click)
                        self._pending = []
                    continue
                self._start(events)
                results_now, self._pending = self._pending, []
                for pending in results_now:
                    self._take(pending)
                self._update(events)
                continue
            if self._phase is _Phase.EAGER_ENDED and result.words and self._silence() < self.timing.eager_silence:
                self._phase = _Phase.SPEAKING
                events.append({"type": "turn.resume"})
            self._take(result)
            self._update(events)

    def _long_enough(self) -> bool:
        starts = [word.start for result in self._pending for word in result.words]
        if not starts:
            return self.timing.start_speech == 0.0
        return self._last_word_end - min(starts) >= self.timing.start_speech

    def _take(self, result: Recognition) -> None:
        self._verbatim = result.verbatim
        if result.is_final:
            if result.text:
                self._committed = _joined(self._committed, result)
            self._current = ""
        else:
            self._current = _joined("", result)

    def _text(self) -> str:
        if self._verbatim:  # the engine's texts carry their own spaces (the scripted engine): exactly those
            return self._committed + self._current
        text = " ".join(f"{self._committed} {self._current}".split())
        return " " + text if text else ""

    def _update(self, events: list[dict[str, Any]]) -> None:
        text = self._text()
        if text and text != self._sent_text:
            self._sent_text = text
            events.append({"type": "turn.update", "transcript": text})

    def _silence(self) -> float:
        return self.received_seconds - self._last_word_end

    def _start(self, events: list[dict[str, Any]]) -> None:
        self._turns += 1
        self._phase = _Phase.SPEAKING
        self._committed = self._current = self._sent_text = ""
        events.append({"type": "turn.start"})

    def _check_silence(self, events: list[dict[str, Any]]) -> None:
        if self._phase is _Phase.IDLE:
            return
        if self._phase is _Phase.SPEAKING and self._silence() >= self.timing.eager_silence:
            self._phase = _Phase.EAGER_ENDED
            events.append({"type": "turn.eager_end", "transcript": self._text()})
        if self._silence() < self.timing.end_silence:
            return
        if self._current:  # the engine's utterance is still open: its final may show speech not yet seen
            self._recognitions(self._stream.flush(), events)
            if self._silence() < self.timing.end_silence:
                return
        self._end(events)

    def _end(self, events: list[dict[str, Any]]) -> None:
        events.append({"type": "turn.end", "transcript": self._text()})
        self._phase = _Phase.IDLE
        self._committed = self._current = self._sent_text = ""


def _joined(before: str, result: Recognition) -> str:
    """``result``'s text after ``before``: verbatim texts bring their own spaces, others are space-separated."""
    if result.verbatim:
        return before + result.text
    return f"{before} {result.text}" if before else f" {result.text}"
