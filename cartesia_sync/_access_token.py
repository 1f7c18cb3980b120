"""Minting short-lived access tokens with ``POST /access-token``, for clients that must not hold the API key.

A backend that holds the key calls :func:`create_access_token` and hands the
token to a client (a browser, a device), which uses it with
``Client(access_token=...)`` until it expires.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable

import httpx

from ._config import API_KEY_ENV, DEFAULT_CARTESIA_VERSION, _check_token
from ._endpoints import BASE_URL_ENV, DEFAULT_BASE_URL, check_plain_http, normalise_base_url
from ._http import HttpCall, send_with_retries
from ._secrets import ApiKey
from .errors import ConfigurationError, ProtocolError

__all__ = ["create_access_token", "GRANTS", "MAX_EXPIRES_IN"]

#: What a token may be allowed to do.
GRANTS = ("stt", "tts", "agent")
#: The longest lifetime the API grants, in seconds.
MAX_EXPIRES_IN = 3600


def create_access_token(
    api_key: str | None = None,
    *,
    grants: Iterable[str] = ("stt",),
    expires_in: int = 3600,
    base_url: str | None = None,
    cartesia_version: str = DEFAULT_CARTESIA_VERSION,
    timeout: float = 30.0,
    max_retries: int = 2,
) -> str:
    """Mint an access token with ``POST {base_url}/access-token``; return it.

    :param api_key: the API key that signs the request; default
        ``$CARTESIA_API_KEY``. Sent as ``Authorization: Bearer``.
    :param grants: what the token may do, among ``"stt"`` (every STT
        endpoint), ``"tts"`` and ``"agent"``.
    :param expires_in: its lifetime in seconds, 1 to 3600.
    :param base_url: the API; default ``$CARTESIA_BASE_URL`` or
        ``https://api.cartesia.ai``.
    :param cartesia_version: the ``Cartesia-Version`` header.
    :param timeout: seconds for each step of the request.
    :param max_retries: tries after the first on 408/409/429/5xx.
    :returns: the token, for ``Client(access_token=...)``. Keep it as secret
        as the key until it expires.
    :raises ConfigurationError: no key, or a bad grant or lifetime (checked
        before any request).
    :raises AuthenticationError: the key was refused.
    :raises CartesiaSyncError: any other failure (status, body excerpt and
        request id on the error; never the key).
    """
    raw_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    if not raw_key:
        raise ConfigurationError(f"minting an access token needs an API key: set {API_KEY_ENV} or pass api_key=")
    _check_token(raw_key, "the API key", secret=True)
    _check_token(cartesia_version, "cartesia_version")
    key = ApiKey(raw_key)
    if isinstance(grants, str):
        grants = (grants,)
    chosen = tuple(grants)
    unknown = [grant for grant in chosen if grant not in GRANTS]
    if unknown or not chosen:
        raise ConfigurationError(f"grants must be some of {', '.join(GRANTS)}, got {list(chosen)!r}")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise ConfigurationError(f"expires_in must be a whole number of seconds from 1 to 3600, got {expires_in!r}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    base = normalise_base_url(base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)
    check_plain_http(base, True)
    url = base + "/access-token"
    body = {"grants": {grant: True for grant in chosen}, "expires_in": expires_in}
    call = HttpCall(
        method="POST",
        url=url,
        shown_url=url,
        headers={"Cartesia-Version": cartesia_version, "Authorization": f"Bearer {key.reveal()}"},
        build=lambda: {"json": body},
        timeout=httpx.Timeout(timeout),
        reply_deadline=timeout,
        secret=key,
        what="creating an access token",
    )
    with httpx.Client(verify=ssl.create_default_context(), timeout=call.timeout) as client:
        reply = send_with_retries(client, call, max_retries)
    token = reply.body.get("token") if isinstance(reply.body, dict) else None
    if not isinstance(token, str) or not token:
        raise ProtocolError(f"{url} answered without a 'token' string", raw=None)
    _check_token(token, "the access token from the server", secret=True)
    return token
