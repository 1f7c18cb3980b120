"""The local server's HTTP routes: batch ``POST /stt`` and ``/audio/transcriptions``, tokens, status.

Each answer is an :class:`~._http_front.HttpReply`; errors carry the hosted
API's structured JSON (``error_code``, ``title``, ``message``, ``request_id``)
with the status a client can act on: 400 bad parameters, 401 a bad key or
token, 404/405 an unknown route or method, 413 an upload over the limit,
415 a body that is not a form or not audio, 429 no capacity.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._secrets import ApiKey
from ._batch_job import BatchError, BatchRequest, run_batch
from ._credentials import CredentialError, offered_key
from ._engine import Engine
from ._http_front import HttpReply, HttpRequest
from ._multipart import Form, FormError, FormTooLarge, NotAForm, read_form
from ._recording import ConnectionRecord
from ._scenario import Scenario
from ._tokens import GRANTS, MAX_EXPIRES_IN, TokenBook, TokenProblem
from ._wire_audio import SAMPLE_BYTES

__all__ = ["HttpRoutes", "RouteConfig", "BATCH_PATHS", "status_body", "check_stt_credential"]

logger = logging.getLogger("cartesia_sync.local.server")

BATCH_PATHS = ("/stt", "/audio/transcriptions")
TOKEN_PATH = "/access-token"
#: The largest upload accepted by default: the hosted API's 2 GB.
MAX_UPLOAD_BYTES = 2 * 1000**3
#: The largest ``POST /access-token`` body.
MAX_TOKEN_BODY = 4096


def status_body() -> bytes:
    """The body of ``GET /``: ``{"ok": true, "version": ...}`` as the hosted API answers."""
    from .. import __version__

    return json.dumps({"ok": True, "version": f"cartesia-sync-local {__version__}"}).encode()


def check_stt_credential(api_key: ApiKey | None, tokens: TokenBook, offered: str | None, problem: str = "") -> str:
    """Why ``offered`` may not use an STT route ("" when it may): the key, or a token with the stt grant.

    A server without a key needs no credentials. Keys are compared in constant time.
    """
    if api_key is None:
        return ""
    if offered is None:
        return "Invalid API key" + (f": {problem}" if problem else "")  # the hosted API's words for both
    if hmac.compare_digest(offered.encode(), api_key.reveal().encode()):
        return ""
    if tokens.looks_like_token(offered):
        try:
            tokens.check(offered, "stt")
        except TokenProblem as exc:
            return f"Invalid access token: {exc}"
        return ""
    return "Invalid API key"


@dataclass(frozen=True)
class RouteConfig:
    """What the routes need of their server."""

    engine: Engine
    models: frozenset[str]
    api_key: ApiKey | None
    tokens: TokenBook
    streams: threading.BoundedSemaphore | None
    max_upload_bytes: int
    scenario: Scenario
    #: called once per request: True when the scenario's faults apply to it (and counts it)
    next_request: Callable[[], bool]
    #: take a session slot for this connection (False: the server is full)
    admit: Callable[[], bool]
    record: Callable[[ConnectionRecord], None] | None = None
    record_secrets: bool = False
    request_id: str | None = None
    batch_text: str | None = None
    #: set when the server stops (a batch decode in progress ends)
    stopping: threading.Event | None = None


class _Headers:
    """The ``get_all`` view ``offered_key`` reads, over an :class:`HttpRequest`'s headers."""

    def __init__(self, request: HttpRequest) -> None:
        self._request = request

    def get_all(self, name: str) -> list[str]:
        return self._request.header(name)


class HttpRoutes:
    """Answers the HTTP requests of one connection (they may come several on a kept-alive socket)."""

    def __init__(self, config: RouteConfig) -> None:
        self._config = config
        self._admitted = False
        self._faulty = False

    def answer(self, request: HttpRequest) -> HttpReply:
        """The reply to ``request`` (see the module docstring)."""
        request_id = self._config.request_id or str(uuid.uuid4())
        try:
            return self._route(request, request_id)
        except _Refusal as refusal:
            return _error(refusal.status, refusal.code, refusal.title, refusal.message, request_id, refusal.headers)

    def _route(self, request: HttpRequest, request_id: str) -> HttpReply:
        parts = urlsplit(request.target)
        path = parts.path.rstrip("/") or "/"
        if path == "/":
            if request.method not in ("GET", "HEAD"):
                raise _Refusal(405, "method_not_allowed", "Method not allowed", "use GET /")
            return HttpReply(200, status_body())
        if path not in (*BATCH_PATHS, TOKEN_PATH, "/stt/websocket"):
            raise _Refusal(404, "not_found", "Not found", f"no route {path!r}; see {', '.join(BATCH_PATHS)}")
        if request.method != "POST":
            what = "the WebSocket upgrade (GET)" if path == "/stt/websocket" else "POST"
            raise _Refusal(405, "method_not_allowed", "Method not allowed", f"{path} takes {what}")
        record = self._record(request, parts)
        started = time.monotonic()
        try:
            if path == TOKEN_PATH:
                return self._token(request, parts.query)
            return self._batch(request, parts.query, request_id, record)
        finally:
            delay = self._config.scenario.reply_delay if self._faulty else 0.0
            if delay:
                time.sleep(max(0.0, delay - (time.monotonic() - started)))
            if record is not None:
                record.finished.set()

    # -- routes -----------------------------------------------------------------

    def _token(self, request: HttpRequest, query: str) -> HttpReply:
        key = self._offered(request, query)
        api_key = self._config.api_key
        if api_key is not None and (key is None or not hmac.compare_digest(key.encode(), api_key.reveal().encode())):
            raise _Refusal(401, "invalid_api_key", "Unauthorized", "POST /access-token needs the API key (not a token)")
        self._fault()
        raw = b"".join(_bounded(request, MAX_TOKEN_BODY))
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise _Refusal(400, "invalid_request", "Invalid request", "the body must be JSON") from exc
        if not isinstance(body, dict):
            raise _Refusal(400, "invalid_request", "Invalid request", "the body must be a JSON object")
        grants_field = body.get("grants") or {}
        if not isinstance(grants_field, dict) or any(k not in GRANTS for k in grants_field):
            raise _Refusal(
                400, "invalid_grants", "Invalid grants", f"grants must be an object with the keys {', '.join(GRANTS)}"
            )
        expires_in = body.get("expires_in")
        if expires_in is None:
            from ._tokens import DEFAULT_EXPIRES_IN

            expires_in = DEFAULT_EXPIRES_IN
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 0 < expires_in <= MAX_EXPIRES_IN:
            raise _Refusal(
                400,
                "invalid_expires_in",
                "Invalid expires_in",
                f"expires_in must be a whole number of seconds from 1 to {MAX_EXPIRES_IN}, got {expires_in!r}",
            )
        token = self._config.tokens.mint([k for k, v in grants_field.items() if v], expires_in)
        return HttpReply(200, json.dumps({"token": token}).encode())

    def _batch(self, request: HttpRequest, query: str, request_id: str, record: ConnectionRecord | None) -> HttpReply:
        config = self._config
        try:
            offered = offered_key("", _Headers(request))
        except CredentialError as exc:
            raise _Refusal(exc.status, exc.error_code, exc.title, exc.message) from exc
        problem = check_stt_credential(config.api_key, config.tokens, offered.key, offered.problem)
        if problem:
            raise _Refusal(401, "invalid_api_key", "Unauthorized", problem)
        if not self._admitted:
            if not config.admit():
                raise _Refusal(
                    429, "concurrency_limited", "Too many connections", "this server is at its connection limit"
                )
            self._admitted = True
        self._fault()
        params = _query_params(query)
        limit = config.max_upload_bytes
        if request.content_length is not None and request.content_length > limit + 64 * 1024:
            raise _Refusal(413, "file_too_large", "File too large", _too_large(limit))
        content_type = (request.header("content-type") or [""])[0]
        try:
            form = read_form(request.body, content_type, limit + 64 * 1024)
        except FormTooLarge as exc:
            raise _Refusal(413, "file_too_large", "File too large", _too_large(limit)) from exc
        except FormError as exc:
            status = 415 if isinstance(exc, NotAForm) else 400
            raise _Refusal(status, "invalid_form", "Invalid form", str(exc)) from exc
        try:
            if record is not None:
                record.form = {k: list(v) for k, v in form.fields.items()}
                record.upload_bytes = form.file_bytes
            if form.file_bytes > limit:
                raise _Refusal(413, "file_too_large", "File too large", _too_large(limit))
            batch = _batch_request(form, params, config.models)
            assert form.file_path is not None
            try:
                body = run_batch(config.engine, form.file_path, batch, config.streams, request_id, config.stopping)
            except BatchError as exc:
                raise _Refusal(exc.status, exc.error_code, exc.title, exc.message) from exc
        finally:
            form.discard()
        if config.batch_text is not None:
            body = _with_text(body, config.batch_text, batch.words)
        return HttpReply(200, json.dumps(body).encode())

    # -- helpers ------------------------------------------------------------------

    def _offered(self, request: HttpRequest, query: str) -> str | None:
        try:
            return offered_key("", _Headers(request)).key
        except CredentialError as exc:
            raise _Refusal(exc.status, exc.error_code, exc.title, exc.message) from exc

    def _record(self, request: HttpRequest, parts: Any) -> ConnectionRecord | None:
        self._faulty = self._config.next_request()
        if self._config.record is None:
            return None
        keep = self._config.record_secrets
        secret = set() if keep else {"x-api-key", "authorization"}
        record = ConnectionRecord(
            path=parts.path,
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers={name: ("***" if name in secret else value) for name, value in request.headers},
        )
        self._config.record(record)
        return record

    def _fault(self) -> None:
        scenario = self._config.scenario
        if self._faulty and scenario.reject_status is not None:
            raise _Refusal(
                scenario.reject_status,
                "scripted_fault",
                "Scripted fault",
                scenario.reject_body or f"this server was told to answer {scenario.reject_status}",
                scenario.reject_headers,
            )


class _Refusal(Exception):
    def __init__(
        self, status: int, code: str, title: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.title, self.message, self.headers = status, code, title, message, headers


def _error(
    status: int, code: str, title: str, message: str, request_id: str, headers: tuple[tuple[str, str], ...] = ()
) -> HttpReply:
    body = {"error_code": code, "title": title, "message": message, "request_id": request_id}
    return HttpReply(status, json.dumps(body).encode(), list(headers))


def _too_large(limit: int) -> str:
    return f"the upload is larger than this server's limit of {limit} bytes; send a shorter file"


def _bounded(request: HttpRequest, limit: int) -> list[bytes]:
    chunks, size = [], 0
    for chunk in request.body:
        size += len(chunk)
        if size > limit:
            raise _Refusal(413, "body_too_large", "Body too large", f"the body must be at most {limit} bytes")
        chunks.append(chunk)
    return chunks


def _query_params(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True))


def _batch_request(form: Form, params: dict[str, str], models: frozenset[str]) -> BatchRequest:
    if form.file_path is None:
        raise _Refusal(400, "file_required", "Missing file", "the form needs a 'file' part with the audio")
    model = form.first("model")
    if not model:
        raise _Refusal(400, "model_required", "Missing model", "the form needs a 'model' field, e.g. ink-whisper")
    if model not in models:
        raise _Refusal(
            400, "model_not_found", "Invalid model", f"the model {model!r} is not valid; use one of {sorted(models)}"
        )
    granularities = form.fields.get("timestamp_granularities[]", []) + form.fields.get("timestamp_granularities", [])
    if any(g != "word" for g in granularities):
        raise _Refusal(
            400, "invalid_timestamp_granularities", "Invalid timestamp granularities", "the only granularity is 'word'"
        )
    encoding = params.get("encoding") or None
    if encoding is not None and encoding not in SAMPLE_BYTES:
        raise _Refusal(
            400, "invalid_encoding", "Unsupported encoding", f"use one of {', '.join(SAMPLE_BYTES)}, not {encoding!r}"
        )
    rate_text = params.get("sample_rate") or None
    sample_rate = None
    if rate_text is not None:
        try:
            sample_rate = int(rate_text)
        except ValueError:
            sample_rate = 0
        if not 8000 <= sample_rate <= 48000:
            raise _Refusal(
                400,
                "invalid_sample_rate",
                "Unsupported sample rate",
                f"the sample_rate {rate_text!r} is not supported; use an integer from 8000 to 48000",
            )
    language = form.first("language") or "en"
    return BatchRequest(model, language, bool(granularities), encoding, sample_rate)


def _with_text(body: dict[str, Any], text: str, words: bool) -> dict[str, Any]:
    from ._engine import words_between

    body = dict(body, text=text)
    if words:
        body["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in words_between(text, 0.0, float(body.get("duration") or 0.0))
        ]
    return body
