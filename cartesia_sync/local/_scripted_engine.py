"""The scripted engine: deterministic results for tests.

Either the test says what each segment says, exactly as the ``text`` field
should read (``ScriptedEngine(["Hello", " world."])``: texts are sent verbatim,
spaces included), or, by default, the engine reports facts about the audio of
each segment (`` seg1:3200b:9f86d081``: the segment number, its byte count and
the start of its SHA-256, after one space), so a test can prove that no audio
was lost, duplicated or reordered on the way.

A segment ends at every ``finalize`` or end command, and, if
``segment_bytes`` is set, every time that much audio has arrived (a stand-in
for the endpoints a real engine detects by itself). With ``silence_split``,
the engine tells speech from silence instead: a 10 ms block with any non-zero
sample is speech, all zeros is silence; a segment is one stretch of speech,
ending after that many seconds of silence, and its word spans the speech
only. That is what the local server's turns endpoint needs to script turns:
``FakeCartesia(segments=["Hello.", " Bye."], silence_split=0.2)`` with speech,
a pause and speech again gives two turns saying exactly that.

A segment's audio is kept only when a ``text`` function is given (it receives
the bytes); otherwise the stream keeps its length and a running SHA-256, so a
client that streams for hours without ``finalize`` costs no memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from .._events import Word
from ._engine import Recognition, StreamOptions, words_between
from ._wire_audio import SAMPLE_BYTES

__all__ = ["ScriptedEngine", "ScriptedStream", "facts_text"]


def facts_text(number: int, audio: bytes) -> str:
    """The default segment text: ``seg<n>:<bytes>b:<sha256 prefix>``."""
    return _facts(number, len(audio), hashlib.sha256(audio).hexdigest())


def _facts(number: int, size: int, sha256_hex: str) -> str:
    return f"seg{number}:{size}b:{sha256_hex[:8]}"


class ScriptedEngine:
    """A deterministic engine.

    :param segments: the text of each segment, in order; once they run out,
        segments report facts. ``None``: facts only.
    :param text: a function ``(segment_number, audio) -> text`` overriding both.
    :param segment_bytes: also end a segment every this many bytes of audio.
    :param interim_bytes: send an interim result every this many bytes of an
        open segment (its text is ``partial:<bytes>b``).
    :param word_per_segment: report each segment as one word spanning it
        (default), instead of spreading its words evenly over its audio.
    :param silence_split: seconds of digital silence that end a segment
        (see the module docs); an interim comes every 0.1 s of speech unless
        ``interim_bytes`` says otherwise.
    """

    name = "scripted"
    raw_audio = True  # facts describe the client's bytes exactly as sent

    def __init__(
        self,
        segments: Sequence[str] | None = None,
        *,
        text: Callable[[int, bytes], str] | None = None,
        segment_bytes: int | None = None,
        interim_bytes: int | None = None,
        word_per_segment: bool = True,
        silence_split: float | None = None,
    ) -> None:
        for name, value in (("segment_bytes", segment_bytes), ("interim_bytes", interim_bytes)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive number of bytes, got {value!r}")
        self.segments = list(segments or ())
        self.text = text
        self.segment_bytes = segment_bytes
        self.interim_bytes = interim_bytes
        self.word_per_segment = word_per_segment
        if silence_split is not None and (not isinstance(silence_split, (int, float)) or not silence_split > 0):
            raise ValueError(f"silence_split must be a positive number of seconds, got {silence_split!r}")
        self.silence_split = silence_split

    def open_stream(self, options: StreamOptions) -> ScriptedStream:
        """Start a stream; every stream walks the scripted segments from the first."""
        return ScriptedStream(self, SAMPLE_BYTES.get(options.encoding, 2) * options.sample_rate)

    def close(self) -> None:
        """Nothing to release."""


class ScriptedStream:
    """One connection's segments."""

    def __init__(self, engine: ScriptedEngine, bytes_per_second: int) -> None:
        self._engine = engine
        self._bytes_per_second = bytes_per_second
        self._keep_audio = engine.text is not None
        self._segment = bytearray()  # the segment's audio, only when a text function needs it
        self._segment_bytes = 0
        self._hash = hashlib.sha256()
        self._segment_start = 0  # bytes from the first audio
        self._number = 0
        self._next_interim = engine.interim_bytes
        self._silence_bytes = 0  # silence since the last speech (silence_split only)
        self._position = 0  # bytes fed so far (silence_split only: segments skip the silence)
        self._block = max(2, bytes_per_second // 100 // 2 * 2)  # 10 ms
        if engine.silence_split is not None and self._next_interim is None:
            self._next_interim = self._interim_every = max(self._block, bytes_per_second // 10)
        else:
            self._interim_every = engine.interim_bytes or 0

    def feed(self, audio: bytes) -> Iterable[Recognition]:
        if self._engine.silence_split is not None:
            return self._feed_by_silence(audio)
        results: list[Recognition] = []
        limit = self._engine.segment_bytes
        view = memoryview(audio)
        while len(view):
            take = len(view) if limit is None else min(len(view), limit - self._segment_bytes)
            if self._keep_audio:
                self._segment += view[:take]
            self._hash.update(view[:take])
            self._segment_bytes += take
            view = view[take:]
            if limit is not None and self._segment_bytes >= limit:
                results.extend(self.flush())
            elif self._next_interim is not None and self._segment_bytes >= self._next_interim:
                self._next_interim += self._engine.interim_bytes  # type: ignore[operator]
                results.append(self._result(f" partial:{self._segment_bytes}b", is_final=False))
        return results

    def _feed_by_silence(self, audio: bytes) -> list[Recognition]:
        """Segments are stretches of speech (non-zero samples), ended by ``silence_split`` seconds of zeros."""
        results: list[Recognition] = []
        split = round(self._engine.silence_split * self._bytes_per_second)  # type: ignore[operator]
        for offset in range(0, len(audio), self._block):
            block = audio[offset : offset + self._block]
            if any(block):
                if not self._segment_bytes:
                    self._segment_start = self._position
                elif self._silence_bytes:  # a pause shorter than the split: it belongs to the segment
                    self._hash.update(bytes(self._silence_bytes))
                    if self._keep_audio:
                        self._segment += bytes(self._silence_bytes)
                    self._segment_bytes += self._silence_bytes
                self._silence_bytes = 0
                self._hash.update(block)
                if self._keep_audio:
                    self._segment += block
                self._segment_bytes += len(block)
                if self._segment_bytes >= self._next_interim:  # type: ignore[operator]
                    self._next_interim += self._interim_every  # type: ignore[operator]
                    results.append(self._result(f" partial:{self._segment_bytes}b", is_final=False))
            elif self._segment_bytes:
                self._silence_bytes += len(block)
                if self._silence_bytes >= split:
                    results.extend(self.flush())
            self._position += len(block)
        return results

    def flush(self) -> Iterable[Recognition]:
        if not self._segment_bytes:
            return []
        self._number += 1
        engine = self._engine
        if engine.text is not None:
            text = engine.text(self._number, bytes(self._segment))
        elif self._number <= len(engine.segments):
            text = engine.segments[self._number - 1]
        else:
            text = " " + _facts(self._number, self._segment_bytes, self._hash.hexdigest())
        result = self._result(text, is_final=True)
        self._segment_start += self._segment_bytes
        self._segment_bytes = 0
        self._silence_bytes = 0
        self._hash = hashlib.sha256()
        self._segment.clear()
        self._next_interim = engine.interim_bytes if engine.silence_split is None else self._interim_every
        return [result]

    def close(self) -> None:
        self._segment.clear()

    def _result(self, text: str, is_final: bool) -> Recognition:
        start = self._segment_start / self._bytes_per_second
        end = (self._segment_start + self._segment_bytes) / self._bytes_per_second
        if not text.strip():
            words: tuple[Word, ...] = ()
        elif self._engine.word_per_segment:
            words = (Word(text.strip(), start, end),)
        else:
            words = words_between(text, start, end)
        return Recognition(text=text, is_final=is_final, words=words, start=start, end=end, verbatim=True)
