"""Whether the local server takes a WebSocket handshake: the route, the credential, capacity and scripted faults.

:class:`HandshakeGate` is what the ``websockets`` server calls for each
handshake (its ``process_request``): it counts the handshake among the
server's requests (for the scenario's faults), records it when asked (with
keys masked unless told otherwise), and answers with an HTTP refusal in the
hosted API's JSON shape, or ``None`` to go on with the upgrade. Also here: the
filter that masks keys in the handshake lines ``websockets`` logs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._secrets import ApiKey
from ._admission import Admission
from ._credentials import CredentialError, offered_key
from ._http_routes import check_stt_credential, status_body
from ._recording import ConnectionRecord
from ._scenario import Scenario
from ._tokens import TokenBook

__all__ = ["HandshakeGate", "STT_PATH", "wire_logger"]

STT_PATH = "/stt/websocket"

#: Credentials as they show in the handshake lines websockets logs at DEBUG.
_CREDENTIALS = re.compile(r"(?i)((?:x-api-key|authorization):\s*)\S.*|((?:api_key|access_token)=)[^&\s]+")


class _CredentialScrubber(logging.Filter):
    """Masks keys in what the websockets library logs about our connections (it logs every header)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _CREDENTIALS.sub(lambda m: (m.group(1) or m.group(2)) + "***", message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


#: The logger handed to websockets for the server's connections.
wire_logger = logging.getLogger("cartesia_sync.local.server.wire")
wire_logger.addFilter(_CredentialScrubber())


class HandshakeGate:
    """The server's answer to each WebSocket handshake (see the module docs).

    :param next_request: counts one request; True when the scenario's faults apply to it.
    :param scenario: the server's scenario, read at each handshake.
    :param api_key: the server's key, read at each handshake (it may be rotated while the server runs).
    :param turns_path: the turns endpoint's path (served beside :data:`STT_PATH`).
    :param record: keeps a :class:`ConnectionRecord` of each handshake; ``None`` records nothing.
    """

    def __init__(
        self,
        *,
        next_request: Callable[[], bool],
        scenario: Callable[[], Scenario],
        turns_path: str,
        admission: Admission,
        max_connections: int,
        api_key: Callable[[], ApiKey | None],
        tokens: TokenBook,
        record: Callable[[ConnectionRecord], None] | None,
        record_secrets: bool,
    ) -> None:
        self._next_request = next_request
        self._scenario = scenario
        self._turns_path = turns_path
        self._admission = admission
        self._max_connections = max_connections
        self._api_key = api_key
        self._tokens = tokens
        self._record = record
        self._record_secrets = record_secrets

    def process_request(self, connection: Any, request: Any) -> Any:
        """Count, record and judge one handshake; sets ``cartesia_faulty`` and ``cartesia_record`` on ``connection``."""
        parts = urlsplit(request.path)
        connection.cartesia_faulty = self._next_request()
        record = None
        if self._record is not None:
            keep = self._record_secrets
            record = ConnectionRecord(
                path=parts.path, query=_masked_query(parts.query, keep), headers=_masked_headers(request, keep)
            )
            self._record(record)
        connection.cartesia_record = record
        refusal = self._refusal(parts, request, connection.cartesia_faulty)
        if refusal is not None and record is not None:
            record.finished.set()
        return refusal

    def _refusal(self, parts: Any, request: Any, faulty: bool) -> Any:
        self._admission.leave_handshake()
        scenario = self._scenario()
        if faulty and scenario.reject_status is not None:
            return _response(scenario.reject_status, scenario.reject_body, scenario.reject_headers)
        if parts.path in ("/", "") and "upgrade" not in request.headers.get("Connection", "").lower():
            return _response(200, status_body().decode())
        if parts.path not in (STT_PATH, self._turns_path):
            return _response(
                404, json.dumps({"title": "Not found", "message": f"use {STT_PATH} or {self._turns_path}"})
            )
        try:
            offered = offered_key(parts.query, request.headers)
        except CredentialError as exc:
            return _error_response(exc.status, exc.error_code, exc.title, exc.message)
        problem = check_stt_credential(self._api_key(), self._tokens, offered.key, offered.problem)
        if problem:
            return _error_response(401, "invalid_api_key", "Unauthorized", problem)
        if not self._admission.admit():
            return _error_response(
                429,
                "concurrency_limited",
                "Too many connections",
                f"this server serves at most {self._max_connections} connections at once; close one or retry later",
            )
        return None


def _error_response(status: int, error_code: str, title: str, message: str) -> Any:
    """An HTTP error in the hosted API's shape: a JSON body with title, message and error_code."""
    return _response(status, json.dumps({"title": title, "message": message, "error_code": error_code}))


def _masked_query(query: str, keep_secrets: bool) -> list[Any]:
    return [
        (name, "***" if name in ("api_key", "access_token") and not keep_secrets else value)
        for name, value in parse_qsl(query, keep_blank_values=True)
    ]


def _masked_headers(request: Any, keep_secrets: bool) -> dict[str, str]:
    secret: set[str] = set() if keep_secrets else {"x-api-key", "authorization"}
    return {name.lower(): ("***" if name.lower() in secret else value) for name, value in request.headers.raw_items()}


def _response(status: int, body: str, extra: tuple[tuple[str, str], ...] = ()) -> Any:
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    data = body.encode()
    headers = Headers(
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Connection", "close"), *extra]
    )
    return Response(status, reason, headers, data)
