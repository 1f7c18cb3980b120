"""One base URL for every route of the API: where streaming, batch and token requests go.

The hosted API serves every route under ``https://api.cartesia.ai``:
``/stt/websocket`` (wss), ``/stt/turns/websocket`` (wss), ``POST /stt`` and
``POST /access-token``. :func:`resolve_endpoints` derives them all from one
base URL, or keeps a streaming URL given on its own (``url=``), in which case
the other routes are unknown and :attr:`Endpoints.offers_batch` is False.

Whether a server offers batch transcription is a capability of the server,
decided here and only here: a base URL means the whole API (the hosted one,
a proxy of it, or a local server that declares it serves every route); a bare
streaming URL means streaming alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ._config import URL_ENV, is_loopback_host
from .errors import ConfigurationError

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "Endpoints",
    "resolve_endpoints",
    "normalise_base_url",
    "check_plain_http",
]

#: Where the base URL comes from when not passed.
BASE_URL_ENV = "CARTESIA_BASE_URL"
DEFAULT_BASE_URL = "https://api.cartesia.ai"

_STREAM_PATH = "/stt/websocket"
_TURNS_PATH = "/stt/turns/websocket"
_BATCH_PATH = "/stt"
_TOKEN_PATH = "/access-token"
_WS_SCHEME = {"http": "ws", "https": "wss"}


@dataclass(frozen=True)
class Endpoints:
    """The URLs of one server's routes.

    :ivar stream: the streaming WebSocket (``/stt/websocket``), always known.
    :ivar base_url: the base of every other route, or ``None`` when only the
        streaming URL was given (``url=`` alone): then there is no batch,
        turns or token route.
    """

    stream: str
    base_url: str | None

    @property
    def offers_batch(self) -> bool:
        """True when the server is known to serve ``POST /stt``."""
        return self.base_url is not None

    @property
    def batch(self) -> str | None:
        """``POST`` here to transcribe a whole file, or ``None``."""
        return self._route(_BATCH_PATH)

    @property
    def access_token(self) -> str | None:
        """``POST`` here to mint an access token, or ``None``."""
        return self._route(_TOKEN_PATH)

    @property
    def turns(self) -> str | None:
        """The turn-detecting WebSocket (``/stt/turns/websocket``), or ``None``."""
        if self.base_url is None:
            return None
        return _websocket_url(self.base_url, _TURNS_PATH)

    def _route(self, path: str) -> str | None:
        return None if self.base_url is None else self.base_url + path


def resolve_endpoints(url: str | None, base_url: str | None) -> Endpoints:
    """Where each route is, from the arguments first, then the environment, then the hosted API.

    ``url`` (argument, else ``$CARTESIA_STT_URL``) names the streaming
    endpoint alone; ``base_url`` (argument, else ``$CARTESIA_BASE_URL``) names
    every route. With both, streaming goes to ``url`` and the rest to
    ``base_url``. With neither, the hosted API.

    :raises ConfigurationError: the base URL is malformed.
    """
    if url is None and base_url is None:
        url = os.environ.get(URL_ENV) or None
        base_url = os.environ.get(BASE_URL_ENV) or None
        if url is None and base_url is None:
            base_url = DEFAULT_BASE_URL
    base = normalise_base_url(base_url) if base_url is not None else None
    if url is not None:
        return Endpoints(stream=url, base_url=base)
    assert base is not None
    return Endpoints(stream=_websocket_url(base, _STREAM_PATH), base_url=base)


def normalise_base_url(base_url: object) -> str:
    """Check a base URL (``http(s)://host[:port][/prefix]``) and return it without a trailing slash.

    :raises ConfigurationError: it is not a string, has another scheme, user
        info, a query or fragment, no host, or a bad port.
    """
    if not isinstance(base_url, str) or not base_url:
        raise ConfigurationError(f"base_url must be a non-empty string such as {DEFAULT_BASE_URL!r}")
    parts = urlsplit(base_url)
    shown = urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
    if parts.scheme not in _WS_SCHEME:
        hint = " (the streaming endpoint alone goes in url=)" if parts.scheme in ("ws", "wss") else ""
        raise ConfigurationError(
            f"base_url must start with https:// or http://, got {shown!r}{hint}; the hosted API is {DEFAULT_BASE_URL}"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("base_url must not carry a user name or password; pass api_key= instead")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment: {shown!r}")
    if not parts.hostname:
        raise ConfigurationError(f"base_url {shown!r} has no host")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"base_url {shown!r} has a bad port: {exc}") from None
    return base_url.rstrip("/")


def check_plain_http(base_url: str | None, has_credential: bool) -> None:
    """Refuse to send a key or token over plain ``http://`` to another machine, as for ``ws://``.

    :raises ConfigurationError: ``base_url`` is ``http://`` to a host off this machine and a credential would go there.
    """
    if base_url is None or not has_credential:
        return
    parts = urlsplit(base_url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise ConfigurationError(
            f"refusing to send an API key or access token over unencrypted http:// to {parts.hostname}; "
            "use https://, or http:// only to a loopback address (127.0.0.1, ::1, localhost)"
        )


def _websocket_url(base: str, path: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((_WS_SCHEME[parts.scheme], parts.netloc, parts.path + path, "", ""))
