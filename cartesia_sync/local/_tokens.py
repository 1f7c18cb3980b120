"""Access tokens of the local server: minted by ``POST /access-token``, accepted on the STT routes.

A token is ``<payload>.<signature>``: the payload is base64url JSON
(``{"grants": [...], "exp": <unix seconds>, "n": <nonce>}``) and the signature
an HMAC-SHA256 of it under a secret drawn when the server is made, so tokens
die with the server and cannot be forged without the secret. The signature is
compared in constant time. The hosted API's tokens are JWTs; clients treat
them as opaque strings, so this simpler form is enough to emulate minting,
grants and expiry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable

__all__ = ["TokenBook", "TokenProblem", "GRANTS", "MAX_EXPIRES_IN"]

#: The grants the hosted API defines.
GRANTS = ("stt", "tts", "agent")
#: The longest a token may live, in seconds, as the hosted API has it.
MAX_EXPIRES_IN = 3600
#: The lifetime of a token minted without ``expires_in`` (the hosted default is undocumented).
DEFAULT_EXPIRES_IN = 300


class TokenProblem(Exception):
    """A token that is malformed, forged, expired, or lacks the grant; the message says which."""


class TokenBook:
    """Mints and checks one server's tokens."""

    def __init__(self) -> None:
        self._secret = os.urandom(32)

    def mint(self, grants: Iterable[str], expires_in: int) -> str:
        """A token holding ``grants`` that expires ``expires_in`` seconds from now."""
        payload = {"grants": sorted(set(grants)), "exp": time.time() + expires_in, "n": os.urandom(6).hex()}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{_b64(self._sign(body))}"

    def looks_like_token(self, value: str) -> bool:
        """True when ``value`` has a token's shape (so it is checked as one rather than as a key)."""
        return value.count(".") == 1 and not value.startswith("sk_")

    def check(self, token: str, grant: str, now: float | None = None) -> None:
        """Accept ``token`` for ``grant``.

        :raises TokenProblem: it is not one of this server's tokens, has expired, or lacks the grant.
        """
        body, _, signature = token.partition(".")
        try:
            offered = base64.urlsafe_b64decode(_padded(signature))
        except (binascii.Error, ValueError):
            offered = b""
        if not hmac.compare_digest(offered, self._sign(body)):
            raise TokenProblem("the access token is not valid for this server; mint one with POST /access-token")
        payload = json.loads(base64.urlsafe_b64decode(_padded(body)))
        if (time.time() if now is None else now) >= float(payload["exp"]):
            raise TokenProblem("the access token has expired; mint a new one with POST /access-token")
        if grant not in payload["grants"]:
            raise TokenProblem(f"the access token lacks the {grant!r} grant; mint one with grants={{{grant!r}: true}}")

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _padded(text: str) -> bytes:
    return (text + "=" * (-len(text) % 4)).encode()
