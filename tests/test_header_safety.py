"""Credentials and headers cannot change the handshake: anything unsafe is refused before a socket opens."""

from __future__ import annotations

import pytest

import cartesia_sync
from cartesia_sync import ConfigurationError
from cartesia_sync.testing import FakeCartesia

SECRET = "sk_live_0123456789abcdef"

# (what is wrong, how it is spliced into a good value, what the error says)
FLAWS = [
    ("CRLF injection", lambda v: v[:6] + "\r\nX-Evil: 1" + v[6:], "line break"),
    ("bare LF", lambda v: v[:6] + "\n" + v[6:], "line break"),
    ("bare CR", lambda v: v[:6] + "\r" + v[6:], "line break"),
    ("NUL", lambda v: v[:6] + "\0" + v[6:], "NUL"),
    ("control character", lambda v: v[:6] + "\x1b" + v[6:], "control character"),
    ("DEL", lambda v: v + "\x7f", "control character"),
    ("non-ASCII", lambda v: v[:6] + "é" + v[6:], "non-ASCII"),
    ("leading space", lambda v: " " + v, "leading or trailing whitespace"),
    ("trailing tab", lambda v: v + "\t", "control character"),
    ("interior space", lambda v: v[:6] + " " + v[6:], "interior whitespace"),
]


def _refused(server: FakeCartesia, **settings) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as raised:
        cartesia_sync.Client(url=server.url, load_entrypoints=False, **settings).connect()
    assert not server.connections, "no handshake may be attempted"
    return raised.value


@pytest.mark.parametrize("flaw, splice, says", FLAWS, ids=[f[0] for f in FLAWS])
def test_an_unsafe_api_key_is_refused_without_showing_it(flaw, splice, says):
    with FakeCartesia() as server:
        error = _refused(server, api_key=splice(SECRET))
    assert says in str(error)
    assert SECRET[:6] not in str(error) and SECRET[6:] not in str(error)


def test_a_key_read_from_a_file_with_its_newline_gets_a_message_that_says_so(tmp_path, monkeypatch):
    key_file = tmp_path / "key.txt"
    key_file.write_text(SECRET + "\n")
    monkeypatch.setenv("CARTESIA_API_KEY", key_file.read_text())
    with FakeCartesia() as server:
        error = _refused(server)
    assert "ends with a line break" in str(error) and "strip" in str(error)
    assert SECRET not in str(error)


@pytest.mark.parametrize("flaw, splice, says", FLAWS, ids=[f[0] for f in FLAWS])
def test_an_unsafe_cartesia_version_is_refused(flaw, splice, says):
    with FakeCartesia() as server:
        error = _refused(server, cartesia_version=splice("2026-03-01"))
    assert says in str(error) and "cartesia_version" in str(error)


@pytest.mark.parametrize("name", ["X-A\r\nB", "X A", "X:A", "", "X-\x00", "Ä-Header", " X"])
def test_an_unsafe_extra_header_name_is_refused(name):
    with FakeCartesia() as server:
        error = _refused(server, extra_headers={name: "1"})
    assert "not a valid HTTP header name" in str(error)


@pytest.mark.parametrize("value", ["1\r\nX-Evil: 2", "1\n", "a\0b", "\x1b[31m", "café", " padded", "padded "])
def test_an_unsafe_extra_header_value_is_refused(value):
    with FakeCartesia() as server:
        error = _refused(server, extra_headers={"X-Trace": value})
    assert "extra header 'X-Trace'" in str(error)


def test_safe_values_go_through_unchanged():
    """Every printable ASCII character in a key, and interior spaces in an extra header value (RFC 9110)."""
    key = "".join(chr(c) for c in range(0x21, 0x7F))
    with FakeCartesia(api_key=key, record_secrets=True) as server:
        client = cartesia_sync.Client(
            url=server.url, api_key=key, load_entrypoints=False, extra_headers={"User-Agent": "my app/1.0 (test)"}
        )
        with client.connect() as session:
            session.send(b"\0" * 3200)
        headers = server.connections[0].headers
    assert headers["x-api-key"] == key and headers["user-agent"] == "my app/1.0 (test)"
