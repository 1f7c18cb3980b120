"""Odd credentials at the local server's handshake: always a 4xx with a JSON body, never a 500, never a crash.

Every client here is a raw socket writing its own request lines, so the
server sees exactly the bytes a hostile or broken client would send.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hostile_clients import STT_QUERY, finalize_latency, handshake, open_session

from cartesia_sync.local import LocalServer

pytestmark = pytest.mark.timeout(60)

KEY = "sk_right_key_4f1d"
WRONG = "sk_wrong_key_9a9a"

#: (label, extra header lines, query suffix, expected status, expected error_code)
ODD = [
    ("X-API-Key twice, same value", [(b"X-API-Key", KEY.encode())] * 2, "", 400, "duplicate_credentials"),
    (
        "X-API-Key twice, right then wrong",
        [(b"X-API-Key", KEY.encode()), (b"X-API-Key", WRONG.encode())],
        "",
        400,
        "duplicate_credentials",
    ),
    (
        "X-API-Key twice, wrong then right",
        [(b"X-API-Key", WRONG.encode()), (b"x-api-key", KEY.encode())],
        "",
        400,
        "duplicate_credentials",
    ),
    ("Authorization twice", [(b"Authorization", b"Bearer " + KEY.encode())] * 2, "", 400, "duplicate_credentials"),
    (
        "Authorization right and Basic",
        [(b"Authorization", b"Bearer " + KEY.encode()), (b"Authorization", b"Basic eA==")],
        "",
        400,
        "duplicate_credentials",
    ),
    ("api_key twice in the query", [], f"&api_key={KEY}&api_key={WRONG}", 400, "duplicate_credentials"),
    (
        "both headers, both right",
        [(b"X-API-Key", KEY.encode()), (b"Authorization", b"Bearer " + KEY.encode())],
        "",
        400,
        "ambiguous_credentials",
    ),
    (
        "both headers, right and wrong",
        [(b"X-API-Key", KEY.encode()), (b"Authorization", b"Bearer " + WRONG.encode())],
        "",
        400,
        "ambiguous_credentials",
    ),
    ("header and query", [(b"X-API-Key", WRONG.encode())], f"&api_key={KEY}", 400, "ambiguous_credentials"),
    ("UTF-8 in X-API-Key", [(b"X-API-Key", "sk_r\u00e9ght_k\u00eby".encode())], "", 400, "invalid_credentials"),
    ("Latin-1 byte in X-API-Key", [(b"X-API-Key", KEY.encode() + b"\xf6")], "", 400, "invalid_credentials"),
    ("UTF-8 in Authorization", [(b"Authorization", "Bearer sk_\u2603".encode())], "", 400, "invalid_credentials"),
    ("emoji in the query key", [], "&api_key=%F0%9F%94%91", 400, "invalid_credentials"),
    ("invalid UTF-8 in the query key", [], "&api_key=%FF%FE", 400, "invalid_credentials"),
    ("tab inside the key", [(b"X-API-Key", b"sk_a\tb")], "", 400, "invalid_credentials"),
    ("space inside a Bearer key", [(b"Authorization", b"Bearer sk_a b")], "", 400, "invalid_credentials"),
    ("percent-encoded NUL in the query key", [], "&api_key=sk%00x", 400, "invalid_credentials"),
    ("Basic instead of Bearer", [(b"Authorization", b"Basic " + KEY.encode())], "", 401, "invalid_api_key"),
    ("Bearer and nothing", [(b"Authorization", b"Bearer")], "", 401, "invalid_api_key"),
    ("empty X-API-Key", [(b"X-API-Key", b"")], "", 401, "invalid_api_key"),
    ("wrong key", [(b"X-API-Key", WRONG.encode())], "", 401, "invalid_api_key"),
    ("a 6000-character key", [(b"X-API-Key", b"k" * 6000)], "", 401, "invalid_api_key"),
]


@pytest.fixture
def keyed_server():
    with LocalServer(ScriptedLikeEngine(), api_key=KEY, load_entrypoints=False) as server:
        yield server


class ScriptedLikeEngine:
    """The scripted engine, constructed here so the server does not own it (nothing to close)."""

    name = "scripted"
    raw_audio = True

    def __init__(self) -> None:
        from cartesia_sync.local import ScriptedEngine

        self._engine = ScriptedEngine()

    def open_stream(self, options):
        return self._engine.open_stream(options)

    def close(self) -> None:
        pass


def good_session_works(port: int, key: str | None = KEY) -> float:
    """A well-behaved session still gets a flush_done after the abuse; returns its latency."""
    path = STT_QUERY + (f"&api_key={key}" if key else "")
    sock, reader = open_session(port, path)
    try:
        return finalize_latency(sock, reader, b"\x01\x00" * 1600)
    finally:
        sock.close()


@pytest.mark.parametrize(("label", "headers", "query", "status", "code"), ODD, ids=[case[0] for case in ODD])
def test_odd_credentials_get_a_4xx_with_a_json_reason(keyed_server, label, headers, query, status, code):
    answer, sock = handshake(keyed_server.port, headers, STT_QUERY + query)
    sock.close()
    assert answer.status == status, f"{label}: {answer.status} {answer.body[:300]!r}"
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["error_code"] == code and body["title"] and body["message"]
    assert KEY not in answer.body.decode("latin-1") and WRONG not in answer.body.decode("latin-1")
    assert good_session_works(keyed_server.port) < 2.0


@pytest.mark.parametrize("label", ["X-API-Key", "Authorization: Bearer", "api_key"])
def test_each_form_alone_with_the_right_key_is_accepted(keyed_server, label):
    if label == "api_key":
        answer, sock = handshake(keyed_server.port, [], STT_QUERY + f"&api_key={KEY}")
    elif label == "X-API-Key":
        answer, sock = handshake(keyed_server.port, [(b"x-API-key", KEY.encode())])
    else:
        answer, sock = handshake(keyed_server.port, [(b"Authorization", b"bearer  " + KEY.encode())])
    sock.close()
    assert answer.status == 101


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ([(b"X-API-Key", b"a"), (b"X-API-Key", b"b")], "duplicate_credentials"),
        ([(b"X-API-Key", b"a"), (b"Authorization", b"Bearer a")], "ambiguous_credentials"),
        ([(b"X-API-Key", "\u00fc".encode())], "invalid_credentials"),
    ],
)
def test_a_server_without_a_key_refuses_malformed_credentials_too(headers, code):
    with LocalServer(ScriptedLikeEngine(), load_entrypoints=False) as server:
        answer, sock = handshake(server.port, headers)
        sock.close()
        assert (answer.status, answer.json()["error_code"]) == (400, code)
        # ...and still serves well-formed clients, with or without a key they do not need
        assert good_session_works(server.port, key=None) < 2.0
        assert good_session_works(server.port, key="anything") < 2.0


def test_malformed_http_is_closed_without_an_answer_and_the_server_carries_on(keyed_server):
    """A NUL or bare CR in a header is not HTTP: websockets' parser closes the socket (no 500, no crash)."""
    for raw in (KEY.encode() + b"\x00", b"a\rb", b"\x7f\x01"):
        answer, sock = handshake(keyed_server.port, [(b"X-API-Key", raw)])
        sock.close()
        assert answer.status in (0, 400), answer
    answer, sock = handshake(keyed_server.port, [(b"X-API-Key", b"x")] * 300)  # more headers than allowed
    sock.close()
    assert 400 <= answer.status < 500 or answer.status == 0
    assert good_session_works(keyed_server.port) < 2.0


def test_a_storm_of_odd_handshakes_gets_only_4xx_and_logs_no_key(keyed_server, caplog):
    """200 odd handshakes from 16 threads at once: every answer a 4xx, no 5xx, no key in any log line."""
    caplog.set_level(logging.DEBUG)
    cases = [case for case in ODD] * 9

    def attempt(case):
        _, headers, query, status, code = case
        answer, sock = handshake(keyed_server.port, headers, STT_QUERY + query, timeout=20)
        sock.close()
        return answer.status, (answer.json().get("error_code") if answer.body else None), status, code

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, cases[:200]))
    elapsed = time.monotonic() - started
    assert [r[:2] for r in results] == [r[2:] for r in results]
    assert elapsed < 30, f"200 refusals took {elapsed:.1f} s"
    assert good_session_works(keyed_server.port) < 2.0
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert KEY not in logged and WRONG not in logged
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a refusal was logged as an error"
    assert threading.active_count() < 40
