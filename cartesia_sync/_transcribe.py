"""One call that does it all: connect, send a file or an array, close, return the result.

With no API key and no URL anywhere, the call runs on the embedded local
server (see :mod:`.embedded`) and says so on stderr, as the command line does.
A failure part-way never loses what was recognised: the error (or the
``KeyboardInterrupt`` of a Ctrl-C) carries it as ``partial_result``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from ._client import Client
from ._embedded import embedded_server, wants_embedded
from ._result import TranscriptionResult
from ._session import Session
from .errors import CartesiaSyncError, ConfigurationError

__all__ = ["TranscriptionResult", "transcribe"]


def transcribe(
    audio: str | os.PathLike[str] | Any,
    realtime: None | bool | float = None,
    *,
    sample_rate: int | None = None,
    timeout: float | None = None,
    local: bool | None = None,
    **client_kwargs: Any,
) -> TranscriptionResult:
    """Transcribe a whole file or array and return the text and words.

    :param audio: a path to an audio file, raw s16le ``bytes`` at the session
        rate, or a numpy array (then say its ``sample_rate`` if it differs).
    :param realtime: pacing, as for :meth:`Client.connect`.
    :param sample_rate: the rate of an array or bytes passed as ``audio``.
    :param timeout: seconds the server may stay silent before the end (see
        :meth:`Session.close`); default ``close_timeout``.
    :param local: ``None`` (default) uses the embedded local server when no
        API key and no URL is given (argument or environment) and says so on
        stderr; ``True`` always uses it; ``False`` never does (no key for the
        hosted API is then a :class:`ConfigurationError`).
    :param client_kwargs: anything :class:`Client` takes (``api_key``, ``url``,
        ``model``, ``plugins``...).
    :raises CartesiaSyncError: any failure, with what went wrong; once audio
        was sent, ``error.partial_result`` holds what was recognised.
    :raises KeyboardInterrupt: Ctrl-C; it too carries ``partial_result`` once
        a session was open.
    """
    session: Session | None = None
    try:
        with _endpoint(local, client_kwargs) as url:
            if url is not None:
                client_kwargs["url"] = url
            session = Client(**client_kwargs).connect(realtime=realtime)
            with session:
                if isinstance(audio, (str, os.PathLike)):
                    session.send_file(audio)
                else:
                    session.send(audio, sample_rate=sample_rate)
                session.close(timeout)
    except (CartesiaSyncError, KeyboardInterrupt) as error:
        if session is not None and getattr(error, "partial_result", None) is None:
            error.partial_result = session.result()  # type: ignore[union-attr]
        raise
    return session.result()


@contextlib.contextmanager
def _endpoint(local: bool | None, client_kwargs: dict[str, Any]) -> Iterator[str | None]:
    """The URL of the embedded server when it is to be used, else ``None`` (the client's own choice)."""
    if local is None:
        local = wants_embedded(client_kwargs.get("api_key"), client_kwargs.get("url"))
    if not local:
        yield None
        return
    if client_kwargs.get("url"):
        raise ConfigurationError("local=True runs the embedded server: pass url= or local=True, not both")
    with embedded_server(load_entrypoints=client_kwargs.get("load_entrypoints", True)) as url:
        yield url
