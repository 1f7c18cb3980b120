"""``cartesia-sync serve`` reachable from other machines: a key, or an explicit ``--no-key``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import cartesia_sync
from cartesia_sync.cli import main

pytestmark = pytest.mark.timeout(60)

PUBLIC = ["serve", "--host", "0.0.0.0", "--allow-remote", "--port", "0", "--engine", "scripted"]


@pytest.fixture(autouse=True)
def no_server_key(monkeypatch):
    monkeypatch.delenv("CARTESIA_SYNC_SERVER_KEY", raising=False)


def test_allow_remote_without_a_key_refuses_to_start_and_says_how(capsys):
    started = time.monotonic()
    code = main(PUBLIC)
    out, err = capsys.readouterr()
    assert time.monotonic() - started < 5.0  # refused before any server is built
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("cartesia-sync: error: refusing to serve '0.0.0.0'")
    assert "without a key" in err and "anyone who can reach the port" in err
    assert "--api-key" in err and "$CARTESIA_SYNC_SERVER_KEY" in err and "--no-key" in err


@pytest.mark.parametrize(
    ("extra", "env", "named"),
    [(["--api-key", "sk_x"], None, "--api-key"), ([], "sk_from_env", "$CARTESIA_SYNC_SERVER_KEY")],
)
def test_no_key_and_a_key_together_are_a_usage_error(capsys, monkeypatch, extra, env, named):
    if env:
        monkeypatch.setenv("CARTESIA_SYNC_SERVER_KEY", env)
    code = main([*PUBLIC, "--no-key", *extra])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"--no-key and {named} contradict" in err and "sk_" not in err


def test_the_help_names_the_option(capsys):
    assert main(["serve", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--no-key" in help_text and "anyone who can reach the port may use it" in help_text


def serve(*args: str, env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``serve`` in a subprocess; returns it and its first stderr line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    env.update(env_extra or {})
    proc = subprocess.Popen([sys.executable, "-m", "cartesia_sync", *args], stderr=subprocess.PIPE, text=True, env=env)
    return proc, proc.stderr.readline()


def stop(proc: subprocess.Popen) -> int:
    try:
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.stderr.close()


def test_an_open_server_starts_when_asked_for_explicitly():
    proc, line = serve(*PUBLIC, "--no-key")
    try:
        assert "serving ws://0.0.0.0:" in line and "no key needed" in line, line
        port = line.split("ws://0.0.0.0:", 1)[1].split("/", 1)[0]
        url = f"ws://127.0.0.1:{port}/stt/websocket"
        with cartesia_sync.Client(url=url, api_key=None, load_entrypoints=False).connect() as session:
            session.send(b"\0" * 3200)
        assert session.text.startswith(" seg1:3200b:")
    finally:
        assert stop(proc) == 0


def test_a_reachable_server_with_a_key_from_the_environment_starts():
    proc, line = serve(*PUBLIC, env_extra={"CARTESIA_SYNC_SERVER_KEY": "sk_env_key"})
    try:
        assert "key required" in line and "sk_env_key" not in line, line
        port = line.split("ws://0.0.0.0:", 1)[1].split("/", 1)[0]
        url = f"ws://127.0.0.1:{port}/stt/websocket"
        with pytest.raises(cartesia_sync.AuthenticationError):
            cartesia_sync.Client(url=url, api_key=None, load_entrypoints=False).connect()
    finally:
        assert stop(proc) == 0
