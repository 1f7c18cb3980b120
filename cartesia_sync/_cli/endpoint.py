"""Which endpoint a command talks to: the URL given, the hosted API, or an embedded server started for it."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import TypedDict

from .._config import URL_ENV
from .._embedded import embedded_endpoint, wants_embedded
from .._endpoints import BASE_URL_ENV

__all__ = ["Endpoint", "endpoint", "given_endpoint"]


class Endpoint(TypedDict, total=False):
    """The ``Client`` arguments naming where to connect; none of them: the hosted API."""

    url: str
    base_url: str


def given_endpoint(args: argparse.Namespace, *, with_environment: bool = False) -> Endpoint:
    """The ``Client`` arguments the command line named: ``--url``, ``--base-url``, both or none.

    Without them a ``Client`` reads ``$CARTESIA_STT_URL`` and
    ``$CARTESIA_BASE_URL`` itself, as :func:`cartesia_sync.transcribe` does.
    ``with_environment`` puts those in explicitly, for workers in other
    processes or machines whose environment may lack them (they are
    addresses, not secrets).
    """
    given = Endpoint()
    url = getattr(args, "url", None)
    base_url = getattr(args, "base_url", None)
    if with_environment and not (url or base_url):
        url, base_url = os.environ.get(URL_ENV), os.environ.get(BASE_URL_ENV)
    if url:
        given["url"] = url
    if base_url:
        given["base_url"] = base_url
    return given


@contextlib.contextmanager
def endpoint(args: argparse.Namespace) -> Iterator[Endpoint]:
    """The ``Client`` arguments to use: the endpoint given, the hosted API (none), or an embedded server.

    The embedded server is reached as :func:`cartesia_sync.transcribe` reaches
    it (its base URL, every route), so ``--mode`` means the same with it as
    with the hosted API.
    """
    given = given_endpoint(args)
    if given or not wants_embedded(None, None):
        yield given
        return
    with embedded_endpoint(args.engine, load_entrypoints=not args.no_plugins) as reach:
        yield Endpoint(**reach)  # type: ignore[typeddict-item]
