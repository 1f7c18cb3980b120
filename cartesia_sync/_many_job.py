"""One source of a many-file run, from start to finish: hash, transcribe (with retries), write its outputs.

This is what runs on an executor's worker (a thread, a process, a Dask
worker), so everything it takes pickles and nothing in it is a secret: on a
worker of another process the key comes from that worker's environment
(``CARTESIA_API_KEY``), never from the task.

Retries: a 429 (handshake or upload) is not a failure. The gate slows the
batch down (see :mod:`._many_gate`), and the source waits the server's
``Retry-After`` (or a jittered exponential back-off) before trying again, up
to :data:`MAX_RATE_LIMIT_WAITS` times. Other transient failures (a dropped
connection, a timeout, a 5xx) are retried ``max_retries`` times; permanent
ones (unreadable audio, a refused key, another 4xx) fail the source at once.
"""

from __future__ import annotations

import atexit
import functools
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ._many_gate import Gate
from ._many_manifest import file_sha256
from ._many_outputs import write_outputs
from ._result import TranscriptionResult
from ._terminal import terminal_safe
from .errors import (
    AudioFormatError,
    AuthenticationError,
    CartesiaSyncError,
    ConfigurationError,
    ConnectError,
    NetworkError,
    PaymentRequiredError,
    PluginError,
    RateLimitError,
    ServerError,
)
from .hookspecs import hookimpl

__all__ = ["Job", "SourceReport", "run_job", "MAX_RATE_LIMIT_WAITS", "SessionTracker"]

#: How many 429s one source waits out before it counts as failed.
MAX_RATE_LIMIT_WAITS = 30
#: The back-off of a retry: the first wait, and the longest.
FIRST_DELAY, MAX_DELAY = 0.5, 30.0


@dataclass(frozen=True)
class SourceReport:
    """How one source went.

    :ivar source: the input's absolute path.
    :ivar index: its position in the run (from 0), in the order the sources were listed.
    :ivar status: ``"done"``, ``"skipped"`` (done by an earlier run, input unchanged),
        ``"failed"`` or ``"cancelled"`` (Ctrl-C came first).
    :ivar outputs: the files written.
    :ivar result: the transcription (kept only when no ``out_dir`` is given: with one, the files hold it).
    :ivar error: the last error, as one line, when it failed.
    :ivar error_type: that error's class name.
    :ivar attempts: transcription attempts made (429s included).
    :ivar rate_limited: how many of them the server refused with 429.
    :ivar seconds: wall time spent on this source.
    :ivar audio_seconds: the audio transcribed.
    :ivar sha256: the content hash of the input (empty when it could not be read).
    :ivar size: the input's size in bytes.
    """

    source: str
    index: int
    status: str
    outputs: tuple[str, ...] = ()
    result: TranscriptionResult | None = field(default=None, repr=False)
    error: str | None = None
    error_type: str | None = None
    attempts: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    audio_seconds: float = 0.0
    sha256: str = ""
    size: int = -1


@dataclass(frozen=True)
class Job:
    """Everything a worker needs for one source (it pickles; it holds no key)."""

    source: str
    index: int
    base: str | None
    formats: tuple[str, ...]
    mode: str
    client_kwargs: dict[str, Any]
    max_retries: int
    keep_result: bool
    embedded: bool


class SessionTracker:
    """A plugin that keeps the open sessions of this process, so that Ctrl-C can abort them at once."""

    name = "cartesia-sync-many-tracker"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: set[Any] = set()

    @hookimpl
    def on_session_start(self, session: Any) -> None:
        with self._lock:
            self._sessions.add(session)

    @hookimpl
    def on_session_end(self, session: Any) -> None:
        with self._lock:
            self._sessions.discard(session)

    def abort_all(self) -> None:
        """Abort every open session (from the thread that got Ctrl-C); one just starting is left for the next call."""
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            try:
                session.abort()
            except RuntimeError:
                # on_session_start runs before the session's threads start, and an abort in that moment
                # fails joining them ("cannot join thread before it is started"): the caller's next round
                # of aborts gets it
                continue


def run_job(job: Job, gate: Gate, stop: threading.Event | None = None, tracker: Any = None) -> SourceReport:
    """Transcribe one source with retries and write its outputs; never raises for the source's own failures."""
    from ._transcribe import transcribe  # here: the module imports this one's package lazily on workers

    started = time.monotonic()
    attempts = rate_limited = failures = 0
    try:
        size = os.path.getsize(job.source)
        digest = file_sha256(job.source)
    except OSError as exc:
        return _failed(job, exc, started, attempts, rate_limited)
    kwargs = dict(job.client_kwargs)
    if job.embedded:
        kwargs["url"] = worker_server_url()
    if tracker is not None:
        kwargs["plugins"] = [*kwargs.get("plugins", ()), tracker]
    while True:
        if stop is not None and stop.is_set():
            return SourceReport(job.source, job.index, "cancelled", attempts=attempts, sha256=digest, size=size)
        if not gate.acquire(stop):
            continue
        attempts += 1
        try:
            result = transcribe(job.source, mode=job.mode, local=False, **kwargs)
        except RateLimitError as exc:
            rate_limited += 1
            if rate_limited > MAX_RATE_LIMIT_WAITS:
                gate.rate_limited(lambda: None)  # gives the place back and slows the batch, as every 429 does
                return _failed(job, exc, started, attempts, rate_limited, digest, size)
            gate.rate_limited(functools.partial(_wait, exc.retry_after, rate_limited - 1, stop))
            continue
        except BaseException as exc:
            gate.release(False)
            if not isinstance(exc, (CartesiaSyncError, OSError)):
                raise
            failures += 1
            if failures > job.max_retries or not is_transient(exc):
                return _failed(job, exc, started, attempts, rate_limited, digest, size)
            _wait(None, failures - 1, stop)
            continue
        gate.release(True)
        if stop is not None and stop.is_set() and not result.complete:
            return SourceReport(job.source, job.index, "cancelled", attempts=attempts, sha256=digest, size=size)
        break
    try:
        outputs = tuple(write_outputs(result, job.base, job.formats)) if job.base is not None else ()
    except OSError as exc:
        return _failed(job, exc, started, attempts, rate_limited, digest, size)
    return SourceReport(
        job.source,
        job.index,
        "done",
        outputs=outputs,
        result=result if job.keep_result else None,
        attempts=attempts,
        rate_limited=rate_limited,
        seconds=time.monotonic() - started,
        audio_seconds=result.audio_seconds,
        sha256=digest,
        size=size,
    )


def is_transient(exc: BaseException) -> bool:
    """Whether another try may succeed: a dropped connection, a timeout, a 5xx; not bad audio or a 4xx."""
    if isinstance(exc, (AudioFormatError, ConfigurationError, AuthenticationError, PaymentRequiredError, PluginError)):
        return False
    if isinstance(exc, OSError):
        return False
    status = getattr(exc, "status_code", None)
    if isinstance(exc, (ServerError, ConnectError)) and status is not None:
        return status >= 500 or status in (408, 409)
    return isinstance(exc, (NetworkError, ServerError, CartesiaSyncError))


def _wait(retry_after: float | None, step: int, stop: threading.Event | None) -> None:
    """Sleep the server's ``Retry-After`` (plus up to 25 % jitter) or a jittered exponential back-off."""
    if retry_after is not None:
        delay = min(MAX_DELAY, retry_after) * (1 + 0.25 * random.random())
    else:
        delay = min(MAX_DELAY, FIRST_DELAY * 2**step) * (1 - 0.25 * random.random())
    if stop is not None:
        stop.wait(delay)
    else:
        time.sleep(delay)


def _failed(
    job: Job,
    exc: BaseException,
    started: float,
    attempts: int,
    rate_limited: int,
    digest: str = "",
    size: int = -1,
) -> SourceReport:
    return SourceReport(
        job.source,
        job.index,
        "failed",
        error=_one_line(exc),
        error_type=type(exc).__name__,
        attempts=attempts,
        rate_limited=rate_limited,
        seconds=time.monotonic() - started,
        sha256=digest,
        size=size,
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return " ".join(terminal_safe(text, multiline=False).split())


_server_lock = threading.Lock()
_server: Any = None


def worker_server_url() -> str:
    """The URL of this process's own embedded local server, started on first use and stopped at exit.

    On a cluster each worker process transcribes on its own server, so an
    offline corpus scales with cores and machines.
    """
    global _server
    with _server_lock:
        if _server is None:
            from .local import LocalServer

            _server = LocalServer("pocketsphinx").start()
            atexit.register(_server.stop)
        return str(_server.url)
