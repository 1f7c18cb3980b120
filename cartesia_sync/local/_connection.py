"""One connection to the local server: query validation, then the ``/stt/websocket`` conversation.

The conversation follows the wire reference: binary frames are audio; the text
``finalize`` is answered with the finals for everything received, then
``flush_done``; ``done`` or ``close`` with the remaining finals, ``done`` and a
clean close. Problems with the query are ``error`` messages with status 400 in
the current structured format, after which the server closes the connection.

The engine stream opens with the first audio, not at the handshake: a
connection that never sends audio costs a thread and a socket, never a
decoder (about 150 MB for pocketsphinx). The query is still checked at once,
by the engine too when it has a ``check_options(options)`` method.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection

from ._engine import ENGINE_SAMPLE_RATE, Engine, EngineStream, Recognition, StreamOptions
from ._recording import ConnectionRecord
from ._scenario import Scenario
from ._wire_audio import SAMPLE_BYTES, decoder_for

__all__ = ["ConversationConfig", "QueryError", "parse_query", "Conversation"]

logger = logging.getLogger("cartesia_sync.local.connection")


@dataclass(frozen=True)
class ConversationConfig:
    """Server-wide settings every connection uses."""

    engine: Engine
    models: frozenset[str]
    idle_timeout: float
    scenario: Scenario
    record: bool
    request_id: str | None = None
    #: Engine streams open at once, server-wide (None: no limit); the next first audio gets a 429 error.
    streams: threading.BoundedSemaphore | None = None
    max_streams: int = 0


class QueryError(Exception):
    """A query parameter the server cannot serve; becomes a 400 ``error`` message."""

    def __init__(self, error_code: str, title: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.title = title
        self.message = message


def parse_query(path: str, models: frozenset[str]) -> tuple[StreamOptions, str, int]:
    """Validate the handshake query and return the stream options, the encoding and the sample rate.

    :raises QueryError: a required parameter is missing or a value is not supported.
    """
    query = parse_qsl(urlsplit(path).query, keep_blank_values=True)
    values: dict[str, str] = {}
    keyterms: list[str] = []
    for name, value in query:
        if name == "keyterm":
            keyterms.append(value)
        else:
            values[name] = value
    model = values.get("model")
    if not model:
        raise QueryError(
            "model_required", "Missing model", "the model query parameter is required, e.g. model=ink-whisper"
        )
    if model not in models:
        raise QueryError(
            "model_not_found",
            "Invalid model",
            f"the model {model!r} is not valid; use one of: {', '.join(sorted(models))}",
        )
    encoding = values.get("encoding", "pcm_s16le")
    if encoding not in SAMPLE_BYTES:
        raise QueryError(
            "invalid_encoding",
            "Unsupported encoding",
            f"the encoding {encoding!r} is not supported; use one of {', '.join(SAMPLE_BYTES)}",
        )
    rate_text = values.get("sample_rate", str(ENGINE_SAMPLE_RATE))
    try:
        sample_rate = int(rate_text)
    except ValueError:
        sample_rate = 0
    if not 8000 <= sample_rate <= 48000:
        raise QueryError(
            "invalid_sample_rate",
            "Unsupported sample rate",
            f"the sample_rate {rate_text!r} is not supported; use an integer from 8000 to 48000 (16000 recommended)",
        )
    options = StreamOptions(
        model=model,
        language=values.get("language") or "en",
        min_volume=_optional_number(values, "min_volume", 0.0, 1.0),
        max_silence_duration_secs=_optional_number(values, "max_silence_duration_secs", 0.0, 60.0),
        keyterms=tuple(keyterms),
        encoding=encoding,
        sample_rate=sample_rate,
    )
    return options, encoding, sample_rate


def _optional_number(values: dict[str, str], name: str, low: float, high: float) -> float | None:
    text = values.get(name)
    if text is None or text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise QueryError(
            f"invalid_{name}", f"Invalid {name}", f"{name} must be a number from {low:g} to {high:g}, got {text!r}"
        )
    return number


class Conversation:
    """Runs the protocol on one accepted connection until it ends."""

    def __init__(self, conn: ServerConnection, config: ConversationConfig, record: ConnectionRecord | None) -> None:
        self._conn = conn
        self._config = config
        self._scenario = config.scenario
        self._record = record
        self.request_id = config.request_id or str(uuid.uuid4())
        self._stream: EngineStream | None = None
        self._options: StreamOptions | None = None
        self._resampler: Any = None
        self._decode: Any = None  # wire bytes -> int16 samples, or None to feed the engine raw bytes
        self._sample_bytes = 2
        self._leftover = b""
        self._received = 0
        self._errored = False
        self._language = "en"

    def run(self) -> None:
        """Validate, open the engine stream, and answer frames until the connection ends."""
        try:
            self._converse()
        except ConnectionClosed:
            pass
        finally:
            if self._stream is not None:
                try:
                    self._stream.close()
                except Exception:
                    logger.exception("closing the engine stream failed")
                finally:
                    if self._config.streams is not None:
                        self._config.streams.release()

    # -- phases ------------------------------------------------------------

    def _converse(self) -> None:
        try:
            request = self._conn.request
            assert request is not None  # the handler runs after the handshake
            options, encoding, sample_rate = self._parse_query(request.path)
            self._language = options.language
            check = getattr(self._config.engine, "check_options", None)
            if check is not None:
                check(options)
            self._options = options
        except QueryError as exc:
            self._fail(400, exc.error_code, exc.title, exc.message, close_code=1008)
            return
        except ValueError as exc:
            self._fail(400, "unsupported_option", "Unsupported option", str(exc), close_code=1008)
            return
        self._sample_bytes = SAMPLE_BYTES[encoding]
        if not getattr(self._config.engine, "raw_audio", False):
            self._decode = decoder_for(encoding)
            if sample_rate != ENGINE_SAMPLE_RATE:
                import soxr

                self._resampler = soxr.ResampleStream(sample_rate, ENGINE_SAMPLE_RATE, 1, dtype="int16")
        self._opening()
        while True:
            try:
                message = self._conn.recv(timeout=self._config.idle_timeout)
            except TimeoutError:
                logger.info("closing an idle connection after %.1f s without a message", self._config.idle_timeout)
                self._conn.close(1000, "connection idle timeout")
                return
            if isinstance(message, bytes):
                if self._record is not None:
                    self._record.add("audio", message)
                if not self._on_audio(message):
                    return
            else:
                if self._record is not None:
                    self._record.add("text", message)
                if not self._on_command(message):
                    return

    def _on_audio(self, data: bytes) -> bool:
        self._received += len(data)
        if self._scenario_fault():
            return False
        pcm = self._leftover + data
        usable = len(pcm) - len(pcm) % self._sample_bytes
        self._leftover = pcm[usable:]
        pcm = pcm[:usable]
        if pcm and self._stream is None and not self._start_engine():
            return False
        if self._decode is not None and pcm:
            samples = self._decode(pcm)
            if self._resampler is not None:
                samples = self._resampler.resample_chunk(samples)
            pcm = samples.astype("<i2").tobytes()
        if pcm:
            return self._run_engine(lambda: self._feed(pcm))
        return True

    # -- what a kind of endpoint changes (see _turn_conversation.py) ----------------------

    def _parse_query(self, path: str) -> tuple[StreamOptions, str, int]:
        """The stream options, encoding and rate the handshake asked for (raises ``QueryError``)."""
        return parse_query(path, self._config.models)

    def _opening(self) -> None:
        """What the server sends first."""
        for frame in self._scenario.on_open:
            self._send_raw(frame)

    def _feed(self, pcm: bytes) -> Iterable[Any]:
        """Engine-ready audio in; the results to send out (each through :meth:`_emit`)."""
        return self._open_stream().feed(pcm)

    def _emit(self, result: Any) -> None:
        """Send one result."""
        self._send(self._transcript(result))

    def _start_engine(self) -> bool:
        """Open the engine stream for the first audio; False (the client told why) when it cannot."""
        streams = self._config.streams
        if streams is not None and not streams.acquire(blocking=False):
            self._fail(
                429,
                "concurrency_limited",
                "Too many streams",
                f"all {self._config.max_streams} recognition streams of this server are in use; retry later",
                close_code=1013,
            )
            return False
        try:
            self._open_stream()
        except ValueError as exc:  # options the engine cannot serve, found only now
            if streams is not None:
                streams.release()
            self._fail(400, "unsupported_option", "Unsupported option", str(exc), close_code=1008)
            return False
        except Exception as exc:
            if streams is not None:
                streams.release()
            logger.exception("the engine could not open a stream")
            message = f"the speech engine could not start: {exc}"
            self._fail(503, "engine_unavailable", "Engine unavailable", message, close_code=1011)
            return False
        return True

    def _on_command(self, text: str) -> bool:
        scenario = self._scenario
        if text == "finalize":
            if not scenario.answer_finalize:
                return True
            if not self._run_engine(self._flush):
                return False
            self._send({"type": "flush_done", "request_id": self.request_id})
            return True
        if text in ("done", "close"):
            if not scenario.answer_end:
                return True
            if scenario.end_delay:
                time.sleep(scenario.end_delay)
            for frame in scenario.before_done:
                self._send_raw(frame)
            if not self._run_engine(self._flush):
                return False
            self._send({"type": "done", "request_id": self.request_id})
            if scenario.close_after_done:
                self._conn.close(1000, "done")
                return False
            return True
        self._send(
            self._error(
                400,
                "unknown_command",
                "Unknown command",
                f"unknown text command {text[:40]!r}; send finalize, done or close",
                done=False,
            )
        )
        return True

    def _open_stream(self) -> EngineStream:
        """The engine stream, opened on first use (see the module docstring)."""
        if self._stream is None:
            assert self._options is not None
            self._stream = self._config.engine.open_stream(self._options)
        return self._stream

    def _flush(self) -> Iterable[Recognition]:
        results: list[Recognition] = []
        if self._stream is None:
            return results  # no audio yet: nothing to recognise, and no reason to start a decoder
        tail = self._resampler_tail()
        if tail:
            results.extend(self._stream.feed(tail))
        results.extend(self._stream.flush())
        return results

    def _resampler_tail(self) -> bytes:
        """What the resampler still holds at the end of the audio (nothing without one)."""
        if self._resampler is None:
            return b""
        import numpy as np

        return bytes(self._resampler.resample_chunk(np.zeros(0, dtype="<i2"), last=True).astype("<i2").tobytes())

    def _run_engine(self, step: Any) -> bool:
        try:
            results = list(step())
        except Exception as exc:
            logger.exception("the engine failed")
            self._fail(500, "engine_error", "Engine error", f"the speech engine failed: {exc}", close_code=1011)
            return False
        for result in results:
            self._emit(result)
        return True

    # -- scripted faults ------------------------------------------------------

    def _scenario_fault(self) -> bool:
        """Apply the scenario's byte-count faults; True when the connection is over."""
        scenario = self._scenario
        if scenario.drop_after_bytes is not None and self._received >= scenario.drop_after_bytes:
            _drop(self._conn)
            return True
        if scenario.close_after_bytes is not None and self._received >= scenario.close_after_bytes:
            self._conn.close(scenario.close_code, scenario.close_reason)
            return True
        if (
            scenario.error_after_bytes is not None
            and self._received >= scenario.error_after_bytes
            and not self._errored
        ):
            self._errored = True
            message = scenario.error_message
            if isinstance(message, dict):
                message = dict(message)
                message.setdefault("request_id", self.request_id)
            self._send_raw(message)
            if scenario.error_closes:
                self._conn.close(1011, "error")
                return True
        return False

    # -- messages -------------------------------------------------------------

    def _transcript(self, result: Recognition) -> dict[str, Any]:
        return {
            "type": "transcript",
            "request_id": self.request_id,
            "is_final": result.is_final,
            "text": result.text if result.verbatim or not result.text else " " + result.text,
            "duration": round(result.duration, 3),
            "language": self._language,
            "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in result.words],
        }

    def _error(self, status: int, code: str, title: str, message: str, done: bool = True) -> dict[str, Any]:
        return {
            "type": "error",
            "done": done,
            "status_code": status,
            "error_code": code,
            "title": title,
            "message": message,
            "request_id": self.request_id,
        }

    def _fail(self, status: int, code: str, title: str, message: str, close_code: int) -> None:
        self._send(self._error(status, code, title, message))
        self._conn.close(close_code, title)

    def _send(self, message: dict[str, Any]) -> None:
        self._conn.send(json.dumps(message))

    def _send_raw(self, frame: Any) -> None:
        if isinstance(frame, dict):
            self._send(frame)
        else:
            self._conn.send(frame)


def _drop(conn: ServerConnection) -> None:
    """End the TCP connection with no close frame: the client sees an abnormal closure (1006)."""
    sock = conn.socket
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
