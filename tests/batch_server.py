"""A loopback HTTP server for the batch and token routes: parses every request, replies as scripted.

It records each request (path, query, headers, the multipart parts of ``POST
/stt`` or the JSON body of ``POST /access-token``) and answers with the next
:class:`Reply` of its script (the last one repeats). Replies can misbehave: any
status and headers (``Retry-After``, ``x-should-retry``), a delay before the
headers, a body dribbled slowly, a huge body, or bytes that are not JSON.
With ``keep_body=False`` request bodies are read and thrown away in blocks, so
a test can upload hundreds of MB while measuring the client's memory.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TRANSCRIPT = {
    "type": "transcript",
    "request_id": "req-batch-1",
    "text": "The quick brown fox.",
    "language": "en",
    "duration": 2.1,
    "words": [
        {"word": "The", "start": 0.0, "end": 0.18},
        {"word": "quick", "start": 0.2, "end": 0.45},
        {"word": "brown", "start": 0.5, "end": 0.8},
        {"word": "fox.", "start": 0.85, "end": 1.3},
    ],
}


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: Any = field(default_factory=lambda: dict(TRANSCRIPT))
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: send the body this many bytes at a time, ``drip_interval`` seconds apart
    drip: int | None = None
    drip_interval: float = 0.2
    #: declare and send a body of this many bytes (of JSON-looking filler)
    huge: int | None = None


@dataclass
class Part:
    name: str
    value: bytes
    filename: str | None
    content_type: str


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body_size: int
    parts: list[Part]
    json: Any

    def fields(self, name: str) -> list[str]:
        return [part.value.decode() for part in self.parts if part.name == name]

    def part(self, name: str) -> Part:
        (found,) = [part for part in self.parts if part.name == name]
        return found


class BatchServer:
    """Run it in a ``with`` block; ``base_url`` is its address."""

    def __init__(self, *replies: Reply, keep_body: bool = True) -> None:
        self.script = list(replies) or [Reply()]
        self.keep_body = keep_body
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="batch-test-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> BatchServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next_reply(self) -> Reply:
        with self._lock:
            index = min(len(self.requests), len(self.script)) - 1
            return self.script[max(index, 0)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body, size = self._read_body()
                headers = {name.lower(): value for name, value in self.headers.items()}
                parts: list[Part] = []
                parsed_json: Any = None
                content_type = headers.get("content-type", "")
                if body is not None and content_type.startswith("multipart/form-data"):
                    parts = _parse_multipart(content_type, body)
                elif body is not None and content_type.startswith("application/json"):
                    parsed_json = json.loads(body)
                split = urlsplit(self.path)
                with server._lock:
                    server.requests.append(
                        Request(
                            self.command,
                            split.path,
                            parse_qsl(split.query, keep_blank_values=True),
                            headers,
                            size,
                            parts,
                            parsed_json,
                        )
                    )
                reply = server._next_reply()
                time.sleep(reply.delay)
                self._send(reply)

            def _read_body(self) -> tuple[bytes | None, int]:
                length = int(self.headers.get("Content-Length") or 0)
                chunks: list[bytes] = []
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
                    if server.keep_body:
                        chunks.append(chunk)
                return (b"".join(chunks) if server.keep_body else None), length - left

            def _send(self, reply: Reply) -> None:
                if reply.huge is not None:
                    payload_size = reply.huge
                    payload = None
                else:
                    payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                    payload_size = len(payload)
                self.send_response(reply.status)
                is_json = not isinstance(reply.body, bytes) or reply.huge is not None
                self.send_header("Content-Type", "application/json" if is_json else "text/plain")
                self.send_header("Content-Length", str(payload_size))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    if payload is None:
                        block = b'{"text":"' + b"x" * (1 << 20)
                        sent = 0
                        while sent < payload_size:
                            piece = block[: min(len(block), payload_size - sent)]
                            self.wfile.write(piece)
                            sent += len(piece)
                    elif reply.drip:
                        for start in range(0, len(payload), reply.drip):
                            self.wfile.write(payload[start : start + reply.drip])
                            self.wfile.flush()
                            time.sleep(reply.drip_interval)
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        return Handler


def _parse_multipart(content_type: str, body: bytes) -> list[Part]:
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    assert message.is_multipart(), "the body is not multipart"
    parts = []
    for item in message.iter_parts():
        disposition = item.get("Content-Disposition", "")
        assert disposition.startswith("form-data"), disposition
        parts.append(
            Part(
                name=item.get_param("name", header="content-disposition"),
                value=item.get_payload(decode=True) or b"",
                filename=item.get_param("filename", header="content-disposition"),
                content_type=item.get_content_type(),
            )
        )
    return parts
