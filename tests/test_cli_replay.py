"""`cartesia-sync replay` on what users actually pass it: other files, damaged logs, logs of several sessions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
from cli_helpers import run_cli
from conftest import pcm

import cartesia_sync
from cartesia_sync.cli import main
from cartesia_sync_plugins.event_log import EventLog

EXPECTED = "expected a JSON Lines event log"


def replay(capsys, *args: str):
    """Run ``cartesia-sync replay`` in-process: (exit code, stdout, stderr)."""
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *parts: str) -> None:
    assert err.startswith("cartesia-sync: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "session=" not in err
    for part in parts:
        assert part in err, (part, err)


def log_sessions(server, path, *seconds: float) -> list:
    """Append one session per duration to the event log at ``path``; return the sessions."""
    sessions = []
    for duration in seconds:
        client = cartesia_sync.Client(url=server.url, plugins=[EventLog(path)], load_entrypoints=False)
        with client.connect() as session:
            session.send(pcm(duration))
        sessions.append(session)
    return sessions


# -- files that are not event logs --------------------------------------------------


def test_a_wav_file_is_refused_in_one_line(tmp_path, capsys):
    wav = tmp_path / "talk.wav"
    soundfile.write(wav, np.zeros(16000, dtype=np.int16), 16000)
    code, out, err = replay(capsys, str(wav))
    assert code == 1 and out == ""
    assert_one_error_line(err, f"{wav} is not an event log", "WAV audio file", "cartesia-sync transcribe", EXPECTED)


NOT_LOGS = {
    "random.bin": (bytes(range(256)) * 8, "binary data"),
    "settings.json": (
        json.dumps({"model": "ink-whisper", "language": "en"}, indent=2).encode(),
        "a single JSON object",
    ),
    "one-line.json": (b'{"model": "ink-whisper"}', "a single JSON object"),
    "records.jsonl": (
        b'{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n',
        'none of its 2 JSON lines is an event record (a JSON object with "event" and "session"',
    ),
    "notes.txt": ("Meeting notes\nsecond line, ünïcödé\n".encode(), "line 1 is not JSON"),
    "empty.jsonl": (b"", "it is empty (0 bytes)"),
    "blank.jsonl": (b"\n\n  \n", "only white space"),
}


@pytest.mark.parametrize("name", list(NOT_LOGS))
def test_files_that_are_not_event_logs_are_refused_in_one_line(tmp_path, capsys, name):
    data, reason = NOT_LOGS[name]
    path = tmp_path / name
    path.write_bytes(data)
    code, out, err = replay(capsys, str(path))
    assert code == 1 and out == ""
    assert_one_error_line(err, f"{path} is not an event log", reason, EXPECTED)


def test_a_missing_file_is_one_line(tmp_path, capsys):
    code, out, err = replay(capsys, str(tmp_path / "nowhere.jsonl"))
    assert code == 1 and out == ""
    assert_one_error_line(err, "No such file or directory", "nowhere.jsonl")


def test_a_corrupt_line_inside_a_log_is_named(server, tmp_path, capsys):
    log = tmp_path / "events.jsonl"
    log_sessions(server, log, 0.1)
    lines = log.read_bytes().split(b"\n")
    lines.insert(2, b"{not json")
    log.write_bytes(b"\n".join(lines))
    code, out, err = replay(capsys, str(log))
    assert code == 1 and out == ""
    assert_one_error_line(err, "line 3 is corrupt", "not JSON", "delete or repair that line")


def test_the_refusals_go_through_the_console_script_too(tmp_path):
    wav = tmp_path / "talk.wav"
    soundfile.write(wav, np.zeros(1600, dtype=np.int16), 16000)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    for path, reason in ((wav, "WAV audio file"), (empty, "it is empty")):
        result = run_cli("replay", str(path))
        assert result.returncode == 1 and result.stdout == ""
        assert_one_error_line(result.stderr, reason, EXPECTED)


# -- sessions ------------------------------------------------------------------------


def test_sessions_of_one_log_are_numbered_in_file_order_and_chosen_with_session(server, tmp_path, capsys):
    log = tmp_path / "events.jsonl"
    sessions = log_sessions(server, log, 0.1, 0.2, 0.3)
    ids = [
        json.loads(line)["session"]
        for line in log.read_text().splitlines()
        if json.loads(line)["event"] == "session_start"
    ]
    for number, (session, sid) in enumerate(zip(sessions, ids, strict=False), start=1):
        for choice in (str(number), sid):
            code, out, err = replay(capsys, str(log), "--session", choice)
            assert (code, out, err) == (0, session.text.strip() + "\n", "")
    assert [s.text for s in sessions] == [" seg1:3200b", " seg1:6400b", " seg1:9600b"]


def test_a_log_of_several_sessions_lists_them_and_asks_for_session(server, tmp_path, capsys):
    log = tmp_path / "events.jsonl"
    log_sessions(server, log, 0.1, 0.2)
    code, out, err = replay(capsys, str(log))
    assert code == 2 and out == ""
    headline, *rows = err.splitlines()
    assert headline == (
        f"cartesia-sync: error: {log} holds 2 sessions; choose one with --session N (its number or its id):"
    )
    assert len(rows) == 2
    assert rows[0].split()[0] == "1" and rows[0].endswith('0.1 s of audio  "seg1:3200b"')
    assert rows[1].split()[0] == "2" and rows[1].endswith('0.2 s of audio  "seg1:6400b"')


@pytest.mark.parametrize("choice", ["3", "0", "1-00000000"])
def test_a_session_that_is_not_in_the_log_lists_those_that_are(server, tmp_path, capsys, choice):
    log = tmp_path / "events.jsonl"
    log_sessions(server, log, 0.1, 0.2)
    code, out, err = replay(capsys, str(log), "--session", choice)
    assert code == 2 and out == ""
    headline, *rows = err.splitlines()
    assert headline == (
        f"cartesia-sync: error: {log} has no session '{choice}'; choose one of its 2 sessions "
        "with --session N (its number or its id):"
    )
    assert [row.split()[0] for row in rows] == ["1", "2"] and "session=" not in err


def test_sessions_of_two_runs_with_the_same_session_number_are_told_apart(server, tmp_path):
    log = tmp_path / "events.jsonl"
    for seconds in (0.1, 0.2):  # each process numbers its sessions from 1
        wav = tmp_path / f"{seconds}.wav"
        soundfile.write(wav, np.zeros(int(16000 * seconds), dtype=np.int16), 16000)
        result = run_cli("transcribe", str(wav), "--url", server.url, "--log", str(log))
        assert result.returncode == 0, result.stderr
    starts = [json.loads(line) for line in log.read_text().splitlines() if '"session_start"' in line]
    assert [r["number"] for r in starts] == [1, 1] and starts[0]["session"] != starts[1]["session"]

    listing = run_cli("replay", str(log))
    assert listing.returncode == 2 and listing.stdout == ""
    rows = listing.stderr.splitlines()[1:]
    assert [row.split()[:2] for row in rows] == [["1", starts[0]["session"]], ["2", starts[1]["session"]]]
    first, second = run_cli("replay", str(log), "--session", "1"), run_cli("replay", str(log), "--session", "2")
    assert (first.returncode, first.stdout) == (0, "seg1:3200b\n")
    assert (second.returncode, second.stdout) == (0, "seg1:6400b\n")
    by_id = run_cli("replay", str(log), "--session", starts[1]["session"])
    assert (by_id.returncode, by_id.stdout) == (0, "seg1:6400b\n")


# -- serve: errors name the command line's options ---------------------------------------


def test_serve_on_a_public_address_asks_for_allow_remote(capsys):
    code = main(["serve", "--host", "0.0.0.0", "--port", "0", "--engine", "scripted"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("cartesia-sync: error: refusing to bind '0.0.0.0'") and err.count("\n") == 1
    assert "--allow-remote" in err and "allow_remote" not in err


def test_serve_with_a_bad_idle_timeout_names_the_option(capsys):
    code = main(["serve", "--idle-timeout", "0", "--engine", "scripted"])
    out, err = capsys.readouterr()
    assert code == 2 and "--idle-timeout" in err and "idle_timeout" not in err and err.count("\n") == 1
