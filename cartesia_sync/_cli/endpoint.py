"""Which endpoint a command talks to: the URL given, the hosted API, or an embedded server started for it."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

from .._config import API_KEY_ENV, URL_ENV
from .._embedded import embedded_server

__all__ = ["endpoint"]


@contextlib.contextmanager
def endpoint(args: argparse.Namespace) -> Iterator[str | None]:
    """The URL to use: the one given, the hosted API (``None``), or an embedded server started here."""
    url = args.url or os.environ.get(URL_ENV)
    if url or os.environ.get(API_KEY_ENV):
        yield url
        return
    with embedded_server(args.engine, load_entrypoints=not args.no_plugins) as url:
        yield url
