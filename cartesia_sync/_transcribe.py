"""One call that does it all: upload or stream a file or an array, return the result.

The path (``mode``) is chosen by :meth:`Client.transcribe`. With no API key
and no URL anywhere, the call runs on the embedded local server (see
:mod:`.embedded`) and says so on stderr, as the command line does.
A failure part-way never loses what was recognised: the error (or the
``KeyboardInterrupt`` of a Ctrl-C) carries it as ``partial_result``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from ._client import Client
from ._embedded import embedded_endpoint, wants_embedded
from ._result import TranscriptionResult
from .errors import ConfigurationError

__all__ = ["TranscriptionResult", "transcribe"]


def transcribe(
    audio: str | os.PathLike[str] | Any,
    realtime: None | bool | float = None,
    *,
    sample_rate: int | None = None,
    timeout: float | None = None,
    local: bool | None = None,
    mode: str = "auto",
    **client_kwargs: Any,
) -> TranscriptionResult:
    """Transcribe a whole file or array and return the text and words.

    :param audio: a path to an audio file, raw s16le ``bytes`` at the session
        rate, or a numpy array (then say its ``sample_rate`` if it differs).
    :param realtime: pacing, as for :meth:`Client.connect`.
    :param sample_rate: the rate of an array or bytes passed as ``audio``.
    :param timeout: streaming: seconds the server may stay silent before the
        end (see :meth:`Session.close`); default ``close_timeout``. Batch: the
        wait for the reply (see :meth:`Client.transcribe`).
    :param local: ``None`` (default) uses the embedded local server when no
        API key and no URL is given (argument or environment) and says so on
        stderr; ``True`` always uses it; ``False`` never does (no key for the
        hosted API is then a :class:`ConfigurationError`).
    :param mode: ``"auto"``, ``"batch"`` or ``"stream"``, as for
        :meth:`Client.transcribe`. The embedded local server serves both, so
        ``"auto"`` uploads a whole input to it.
    :param client_kwargs: anything :class:`Client` takes (``api_key``, ``url``,
        ``model``, ``plugins``...).
    :raises CartesiaSyncError: any failure, with what went wrong; once audio
        was sent, ``error.partial_result`` holds what was recognised.
    :raises KeyboardInterrupt: Ctrl-C; it too carries ``partial_result`` once
        a session was open.
    """
    with _endpoint(local, client_kwargs, mode) as endpoint:
        client_kwargs.update(endpoint)
        client = Client(**client_kwargs)
        return client.transcribe(audio, mode=mode, realtime=realtime, sample_rate=sample_rate, timeout=timeout)


@contextlib.contextmanager
def _endpoint(local: bool | None, client_kwargs: dict[str, Any], mode: str) -> Iterator[dict[str, str]]:
    """The client arguments that point at the embedded server when it is to be used, else none."""
    if local is None:
        local = wants_embedded(
            client_kwargs.get("api_key") or client_kwargs.get("access_token"),
            client_kwargs.get("url") or client_kwargs.get("base_url"),
        )
    if not local:
        yield {}
        return
    if client_kwargs.get("url") or client_kwargs.get("base_url"):
        raise ConfigurationError("local=True runs the embedded server: pass url=/base_url= or local=True, not both")
    with embedded_endpoint(load_entrypoints=client_kwargs.get("load_entrypoints", True)) as endpoint:
        if mode == "batch" and "base_url" not in endpoint:
            raise ConfigurationError(  # a server made by an engine plugin may declare no batch route
                "this embedded local server does not offer batch transcription (POST /stt): use mode='auto' or "
                "mode='stream' with it, or set CARTESIA_API_KEY to upload to the hosted API"
            )
        yield endpoint
