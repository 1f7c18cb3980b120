"""The speech engine interface of the local server, and the registry engines plug into.

An :class:`Engine` turns one connection's audio into recognition results. The
server opens one :class:`EngineStream` per connection, feeds it 16 kHz mono
s16le audio as it arrives, and turns each :class:`Recognition` into a
``transcript`` message. Engines are provided by plugins through the
``register_engines(register)`` hook; the bundled ones are ``pocketsphinx``
(real offline recognition) and ``scripted`` (deterministic, for tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .._events import Word
from ..errors import ConfigurationError

__all__ = [
    "ENGINE_SAMPLE_RATE",
    "StreamOptions",
    "Recognition",
    "Engine",
    "EngineStream",
    "EngineRegistry",
]

#: Every engine receives 16 kHz mono s16le; the server resamples other rates.
ENGINE_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class StreamOptions:
    """What the client asked for in its query string, validated by the server.

    :ivar model: the requested model id.
    :ivar language: ISO-639-1 code.
    :ivar min_volume: audio quieter than this (0..1 RMS of full scale) is not speech.
    :ivar max_silence_duration_secs: silence after which an utterance is final.
    :ivar keyterms: words the caller wants recognised; engines may ignore them.
    :ivar encoding: the wire encoding (engines with ``raw_audio`` receive it as is).
    :ivar sample_rate: the wire sample rate (likewise).
    """

    model: str = "ink-whisper"
    language: str = "en"
    min_volume: float | None = None
    max_silence_duration_secs: float | None = None
    keyterms: tuple[str, ...] = ()
    encoding: str = "pcm_s16le"
    sample_rate: int = ENGINE_SAMPLE_RATE


@dataclass(frozen=True)
class Recognition:
    """One result of an engine stream.

    :ivar text: the words, space-separated, no leading or trailing space; for an
        interim result the whole current hypothesis of the open utterance.
    :ivar is_final: True when the text is committed and will not change.
    :ivar words: word times in seconds from the first audio of the stream.
    :ivar start: start of the audio this result covers, seconds from the first audio.
    :ivar end: end of that audio.
    :ivar verbatim: send ``text`` exactly as it is; otherwise the server puts
        one space before it, so that the client's verbatim concatenation of
        finals reads as words separated by spaces.
    """

    text: str
    is_final: bool
    words: tuple[Word, ...] = ()
    start: float = 0.0
    end: float = 0.0
    verbatim: bool = False

    @property
    def duration(self) -> float:
        """Seconds of audio this result covers."""
        return max(0.0, self.end - self.start)


@runtime_checkable
class EngineStream(Protocol):
    """One connection's recognition state. Called from one thread at a time."""

    def feed(self, audio: bytes) -> Iterable[Recognition]:
        """Take more 16 kHz mono s16le audio (whole samples); return any new results."""
        ...

    def flush(self) -> Iterable[Recognition]:
        """Finish everything buffered: return the finals for all audio fed so far."""
        ...

    def close(self) -> None:
        """Release the stream's resources; called once, even after errors."""
        ...


@runtime_checkable
class Engine(Protocol):
    """A factory of engine streams, shared by every connection of a server.

    The server opens a connection's stream when its first audio arrives, so
    connections that send none cost no stream. An engine may also have a
    ``check_options(options)`` method that raises :class:`ValueError` for
    options it cannot serve; the server calls it at the handshake, so a client
    learns of a bad option at once rather than with its first audio.
    An engine whose streams are costly may set a ``max_streams`` attribute:
    the number of streams a server opens at once unless told otherwise.
    An engine whose streams decode in parallel (each on its own core) may set
    a ``parallel_streams`` attribute above 1: a long batch upload is then cut
    at quiet moments into segments that up to that many streams decode at
    once (pocketsphinx: its worker processes).

    An engine that sets a true ``raw_audio`` attribute receives the client's
    bytes exactly as sent (any encoding and rate, whole samples) instead of
    16 kHz s16le; the scripted engine does, so its facts describe what the
    client sent.
    """

    name: str

    def open_stream(self, options: StreamOptions) -> EngineStream:
        """Start recognising one connection's audio.

        :raises ValueError: the options cannot be served (e.g. an unsupported
            language); the message is sent to the client as a 400 error.
        """
        ...

    def close(self) -> None:
        """Release shared resources (worker processes, models) when the server stops."""
        ...


EngineFactory = Callable[..., Engine]


@dataclass
class EngineRegistry:
    """Engine factories by name, filled through the ``register_engines`` hook."""

    factories: dict[str, EngineFactory] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)

    def register(self, name: str, factory: EngineFactory, description: str = "") -> None:
        """Make an engine available under ``name``.

        :raises ConfigurationError: the name is taken.
        """
        if name in self.factories:
            raise ConfigurationError(f"two plugins register an engine named {name!r}")
        self.factories[name] = factory
        self.descriptions[name] = description

    def create(self, name: str, **options: object) -> Engine:
        """Build the engine registered as ``name``.

        :raises ConfigurationError: no engine has that name.
        """
        factory = self.factories.get(name)
        if factory is None:
            known = ", ".join(sorted(self.factories)) or "none"
            raise ConfigurationError(f"no engine named {name!r}; available: {known}")
        return factory(**options)

    def names(self) -> list[str]:
        """The registered engine names, sorted."""
        return sorted(self.factories)


def words_between(text: str, start: float, end: float) -> tuple[Word, ...]:
    """Spread the words of ``text`` evenly over ``start``..``end`` (for engines without word times)."""
    tokens = text.split()
    if not tokens:
        return ()
    span = max(0.0, end - start) / len(tokens)
    return tuple(
        Word(token, round(start + i * span, 3), round(start + (i + 1) * span, 3)) for i, token in enumerate(tokens)
    )


def rms_level(audio: bytes) -> float:
    """RMS of s16le audio as a fraction of full scale (0..1)."""
    import numpy as np

    samples = np.frombuffer(audio[: len(audio) - len(audio) % 2], dtype="<i2").astype(np.float64)
    if not len(samples):
        return 0.0
    return float(math.sqrt(float(np.mean(samples * samples)))) / 32768.0
