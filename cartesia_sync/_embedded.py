"""The embedded fallback: with no API key and no URL anywhere, transcribe on a local server started for the job.

A first run on a fresh machine has no key. Rather than trying the hosted API
without one (and failing on a 401 or on DNS), :func:`~cartesia_sync.transcribe`
and the ``cartesia-sync`` command start the embedded
:class:`~cartesia_sync.local.LocalServer` (the ``local`` extra) for the job and
say so with one line on stderr. ``Client`` itself never does this: a program
that builds a client chose its endpoint, and gets a clear error instead.

Which routes the embedded server offers is its own declaration, read in one
place (:func:`server_endpoint`): a server whose ``routes`` include
``"batch"`` is reached through its ``base_url`` (every route, so
``mode="auto"`` may upload to it); any other through its streaming ``url``
alone (so ``auto`` streams, and ``mode="batch"`` is refused).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from ._config import API_KEY_ENV, URL_ENV
from ._endpoints import BASE_URL_ENV
from .errors import ConfigurationError

__all__ = ["wants_embedded", "embedded_server", "embedded_endpoint", "server_endpoint"]


def wants_embedded(api_key: str | None, url: str | None) -> bool:
    """True when neither a key (or token) nor a URL was given, as an argument or in the environment."""
    return not (
        api_key or url or os.environ.get(API_KEY_ENV) or os.environ.get(URL_ENV) or os.environ.get(BASE_URL_ENV)
    )


def server_endpoint(server: Any) -> dict[str, str]:
    """The ``Client`` arguments that reach a local server: its ``base_url`` if it declares the batch route
    among its ``routes``, else its streaming ``url`` alone."""
    routes = getattr(server, "routes", ("stream",))
    base_url = getattr(server, "base_url", None)
    if "batch" in routes and isinstance(base_url, str):
        return {"base_url": base_url}
    return {"url": server.url}


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
    with _running(engine, load_entrypoints, announce) as server:
        yield server.url


@contextlib.contextmanager
def embedded_endpoint(
    engine: str = "pocketsphinx", *, load_entrypoints: bool = True, announce: TextIO | None = None
) -> Iterator[dict[str, str]]:
    """Like :func:`embedded_server`, yielding the ``Client`` arguments that reach it (:func:`server_endpoint`)."""
    with _running(engine, load_entrypoints, announce) as server:
        yield server_endpoint(server)


@contextlib.contextmanager
def _running(engine: str, load_entrypoints: bool, announce: TextIO | None) -> Iterator[Any]:
    try:
        from .local import LocalServer
    except ImportError as exc:
        raise ConfigurationError(
            f"no API key: set {API_KEY_ENV} (or pass api_key=) for the hosted API, or install the embedded "
            f"server with: pip install 'cartesia-sync[local]' (missing: {exc.name})"
        ) from None
    with LocalServer(engine, load_entrypoints=load_entrypoints) as server:
        print(
            f"cartesia-sync: no {API_KEY_ENV} set: using the embedded local server ({engine}) at {server.base_url}",
            file=announce or sys.stderr,
            flush=True,
        )
        yield server
