"""Decoding a batch upload with the engine: on one stream, or in segments on several streams at once.

:func:`decode_stream` feeds audio to one engine stream and returns its finals.
:func:`decode_segments` hands the segments of :mod:`._batch_segments` to
``parallel`` threads, each decoding one segment at a time on a fresh stream,
and returns every final in upload order with its times on the upload's clock.
At most ``parallel`` segments wait to be decoded, so memory stays bounded
whatever the upload's length. Every wait is bounded; the first failure stops
the others at their next block.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Iterable, Iterator

from .._events import Word
from ._batch_segments import Segment
from ._engine import Engine, Recognition, StreamOptions

__all__ = ["OptionsRefused", "Stopped", "decode_stream", "decode_segments", "FEED_BYTES"]

#: Audio fed to a stream per call: one second of 16 kHz mono s16le.
FEED_BYTES = 32000
#: How often a waiting thread looks at the failure and stop flags.
_POLL = 0.2
#: The longest a decoding thread may take to finish once it has been told to (engine calls have their own timeout).
_JOIN_TIMEOUT = 120.0


class OptionsRefused(Exception):
    """The engine refused the request's options when a stream was opened."""


class Stopped(Exception):
    """The server is stopping; the decode ended early."""


def decode_stream(
    engine: Engine,
    options: StreamOptions,
    blocks: Iterable[bytes],
    stopping: threading.Event | None = None,
    offset: float = 0.0,
) -> list[Recognition]:
    """The finals of ``blocks`` decoded on one new stream, their times moved by ``offset`` seconds.

    :raises OptionsRefused: the engine refused ``options``.
    :raises Stopped: ``stopping`` was set.
    """
    try:
        stream = engine.open_stream(options)
    except ValueError as exc:
        raise OptionsRefused(str(exc)) from exc
    finals: list[Recognition] = []
    try:
        for block in blocks:
            if stopping is not None and stopping.is_set():
                raise Stopped()
            finals.extend(r for r in stream.feed(block) if r.is_final)
        finals.extend(r for r in stream.flush() if r.is_final)
    finally:
        stream.close()
    return [_shifted(r, offset) for r in finals] if offset else finals


def decode_segments(
    engine: Engine,
    options: StreamOptions,
    segments: Iterator[Segment],
    parallel: int,
    stopping: threading.Event | None = None,
) -> list[Recognition]:
    """The finals of every segment, decoded ``parallel`` at a time, in upload order.

    :raises OptionsRefused: the engine refused ``options``.
    :raises Stopped: ``stopping`` was set.
    :raises Exception: the first failure of the engine, as it was raised.
    """
    run = _ParallelDecode(engine, options, parallel, stopping)
    return run.run(segments)


class _ParallelDecode:
    """One upload's decoding threads, the segments waiting for them, and the results so far."""

    def __init__(self, engine: Engine, options: StreamOptions, parallel: int, stopping: threading.Event | None):
        self.engine = engine
        self.options = options
        self.parallel = parallel
        self.stop = threading.Event()  # a failure, or the server stopping: every thread ends at its next block
        self.stopping = stopping
        self.waiting: queue.Queue[Segment | None] = queue.Queue(maxsize=parallel)
        self.results: dict[int, list[Recognition]] = {}
        self.failure: BaseException | None = None
        self.lock = threading.Lock()

    def run(self, segments: Iterator[Segment]) -> list[Recognition]:
        threads = [
            threading.Thread(target=self._decode, name=f"cartesia-sync-batch-decode-{i}", daemon=True)
            for i in range(self.parallel)
        ]
        for thread in threads:
            thread.start()
        try:
            for segment in segments:
                if not self._hand_over(segment):
                    break
        except BaseException as exc:  # reading the upload failed
            self._fail(exc)
        finally:
            for _ in threads:
                self._hand_over(None, end=True)
            deadline = time.monotonic() + _JOIN_TIMEOUT
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            self._fail(RuntimeError(f"the speech engine did not finish within {_JOIN_TIMEOUT:.0f} s of being stopped"))
        if self.failure is None and self.stopping is not None and self.stopping.is_set():
            self.failure = Stopped()
        if self.failure is not None:
            raise self.failure
        return [final for index in sorted(self.results) for final in self.results[index]]

    def _hand_over(self, segment: Segment | None, *, end: bool = False) -> bool:
        """Queue ``segment`` for a thread; False when the decode is stopping (an ``end`` marker is queued anyway)."""
        deadline = time.monotonic() + _JOIN_TIMEOUT
        while time.monotonic() < deadline:
            if not end and self._stopped():
                return False
            try:
                self.waiting.put(segment, timeout=_POLL)
                return True
            except queue.Full:
                continue
        self._fail(RuntimeError(f"the speech engine took no audio for {_JOIN_TIMEOUT:.0f} s"))
        return False

    def _decode(self) -> None:
        while True:
            try:
                segment = self.waiting.get(timeout=_POLL)
            except queue.Empty:
                continue
            if segment is None:
                return
            if self._stopped():
                continue  # drain what is queued; the end marker follows
            try:
                blocks = (segment.audio[i : i + FEED_BYTES] for i in range(0, len(segment.audio), FEED_BYTES))
                finals = decode_stream(self.engine, self.options, blocks, self.stop, segment.start_seconds)
            except Stopped:
                continue
            except BaseException as exc:
                self._fail(exc)
                continue
            with self.lock:
                self.results[segment.index] = finals

    def _stopped(self) -> bool:
        if self.stopping is not None and self.stopping.is_set():
            self.stop.set()
        return self.stop.is_set()

    def _fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.failure is None:
                self.failure = exc
        self.stop.set()


def _shifted(result: Recognition, offset: float) -> Recognition:
    """``result`` with every time moved ``offset`` seconds later."""
    words = tuple(Word(w.word, round(w.start + offset, 3), round(w.end + offset, 3)) for w in result.words)
    return dataclasses.replace(
        result, words=words, start=round(result.start + offset, 3), end=round(result.end + offset, 3)
    )
