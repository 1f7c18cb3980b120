"""One batch transcription on the local server: an uploaded file through the same engine as a stream.

The upload (already on disk, see ``_multipart``) is decoded with the project's
own readers (``open_audio_file``: WAV/RF64 here, the rest through libsndfile)
or, when the request names an ``encoding``, read as raw PCM of that encoding.
Either way it becomes 16 kHz mono s16le and is decoded by the engine (see
``_batch_decode``): on one stream, or, for an engine whose streams decode in
parallel (``parallel_streams``), cut at quiet moments into segments that
several streams decode at once, as many as the server has free. The finals
become the hosted API's batch response.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._audio_files import open_audio_file
from ..errors import AudioFormatError
from ._batch_decode import OptionsRefused, Stopped, decode_segments, decode_stream
from ._batch_segments import SEGMENT_SECONDS, cut_segments
from ._engine import ENGINE_SAMPLE_RATE, Engine, Recognition, StreamOptions
from ._wire_audio import SAMPLE_BYTES, decoder_for

__all__ = ["BatchRequest", "BatchError", "run_batch"]

#: Seconds of audio fed to the engine at a time.
BLOCK_SECONDS = 1.0


class BatchError(Exception):
    """A batch request the server refuses; becomes an HTTP error with the structured JSON body."""

    def __init__(self, status: int, error_code: str, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.title = title
        self.message = message


@dataclass(frozen=True)
class BatchRequest:
    """The validated parameters of ``POST /stt``."""

    model: str
    language: str = "en"
    words: bool = False
    encoding: str | None = None
    sample_rate: int | None = None


def run_batch(
    engine: Engine,
    path: str,
    request: BatchRequest,
    streams: threading.BoundedSemaphore | None,
    request_id: str | None,
    stopping: threading.Event | None = None,
) -> dict[str, Any]:
    """Transcribe the upload at ``path``; returns the response body.

    :param stopping: set when the server stops: the decode ends at the next block.
    :raises BatchError: not audio (415), audio damaged past its header (400), a
        refused option (400), no engine stream free (429), the engine failed
        (500), or the server is stopping (503).
    """
    slots = _take_slots(streams, 1)
    held = slots  # the slots this call gives back; with several streams, each decoding thread gives back its own
    close_audio: Callable[[], None] = _nothing
    try:
        blocks, duration, close_audio = _pcm_blocks(path, request)
        slots += _take_slots(streams, _parallel_streams(engine, duration.expected) - 1, at_least_one=False)
        held = slots
        options = StreamOptions(model=request.model, language=request.language)
        try:
            if slots > 1:
                release = streams.release if streams is not None else None
                held = 0
                results = decode_segments(engine, options, cut_segments(blocks), slots, stopping, release)
            else:
                results = decode_stream(engine, options, blocks, stopping.is_set if stopping is not None else None)
        except OptionsRefused as exc:
            raise BatchError(400, "unsupported_option", "Unsupported option", str(exc)) from exc
        except Stopped as exc:
            raise BatchError(503, "server_stopping", "Server stopping", "the server is shutting down; retry") from exc
        except BatchError:
            raise
        except Exception as exc:
            raise BatchError(500, "engine_error", "Engine error", f"the speech engine failed: {exc}") from exc
    finally:
        close_audio()
        if streams is not None:
            for _ in range(held):
                streams.release()
    body: dict[str, Any] = {
        "type": "transcript",
        "request_id": request_id or str(uuid.uuid4()),
        "text": _joined(results),
        "language": request.language,
        "duration": round(duration(), 3),
    }
    if request.words:
        body["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for r in results for w in r.words
        ]
    return body


def _parallel_streams(engine: Engine, seconds: float) -> int:
    """Streams worth decoding ``seconds`` of audio on: the engine's ``parallel_streams`` (else 1), one per segment."""
    wanted = getattr(engine, "parallel_streams", 1)
    if not isinstance(wanted, int) or wanted <= 1:
        return 1
    return max(1, min(wanted, math.ceil(seconds / SEGMENT_SECONDS)))


def _take_slots(streams: threading.BoundedSemaphore | None, wanted: int, *, at_least_one: bool = True) -> int:
    """Take up to ``wanted`` of the server's free engine streams; a busy server gives fewer.

    :raises BatchError: 429, when ``at_least_one`` and none is free.
    """
    if streams is None:
        return max(0, wanted)
    taken = 0
    while taken < wanted and streams.acquire(blocking=False):
        taken += 1
    if at_least_one and not taken:
        raise BatchError(
            429, "concurrency_limited", "Too many streams", "all recognition streams of this server are in use"
        )
    return taken


def _joined(results: list[Recognition]) -> str:
    """The finals as one text: verbatim results as they are, the rest separated by spaces (as a stream reads)."""
    text = ""
    for result in results:
        if not result.text:
            continue
        text += result.text if result.verbatim or not text else " " + result.text
    return text.strip()


class _Duration:
    """Seconds of audio read so far (known only once every block has been read), and what the header promised."""

    def __init__(self, expected: float = 0.0) -> None:
        self.seconds = 0.0
        self.expected = expected

    def __call__(self) -> float:
        return self.seconds


def _pcm_blocks(path: str, request: BatchRequest) -> tuple[Iterator[bytes], _Duration, Callable[[], None]]:
    """The upload as engine-ready blocks, its duration, and what closes the file (whether or not it was read)."""
    if request.encoding is not None:
        rate = request.sample_rate or ENGINE_SAMPLE_RATE
        duration = _Duration(os.path.getsize(path) / (rate * SAMPLE_BYTES[request.encoding]))
        raw = _raw_blocks(path, request.encoding, rate, duration)
        return raw, duration, raw.close
    try:
        reader = open_audio_file(path)
    except AudioFormatError as exc:
        reason = str(exc).replace(repr(path), "the upload")  # the server's temporary path means nothing to a client
        raise BatchError(
            415,
            "unsupported_media_type",
            "Unsupported audio",
            f"the upload is not audio this server can decode ({reason}); send WAV, FLAC, OGG or MP3, "
            "or raw PCM with the encoding and sample_rate query parameters",
        ) from exc
    duration = _Duration(reader.info.duration)
    blocks = _file_blocks(reader, duration)

    def close() -> None:
        blocks.close()
        reader.close()

    return blocks, duration, close


def _nothing() -> None:
    """Nothing to close."""


def _file_blocks(reader: Any, duration: _Duration) -> Generator[bytes, None, None]:
    with reader:
        rate = reader.info.sample_rate
        resampler = _resampler(rate)
        for block in _readable(reader.blocks(max(1, int(rate * BLOCK_SECONDS))), duration):
            samples = block.astype(np.float32)
            if block.dtype == np.int16:
                samples /= 32768.0
            mono = samples.mean(axis=1) if samples.ndim == 2 else samples
            duration.seconds += len(mono) / rate
            yield _to_engine(mono, resampler)
        if resampler is not None:
            yield _to_engine(np.zeros(0, dtype=np.float32), resampler, last=True)


def _readable(blocks: Iterator[np.ndarray], duration: _Duration) -> Iterator[np.ndarray]:
    """``blocks``, with a file that cannot be decoded past some point (a corrupt FLAC frame) as a 400.

    :raises BatchError: 400 ``invalid_audio``, saying how far the file could be read.
    """
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except Exception as exc:
            raise BatchError(
                400,
                "invalid_audio",
                "Unreadable audio",
                f"the upload could not be decoded after {duration.seconds:.1f} s of its audio ({exc}); "
                "the file is damaged: convert it again from its source, or send it as WAV",
            ) from exc
        yield block


def _raw_blocks(path: str, encoding: str, rate: int, duration: _Duration) -> Generator[bytes, None, None]:
    width = SAMPLE_BYTES[encoding]
    decode = decoder_for(encoding)
    resampler = _resampler(rate)
    block_bytes = int(rate * BLOCK_SECONDS) * width
    with open(path, "rb") as handle:
        while data := handle.read(block_bytes):
            usable = len(data) - len(data) % width
            mono = decode(data[:usable]).astype(np.float32) / 32768.0
            duration.seconds += len(mono) / rate
            yield _to_engine(mono, resampler)
    if resampler is not None:
        yield _to_engine(np.zeros(0, dtype=np.float32), resampler, last=True)


def _resampler(rate: int) -> Any:
    if rate == ENGINE_SAMPLE_RATE:
        return None
    import soxr

    return soxr.ResampleStream(rate, ENGINE_SAMPLE_RATE, 1, dtype="float32")


def _to_engine(mono: np.ndarray, resampler: Any, last: bool = False) -> bytes:
    if resampler is not None:
        mono = resampler.resample_chunk(mono, last=last)
    return np.clip(np.round(mono * 32768.0), -32768, 32767).astype("<i2").tobytes()
