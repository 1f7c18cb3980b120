"""The command line prints a hostile server's text without its escape sequences, and on any terminal.

A real subprocess against the fake Cartesia serving text full of terminal
escapes (clipboard writes, screen clears, 8-bit CSI), bidi overrides, a lone
surrogate and non-ASCII letters; with ``PYTHONIOENCODING=ascii`` too, where a
strict ``print`` would end in ``UnicodeEncodeError``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from cartesia_sync.testing import Scenario

pytestmark = pytest.mark.timeout(120)

HOSTILE = (
    "Caf\u00e9 \x1b]52;c;ZXZpbA==\x07ok \x1b[2J\x1b[Hcleared \u202egnp.exe\u202c "
    "\x9b31mred \x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\ lone \udc80 end\nnext line"
)
#: What must never reach a terminal: ESC, the 8-bit CSI/OSC/ST and NEL, bidi controls; and the
#: parameters of the sequences (proof that they were dropped whole, not just their ESC).
FORBIDDEN = re.compile("[\x1b\x9b\x9c\x9d\x85\u202a-\u202e\u2066-\u2069]|52;c|\\[2J|8;;|evil\\.example")


#: A C locale with neither locale coercion nor UTF-8 mode: stdout is ASCII with ``surrogateescape``.
C_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}


def run_cli(*args: str, encoding: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARTESIA", "PYTHONIOENCODING", "LC_"))}
    if encoding == "C":
        env.update(C_LOCALE)
    elif encoding:
        env["PYTHONIOENCODING"] = encoding
    return subprocess.run(
        [sys.executable, "-m", "cartesia_sync", *args], capture_output=True, timeout=60, env=env, check=False
    )


def decoded(data: bytes, encoding: str | None) -> str:
    """The output as a terminal would decode it; asserts that an ASCII terminal got only ASCII."""
    if encoding in ("ascii", "C"):
        assert max(data, default=0) < 0x80, data
    return data.decode("utf-8")


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    soundfile.write(path, np.zeros(16000, dtype=np.int16), 16000)
    return str(path)


@pytest.mark.parametrize("engine_options", [{"segments": [HOSTILE]}])
@pytest.mark.parametrize("encoding", ["ascii", "C", "utf-8"])
def test_a_hostile_transcript_is_printed_as_plain_text(server, wav, encoding):
    result = run_cli("transcribe", wav, "--url", server.url, encoding=encoding)
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    out = decoded(result.stdout, encoding)
    assert not FORBIDDEN.search(out), out
    cafe, lone = ("Caf\u00e9", "\ufffd") if encoding == "utf-8" else ("Caf?", "?")
    assert out == f"{cafe} ok cleared gnp.exe red link lone {lone} end\nnext line\n"


@pytest.mark.parametrize("engine_options", [{"segments": [HOSTILE]}])
def test_json_keeps_the_text_exactly_and_is_ascii(server, wav):
    result = run_cli("transcribe", wav, "--url", server.url, "--json", encoding="ascii")
    assert result.returncode == 0, result.stderr
    assert max(result.stdout) < 0x80  # every control and non-ASCII character escaped by json
    assert json.loads(result.stdout)["text"] == HOSTILE  # JSON is data: the text as the server sent it


HOSTILE_ERROR = {
    "type": "error",
    "done": True,
    "status_code": 400,
    "error_code": "bad\x1b[2J",
    "title": "Bad \u202erequest",
    "message": "refused \x1b]52;c;ZXZpbA==\x07 caf\u00e9\nsecond line \x9b31m",
    "request_id": "req-\x1b]0;owned\x07-\udc80",
}


@pytest.mark.parametrize("scenario", [Scenario(error_after_bytes=16000, error_message=HOSTILE_ERROR)])
@pytest.mark.parametrize("encoding", ["ascii", "utf-8"])
def test_a_hostile_server_error_is_one_plain_line(server, wav, encoding):
    result = run_cli("transcribe", wav, "--url", server.url, encoding=encoding)
    assert result.returncode == 1
    err = decoded(result.stderr, encoding)
    assert "Traceback" not in err and not FORBIDDEN.search(err), err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartesia-sync: error: ")
    assert "Bad request: refused caf" in lines[0] and "second line" in lines[0]


@pytest.mark.parametrize("scenario", [Scenario(error_after_bytes=16000, error_message=HOSTILE_ERROR)])
def test_debug_output_is_terminal_safe_too(server, wav):
    """--debug shows log lines and tracebacks, and they quote the server: they are filtered as well."""
    result = run_cli("--debug", "transcribe", wav, "--url", server.url, encoding="ascii")
    assert result.returncode == 1
    err = decoded(result.stderr, "ascii")
    assert "Traceback" in err and "refused" in err
    assert not FORBIDDEN.search(err)


@pytest.mark.parametrize(
    "scenario", [Scenario(reject_status=403, reject_body="\x1b]0;owned\x07denied \u202ehere\x1b[2J caf\u00e9")]
)
def test_a_hostile_handshake_refusal_body_is_one_plain_line(server, wav):
    result = run_cli("transcribe", wav, "--url", server.url, encoding="ascii")
    assert result.returncode == 1
    err = decoded(result.stderr, "ascii")
    assert not FORBIDDEN.search(err) and "owned" not in err
    assert err.count("\n") == 1 and "HTTP 403" in err and "denied here caf" in err


#: The event log plugin cannot write a lone surrogate (it is no text in UTF-8): the replayed text has none.
LOGGABLE = HOSTILE.replace("\udc80", "\ufffd")


@pytest.mark.parametrize("engine_options", [{"segments": [LOGGABLE]}])
def test_replay_of_a_hostile_log_prints_plain_text(server, wav, tmp_path):
    log = tmp_path / "events.jsonl"
    for _ in range(2):  # two sessions: replay without --session lists them, first words included
        assert run_cli("transcribe", wav, "--url", server.url, "--log", str(log)).returncode == 0
    listing = run_cli("replay", str(log), encoding="ascii")
    assert listing.returncode == 2
    err = decoded(listing.stderr, "ascii")
    assert err.count("\n") == 3 and not FORBIDDEN.search(err), err
    assert err.count('"Caf\\xe9 ok cleared gnp.exe red link lone \\ufffd ..."') == 2  # stderr: backslashreplace
    replayed = run_cli("replay", str(log), "--session", "2", encoding="ascii")
    assert replayed.returncode == 0, replayed.stderr
    out = decoded(replayed.stdout, "ascii")
    assert out == "Caf? ok cleared gnp.exe red link lone ? end\nnext line\n"


def test_warnings_of_unconfigured_loggers_are_terminal_safe_too(capsys, monkeypatch):
    """A bundled plugin's warning (no handler configured) quoting the server goes out filtered, then as before."""
    import logging

    from cartesia_sync._cli.common import safe_last_resort

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in the command: pytest's capture handler off
    before = logging.lastResort
    logger = logging.getLogger("cartesia_sync_plugins.hostile_test")
    with safe_last_resort():
        logger.warning("stopped: %s", "\x1b]52;c;ZXZpbA==\x07server \u202esaid\x1b[2J")
        logger.info("not shown")
    assert capsys.readouterr().err == "stopped: server said\n"
    assert logging.lastResort is before
