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
from collections.abc import Callable, Iterable, Iterator

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
    should_stop: Callable[[], bool] | None = None,
    offset: float = 0.0,
) -> list[Recognition]:
    """The finals of ``blocks`` decoded on one new stream, their times moved by ``offset`` seconds.

    :param should_stop: asked before each block; True ends the decode with :class:`Stopped`.
    :raises OptionsRefused: the engine refused ``options``.
    :raises Stopped: ``should_stop()`` said so.
    """
    try:
        stream = engine.open_stream(options)
    except ValueError as exc:
        raise OptionsRefused(str(exc)) from exc
    finals: list[Recognition] = []
    try:
        for block in blocks:
            if should_stop is not None and should_stop():
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
    release: Callable[[], None] | None = None,
) -> list[Recognition]:
    """The finals of every segment, decoded ``parallel`` at a time, in upload order.

    :param release: called once by each of the ``parallel`` threads as it ends
        (the server's engine-stream slot it held), even when this call gave up
        waiting for it.
    :raises OptionsRefused: the engine refused ``options``.
    :raises Stopped: ``stopping`` was set.
    :raises Exception: the first failure of the engine, as it was raised.
    """
    run = _ParallelDecode(engine, options, parallel, stopping, release)
    return run.run(segments)


class _ParallelDecode:
    """One upload's decoding threads, the segments waiting for them, and the results so far.

    A thread ends at the end marker, or as soon as the decode stops (a
    failure, or the server stopping): it looks at that between blocks and
    while it waits for a segment, so no thread outlives a stop by more than
    one engine call.
    """

    def __init__(
        self,
        engine: Engine,
        options: StreamOptions,
        parallel: int,
        stopping: threading.Event | None,
        release: Callable[[], None] | None,
    ) -> None:
        self.engine = engine
        self.options = options
        self.parallel = parallel
        self.stop = threading.Event()  # a failure, or the server stopping
        self.stopping = stopping
        self.release = release
        self.waiting: queue.Queue[Segment | None] = queue.Queue(maxsize=parallel)
        self.results: dict[int, list[Recognition]] = {}
        self.failure: BaseException | None = None
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def run(self, segments: Iterator[Segment]) -> list[Recognition]:
        for i in range(self.parallel):
            thread = threading.Thread(target=self._decode, name=f"cartesia-sync-batch-decode-{i}", daemon=True)
            try:
                thread.start()
            except BaseException as exc:
                self._fail(exc)  # the threads already started end at once, each giving back its slot
                for _ in range(self.parallel - i):
                    self._released()  # the slots of the threads that never ran
                raise
            self.threads.append(thread)
        try:
            for segment in segments:
                if not self._hand_over(segment):
                    break
        except BaseException as exc:  # reading the upload failed, or Ctrl-C in an embedding program
            self._fail(exc)
        finally:
            for _ in self.threads:
                if not self._hand_over(None):
                    break  # stopped: the threads end by themselves
            deadline = time.monotonic() + _JOIN_TIMEOUT
            for thread in self.threads:
                while thread.is_alive() and time.monotonic() < deadline:
                    thread.join(timeout=_POLL)
                    self._stopped()  # the server stopping reaches threads still decoding
        if any(thread.is_alive() for thread in self.threads):
            self._fail(RuntimeError(f"the speech engine did not finish within {_JOIN_TIMEOUT:.0f} s"))
        if self.failure is None and self.stopping is not None and self.stopping.is_set():
            self.failure = Stopped()
        if self.failure is not None:
            raise self.failure
        return [final for index in sorted(self.results) for final in self.results[index]]

    def _hand_over(self, segment: Segment | None) -> bool:
        """Queue ``segment`` (or an end marker) for a thread; False when the decode stopped or no thread is left."""
        deadline = time.monotonic() + _JOIN_TIMEOUT
        while not self._stopped():
            if not any(thread.is_alive() for thread in self.threads):
                self._fail(RuntimeError("every decoding thread ended early"))
                return False
            if time.monotonic() >= deadline:
                self._fail(RuntimeError(f"the speech engine took no audio for {_JOIN_TIMEOUT:.0f} s"))
                return False
            try:
                self.waiting.put(segment, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self) -> None:
        try:
            while not self._stopped():
                try:
                    segment = self.waiting.get(timeout=_POLL)
                except queue.Empty:
                    continue
                if segment is None:
                    return
                self._decode_one(segment)
        finally:
            self._released()

    def _decode_one(self, segment: Segment) -> None:
        blocks = (segment.audio[i : i + FEED_BYTES] for i in range(0, len(segment.audio), FEED_BYTES))
        try:
            finals = decode_stream(self.engine, self.options, blocks, self._stopped, segment.start_seconds)
        except Stopped:
            return
        except BaseException as exc:
            self._fail(exc)
            return
        with self.lock:
            self.results[segment.index] = finals

    def _released(self) -> None:
        if self.release is not None:
            self.release()

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
