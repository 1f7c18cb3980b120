"""The credential wrappers: an API key or an access token that never shows itself in a repr, log or message."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiKey", "AccessToken", "redact"]

_MASK = "***"


class ApiKey:
    """Holds an API key so that printing, logging or formatting it shows only ``***``.

    The raw value is reachable through :meth:`reveal`, which the library calls in
    exactly one place: when it writes the authentication header (or, when the
    caller asked for query authentication, the handshake URL).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"the API key must be a string, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """Return the raw key; for building the handshake only."""
        return self._value

    def __repr__(self) -> str:
        return f"ApiKey({_MASK})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("ApiKey cannot be pickled: it would write the key out")


class AccessToken(ApiKey):
    """Holds a short-lived access token (from ``create_access_token``), masked like a key.

    It is an :class:`ApiKey` so that every place that keeps a key out of
    logs, reprs, messages and event logs keeps a token out of them too; only
    where it is sent differs (``Authorization: Bearer`` over HTTP, the
    ``access_token`` query parameter on WebSockets).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"AccessToken({_MASK})"

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("AccessToken cannot be pickled: it would write the token out")


def redact(text: str, key: ApiKey | None) -> str:
    """Replace every occurrence of the credential's raw value (a key or a token) in ``text`` with ``***``."""
    if key is None:
        return text
    raw = key.reveal()
    if not raw:
        return text
    return text.replace(raw, _MASK)
