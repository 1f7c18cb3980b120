"""HTTP requests to the API (batch transcription, access tokens): retries, bounded replies, errors.

``httpx`` does the HTTP and the multipart encoding; this module adds what the
official SDK does around it (retries on 408/409/429/5xx and on
``x-should-retry: true``, at most ``max_retries`` times, with jittered
exponential back-off that honours ``Retry-After``), reads replies with a size
cap and a deadline (a server that dribbles its reply cannot hold the caller
forever), and turns failures into this library's errors, with the status,
an excerpt of the body and the request id, and never the credential.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ._retry_after import retry_after_seconds
from ._secrets import ApiKey, redact
from .errors import (
    AuthenticationError,
    CartesiaSyncError,
    ConnectError,
    ConnectionLostError,
    PaymentRequiredError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StreamTimeout,
)

__all__ = ["HttpCall", "send_with_retries", "error_for_status", "RETRY_STATUSES"]

logger = logging.getLogger("cartesia_sync.http")

#: Statuses worth trying again, as the official SDK has them.
RETRY_STATUSES = frozenset({408, 409, 429})
#: Back-off between tries: 0.5 s, doubling, at most 8 s (the SDK's figures), with jitter.
_FIRST_DELAY = 0.5
_MAX_DELAY = 8.0
#: The longest ``Retry-After`` obeyed; a longer one fails at once rather than hang the caller.
_MAX_RETRY_AFTER = 60.0
#: Bytes of a reply kept: a transcript of hours of audio with word times is a few MB.
MAX_REPLY_BYTES = 64 * 1024 * 1024
_MAX_ERROR_BYTES = 64 * 1024
_EXCERPT = 500


@dataclass
class HttpCall:
    """One request to make, possibly several times.

    :ivar method: ``"POST"``.
    :ivar url: the full URL, query included (may carry a credential: never shown).
    :ivar shown_url: the same without any credential, for messages.
    :ivar headers: headers, credential included.
    :ivar build: returns the keyword arguments of ``httpx.Client.build_request``
        besides method, URL and headers (``files``, ``data``, ``json``); called
        once per try, so a file is read again from its start.
    :ivar timeout: the httpx timeouts of one try.
    :ivar reply_deadline: seconds allowed for the whole reply once the upload
        is done (the server working, then sending its body).
    :ivar secret: the credential, scrubbed from every message.
    :ivar what: what the request does, for messages (``"batch transcription"``).
    """

    method: str
    url: str
    shown_url: str
    headers: Mapping[str, str]
    build: Callable[[], dict[str, Any]]
    timeout: httpx.Timeout
    reply_deadline: float
    secret: ApiKey | None
    what: str


@dataclass(frozen=True)
class HttpReply:
    """A successful reply: its JSON body and the request id it carried."""

    body: Any
    request_id: str | None
    status_code: int


def send_with_retries(
    client: httpx.Client,
    call: HttpCall,
    max_retries: int,
    on_retry: Callable[[int, float, CartesiaSyncError], None] | None = None,
) -> HttpReply:
    """Make ``call``, trying again on transient failures; return the JSON reply.

    :raises CartesiaSyncError: the mapped error of the last try (see :func:`error_for_status`).
    """
    attempt = 0
    while True:
        try:
            return _send_once(client, call)
        except _Retryable as retryable:
            error = retryable.error
            if attempt >= max_retries:
                raise error from retryable.__cause__
            delay = retryable.retry_after
            if delay is None:
                delay = min(_MAX_DELAY, _FIRST_DELAY * 2**attempt) * (1 - 0.25 * random.random())
            elif delay > _MAX_RETRY_AFTER:
                raise error from retryable.__cause__
            attempt += 1
            logger.info("%s failed (%s); try %d of %d in %.2f s", call.what, error, attempt + 1, max_retries + 1, delay)
            if on_retry is not None:
                on_retry(attempt, delay, error)
            time.sleep(delay)


class _Retryable(Exception):
    """A failure worth another try: carries the error to raise if no try is left."""

    def __init__(self, error: CartesiaSyncError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _send_once(client: httpx.Client, call: HttpCall) -> HttpReply:
    scrub = _scrubber(call.secret)
    request = client.build_request(call.method, call.url, headers=dict(call.headers), **call.build())
    try:
        response = client.send(request, stream=True)
    except httpx.TimeoutException as exc:
        # Not retried: the server may still be working on the upload, and a retry would double the wait.
        phase = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
        error: CartesiaSyncError = StreamTimeout(
            f"{call.what}: timed out {phase} {call.shown_url} ({type(exc).__name__}); raise the timeout for long files"
        )
        raise error from None
    except httpx.ConnectError as exc:
        error = ConnectError(f"{call.what}: cannot connect to {call.shown_url}: {scrub(str(exc))}")
        raise _Retryable(error, None) from None
    except httpx.TransportError as exc:
        error = ConnectionLostError(
            f"{call.what}: the connection to {call.shown_url} failed: {type(exc).__name__}: {scrub(str(exc))}"
        )
        raise _Retryable(error, None) from None
    try:
        limit = MAX_REPLY_BYTES if response.status_code < 400 else _MAX_ERROR_BYTES
        raw = _read_bounded(response, limit, call)
    finally:
        response.close()
    request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
    if response.status_code >= 400:
        error = error_for_status(response.status_code, raw, request_id, call, scrub)
        if isinstance(error, RateLimitError):
            error.retry_after = _retry_after(response.headers)
        if _should_retry(response):
            raise _Retryable(error, _retry_after(response.headers))
        raise error
    try:
        body = json.loads(raw)
    except ValueError:
        raise ProtocolError(
            f"{call.what}: {call.shown_url} answered HTTP {response.status_code} with a body that is not JSON",
            raw=_excerpt(raw, scrub),
        ) from None
    if isinstance(body, dict) and request_id is None and isinstance(body.get("request_id"), str):
        request_id = body["request_id"]
    return HttpReply(body, request_id, response.status_code)


def _read_bounded(response: httpx.Response, limit: int, call: HttpCall) -> bytes:
    """The reply body, refused past ``limit`` bytes or past the call's reply deadline."""
    deadline = time.monotonic() + call.reply_deadline
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                if response.status_code >= 400:  # an error's excerpt is enough
                    chunks.append(chunk[: max(0, limit - (size - len(chunk)))])
                    break
                raise ProtocolError(
                    f"{call.what}: the reply from {call.shown_url} is larger than {limit // (1024 * 1024)} MiB; "
                    "that is not a transcript"
                )
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise StreamTimeout(
                    f"{call.what}: the reply from {call.shown_url} took longer than {call.reply_deadline:g} s to arrive"
                )
    except httpx.TimeoutException:
        raise StreamTimeout(
            f"{call.what}: the reply from {call.shown_url} stalled for {call.timeout.read} s; raise the timeout"
        ) from None
    except httpx.TransportError as exc:
        raise ConnectionLostError(
            f"{call.what}: the connection to {call.shown_url} broke while reading the reply: {type(exc).__name__}"
        ) from None
    return b"".join(chunks)


def _should_retry(response: httpx.Response) -> bool:
    flag = response.headers.get("x-should-retry", "").lower()
    if flag == "true":
        return True
    if flag == "false":
        return False
    return response.status_code in RETRY_STATUSES or response.status_code >= 500


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from ``Retry-After-Ms`` or ``Retry-After`` (seconds or an HTTP date), or ``None``."""
    return retry_after_seconds(headers.get("retry-after-ms"), headers.get("retry-after"))


def error_for_status(
    status: int, raw: bytes, request_id: str | None, call: HttpCall, scrub: Callable[[str], str]
) -> CartesiaSyncError:
    """The error for a refused request: 401/403, 402 and 429 as for a refused handshake, any other status a
    :class:`ServerError` with the fields of the structured error body (or its text)."""
    text = _excerpt(raw, scrub)
    fields: dict[str, Any] = {}
    try:
        parsed = json.loads(raw)
        if isinstance(parsed, dict):
            fields = parsed
    except ValueError:
        pass
    message = _field(fields, "message") or _field(fields, "error") or text or f"HTTP {status}"
    rid = request_id or _field(fields, "request_id")
    where = f"{call.what} refused with HTTP {status} by {call.shown_url}"
    network: type[ConnectError] | None = {
        401: AuthenticationError,
        403: AuthenticationError,
        402: PaymentRequiredError,
        429: RateLimitError,
    }.get(status)
    if network is not None:
        advice = {
            AuthenticationError: "check the API key or access token (a token may have expired or lack the stt grant)",
            PaymentRequiredError: "the account has no credits left",
            RateLimitError: "too many requests; try again later",
        }[network]
        error: CartesiaSyncError = network(
            f"{where}: {scrub(message)}; {advice}", status_code=status, body=text, request_id=rid
        )
        return error
    return ServerError(
        f"{where}: {scrub(message)}",
        status_code=status,
        error_code=_field(fields, "error_code"),
        title=_field(fields, "title"),
        request_id=rid,
        doc_url=_field(fields, "doc_url"),
        raw={key: scrub(value) if isinstance(value, str) else value for key, value in fields.items()},
    )


def _field(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) and value else None


def _excerpt(raw: bytes, scrub: Callable[[str], str]) -> str:
    text = scrub(raw[: _EXCERPT * 4].decode("utf-8", errors="replace")).strip()
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


def _scrubber(secret: ApiKey | None) -> Callable[[str], str]:
    return lambda text: redact(text, secret)
