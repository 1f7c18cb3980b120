"""Batch transcription: upload a whole input with ``POST /stt`` and go through the same hooks as a stream.

Plugins cannot tell the paths apart by what they receive: ``on_session_start``,
then, on success, one final :class:`Transcript` (``on_event`` and
``on_transcript``) carrying every word and a :class:`Done` (``on_event`` and
``on_done``); on failure ``on_error``; and always ``on_session_end``. The
``session`` they get is a :class:`BatchSession`, a read-only stand-in for
:class:`~cartesia_sync.Session`.
"""

from __future__ import annotations

import json
import logging
import ssl
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from ._batch_progress import UploadProgress
from ._config import ENCODINGS, ConnectionSettings, SessionOptions
from ._events import Done, Transcript, Word, parse_message
from ._http import HttpCall, HttpReply, send_with_retries
from ._lifecycle import SessionState
from ._plugin_manager import HookDispatcher
from ._result import TranscriptionResult
from ._secrets import redact
from ._session_core import _session_numbers
from ._stats import SessionStats
from ._upload import Upload, prepare_upload
from .errors import CartesiaSyncError, ConfigurationError, PluginError, ProtocolError, ServerError

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

    from ._endpoints import Endpoints

__all__ = ["BatchSession", "transcribe_batch", "reply_timeout"]

logger = logging.getLogger("cartesia_sync.batch")

#: The wait for the reply: this much, plus ``_SECONDS_PER_MB`` per MB uploaded (the server decodes and
#: transcribes the whole file before it answers, so a long file needs a long wait).
DEFAULT_REPLY_TIMEOUT = 60.0
_SECONDS_PER_MB = 10.0
#: The longest a single write of the upload may stall.
_WRITE_TIMEOUT = 60.0


class BatchSession:
    """What hooks get as ``session`` during a batch transcription: read-only, with no connection behind it.

    It has the attributes a hook reads on a :class:`~cartesia_sync.Session`:
    ``settings``, ``options``, ``number``, ``started_at``, ``state``,
    ``closed``, ``text``, ``words``, ``interim`` (always ``None``), ``stats``,
    ``audio_sent``, ``audio_acknowledged``, ``errors``, ``error``,
    ``request_id``, ``ended_by_server`` (always ``None``) and :meth:`result`;
    ``mode`` is ``"batch"``. A hook can read
    them, and use :meth:`result` in ``on_session_end``.

    A hook **cannot** act on it: there is no stream to feed or flush, so
    ``send()``, ``send_file()``, ``finalize()``, ``close()`` and ``abort()``
    raise ``RuntimeError`` saying so. ``text`` and ``words`` are empty until
    the reply arrives, then complete (there are no interim results).
    """

    mode = "batch"

    def __init__(self, settings: ConnectionSettings, options: SessionOptions, url: str) -> None:
        self.settings = settings
        self.options = options
        self.url = url
        self.number = next(_session_numbers)
        self.started_at = time.time()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._state = SessionState.OPEN
        self._transcript: Transcript | None = None
        self._errors: list[CartesiaSyncError] = []
        self._failure: CartesiaSyncError | None = None
        self._audio_seconds = 0.0
        self._wall: float | None = None

    # -- what a hook reads ---------------------------------------------------

    @property
    def state(self) -> SessionState:
        """``OPEN`` while uploading and waiting, ``CLOSED`` at ``on_session_end``."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once the transcription is over."""
        return self._state is SessionState.CLOSED

    @property
    def text(self) -> str:
        """The whole transcript once it arrived, else ``""``."""
        return self._transcript.text if self._transcript is not None else ""

    @property
    def words(self) -> tuple[Word, ...]:
        """Every word once the transcript arrived, else empty."""
        return self._transcript.words if self._transcript is not None else ()

    @property
    def interim(self) -> None:
        """Always ``None``: a batch transcription has no interim results."""
        return None

    @property
    def language(self) -> str | None:
        """The language the server reported, else the one asked for."""
        reported = self._transcript.language if self._transcript is not None else None
        return reported or self.settings.language

    @property
    def request_id(self) -> str | None:
        """The server's id for the request, once the reply carried it."""
        return self._transcript.request_id if self._transcript is not None else None

    @property
    def audio_sent(self) -> float:
        """Seconds of audio transcribed: 0 until the transcript arrives, then its length."""
        return self.stats.audio_sent

    @property
    def audio_acknowledged(self) -> float:
        """Seconds of audio the server has recognised: as :attr:`audio_sent`."""
        return self.stats.audio_acknowledged

    @property
    def errors(self) -> tuple[CartesiaSyncError, ...]:
        """Every error reported during the transcription, in order."""
        with self._lock:
            return tuple(self._errors)

    @property
    def error(self) -> CartesiaSyncError | None:
        """The error that ended the transcription, if one did."""
        return self._failure

    @property
    def ended_by_server(self) -> None:
        """Always ``None`` (a stream's notion)."""
        return None

    @property
    def stats(self) -> SessionStats:
        """The accounting: the audio counts as sent and acknowledged once the transcript arrived."""
        done = self._transcript is not None
        seconds = self._audio_seconds if done else 0.0
        wall = self._wall if self._wall is not None else time.monotonic() - self._started
        return SessionStats(
            audio_queued=self._audio_seconds,
            audio_sent=seconds,
            audio_acknowledged=seconds,
            messages_received=1 if done else 0,
            final_transcripts=1 if done else 0,
            server_errors=sum(1 for error in self.errors if isinstance(error, ServerError)),
            plugin_errors=sum(1 for error in self.errors if isinstance(error, PluginError)),
            errors_reported=len(self.errors),
            wall_seconds=wall,
        )

    def result(self) -> TranscriptionResult:
        """What the transcription produced (``complete`` once the transcript arrived and nothing failed)."""
        stats = self.stats
        audio = stats.audio_sent
        return TranscriptionResult(
            text=self.text,
            words=self.words,
            audio_seconds=audio,
            wall_seconds=stats.wall_seconds,
            realtime_factor=(stats.wall_seconds / audio) if audio else None,
            stats=stats,
            request_id=self.request_id,
            complete=self._transcript is not None and self._failure is None,
            language=self.language,
            mode="batch",
        )

    # -- what a hook cannot do -------------------------------------------------

    def send(self, *args: Any, **kwargs: Any) -> None:
        """Not available: a batch transcription uploads its whole input at once."""
        self._refuse("send")

    def send_file(self, *args: Any, **kwargs: Any) -> None:
        """Not available (see :meth:`send`)."""
        self._refuse("send_file")

    def finalize(self, *args: Any, **kwargs: Any) -> None:
        """Not available: there is no stream to flush."""
        self._refuse("finalize")

    def close(self, *args: Any, **kwargs: Any) -> None:
        """Not available: the transcription ends by itself when the reply arrives."""
        self._refuse("close")

    def abort(self) -> None:
        """Not available (see :meth:`close`)."""
        self._refuse("abort")

    def _refuse(self, name: str) -> None:
        raise RuntimeError(
            f"{name}() is not available on a batch transcription: the whole input is uploaded at once and the "
            "transcript comes back in one reply; a hook can only read this session"
        )

    # -- the runner's side ---------------------------------------------------

    def _keep(self, error: CartesiaSyncError) -> None:
        with self._lock:
            self._errors.append(error)

    def __repr__(self) -> str:
        return f"<BatchSession #{self.number} {self._state.value} url={self.url!r} words={len(self.words)}>"


def reply_timeout(size: int, timeout: float | None) -> float:
    """Seconds to wait for the reply to an upload of ``size`` bytes: ``timeout`` (default 60) plus 10 s per MB."""
    base = DEFAULT_REPLY_TIMEOUT if timeout is None else timeout
    return base + _SECONDS_PER_MB * size / 1_000_000


def transcribe_batch(
    settings: ConnectionSettings,
    options: SessionOptions,
    endpoints: Endpoints,
    plugin_manager: pluggy.PluginManager,
    source: Any,
    *,
    sample_rate: int | None = None,
    timeout: float | None = None,
    max_retries: int = 2,
    progress: bool | None = None,
) -> TranscriptionResult:
    """Upload ``source`` to ``POST /stt`` and return its transcript; see :meth:`Client.transcribe`."""
    if endpoints.batch is None:
        raise ConfigurationError(
            f"mode='batch' needs the batch route (POST /stt), and this client knows only the streaming URL "
            f"{settings.display_url}: pass base_url= (for the hosted API, https://api.cartesia.ai) or use "
            "mode='stream'"
        )
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be a whole number of at least 0, got {max_retries!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    upload = prepare_upload(
        source,
        sample_rate=sample_rate or settings.sample_rate,
        encoding=settings.encoding,
        bytes_per_sample=ENCODINGS[settings.encoding],
    )
    try:
        return _run(settings, options, endpoints.batch, plugin_manager, upload, timeout, max_retries, progress)
    finally:
        upload.close()


def _run(
    settings: ConnectionSettings,
    options: SessionOptions,
    batch_url: str,
    plugin_manager: pluggy.PluginManager,
    upload: Upload,
    timeout: float | None,
    max_retries: int,
    progress: bool | None,
) -> TranscriptionResult:
    auth_headers = settings.http_auth()
    query = urlencode(upload.query)
    shown_url = batch_url + (f"?{query}" if query else "")
    session = BatchSession(settings, options, shown_url)
    session._audio_seconds = upload.audio_seconds or 0.0
    dispatcher = HookDispatcher(plugin_manager, session, session._keep, lambda text: redact(text, settings.api_key))
    dispatcher.emit("on_session_start")
    wait = reply_timeout(upload.size, timeout)
    bar = _progress_bar(upload, progress)
    readers: list[_Counting] = []
    try:
        call = HttpCall(
            method="POST",
            url=shown_url,
            shown_url=shown_url,
            headers={"Cartesia-Version": settings.cartesia_version, **auth_headers, **dict(settings.extra_headers)},
            build=lambda: _multipart(settings, upload, bar, readers),
            timeout=httpx.Timeout(
                connect=settings.connect_timeout, write=_WRITE_TIMEOUT, read=wait, pool=settings.connect_timeout
            ),
            reply_deadline=wait,
            secret=settings.api_key,
            what="batch transcription",
        )
        logger.debug("uploading %s (%d bytes) to %s", upload.describe, upload.size, shown_url)
        with httpx.Client(verify=_tls_context(settings), timeout=call.timeout) as client:
            reply = send_with_retries(client, call, max_retries)
        transcript = _transcript_of(reply, shown_url)
    except (CartesiaSyncError, KeyboardInterrupt) as error:
        if isinstance(error, CartesiaSyncError):
            session._failure = error
            session._keep(error)
        _end(session, dispatcher, error if isinstance(error, CartesiaSyncError) else None)
        error.partial_result = session.result()  # type: ignore[union-attr]
        raise
    finally:
        for reader in readers:
            reader.close()
        if bar is not None:
            bar.close()
    session._transcript = transcript
    if transcript.duration is not None:
        session._audio_seconds = transcript.duration
    dispatcher.emit("on_event", event=transcript)
    dispatcher.emit("on_transcript", transcript=transcript)
    done = Done(request_id=transcript.request_id, raw={"type": "done", "request_id": transcript.request_id})
    dispatcher.emit("on_event", event=done)
    dispatcher.emit("on_done", event=done)
    _end(session, dispatcher, None)
    result = session.result()
    if options.raise_errors and session.errors:
        first = session.errors[0]
        first.partial_result = result
        raise first
    return result


def _end(session: BatchSession, dispatcher: HookDispatcher, error: CartesiaSyncError | None) -> None:
    session._wall = time.monotonic() - session._started
    if error is not None:
        dispatcher.report(error)
    session._state = SessionState.CLOSED
    dispatcher.emit_last("on_session_end")


def _multipart(settings: ConnectionSettings, upload: Upload, bar: Any, readers: list[_Counting]) -> dict[str, Any]:
    """The form of one try: fields as the official SDK sends them, the file read from its start."""
    data: dict[str, Any] = {"model": settings.model, "timestamp_granularities[]": ["word"]}
    if settings.language:
        data["language"] = settings.language
    reader = _Counting(upload.open(), bar)
    readers.append(reader)
    return {"data": data, "files": {"file": (upload.filename, reader, upload.content_type)}}


def _transcript_of(reply: HttpReply, url: str) -> Transcript:
    """The reply as one final :class:`Transcript`, parsed exactly as a streamed one is."""
    body = reply.body
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise ProtocolError(
            f"batch transcription: {url} answered without a 'text' string; expected a transcript",
            raw=str(body)[:200],
        )
    message = dict(body, type="transcript", is_final=True)
    if reply.request_id and not isinstance(body.get("request_id"), str):
        message["request_id"] = reply.request_id
    event = parse_message(json.dumps(message))
    assert isinstance(event, Transcript)
    return event


def _tls_context(settings: ConnectionSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_certs)


def _progress_bar(upload: Upload, progress: bool | None) -> UploadProgress | None:
    """The upload's progress on stderr when it is a terminal (or when asked), else ``None``."""
    if progress is None:
        progress = sys.stderr.isatty()
    return UploadProgress(upload.size, sys.stderr) if progress else None


class _Counting:
    """A binary file that moves a progress bar as httpx reads it (and restarts it on a retry's seek)."""

    def __init__(self, raw: IO[bytes], bar: Any) -> None:
        self._raw = raw
        self._bar = bar

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        if self._bar is not None and chunk:
            self._bar.update(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        if self._bar is not None and offset == 0 and whence == 0:
            self._bar.reset()
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
