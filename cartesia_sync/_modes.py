"""Which path a whole transcription takes (batch upload or stream), and the streaming path itself.

``mode="auto"`` uploads with ``POST /stt`` when three things hold: the whole
input is at hand (a path, ``bytes``, a numpy array: not a generator of
chunks), the model is in the ink-whisper family (the only one the batch
endpoint takes), and the server offers batch (see
:attr:`Endpoints.offers_batch`). Otherwise it streams.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._result import TranscriptionResult
from .errors import CartesiaSyncError, ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from ._client import Client
    from ._endpoints import Endpoints
    from ._session import Session

__all__ = ["MODES", "choose_mode", "is_whole", "in_batch_family", "transcribe_stream"]

MODES = ("auto", "batch", "stream")
_BATCH_FAMILY = "ink-whisper"


def is_whole(source: object) -> bool:
    """True for input whose whole is at hand: a path, bytes-like or a numpy array."""
    return isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray))


def in_batch_family(model: str) -> bool:
    """True for ``ink-whisper`` and its dated versions (``ink-whisper-2025-06-04``)."""
    return model == _BATCH_FAMILY or model.startswith(_BATCH_FAMILY + "-")


def choose_mode(mode: object, source: object, model: str, endpoints: Endpoints) -> str:
    """``"batch"`` or ``"stream"`` for ``mode`` (``"auto"``, ``"batch"``, ``"stream"``).

    :raises ConfigurationError: an unknown mode, or ``"batch"`` for input that
        is not whole (the route itself is checked when uploading).
    """
    if mode not in MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if mode == "auto":
        return "batch" if is_whole(source) and in_batch_family(model) and endpoints.offers_batch else "stream"
    if mode == "batch" and not is_whole(source):
        raise ConfigurationError(
            f"mode='batch' uploads a whole input (a path, bytes or a numpy array), got {type(source).__name__}; "
            "use mode='stream' for chunks that arrive over time"
        )
    return str(mode)


def transcribe_stream(
    client: Client,
    source: Any,
    *,
    realtime: None | bool | float,
    sample_rate: int | None,
    timeout: float | None,
) -> TranscriptionResult:
    """Stream ``source`` over the WebSocket and return the result; a failure carries ``partial_result``.

    ``source`` may also be an iterable of chunks (``bytes`` or arrays), sent as they come.
    """
    session: Session | None = None
    try:
        session = client.connect(realtime=realtime)
        with session:
            if isinstance(source, (str, os.PathLike)):
                session.send_file(source)
            elif is_whole(source) or not isinstance(source, Iterable):
                session.send(source, sample_rate=sample_rate)
            else:
                for chunk in source:
                    session.send(chunk, sample_rate=sample_rate)
            session.close(timeout)
    except (CartesiaSyncError, KeyboardInterrupt) as error:
        if session is not None and getattr(error, "partial_result", None) is None:
            error.partial_result = _with_language(session.result(), session)  # type: ignore[union-attr]
        raise
    return _with_language(session.result(), session)


def _with_language(result: TranscriptionResult, session: Session) -> TranscriptionResult:
    return dataclasses.replace(result, language=session.settings.language)
