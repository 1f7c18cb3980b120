"""The transcript accumulator: final text and words of a session, and the current interim."""

from __future__ import annotations

import dataclasses
import threading

from ._events import Transcript, Word

__all__ = ["TranscriptAccumulator"]


class TranscriptAccumulator:
    """Builds a session's transcript from ``transcript`` messages, thread-safely.

    Final texts are concatenated **verbatim**: the server's ``text`` is a delta
    whose leading spaces are part of it, so nothing is stripped or inserted.
    Word times are moved by ``offset`` seconds, the audio that earlier
    connections of the same session already covered, so that times count from
    the start of the session's audio.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finals: list[str] = []
        self._words: list[Word] = []
        self._interim: Transcript | None = None
        self.offset = 0.0

    def add(self, transcript: Transcript) -> Transcript:
        """Take one chunk; return it with its word times on the session's clock."""
        if self.offset and transcript.words:
            transcript = dataclasses.replace(
                transcript, words=tuple(word.shifted(self.offset) for word in transcript.words)
            )
        with self._lock:
            if transcript.is_final:
                self._finals.append(transcript.text)
                self._words.extend(transcript.words)
                self._interim = None
            else:
                self._interim = transcript
        return transcript

    def start_connection(self, offset: float) -> None:
        """A new connection of the session begins ``offset`` seconds into its audio; its interim is gone."""
        with self._lock:
            self.offset = offset
            self._interim = None

    @property
    def text(self) -> str:
        """Every final text so far, concatenated verbatim."""
        with self._lock:
            return "".join(self._finals)

    @property
    def words(self) -> tuple[Word, ...]:
        """Every final word so far, in order."""
        with self._lock:
            return tuple(self._words)

    @property
    def interim(self) -> Transcript | None:
        """The latest interim chunk not yet replaced by a final one."""
        with self._lock:
            return self._interim
