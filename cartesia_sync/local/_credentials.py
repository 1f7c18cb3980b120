"""The key a handshake offers, read strictly: one key, in one place, in printable ASCII.

A handshake may carry the key as ``X-API-Key: <key>``, ``Authorization: Bearer
<key>``, the ``api_key`` query parameter, or (an access token) the
``access_token`` query parameter. Anything else is refused before the
key is compared, with a 4xx the client can act on:

- the same header twice, or ``api_key`` twice in the query: 400 ``duplicate_credentials``
  (which copy would count is a guess, and a wrong guess lets a bad key in);
- the key in more than one place: 400 ``ambiguous_credentials``, for the same reason;
- a value with characters outside printable ASCII (non-ASCII, control
  characters, spaces inside the key): 400 ``invalid_credentials``;
- an ``Authorization`` header that is not ``Bearer <key>``: 401 when the server
  needs a key (the client sent none it could use).

These checks apply whether or not the server needs a key: a client that sends
a malformed key is told so rather than let through by chance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["CredentialError", "OfferedKey", "offered_key"]

_PLACES = (("X-API-Key", "the X-API-Key header"), ("Authorization", "the Authorization header"))


class CredentialError(Exception):
    """A handshake's credentials are malformed; becomes an HTTP 4xx with a JSON body."""

    def __init__(self, status: int, error_code: str, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.title = title
        self.message = message


@dataclass(frozen=True)
class OfferedKey:
    """The key a handshake offers.

    :ivar key: the key, or ``None`` when none was sent or the Authorization
        header was not ``Bearer <key>``.
    :ivar problem: why a sent credential is unusable (shown to the client), else ``""``.
    """

    key: str | None
    problem: str = ""


def offered_key(query: str, headers: Any) -> OfferedKey:
    """The one key of a handshake (``headers`` is a ``websockets`` ``Headers``).

    :raises CredentialError: duplicate, ambiguous or non-ASCII credentials.
    """
    found: list[tuple[str, str, str]] = []  # (name, where, value)
    for name, where in _PLACES:
        values = headers.get_all(name)
        if len(values) > 1:
            raise _duplicate(where, len(values))
        if values:
            found.append((name, where, values[0]))
    pairs = parse_qsl(query, keep_blank_values=True)
    for place in ("api_key", "access_token"):
        query_keys = [value for name, value in pairs if name == place]
        if len(query_keys) > 1:
            raise _duplicate(f"the {place} query parameter", len(query_keys))
        if query_keys:
            found.append((place, f"the {place} query parameter", query_keys[0]))
    if len(found) > 1:
        places = " and ".join(where for _, where, _ in found)
        raise CredentialError(
            400,
            "ambiguous_credentials",
            "Ambiguous credentials",
            f"the key was sent in {places}; send it one way only "
            "(X-API-Key, Authorization: Bearer, api_key or access_token)",
        )
    if not found:
        return OfferedKey(None)
    name, where, value = found[0]
    if name == "Authorization":
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            return OfferedKey(None, "the Authorization header must read 'Bearer <key>'")
        value = token.strip()
    if not (value.isascii() and value.isprintable() and " " not in value):
        raise CredentialError(
            400,
            "invalid_credentials",
            "Invalid credentials",
            f"the key in {where} has characters an API key cannot have; keys are printable ASCII without spaces",
        )
    return OfferedKey(value)


def _duplicate(where: str, count: int) -> CredentialError:
    return CredentialError(
        400,
        "duplicate_credentials",
        "Duplicate credentials",
        f"{where} appears {count} times; send the key once",
    )
