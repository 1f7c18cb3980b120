"""Tests for Client construction and Client.connect(): the handshake, its failures, and key safety.

Every test talks to real sockets on loopback (the fake Cartesia server, a TLS
server, or small raw TCP listeners defined here); websocket-client is never
mocked. Sections:

1. refused handshakes and the exception each status becomes
2. a key required by the server
3. what the handshake carries (path, query, headers)
4. settings from the environment
5. security: unsafe URLs, reprs, pickling, logs and error texts never show the key
6. TLS: verification on, private CAs through ca_certs=
7. network failures: timeout, refused
8. redirects are not followed
9. configuration errors, all raised before any socket opens
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import CANARY_KEY, pcm
from hostile_server import HostileServer, read_request

import cartesia_sync
from cartesia_sync import (
    AuthenticationError,
    CartesiaSyncError,
    ConfigurationError,
    ConnectError,
    PaymentRequiredError,
    RateLimitError,
)
from cartesia_sync.testing import ConnectionRecord, FakeCartesia, Scenario

try:
    import trustme
except ImportError:  # pragma: no cover - the dev extra installs it
    trustme = None

needs_trustme = pytest.mark.skipif(
    trustme is None,
    reason="trustme is not installed (pip install trustme, or the dev extra): TLS tests need a throwaway CA",
)

WAIT = 5.0  # the longest any single wait in this module may take, in seconds
STT_PATH = "/stt/websocket"
CONNECT_ERROR_SUBCLASSES = (
    AuthenticationError,
    PaymentRequiredError,
    RateLimitError,
    cartesia_sync.ConnectionLostError,
)


# -- shared helpers -----------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may pick up a key, URL, proxy or CA bundle from the developer's shell."""
    for name in (
        "CARTESIA_API_KEY",
        "CARTESIA_STT_URL",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
        "WEBSOCKET_CLIENT_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)


def new_client(**kwargs: Any) -> cartesia_sync.Client:
    """A client with entry-point plugins off (they are not under test here)."""
    kwargs.setdefault("load_entrypoints", False)
    return cartesia_sync.Client(**kwargs)


def connect_fails(client: cartesia_sync.Client, expected: type[BaseException] = ConnectError, **kwargs: Any) -> Any:
    """Call ``client.connect()``, expecting it to raise ``expected``; return the exception."""
    with pytest.raises(expected) as info:
        client.connect(**kwargs)
    return info.value


def open_and_close(client: cartesia_sync.Client) -> cartesia_sync.Session:
    """Connect, then close the session cleanly; return the closed session."""
    session = client.connect()
    session.close(timeout=WAIT)
    assert session.closed and session.error is None
    return session


def handshake_of(server: FakeCartesia, client: cartesia_sync.Client) -> ConnectionRecord:
    """Open and close one session on ``server``; return what its handshake showed the server."""
    open_and_close(client)
    assert len(server.connections) == 1
    return server.wait_finished(timeout=WAIT)


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def exception_chain(error: BaseException) -> list[BaseException]:
    """The error and every exception reachable through ``__cause__`` and ``__context__``.

    ``__suppress_context__`` is ignored on purpose: a suppressed context is
    still reachable from the error object (debuggers, error trackers, pickles).
    """
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        todo.extend([current.__cause__, current.__context__])
    return seen


def exception_texts(error: BaseException) -> list[str]:
    """str, repr and args of every exception in the chain, and the formatted traceback."""
    texts = ["".join(traceback.format_exception(type(error), error, error.__traceback__))]
    for item in exception_chain(error):
        texts += [str(item), repr(item)] + [repr(arg) for arg in item.args]
        texts += [repr(value) for value in vars(item).values()] if hasattr(item, "__dict__") else []
    return texts


class NetworkUsed(Exception):
    """Raised by the no_network guard; deliberately not an OSError, so nothing swallows it."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail on any DNS lookup or socket connect; returns the list of attempts made."""
    attempts: list[Any] = []

    def refuse(what: str) -> Callable[..., Any]:
        def fake(*args: Any, **kwargs: Any) -> Any:
            attempts.append((what, args[1:] if what.startswith("socket.") else args))
            raise NetworkUsed(f"{what} called during a test that must not touch the network: {args!r}")

        return fake

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    return attempts


# -- 1. refused handshakes ------------------------------------------------------

#: status, the exception it must become, and a fragment of the advice the message must give.
STATUS_CASES = [
    (401, AuthenticationError, "check CARTESIA_API_KEY or api_key="),
    (403, AuthenticationError, "check its permissions"),
    (402, PaymentRequiredError, "top it up"),
    (429, RateLimitError, "retry later"),
    (400, ConnectError, "check the URL"),
    (404, ConnectError, "check the URL"),
    (500, ConnectError, "try again later"),
    (503, ConnectError, "try again later"),
]


def refusal_body(status: int) -> str:
    return json.dumps({"error": f"refused by the test server with {status}", "status": status})


@pytest.mark.parametrize(
    "scenario, status, error_class, advice",
    [
        pytest.param(
            Scenario(reject_status=status, reject_body=refusal_body(status)), status, cls, advice, id=str(status)
        )
        for status, cls, advice in STATUS_CASES
    ],
)
def test_refused_handshake_raises_the_matching_error(make_client, server, status, error_class, advice):
    client = make_client(api_key=CANARY_KEY)  # construction succeeds: the refusal comes from connect()

    error = connect_fails(client, error_class)

    assert type(error) is error_class
    assert isinstance(error, ConnectError) and isinstance(error, CartesiaSyncError)
    if error_class is ConnectError:
        assert not isinstance(error, CONNECT_ERROR_SUBCLASSES)
    assert error.status_code == status
    assert error.body == refusal_body(status)
    message = str(error)
    assert f"HTTP {status}" in message
    assert advice in message
    assert len(server.connections) == 1  # the handshake really reached the server


def test_every_connect_error_is_a_cartesia_sync_error():
    for cls in (ConnectError, ConfigurationError) + CONNECT_ERROR_SUBCLASSES:
        assert issubclass(cls, CartesiaSyncError)


# -- 2. a key required by the server ------------------------------------------------


@pytest.mark.parametrize("server_key", [CANARY_KEY], ids=["key-required"])
def test_the_right_key_connects(make_client, server):
    record = handshake_of(server, make_client(api_key=CANARY_KEY))
    assert record.headers["x-api-key"] == CANARY_KEY


@pytest.mark.parametrize("server_key", [CANARY_KEY], ids=["key-required"])
@pytest.mark.parametrize("api_key", ["sk_wrong_key", None], ids=["wrong-key", "no-key"])
def test_a_wrong_or_missing_key_is_refused(make_client, server, api_key):
    error = connect_fails(make_client(api_key=api_key), AuthenticationError)
    assert error.status_code == 401
    # the fake server's refusal, in the hosted API's structured format
    assert error.body == json.dumps(
        {"title": "Unauthorized", "message": "Invalid API key", "error_code": "invalid_api_key"}
    )
    assert "HTTP 401" in str(error)


# -- 3. what the handshake carries ---------------------------------------------------


def test_handshake_path_and_required_query(make_client, server):
    client = make_client(api_key=CANARY_KEY, model="ink-whisper", language="de", encoding="pcm_mulaw", sample_rate=8000)

    session = client.connect()
    session.close(timeout=WAIT)
    assert session.closed and len(server.connections) == 1
    record = server.wait_finished(timeout=WAIT)

    assert record.path == STT_PATH
    query = record.query_dict()
    assert query["model"] == "ink-whisper"
    assert query["language"] == "de"
    assert query["encoding"] == "pcm_mulaw"
    assert query["sample_rate"] == "8000"
    assert "min_volume" not in query and "max_silence_duration_secs" not in query and "keyterm" not in query


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"min_volume": 0.25}, {"min_volume": "0.25"}),
        ({"min_volume": 0}, {"min_volume": "0"}),  # zero is a value, not "unset"
        ({"max_silence_duration_secs": 1.5}, {"max_silence_duration_secs": "1.5"}),
        ({"min_volume": 0.1, "max_silence_duration_secs": 2}, {"min_volume": "0.1", "max_silence_duration_secs": "2"}),
    ],
    ids=["min_volume", "min_volume-zero", "max_silence", "both"],
)
def test_optional_query_parameters_are_sent_only_when_set(make_client, server, kwargs, expected):
    record = handshake_of(server, make_client(api_key=CANARY_KEY, **kwargs))
    query = record.query_dict()
    for name in ("min_volume", "max_silence_duration_secs"):
        assert query.get(name) == expected.get(name)


def test_keyterms_are_repeated_and_survive_encoding(make_client, server):
    terms = ["Cartesia Sync", "naïve", "R&D=yes", "日本語"]

    record = handshake_of(server, make_client(api_key=CANARY_KEY, keyterms=terms))

    assert [value for name, value in record.query if name == "keyterm"] == terms


def test_a_single_string_keyterm_is_one_term(make_client, server):
    record = handshake_of(server, make_client(api_key=CANARY_KEY, keyterms="Cartesia"))
    assert [value for name, value in record.query if name == "keyterm"] == ["Cartesia"]


@pytest.mark.parametrize("version", [None, "2025-04-16"], ids=["default", "custom"])
def test_cartesia_version_header(make_client, server, version):
    kwargs = {} if version is None else {"cartesia_version": version}

    record = handshake_of(server, make_client(api_key=CANARY_KEY, **kwargs))

    assert record.headers["cartesia-version"] == (version or "2026-03-01")


def test_key_travels_in_the_header_and_not_the_query_by_default(make_client, server):
    record = handshake_of(server, make_client(api_key=CANARY_KEY))

    assert record.headers["x-api-key"] == CANARY_KEY
    assert "api_key" not in record.query_dict()
    assert all(CANARY_KEY not in value for _, value in record.query)


def test_query_auth_puts_the_key_in_the_url_only(make_client, server):
    record = handshake_of(server, make_client(api_key=CANARY_KEY, auth="query"))

    assert record.query_dict()["api_key"] == CANARY_KEY
    assert "x-api-key" not in record.headers
    assert all(CANARY_KEY not in value for value in record.headers.values())


def test_language_none_omits_the_language(make_client, server):
    record = handshake_of(server, make_client(api_key=CANARY_KEY, language=None))
    assert "language" not in record.query_dict()
    assert record.query_dict()["model"] == "ink-whisper"


def test_query_parameters_already_in_the_url_are_kept(make_client, server):
    record = handshake_of(server, make_client(api_key=CANARY_KEY, url=f"{server.url}?region=eu-west&trace=a%20b"))

    query = record.query_dict()
    assert query["region"] == "eu-west"
    assert query["trace"] == "a b"
    assert query["model"] == "ink-whisper" and query["sample_rate"] == "16000"
    assert record.path == STT_PATH


def test_extra_headers_are_sent(make_client, server):
    client = make_client(api_key=CANARY_KEY, extra_headers={"X-Trace-Id": "trace-123", "User-Agent": "tests/1.0"})

    record = handshake_of(server, client)

    assert record.headers["x-trace-id"] == "trace-123"
    assert record.headers["user-agent"] == "tests/1.0"
    assert record.headers["x-api-key"] == CANARY_KEY  # extra headers add to the defaults


# -- 4. settings from the environment ----------------------------------------------------


@pytest.mark.parametrize("server_key", [CANARY_KEY], ids=["key-required"])
def test_url_and_key_come_from_the_environment(monkeypatch, server):
    monkeypatch.setenv("CARTESIA_STT_URL", server.url)
    monkeypatch.setenv("CARTESIA_API_KEY", CANARY_KEY)

    client = new_client()
    record = handshake_of(server, client)

    assert client.settings.url == server.url
    assert record.headers["x-api-key"] == CANARY_KEY


@pytest.mark.parametrize("server_key", [CANARY_KEY], ids=["key-required"])
def test_explicit_arguments_win_over_the_environment(monkeypatch, server):
    monkeypatch.setenv("CARTESIA_STT_URL", f"ws://127.0.0.1:{free_port()}{STT_PATH}")
    monkeypatch.setenv("CARTESIA_API_KEY", "sk_from_the_environment")

    record = handshake_of(server, new_client(url=server.url, api_key=CANARY_KEY))

    assert record.headers["x-api-key"] == CANARY_KEY


# -- 5. security ------------------------------------------------------------------------------


def construct_quickly(**kwargs: Any) -> cartesia_sync.Client:
    """Build a client and check that construction alone took no noticeable time."""
    started = time.monotonic()
    client = new_client(**kwargs)
    assert time.monotonic() - started < 1.0
    return client


@pytest.mark.parametrize(
    "url", ["ws://10.1.2.3/stt/websocket", "ws://example.com/stt/websocket", "ws://127.0.0.1.example.com/stt/websocket"]
)
def test_a_key_over_plain_ws_to_a_remote_host_is_refused(no_network, url):
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        new_client(api_key=CANARY_KEY, url=url)

    assert time.monotonic() - started < 1.0
    assert no_network == []
    message = str(info.value)
    assert "wss://" in message and "loopback" in message
    assert CANARY_KEY not in message


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:8080/stt/websocket",
        "ws://127.5.6.7/stt/websocket",
        "ws://localhost:9000/stt/websocket",
        "ws://[::1]:8080/stt/websocket",
    ],
)
def test_a_key_over_plain_ws_to_loopback_is_allowed(no_network, url):
    client = construct_quickly(api_key=CANARY_KEY, url=url)

    assert client.settings.is_loopback
    assert no_network == []


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("http://127.0.0.1/stt/websocket", "scheme"),
        ("https://api.cartesia.ai/stt/websocket", "scheme"),
        ("ws://user:pass@127.0.0.1/stt/websocket", "user name or password"),
        ("wss://user:pass@api.cartesia.ai/stt/websocket", "user name or password"),
        ("ws:///stt/websocket", "no host"),
        ("ws://127.0.0.1:99999/stt/websocket", "bad port"),
        ("ws://127.0.0.1:port/stt/websocket", "bad port"),
    ],
    ids=["http", "https", "userinfo-ws", "userinfo-wss", "no-host", "port-out-of-range", "port-not-a-number"],
)
def test_malformed_urls_are_refused(no_network, url, fragment):
    with pytest.raises(ConfigurationError) as info:
        new_client(api_key=CANARY_KEY, url=url)

    assert fragment in str(info.value)
    assert CANARY_KEY not in str(info.value)
    assert no_network == []


@pytest.mark.parametrize(
    "url",
    ["http://user:hunter2secret@127.0.0.1/stt/websocket", "ws://user:hunter2secret@/stt"],
    ids=["bad-scheme", "no-host"],
)
def test_url_credentials_are_never_echoed_in_errors(no_network, url):
    with pytest.raises(ConfigurationError) as info:
        new_client(url=url)
    assert "hunter2secret" not in str(info.value)


def test_reprs_and_str_never_show_the_key(make_client, server):
    client = make_client(api_key=CANARY_KEY)
    key = client.settings.api_key

    texts = [repr(client), repr(client.settings), str(key), repr(key), f"{key}", f"{key!s:>40}", f"{key}"]
    session = client.connect()
    try:
        texts += [repr(session), repr(session.settings), str(session.stats)]
    finally:
        session.close(timeout=WAIT)

    assert key.reveal() == CANARY_KEY  # the wrapper really holds the canary
    for text in texts:
        assert CANARY_KEY not in text
    assert "***" in repr(client) and "***" in repr(client.settings)


def test_the_key_wrapper_refuses_to_be_pickled():
    settings = new_client(api_key=CANARY_KEY, url=f"ws://127.0.0.1{STT_PATH}").settings

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(settings.api_key)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(settings)  # settings hold the key, so they refuse too


def client_side_log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every formatted log record except the fake server's own (not under test).

    That is ``websockets.*`` (its WebSocket server) and ``cartesia_sync.local.*`` (its conversation).
    """
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [
        formatter.format(record)
        for record in caplog.records
        if not record.name.startswith(("websockets", "cartesia_sync.local"))
    ]


@pytest.mark.parametrize("auth", ["header", "query"])
def test_the_key_is_in_no_log_record_over_a_full_session(make_client, server, caplog, auth):
    caplog.set_level(logging.DEBUG)
    client = make_client(api_key=CANARY_KEY, auth=auth)

    session = client.connect()
    session.send(pcm(0.5))
    session.finalize(timeout=WAIT)
    session.close(timeout=WAIT)

    record = server.wait_finished(timeout=WAIT)
    sent_key = record.headers.get("x-api-key") if auth == "header" else record.query_dict().get("api_key")
    assert sent_key == CANARY_KEY  # the key was really on the wire, so a leak was possible
    texts = client_side_log_texts(caplog)
    assert any(text.startswith("cartesia_sync") for text in texts)  # the library did log at DEBUG
    for text in texts + [repr(session), session.settings.display_url, str(session.stats)]:
        assert CANARY_KEY not in text
    if auth == "query":
        shown = dict(parse_qsl(urlsplit(session.settings.display_url).query))
        assert shown["api_key"] == "***"


def test_query_auth_display_url_shows_a_readable_mask(no_network):
    settings = new_client(api_key=CANARY_KEY, url=f"ws://127.0.0.1{STT_PATH}", auth="query").settings

    assert CANARY_KEY not in settings.display_url
    assert "api_key=***" in settings.display_url


@pytest.mark.parametrize("scenario", [Scenario(reject_status=401, reject_body=f"bad key {CANARY_KEY}")])
def test_a_refusal_echoing_the_key_is_scrubbed(make_client, server, caplog):
    caplog.set_level(logging.DEBUG)

    error = connect_fails(make_client(api_key=CANARY_KEY), AuthenticationError)

    assert error.body == "bad key ***"
    assert "bad key ***" in str(error)
    shown = "".join(traceback.format_exception(type(error), error, error.__traceback__))  # what a crash prints
    for text in [str(error), repr(error), repr(error.args), shown] + client_side_log_texts(caplog):
        assert CANARY_KEY not in text


@pytest.mark.parametrize("scenario", [Scenario(reject_status=401, reject_body=f"bad key {CANARY_KEY}")])
def test_the_exception_chain_of_a_refusal_holds_no_key(make_client, server):
    error = connect_fails(make_client(api_key=CANARY_KEY), AuthenticationError)

    for text in exception_texts(error):
        assert CANARY_KEY not in text


def plaintext_proxy(conn: socket.socket, proxy: HostileServer) -> None:
    """An HTTP CONNECT proxy that records the CONNECT and whatever the client sends through the tunnel."""
    proxy.notes.append(read_request(conn))
    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    proxy.notes.append(read_request(conn))


def test_an_environment_proxy_never_sees_a_plaintext_key(monkeypatch, make_client, server):
    with HostileServer(plaintext_proxy) as proxy:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        try:  # refusing at construction or at connect() would both be fixes
            open_and_close(make_client(api_key=CANARY_KEY, connect_timeout=2))
        except CartesiaSyncError:
            pass
        seen = b"".join(proxy.notes)

    assert CANARY_KEY.encode() not in seen
    assert proxy.accepted == 0


# -- 6. TLS ---------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Any]:
    from tls_server import TLSServer

    with TLSServer(tmp_path, hostnames=("localhost",)) as srv:
        yield srv


@needs_trustme
def test_tls_without_the_ca_fails_verification(tls_server):
    error = connect_fails(new_client(api_key=CANARY_KEY, url=tls_server.url()))

    assert type(error) is ConnectError
    assert error.status_code is None
    message = str(error)
    assert "certificate verification failed" in message
    assert "ca_certs" in message
    assert CANARY_KEY not in message


@needs_trustme
def test_tls_with_the_ca_connects_and_closes_cleanly(tls_server):
    client = new_client(api_key=CANARY_KEY, url=tls_server.url(), ca_certs=tls_server.ca_path)

    session = client.connect()
    session.send(pcm(0.2))
    session.close(timeout=WAIT)

    assert session.closed and session.error is None and session.errors == ()
    assert tls_server.handled.wait(WAIT)
    assert tls_server.paths and tls_server.paths[0].startswith(STT_PATH + "?")


@needs_trustme
@pytest.mark.parametrize(
    "cert_names, host",
    [(("other.example",), "localhost"), (("localhost",), "127.0.0.1")],
    ids=["name-mismatch", "ip-not-in-cert"],
)
def test_tls_certificate_for_another_host_fails(tmp_path, cert_names, host):
    from tls_server import TLSServer

    with TLSServer(tmp_path, hostnames=cert_names) as srv:
        error = connect_fails(new_client(api_key=CANARY_KEY, url=srv.url(host), ca_certs=srv.ca_path))

    assert type(error) is ConnectError
    message = str(error)
    assert "certificate verification failed" in message
    assert "mismatch" in message.lower() or "not valid" in message.lower()


# -- 7. network failures --------------------------------------------------------------------


def hold_silently(conn: socket.socket, server: HostileServer) -> None:
    """Accept the connection and never answer, until the test ends."""
    server.stop.wait(WAIT * 2)


def test_a_silent_server_times_out():
    with HostileServer(hold_silently) as silent:
        client = new_client(api_key=CANARY_KEY, url=silent.url, connect_timeout=0.5)
        started = time.monotonic()
        error = connect_fails(client)
        elapsed = time.monotonic() - started

    assert type(error) is ConnectError
    assert "timed out after 0.5 s" in str(error)
    assert "connect_timeout" in str(error)
    assert 0.3 <= elapsed < WAIT
    assert silent.accepted == 1


def test_nothing_listening_is_connection_refused():
    client = new_client(api_key=CANARY_KEY, url=f"ws://127.0.0.1:{free_port()}{STT_PATH}", connect_timeout=2)

    started = time.monotonic()
    error = connect_fails(client)

    assert time.monotonic() - started < WAIT
    assert type(error) is ConnectError
    assert error.status_code is None
    assert "connection refused" in str(error).lower()


# -- 8. redirects ----------------------------------------------------------------------------


def redirect_to(location: str) -> Callable[[socket.socket, HostileServer], None]:
    """A handler answering every request with 301 to ``location``."""

    def handler(conn: socket.socket, server: HostileServer) -> None:
        server.notes.append(read_request(conn))
        conn.sendall(
            f"HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )

    return handler


def test_a_redirect_is_not_followed(make_client, server):
    with HostileServer(redirect_to(server.url)) as redirector:
        error = connect_fails(make_client(api_key=CANARY_KEY, url=redirector.url))

    assert isinstance(error, ConnectError)
    assert len(redirector.notes) == 1
    assert server.connections == []  # the key never went to the other port


def test_a_redirect_reports_its_status(make_client, server):
    with HostileServer(redirect_to(server.url)) as redirector:
        error = connect_fails(make_client(api_key=CANARY_KEY, url=redirector.url))

    assert type(error) is ConnectError
    assert error.status_code == 301
    assert "HTTP 301" in str(error)
    assert "redirect" in str(error)


# -- 9. configuration errors ---------------------------------------------------------------

#: keyword arguments that must be refused, and a word the message must contain.
BAD_SETTINGS = [
    pytest.param({"encoding": "mp3"}, "encoding", id="encoding"),
    pytest.param({"sample_rate": 7999}, "sample_rate", id="sample_rate-7999"),
    pytest.param({"sample_rate": 96000}, "sample_rate", id="sample_rate-96000"),
    pytest.param({"sample_rate": "16000"}, "sample_rate", id="sample_rate-str"),
    pytest.param({"min_volume": -0.1}, "min_volume", id="min_volume-negative"),
    pytest.param({"max_silence_duration_secs": -1}, "max_silence_duration_secs", id="max_silence-negative"),
    pytest.param({"keyterms": [f"term{i}" for i in range(101)]}, "keyterms", id="101-keyterms"),
    pytest.param({"keyterms": ["ok", ""]}, "keyterm", id="empty-keyterm"),
    pytest.param({"keyterms": ["   "]}, "keyterm", id="blank-keyterm"),
    pytest.param({"end_command": "stop"}, "end_command", id="end_command"),
    pytest.param({"auth": "cookie"}, "auth", id="auth"),
    pytest.param({"frame_duration": 0}, "frame_duration", id="frame_duration-0"),
    pytest.param({"frame_duration": 2.0}, "frame_duration", id="frame_duration-2"),
    pytest.param({"foo": 1}, "foo", id="unknown-keyword"),
    pytest.param({"connect_timeout": 0}, "connect_timeout", id="connect_timeout-0"),
]


@pytest.mark.parametrize("kwargs, word", BAD_SETTINGS)
def test_bad_settings_are_refused_at_construction(no_network, kwargs, word):
    with pytest.raises(ConfigurationError) as info:
        new_client(api_key=CANARY_KEY, url=f"ws://127.0.0.1{STT_PATH}", **kwargs)

    assert word in str(info.value)
    assert no_network == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 8000},
        {"sample_rate": 48000},
        {"keyterms": [f"term{i}" for i in range(100)]},
        {"min_volume": 0},
        {"frame_duration": 0.005},
        {"frame_duration": 1.0},
    ],
    ids=["rate-8000", "rate-48000", "100-keyterms", "min_volume-0", "frame-min", "frame-max"],
)
def test_boundary_settings_are_accepted(no_network, kwargs):
    construct_quickly(api_key=CANARY_KEY, url=f"ws://127.0.0.1{STT_PATH}", **kwargs)
    assert no_network == []


@pytest.mark.parametrize("realtime", [-1, 0, math.nan, "fast"], ids=["negative", "zero", "nan", "string"])
def test_bad_realtime_is_refused_before_any_socket(monkeypatch, realtime):
    client = new_client(api_key=CANARY_KEY, url=f"ws://127.0.0.1:{free_port()}{STT_PATH}")
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise NetworkUsed(f"connect({address!r}) before the realtime argument was checked")

    monkeypatch.setattr(socket.socket, "connect", refuse)

    error = connect_fails(client, ConfigurationError, realtime=realtime)

    assert "realtime" in str(error)
    assert attempts == []


def test_a_missing_ca_bundle_is_refused(no_network, tmp_path):
    missing = tmp_path / "no-such-ca.pem"

    with pytest.raises(ConfigurationError) as info:
        new_client(api_key=CANARY_KEY, url="wss://api.cartesia.ai/stt/websocket", ca_certs=str(missing))

    assert "ca_certs" in str(info.value) and str(missing) in str(info.value)
    assert no_network == []


def test_an_infinite_connect_timeout_is_refused(no_network):
    with pytest.raises(ConfigurationError, match="connect_timeout"):
        new_client(api_key=CANARY_KEY, url=f"ws://127.0.0.1{STT_PATH}", connect_timeout=math.inf)


def test_a_drop_is_not_a_connect_error_but_both_are_network_errors():
    """``except ConnectError`` around connect() must not also catch a drop mid-session."""
    from cartesia_sync import ConnectionLostError, NetworkError

    assert not issubclass(ConnectionLostError, ConnectError)
    assert issubclass(ConnectionLostError, NetworkError) and issubclass(ConnectError, NetworkError)
    lost = ConnectionLostError("dropped", close_code=1011, close_reason="x")
    assert (lost.status_code, lost.body, lost.close_code, lost.close_reason) == (None, None, 1011, "x")
