"""The exception tree of cartesia_sync.

Every exception the library raises on purpose derives from
:class:`CartesiaSyncError`, so ``except CartesiaSyncError`` catches them all::

    CartesiaSyncError
     ├─ ConfigurationError     bad or missing settings; raised before any socket opens
     ├─ NetworkError           the network or the server's end of it failed; .status_code, .body,
     │   │                         .request_id
     │   ├─ ConnectError           the connection could not be opened (handshake, DNS, TCP, TLS)
     │   │   ├─ AuthenticationError    HTTP 401/403 (handshake or request): the key or token was refused
     │   │   ├─ PaymentRequiredError   HTTP 402 (handshake or request): no credits left
     │   │   └─ RateLimitError         HTTP 429 (handshake or request): too many connections or requests
     │   └─ ConnectionLostError    an open connection dropped in the middle of a session;
     │                             .close_code, .close_reason
     ├─ ServerError            the server sent an ``error`` message, or refused an HTTP request
     │                         (batch, token) with another status; .status_code, .error_code,
     │                         .title, .request_id, .doc_url
     ├─ ProtocolError          a server message that could not be understood; .raw
     ├─ StreamTimeout          flush_done or done did not arrive in time, or the send
     │                         buffer stayed full for too long
     ├─ SessionClosedError     the session was used after it closed
     ├─ AudioFormatError       audio that cannot be converted; says what was found and
     │                         what was expected
     └─ PluginError            a hook implementation raised; .hook_name, .plugin_name,
                               the original exception in ``__cause__``

Errors raised once audio was sent carry what was recognised before them in
``partial_result``.

No exception name shadows a builtin (there is no ``ConnectionError`` or
``TimeoutError`` here), and no message ever contains the API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ._result import TranscriptionResult

__all__ = [
    "CartesiaSyncError",
    "ConfigurationError",
    "NetworkError",
    "ConnectError",
    "AuthenticationError",
    "PaymentRequiredError",
    "RateLimitError",
    "ConnectionLostError",
    "ServerError",
    "ProtocolError",
    "StreamTimeout",
    "SessionClosedError",
    "AudioFormatError",
    "PluginError",
]


class CartesiaSyncError(Exception):
    """Base class of every error raised by cartesia_sync.

    :ivar partial_result: on an error raised by ``transcribe()`` or by
        ``Session.close()``/``finalize()``, the
        :class:`~cartesia_sync.TranscriptionResult` recognised before the
        failure (``complete`` is False), so that nothing recognised is lost;
        ``None`` on errors raised before any audio was sent.
    """

    partial_result: TranscriptionResult | None = None


class ConfigurationError(CartesiaSyncError, ValueError):
    """A setting is missing, malformed or unsafe; raised before any socket opens."""


class NetworkError(CartesiaSyncError):
    """The network, or the server's end of the connection, failed: the base of :class:`ConnectError` and
    :class:`ConnectionLostError`, for code that treats both alike (``except NetworkError``).

    :param message: what went wrong and what to do about it.
    :param status_code: the HTTP status of a refused handshake or request, if there was one.
    :param body: the body of the refused response, decoded as text (an excerpt), if there was one.
    :param request_id: the server's id for a refused HTTP request, if it gave one.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, body: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.request_id = request_id


class ConnectError(NetworkError):
    """The WebSocket could not be opened: a refused handshake, DNS, TCP or TLS failure, or a timeout.

    Raised by ``Client.connect()`` (and by HTTP requests: batch transcription,
    ``create_access_token``), never by a session already open, so ``except
    ConnectError`` around ``connect()`` does not also catch a connection that
    drops later (that is :class:`ConnectionLostError`).
    """


class AuthenticationError(ConnectError):
    """The server refused the API key or access token (HTTP 401 or 403, at the handshake or to a request)."""


class PaymentRequiredError(ConnectError):
    """The account has no credits left (HTTP 402, at the handshake or to a request)."""


class RateLimitError(ConnectError):
    """Too many concurrent connections or requests (HTTP 429, at the handshake or to a request).

    :ivar retry_after: seconds the server asked to wait (its ``Retry-After`` or
        ``Retry-After-Ms`` header), or ``None`` when it did not say.
    """

    retry_after: float | None = None


class ConnectionLostError(NetworkError):
    """An open connection dropped before the session ended (and a reconnect, if on, did not get past it).

    ``status_code`` and ``body`` are those of the last refused reconnect
    handshake, if one was refused; otherwise ``None``.

    :param close_code: the WebSocket close code, if the server sent one.
    :param close_reason: the close reason, if the server sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        close_code: int | None = None,
        close_reason: str = "",
        status_code: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.close_code = close_code
        self.close_reason = close_reason


class ServerError(CartesiaSyncError):
    """The server sent an ``error`` message; the session cannot go on.

    The fields follow every error shape the API has used (see the wire
    reference): ``message`` or ``error`` for the text, ``status_code`` or
    ``code`` for the status.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        title: str | None = None,
        request_id: str | None = None,
        doc_url: str | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.title = title
        self.request_id = request_id
        self.doc_url = doc_url
        self.raw = dict(raw) if raw is not None else {}

    def __str__(self) -> str:
        parts = []
        if self.status_code is not None:
            parts.append(str(self.status_code))
        if self.error_code:
            parts.append(self.error_code)
        prefix = f"server error ({' '.join(parts)})" if parts else "server error"
        title = f"{self.title}: " if self.title and self.title not in self.message else ""
        return f"{prefix}: {title}{self.message}"


class ProtocolError(CartesiaSyncError):
    """A server message could not be understood (bad JSON, binary frame, missing fields).

    :param raw: the offending frame, shortened to its first 200 characters and "...".
    """

    def __init__(self, message: str, *, raw: Any = None) -> None:
        super().__init__(message)
        self.raw = raw


class StreamTimeout(CartesiaSyncError):
    """The server did not answer in time, or the send buffer stayed full too long."""


class SessionClosedError(CartesiaSyncError):
    """The session was used after it was closed or after it failed."""


class AudioFormatError(CartesiaSyncError, ValueError):
    """Audio that cannot be converted to the session's format.

    The message says what was found and what was expected.
    """


class PluginError(CartesiaSyncError):
    """A plugin's hook implementation raised; the original is in ``__cause__``.

    :param hook_name: the hook that was being called.
    :param plugin_name: the name the failing plugin is registered under.
    """

    def __init__(self, hook_name: str, plugin_name: str | None = None, detail: str = "") -> None:
        who = f"plugin {plugin_name!r}" if plugin_name else "a plugin"
        text = f"{who} raised in {hook_name}"
        if detail:
            text += f": {detail}"
        super().__init__(text)
        self.hook_name = hook_name
        self.plugin_name = plugin_name
