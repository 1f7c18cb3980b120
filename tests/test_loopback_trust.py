"""A key goes over plain ws:// only to a literal loopback address or to ``localhost``: never on a DNS answer.

A name that resolves to 127.0.0.1 here (the machine's own name, ``localhost.localdomain``
in many hosts files) may resolve elsewhere tomorrow, or on the next machine the
same configuration runs on; the decision is made without any lookup.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

import pytest

import cartesia_sync
from cartesia_sync import ConfigurationError
from cartesia_sync.testing import FakeCartesia

pytestmark = pytest.mark.timeout(60)

KEY = "sk_loopback_trust_canary"


@pytest.fixture
def no_lookups(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail on any name lookup or connect; returns the attempts (the decision must make none)."""
    attempts: list[Any] = []

    def refuse(what: str) -> Any:
        def fake(*args: Any, **kwargs: Any) -> Any:
            attempts.append((what, args))
            raise OSError(f"{what} called while deciding whether a host is loopback")

        return fake

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "create_connection"):
        monkeypatch.setattr(socket, name, refuse(name))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    return attempts


def client(url: str, api_key: str | None = KEY) -> cartesia_sync.Client:
    return cartesia_sync.Client(url=url, api_key=api_key, load_entrypoints=False)


@pytest.mark.parametrize(
    "host",
    [
        "localhost.localdomain",
        "foo.localhost",  # RFC 6761 says these resolve to loopback; a resolver need not agree
        "localhost..",
        "127.0.0.1.nip.io",
        "127.1",  # inet_aton shorthands: a resolver reads them as 127.0.0.1, this check does not
        "0x7f.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "127.0.0.1.",
        "[::127.0.0.1]",  # IPv4-compatible (deprecated), not loopback
        "[::]",
        "0.0.0.0",
        "[::ffff:10.0.0.1]",
        "%6cocalhost",
        "xn--localhost-",
    ],
)
def test_names_and_odd_spellings_are_refused_without_a_lookup(no_lookups, host):
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="refusing to send an API key over unencrypted ws://") as info:
        client(f"ws://{host}:8080/stt/websocket")
    assert time.monotonic() - started < 1.0
    assert no_lookups == []
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST",
        "LocalHost.",  # one trailing dot: the same, fully qualified name
        "127.0.0.1",
        "127.255.254.253",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "[::ffff:7f00:2]",
    ],
)
def test_literal_loopback_and_localhost_are_trusted_without_a_lookup(no_lookups, host):
    assert client(f"ws://{host}:8080/stt/websocket").settings.is_loopback
    assert no_lookups == []


def a_name_resolving_to_loopback() -> str:
    """A name that this machine's resolver (hosts file, DNS) answers with loopback addresses only."""
    for name in (socket.gethostname(), "localhost.localdomain", "ip6-localhost", "ip6-loopback", "localhost6"):
        if name.lower().rstrip(".") == "localhost":
            continue
        try:
            answers = {info[4][0] for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)}
        except OSError:
            continue
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in answers]
        if addresses and all(a.is_loopback for a in addresses) and any(a.version == 4 for a in addresses):
            return name
    pytest.skip("no name other than localhost resolves to an IPv4 loopback address here")


def test_a_name_that_resolves_to_loopback_gets_no_key():
    """The name reaches the fake server (no key: it connects), but the key is never sent over ws:// to it."""
    name = a_name_resolving_to_loopback()
    with FakeCartesia(["hello"]) as fake:
        port = fake.url.split(":")[2].split("/")[0]
        url = f"ws://{name}:{port}/stt/websocket"
        with pytest.raises(ConfigurationError, match=f"to {name.lower()}") as info:
            client(url).connect()
        assert KEY not in str(info.value)
        assert fake.connections == []  # refused before any socket opened
        with client(url, api_key=None).connect() as session:  # the same name, keyless: it is reachable
            session.send(b"\0" * 3200)
        assert session.text == "hello"
        assert len(fake.connections) == 1
