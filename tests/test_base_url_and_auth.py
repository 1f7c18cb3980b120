"""One base URL for every route, the ways a key or token is sent, and minting tokens with POST /access-token."""

from __future__ import annotations

import time

import pytest
from batch_server import BatchServer, Reply
from conftest import CANARY_KEY

import cartesia_sync
from cartesia_sync import AuthenticationError, ConfigurationError, ProtocolError, create_access_token
from cartesia_sync.testing import FakeCartesia

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("CARTESIA_API_KEY", "CARTESIA_STT_URL", "CARTESIA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def client(**kwargs) -> cartesia_sync.Client:
    return cartesia_sync.Client(load_entrypoints=False, **kwargs)


def test_the_default_base_url_derives_every_route():
    endpoints = client().endpoints
    assert endpoints.stream == "wss://api.cartesia.ai/stt/websocket"
    assert endpoints.turns == "wss://api.cartesia.ai/stt/turns/websocket"
    assert endpoints.batch == "https://api.cartesia.ai/stt"
    assert endpoints.access_token == "https://api.cartesia.ai/access-token"
    assert endpoints.offers_batch


def test_a_base_url_with_a_port_and_prefix_and_the_environment(monkeypatch):
    endpoints = client(base_url="http://127.0.0.1:8080/proxy/cartesia/").endpoints
    assert endpoints.stream == "ws://127.0.0.1:8080/proxy/cartesia/stt/websocket"
    assert endpoints.batch == "http://127.0.0.1:8080/proxy/cartesia/stt"
    monkeypatch.setenv("CARTESIA_BASE_URL", "https://eu.example.com")
    assert client().endpoints.batch == "https://eu.example.com/stt"
    assert client().settings.url == "wss://eu.example.com/stt/websocket"


def test_url_alone_names_the_streaming_endpoint_only(monkeypatch):
    alone = client(url="ws://127.0.0.1:9/stt/websocket").endpoints
    assert alone.stream == "ws://127.0.0.1:9/stt/websocket" and not alone.offers_batch and alone.batch is None
    both = client(url="ws://127.0.0.1:9/custom", base_url="http://127.0.0.1:10").endpoints
    assert both.stream == "ws://127.0.0.1:9/custom" and both.batch == "http://127.0.0.1:10/stt"
    monkeypatch.setenv("CARTESIA_STT_URL", "ws://127.0.0.1:11/stt/websocket")
    from_env = client().endpoints
    assert from_env.stream == "ws://127.0.0.1:11/stt/websocket" and not from_env.offers_batch


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("ftp://example.com", "must start with https:// or http://"),
        ("wss://api.cartesia.ai", "streaming endpoint alone goes in url="),
        ("https://user:pw@example.com", "user name or password"),
        ("https://example.com/?x=1", "query or fragment"),
        ("https://example.com:99999", "bad port"),
        ("https://", "no host"),
    ],
)
def test_a_malformed_base_url_is_refused_clearly(base_url, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        client(base_url=base_url)
    assert "pw" not in str(caught.value)


def test_a_credential_never_goes_over_plain_http_to_another_machine():
    with pytest.raises(ConfigurationError, match="unencrypted http:// to example.com"):
        client(base_url="http://example.com", api_key="k")
    with pytest.raises(ConfigurationError, match="unencrypted"):
        client(base_url="http://example.com", access_token="t")
    assert client(base_url="http://example.com").endpoints.batch == "http://example.com/stt"  # no credential
    assert client(base_url="http://localhost:1", api_key="k").endpoints.batch == "http://localhost:1/stt"
    with pytest.raises(ConfigurationError, match="access token over unencrypted ws://"):
        client(url="ws://example.com/stt/websocket", access_token="t")


@pytest.mark.parametrize(
    ("auth", "header", "value", "query"),
    [
        ("header", "x-api-key", CANARY_KEY, None),
        ("bearer", "authorization", f"Bearer {CANARY_KEY}", None),
        ("query", None, None, CANARY_KEY),
    ],
)
def test_each_way_of_sending_the_key_on_the_websocket(auth, header, value, query):
    with FakeCartesia(api_key=CANARY_KEY, record_secrets=True) as server:
        session = client(url=server.url, api_key=CANARY_KEY, auth=auth).connect()
        display = session.settings.display_url
        session.close()
    (record,) = server.connections
    headers = {name.lower(): v for name, v in record.headers.items()}
    if header is not None:
        assert headers[header] == value
    assert not ({"x-api-key", "authorization"} - {header or ""}) & set(headers)
    assert dict(record.query).get("api_key") == query
    assert CANARY_KEY not in display and CANARY_KEY not in repr(session.settings)


def test_a_token_goes_as_access_token_on_the_websocket_and_replaces_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("CARTESIA_API_KEY", "sk_from_env")
    with FakeCartesia(record_secrets=True) as server:
        tokened = client(url=server.url, access_token=CANARY_KEY)
        session = tokened.connect()
        session.close()
    (record,) = server.connections
    assert dict(record.query)["access_token"] == CANARY_KEY
    headers = {name.lower() for name in record.headers}
    assert not {"x-api-key", "authorization"} & headers
    assert "sk_from_env" not in str(record.headers) + str(record.query)
    assert "access_token=***" in session.settings.display_url and CANARY_KEY not in session.settings.display_url
    assert repr(tokened) == f"Client(url={session.settings.display_url!r}, access_token=***, model='ink-whisper')"
    assert repr(session.settings.api_key) == "AccessToken(***)"


def test_a_token_and_a_key_together_or_a_broken_token_are_refused_without_showing_it():
    with pytest.raises(ConfigurationError, match="not both"):
        client(api_key="k", access_token="t")
    for bad in (f"{CANARY_KEY}\r\nX-Evil: 1", f" {CANARY_KEY}", f"{CANARY_KEY}\n", f"{CANARY_KEY}\u00e9"):
        with pytest.raises(ConfigurationError, match="the access token") as caught:
            client(base_url="http://127.0.0.1:1", access_token=bad)
        assert CANARY_KEY not in str(caught.value)


def test_create_access_token_posts_the_grants_and_returns_the_token():
    with BatchServer(Reply(body={"token": "tok_abc.def"})) as server:
        token = create_access_token(CANARY_KEY, grants=("stt", "tts"), expires_in=60, base_url=server.base_url)
    assert token == "tok_abc.def"
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/access-token")
    assert request.json == {"grants": {"stt": True, "tts": True}, "expires_in": 60}
    assert request.headers["authorization"] == f"Bearer {CANARY_KEY}"
    assert request.headers["cartesia-version"] == "2026-03-01"


def test_create_access_token_uses_the_environment(monkeypatch):
    with BatchServer(Reply(body={"token": "t1"})) as server:
        monkeypatch.setenv("CARTESIA_API_KEY", "sk_env")
        monkeypatch.setenv("CARTESIA_BASE_URL", server.base_url)
        assert create_access_token() == "t1"
    assert server.requests[0].json == {"grants": {"stt": True}, "expires_in": 3600}
    assert server.requests[0].headers["authorization"] == "Bearer sk_env"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expires_in": 0}, "from 1 to 3600"),
        ({"expires_in": 3601}, "from 1 to 3600"),
        ({"expires_in": True}, "from 1 to 3600"),
        ({"expires_in": 60.5}, "from 1 to 3600"),
        ({"grants": ("stt", "video")}, "grants must be some of"),
        ({"grants": ()}, "grants must be some of"),
        ({"base_url": "http://example.com"}, "unencrypted http://"),
    ],
)
def test_create_access_token_checks_its_arguments_before_any_request(kwargs, message):
    with BatchServer() as server:
        kwargs.setdefault("base_url", server.base_url)
        with pytest.raises(ConfigurationError, match=message):
            create_access_token("k", **kwargs)
    assert server.requests == []
    with pytest.raises(ConfigurationError, match="needs an API key"):
        create_access_token()


def test_create_access_token_failures_are_mapped_and_never_show_the_key():
    with BatchServer(Reply(status=401, body={"message": f"bad key {CANARY_KEY}", "request_id": "r1"})) as server:
        with pytest.raises(AuthenticationError) as caught:
            create_access_token(CANARY_KEY, base_url=server.base_url)
    error = caught.value
    assert error.status_code == 401 and error.request_id == "r1" and "bad key ***" in str(error)
    assert CANARY_KEY not in f"{error} {error!r} {error.body}"
    with BatchServer(Reply(body={"tokenn": "x"})) as server, pytest.raises(ProtocolError, match="'token'"):
        create_access_token("k", base_url=server.base_url)
    with BatchServer(Reply(status=503, headers={"Retry-After": "0.2"}), Reply(body={"token": "t2"})) as server:
        started = time.monotonic()
        assert create_access_token("k", base_url=server.base_url) == "t2"
        assert 0.2 <= time.monotonic() - started < 3


def test_a_minted_token_authenticates_a_batch_upload():
    with BatchServer(Reply(body={"token": "tok_for_batch"}), Reply()) as server:
        token = create_access_token("sk_backend", base_url=server.base_url)
        result = client(base_url=server.base_url, access_token=token).transcribe(
            b"\0" * 3200, mode="batch", sample_rate=16000
        )
    assert result.complete and server.requests[1].headers["authorization"] == "Bearer tok_for_batch"
    assert "x-api-key" not in server.requests[1].headers
