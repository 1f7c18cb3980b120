"""The embedded fallback: with no API key and no URL anywhere, transcribe on a local server started for the job.

A first run on a fresh machine has no key. Rather than trying the hosted API
without one (and failing on a 401 or on DNS), :func:`~cartesia_sync.transcribe`
and the ``cartesia-sync`` command start the embedded
:class:`~cartesia_sync.local.LocalServer` (the ``local`` extra) for the job and
say so with one line on stderr. ``Client`` itself never does this: a program
that builds a client chose its endpoint, and gets a clear error instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from ._config import API_KEY_ENV, URL_ENV
from .errors import ConfigurationError

__all__ = ["wants_embedded", "embedded_server"]


def wants_embedded(api_key: str | None, url: str | None) -> bool:
    """True when neither a key nor a URL was given, as an argument or in the environment."""
    return not (api_key or url or os.environ.get(API_KEY_ENV) or os.environ.get(URL_ENV))


@contextlib.contextmanager
def embedded_server(
    engine: str = "pocketsphinx", *, load_entrypoints: bool = True, announce: TextIO | None = None
) -> Iterator[str]:
    """Run the embedded local server for the duration of the block; yields its URL.

    :param engine: the engine to serve (see ``cartesia-sync serve --engine``).
    :param load_entrypoints: let installed plugins offer engines.
    :param announce: where to say that the embedded server is used (default stderr).
    :raises ConfigurationError: the ``local`` extra is not installed.
    """
    try:
        from .local import LocalServer
    except ImportError as exc:
        raise ConfigurationError(
            f"no API key: set {API_KEY_ENV} (or pass api_key=) for the hosted API, or install the embedded "
            f"server with: pip install 'cartesia-sync[local]' (missing: {exc.name})"
        ) from None
    with LocalServer(engine, load_entrypoints=load_entrypoints) as server:
        print(
            f"cartesia-sync: no {API_KEY_ENV} set: using the embedded local server ({engine}) at {server.url}",
            file=announce or sys.stderr,
            flush=True,
        )
        yield server.url
