"""The ``pocketsphinx`` engine: real offline US-English recognition, no download.

It uses the acoustic model, language model and dictionary inside the
``pocketsphinx`` wheel. pocketsphinx holds the GIL for every call, so by default
decoding happens in worker processes: a pool of ``workers`` processes, started
lazily, each hosting the decoders of the streams pinned to it. A stream talks to
its worker over a socket pair, one request at a time, and waits (GIL released)
for the answer, always with a timeout. A worker that dies or stops answering
fails the calls of its streams with :class:`RuntimeError`; new streams get a
fresh worker. ``workers=0`` decodes in the calling process instead.

Workers are started as ``python -c "...decoder_worker.main()"`` with the
socket's file descriptor, not with :mod:`multiprocessing`: nothing is forked
from the (many-threaded) server process, and the caller's ``__main__`` is never
re-imported, so scripts without an ``if __name__ == "__main__"`` guard work.
Worker processes need a POSIX system; elsewhere the engine decodes in-process.

Usage::

    engine = PocketSphinxEngine()
    stream = engine.open_stream(StreamOptions(language="en"))
    for chunk in chunks:
        for result in stream.feed(chunk):
            print(result.is_final, result.text)
    for result in stream.flush():
        print(result.text)
    stream.close()
    engine.close()
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection
from typing import Any

from ._decoder_worker import DecoderCache, RecognizerSettings, StreamRecognizer
from ._engine import Recognition, StreamOptions
from ._fair_lock import FairLock, RecentUse

__all__ = ["PocketSphinxEngine", "RecognizerSettings"]

log = logging.getLogger("cartesia_sync.local.pocketsphinx_engine")

_STOP_GRACE = 2.0  # seconds a worker gets to exit after "stop" before it is terminated
#: Seconds of allowance per second of audio in one request, on top of ``timeout``.
_SECONDS_PER_AUDIO_SECOND = 1.0
#: Streams at once a server opens by default: each holds a decoder of about 150 MB.
MAX_STREAMS = 8
#: The most audio one feed request carries (0.25 s of 16 kHz s16le); larger feeds are split.
FEED_REQUEST_BYTES = 8000


def _check_options(options: StreamOptions) -> None:
    language = (options.language or "en").strip().lower().replace("_", "-")
    if language.split("-")[0] != "en":
        raise ValueError(
            f"the pocketsphinx engine recognises English only (language {options.language!r} was asked for)"
        )
    if options.min_volume is not None and not 0.0 <= float(options.min_volume) <= 1.0:
        raise ValueError(f"min_volume must be between 0 and 1, not {options.min_volume!r}")
    silence = options.max_silence_duration_secs
    if silence is not None and not float(silence) > 0.0:
        raise ValueError(f"max_silence_duration_secs must be positive, not {silence!r}")


def _as_bytes(audio: Any) -> bytes:
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return bytes(audio)
    raise TypeError(f"audio must be bytes (16 kHz mono s16le), not {type(audio).__name__}")


class PocketSphinxEngine:
    """Offline US-English recognition with the model inside the pocketsphinx wheel.

    :param workers: worker processes to decode in; ``None`` means
        ``os.cpu_count()``; ``0`` decodes in the calling process.
    :param timeout: seconds any call may wait for a worker (plus one second per
        second of audio in the call) and for a worker to start.
    :param settings: recognition settings; the defaults are tuned for accuracy.
    :param max_streams: how many streams a :class:`LocalServer` serving this
        engine opens at once by default (each holds a decoder of about 150 MB).
    """

    name = "pocketsphinx"

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout: float = 30.0,
        settings: RecognizerSettings | None = None,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, not {workers}")
        if workers and os.name != "posix":
            log.warning("pocketsphinx worker processes need a POSIX system; decoding in-process")
            workers = 0
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        if max_streams <= 0:
            raise ValueError(f"max_streams must be positive, not {max_streams}")
        self.max_streams = max_streams
        self.workers = workers
        #: Streams that decode at the same time: one per worker process (the GIL serialises in-process decoding).
        self.parallel_streams = max(1, workers)
        self.timeout = float(timeout)
        self.settings = settings or RecognizerSettings()
        self._lock = threading.Lock()
        self._closed = False
        self._slots: list[_Worker | None] = [None] * workers
        self._ids = itertools.count(1)
        self._local_cache: DecoderCache | None = None
        self._finalizer = weakref.finalize(self, _stop_all, self._slots)

    def check_options(self, options: StreamOptions) -> None:
        """Check the options at the handshake, before any decoder exists (the server opens streams lazily).

        :raises ValueError: a language other than English, or a bad option.
        """
        _check_options(options)

    def open_stream(self, options: StreamOptions) -> PocketSphinxStream:
        """Start recognising one stream.

        :raises ValueError: a language other than English, or a bad option.
        :raises RuntimeError: the engine is closed, or a worker could not start.
        """
        _check_options(options)
        with self._lock:
            if self._closed:
                raise RuntimeError("the pocketsphinx engine is closed")
            if not self.workers:
                if self._local_cache is None:
                    self._local_cache = DecoderCache(self.settings)
                return _LocalStream(self, StreamRecognizer(self._local_cache.take(), options, self.settings))
            worker = self._pick_worker()
            worker.streams += 1
        sid = next(self._ids)
        try:
            worker.call("open", (sid, options), self.timeout)
        except BaseException:
            with self._lock:
                worker.streams -= 1
            raise
        return _RemoteStream(self, worker, sid)

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (for monitoring and tests)."""
        with self._lock:
            return [w.pid for w in self._slots if w is not None and w.alive()]

    def close(self) -> None:
        """Stop the worker processes; open streams fail from then on. Idempotent."""
        with self._lock:
            self._closed = True
            if self._local_cache is not None:
                self._local_cache.clear()
        self._finalizer()

    def __enter__(self) -> PocketSphinxEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _pick_worker(self) -> _Worker:
        """The least busy live worker; start one in a free slot rather than share."""
        live = [(w.streams, i) for i, w in enumerate(self._slots) if w is not None and w.alive()]
        free = [i for i, w in enumerate(self._slots) if w is None or not w.alive()]
        if free and (not live or min(live)[0] > 0):
            index = free[0]
            old = self._slots[index]
            if old is not None:
                old.stop()
            self._slots[index] = _Worker(self.settings, self.timeout)
            return self._slots[index]  # type: ignore[return-value]
        return self._slots[min(live)[1]]  # type: ignore[return-value]

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            worker.streams -= 1

    def _release_local(self, recognizer: StreamRecognizer) -> None:
        with self._lock:
            if self._local_cache is not None and not self._closed:
                self._local_cache.give_back(recognizer.decoder)


def _stop_all(slots: list[_Worker | None]) -> None:
    for worker in slots:
        if worker is not None:
            worker.stop()


class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self, settings: RecognizerSettings, timeout: float) -> None:
        parent_sock, child_sock = socket.socketpair()
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        code = "import sys; from cartesia_sync.local._decoder_worker import main; sys.exit(main())"
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )
        finally:
            child_sock.close()
        self.pid = self.process.pid
        self.conn = Connection(parent_sock.detach())
        self.lock = FairLock()  # streams take turns (see _fair_lock)
        self.streams = 0
        self.broken: str | None = None
        try:
            self.call("init", (settings,), timeout)
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        return self.broken is None and self.process.poll() is None

    def call(self, op: str, args: tuple[Any, ...], timeout: float, weight: float = 0.0) -> Any:
        """Send one request and wait for its answer; of several callers waiting, the lightest ``weight`` goes first.

        :raises RuntimeError: the worker is gone, failed, or did not answer in time.
        """
        if not self.lock.acquire(timeout=timeout, weight=weight):
            raise RuntimeError(f"pocketsphinx worker process {self.pid} stayed busy for {timeout:.0f} s")
        try:
            if self.broken is not None:
                raise RuntimeError(self.broken)
            try:
                self.conn.send((op, args))
                if not self.conn.poll(timeout):
                    self._fail(f"did not answer within {timeout:.1f} s and was stopped")
                reply = self.conn.recv()
            except (EOFError, OSError):
                self._fail("exited unexpectedly")
        finally:
            self.lock.release()
        if reply[0] == "ok":
            return reply[1]
        raise RuntimeError(f"pocketsphinx worker process {self.pid} failed: {reply[1]}")

    def _fail(self, what: str) -> None:
        """Mark the worker broken, make sure it is gone, and raise."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            code = self.process.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            code = None
        self.broken = (
            f"pocketsphinx worker process {self.pid} {what} (exit code {code}); "
            "the streams it decoded are lost, new streams get a new worker"
        )
        self.conn.close()
        raise RuntimeError(self.broken)

    def stop(self) -> None:
        """Ask the worker to exit; terminate it if it does not. Idempotent."""
        got = self.lock.acquire(timeout=_STOP_GRACE)
        try:
            if self.broken is None:
                self.broken = f"pocketsphinx worker process {self.pid} was stopped (the engine closed)"
                if got and self.process.poll() is None:
                    with contextlib.suppress(OSError):
                        self.conn.send(("stop", ()))
            try:
                self.process.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=_STOP_GRACE)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if not self.conn.closed:
                self.conn.close()
        finally:
            if got:
                self.lock.release()


class PocketSphinxStream:
    """One stream of :class:`PocketSphinxEngine`; called from one thread at a time."""

    def feed(self, audio: bytes) -> list[Recognition]:
        """Take more 16 kHz mono s16le audio; return the interims and finals it produced."""
        raise NotImplementedError

    def flush(self) -> list[Recognition]:
        """Finals for all audio fed so far; the stream then takes more audio."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the stream's decoder; idempotent."""
        raise NotImplementedError

    def __enter__(self) -> PocketSphinxStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _LocalStream(PocketSphinxStream):
    def __init__(self, engine: PocketSphinxEngine, recognizer: StreamRecognizer) -> None:
        self._engine = engine
        self._recognizer: StreamRecognizer | None = recognizer

    def _live(self) -> StreamRecognizer:
        if self._recognizer is None:
            raise RuntimeError("the stream is closed")
        return self._recognizer

    def feed(self, audio: bytes) -> list[Recognition]:
        return self._live().feed(_as_bytes(audio))

    def flush(self) -> list[Recognition]:
        return self._live().flush()

    def close(self) -> None:
        recognizer, self._recognizer = self._recognizer, None
        if recognizer is not None:
            recognizer.close()
            self._engine._release_local(recognizer)


class _RemoteStream(PocketSphinxStream):
    def __init__(self, engine: PocketSphinxEngine, worker: _Worker, sid: int) -> None:
        self._engine = engine
        self._worker: _Worker | None = worker
        self._sid = sid
        self._fed = 0  # bytes since the last flush, to size the flush timeout
        self._load = RecentUse()  # audio sent to the worker lately: the heavier, the later served

    @property
    def worker_pid(self) -> int | None:
        """The pid of the process decoding this stream (None once closed)."""
        return self._worker.pid if self._worker is not None else None

    def _call(self, op: str, args: tuple[Any, ...], audio_bytes: int) -> list[Recognition]:
        worker = self._worker
        if worker is None:
            raise RuntimeError("the stream is closed")
        timeout = self._engine.timeout + _SECONDS_PER_AUDIO_SECOND * audio_bytes / 32000
        weight = self._load.add(audio_bytes if op == "feed" else 0)
        return list(worker.call(op, args, timeout, weight))

    def feed(self, audio: bytes) -> list[Recognition]:
        data = _as_bytes(audio)
        results: list[Recognition] = []
        # A quarter second of audio per request at most: streams sharing this worker take turns between
        # requests (the lightest first, see _fair_lock), so a client sending 30 s in one frame, or audio
        # without pause, delays the others by one request's decoding, not by all of its own.
        for start in range(0, len(data), FEED_REQUEST_BYTES):
            piece = data[start : start + FEED_REQUEST_BYTES]
            self._fed += len(piece)
            results.extend(self._call("feed", (self._sid, piece), len(piece)))
        return results

    def flush(self) -> list[Recognition]:
        # The utterance still open may span everything since the last flush.
        fed, self._fed = self._fed, 0
        if not fed:  # nothing since the last flush, which ended every utterance: a finalize flood is free
            return []
        return self._call("flush", (self._sid,), min(fed, 32000 * 60))

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            if worker.alive():
                worker.call("close", (self._sid,), self._engine.timeout)
        except RuntimeError:
            pass  # the worker is gone, and the stream's state with it
        finally:
            self._engine._release(worker)
