"""An engine for the local server that is slower than real time, as the embedded one is on a loaded machine."""

from __future__ import annotations

import time
from collections.abc import Iterable

from cartesia_sync._events import Word
from cartesia_sync.local._engine import Recognition, StreamOptions

__all__ = ["BYTES_PER_SECOND", "SlowEngine"]

BYTES_PER_SECOND = 32000


class SlowStream:
    """Decodes ``slowness`` seconds per second of audio and says so after every chunk (an interim).

    With ``final_every``, it also commits a final (one word spanning it) for every that many seconds.
    """

    def __init__(self, slowness: float, talk: bool, final_every: float | None = None) -> None:
        self._slowness = slowness
        self._talk = talk
        self._final_every = final_every
        self._committed = 0.0
        self._received = 0

    def feed(self, audio: bytes) -> Iterable[Recognition]:
        time.sleep(self._slowness * len(audio) / BYTES_PER_SECOND)
        self._received += len(audio)
        if not self._talk:
            return []
        seconds = self._received / BYTES_PER_SECOND
        if self._final_every and seconds - self._committed >= self._final_every:
            start, self._committed = self._committed, seconds
            return [
                Recognition(
                    text=f"upto-{seconds:.1f}",
                    is_final=True,
                    start=start,
                    end=seconds,
                    words=(Word(f"upto-{seconds:.1f}", start, seconds),),
                )
            ]
        return [Recognition(text=f"heard {seconds:.1f}", is_final=False, end=seconds)]

    def flush(self) -> list[Recognition]:
        seconds = self._received / BYTES_PER_SECOND
        start, self._committed = self._committed, seconds
        if self._final_every and start == seconds:
            return []
        return [
            Recognition(
                text=f"all {seconds:.1f} s",
                is_final=True,
                start=start,
                end=seconds,
                words=(Word(f"all-{seconds:.1f}", start, seconds),),
            )
        ]

    def close(self) -> None:
        pass


class SlowEngine:
    """A local-server engine slower than real time; ``talk=False`` makes one that works silently."""

    name = "slow"
    raw_audio = True

    def __init__(self, slowness: float, talk: bool = True, final_every: float | None = None) -> None:
        self._slowness = slowness
        self._talk = talk
        self._final_every = final_every

    def open_stream(self, options: StreamOptions) -> SlowStream:
        return SlowStream(self._slowness, self._talk, self._final_every)

    def close(self) -> None:
        pass
