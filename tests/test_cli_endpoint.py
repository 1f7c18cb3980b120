"""Which endpoint a command talks to: the same choice as ``cartesia_sync.transcribe()`` makes from the same inputs."""

from __future__ import annotations

import argparse

import pytest

from cartesia_sync import Client
from cartesia_sync._cli.endpoint import endpoint, given_endpoint

ENVIRONMENT = ("CARTESIA_API_KEY", "CARTESIA_STT_URL", "CARTESIA_BASE_URL")


def args(**given: str | None) -> argparse.Namespace:
    values = {"url": None, "base_url": None, "engine": "scripted", "no_plugins": True}
    values.update(given)
    return argparse.Namespace(**values)


@pytest.fixture
def environment(monkeypatch):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_with_both_addresses_in_the_environment_the_client_reads_both_as_the_library_does(environment):
    environment.setenv("CARTESIA_API_KEY", "sk_test")
    environment.setenv("CARTESIA_STT_URL", "wss://proxy.example/stt/websocket")
    environment.setenv("CARTESIA_BASE_URL", "https://proxy.example")
    with endpoint(args()) as reach:
        assert reach == {}  # the Client resolves the environment itself
        client = Client(**reach)
    assert client.endpoints.batch == "https://proxy.example/stt"
    assert client.settings.url.startswith("wss://proxy.example/stt/websocket")
    assert given_endpoint(args(), with_environment=True) == {
        "url": "wss://proxy.example/stt/websocket",
        "base_url": "https://proxy.example",
    }


def test_options_replace_the_environment_whole(environment):
    environment.setenv("CARTESIA_API_KEY", "sk_test")
    environment.setenv("CARTESIA_STT_URL", "wss://env.example/stt/websocket")
    chosen = args(base_url="http://127.0.0.1:9000")
    with endpoint(chosen) as reach:
        assert reach == {"base_url": "http://127.0.0.1:9000"}
    assert given_endpoint(chosen, with_environment=True) == {"base_url": "http://127.0.0.1:9000"}
    both = args(url="ws://127.0.0.1:9001/stt/websocket", base_url="http://127.0.0.1:9000")
    with endpoint(both) as reach:
        client = Client(**reach)
    assert client.settings.url.startswith("ws://127.0.0.1:9001/stt/websocket")  # --url: the streaming route
    assert client.endpoints.batch == "http://127.0.0.1:9000/stt"  # --base-url: every other route


def test_a_base_url_in_the_environment_alone_is_an_endpoint_not_a_reason_for_the_embedded_server(environment):
    environment.setenv("CARTESIA_BASE_URL", "http://127.0.0.1:9000")
    with endpoint(args()) as reach:
        assert reach == {}


def test_with_nothing_given_the_embedded_server_is_reached_by_its_base_url(environment, capsys):
    with endpoint(args()) as reach:
        assert set(reach) == {"base_url"} and reach["base_url"].startswith("http://127.0.0.1:")
        client = Client(**reach)
        assert client.endpoints.batch == reach["base_url"] + "/stt"
        assert client.endpoints.turns.startswith(reach["base_url"].replace("http", "ws") + "/stt/turns/websocket")
    assert "using the embedded local server (scripted)" in capsys.readouterr().err
