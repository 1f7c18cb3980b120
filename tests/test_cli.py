"""The command line, run as a real subprocess against the fake Cartesia server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile
from cli_helpers import run_cli

from cartesia_sync.testing import Scenario


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    soundfile.write(path, np.zeros(16000, dtype=np.int16), 16000)
    return str(path)


def test_transcribe_prints_the_text(server, wav):
    result = run_cli("transcribe", wav, "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "seg1:32000b\n"


def test_transcribe_json(server, wav):
    result = run_cli("transcribe", wav, "--url", server.url, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["text"] == " seg1:32000b"
    assert data["words"] == [{"word": "seg1:32000b", "start": 0.0, "end": 1.0}]
    assert data["audio_seconds"] == 1.0


def test_transcribe_several_files(server, wav):
    result = run_cli("transcribe", wav, wav, "--url", server.url)
    assert result.stdout.splitlines() == ["seg1:32000b", "seg1:32000b"]


def test_url_from_the_environment(server, wav):
    result = run_cli("transcribe", wav, env_extra={"CARTESIA_STT_URL": server.url})
    assert result.returncode == 0, result.stderr


def test_usage_errors_exit_2():
    assert run_cli().returncode == 2
    assert run_cli("transcribe").returncode == 2
    assert run_cli("frobnicate").returncode == 2


def test_no_key_and_no_url_uses_the_embedded_server(wav):
    result = run_cli("transcribe", wav, "--engine", "scripted")
    assert result.returncode == 0, result.stderr
    notice = result.stderr.strip().splitlines()
    assert len(notice) == 1 and "embedded local server (scripted) at http://127.0.0.1:" in notice[0]
    assert result.stdout.startswith("seg1:32000b:")


def test_unknown_embedded_engine_is_one_clear_line(wav):
    result = run_cli("transcribe", wav, "--engine", "nope")
    assert result.returncode == 1
    assert result.stderr.strip() == "cartesia-sync: error: no engine named 'nope'; available: pocketsphinx, scripted"


@pytest.mark.parametrize("scenario", [Scenario(reject_status=401, reject_body='{"error":"Invalid API key"}')])
def test_failures_exit_1_with_one_line(server, wav):
    result = run_cli("transcribe", wav, "--url", server.url)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartesia-sync: error: handshake refused with HTTP 401")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("scenario", [Scenario(reject_status=401, reject_body="no")])
def test_debug_shows_the_traceback(server, wav):
    result = run_cli("--debug", "transcribe", wav, "--url", server.url)
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_missing_file_exits_1(server, tmp_path):
    result = run_cli("transcribe", str(tmp_path / "nope.wav"), "--url", server.url)
    assert result.returncode == 1
    assert "No such file" in result.stderr and "nope.wav" in result.stderr


def test_bad_audio_exits_1(server, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not audio " * 50)
    result = run_cli("transcribe", str(path), "--url", server.url)
    assert result.returncode == 1 and "could not read" in result.stderr


def test_plugins_lists_json():
    result = run_cli("plugins")
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)


def test_python_dash_m_and_console_script_agree():
    import shutil

    script = shutil.which("cartesia-sync", path=os.path.dirname(sys.executable))
    assert script, "the console script is installed next to the interpreter"
    out = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("cartesia-sync ")


@pytest.mark.parametrize("scenario", [Scenario(answer_finalize=False)])
def test_ctrl_c_in_a_script_stops_cleanly(server, tmp_path):
    program = tmp_path / "script.py"
    program.write_text(
        textwrap.dedent(f"""
        import sys, threading, numpy as np, cartesia_sync
        client = cartesia_sync.Client(url={server.url!r}, load_entrypoints=False)
        try:
            with client.connect() as session:
                session.send(np.zeros(1600, dtype=np.int16))
                print("waiting", flush=True)
                session.finalize(timeout=60)  # the server never answers: only Ctrl-C ends this
        except KeyboardInterrupt:
            left = [t.name for t in threading.enumerate() if t.name.startswith("cartesia-sync-")]
            print("interrupted", session.state.value, left, flush=True)
            sys.exit(3)
    """)
    )
    proc = subprocess.Popen([sys.executable, str(program)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert time.monotonic() - started < 10
    assert proc.returncode == 3, err
    assert out.strip() == "interrupted closed []"


def test_serve_runs_until_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cartesia_sync",
            "serve",
            "--port",
            "0",
            "--engine",
            "scripted",
            "--api-key",
            "sk_serve_test",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()
        assert "key required" in line and "sk_serve_test" not in line
        url = line.split("serving ", 1)[1].split(" ", 1)[0]
        import cartesia_sync

        with pytest.raises(cartesia_sync.AuthenticationError):
            cartesia_sync.Client(url=url, api_key="sk_wrong", load_entrypoints=False).connect()
        with cartesia_sync.Client(url=url, api_key="sk_serve_test", load_entrypoints=False).connect() as session:
            session.send(b"\0" * 3200)
        assert session.text.startswith(" seg1:3200b:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.stderr.close()


def test_serve_refuses_a_public_address_without_allow_remote():
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "0", "--engine", "scripted")
    assert result.returncode == 1 and "loopback" in result.stderr
    assert "--allow-remote" in result.stderr and "allow_remote" not in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_progress_bar_is_drawn_when_stderr_is_a_terminal(server, wav):
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cartesia_sync", "transcribe", wav, "--url", server.url],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
            env=env,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert b"speech.wav [##############################] 100%" in drawn
    assert proc.stdout == b"seg1:32000b\n"  # stdout stays clean


def test_no_progress_bar_when_stderr_is_not_a_terminal(server, wav):
    result = run_cli("transcribe", wav, "--url", server.url)
    assert "[" not in result.stderr and result.stderr == ""


@pytest.mark.parametrize(
    "engine_options",
    [{"segments": ["Hello there.", " How are you?"], "word_per_segment": False, "segment_bytes": 32000}],
)
def test_transcribe_writes_subtitles_and_an_event_log_then_replay_rebuilds_them(server, tmp_path):
    import soundfile

    wav_path = tmp_path / "two.wav"
    soundfile.write(wav_path, np.zeros(32000, dtype=np.int16), 16000)
    srt, vtt, log = tmp_path / "out.srt", tmp_path / "out.vtt", tmp_path / "events.jsonl"
    result = run_cli(
        "transcribe", str(wav_path), "--url", server.url, "--srt", str(srt), "--vtt", str(vtt), "--log", str(log)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello there. How are you?\n"
    srt_text = srt.read_text()
    assert srt_text.startswith("1\n00:00:00,000 --> ") and "Hello there." in srt_text and "How are you?" in srt_text
    assert vtt.read_text().startswith("WEBVTT\n\n")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[0]["event"] == "session_start" and events[-1]["event"] == "session_end"

    again_srt, again_vtt = tmp_path / "again.srt", tmp_path / "again.vtt"
    replayed = run_cli("replay", str(log), "--srt", str(again_srt), "--vtt", str(again_vtt))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == result.stdout
    assert again_srt.read_text() == srt_text and again_vtt.read_text() == vtt.read_text()


def test_replay_of_a_torn_log_says_so(server, wav, tmp_path):
    log = tmp_path / "events.jsonl"
    assert run_cli("transcribe", wav, "--url", server.url, "--log", str(log)).returncode == 0
    log.write_bytes(log.read_bytes()[:-20])  # the writer died mid-line
    result = run_cli("replay", str(log))
    assert result.returncode == 0
    assert "incomplete" in result.stderr and result.stdout.startswith("seg1:32000b")


def test_subtitles_of_several_files_must_not_collide(server, wav, tmp_path):
    result = run_cli("transcribe", wav, wav, "--url", server.url, "--srt", str(tmp_path / "x.srt"))
    assert result.returncode == 2 and "would both write" in result.stderr and not result.stdout
    templated = run_cli("transcribe", wav, "--url", server.url, "--srt", str(tmp_path / "{stem}.en.srt"))
    assert templated.returncode == 0, templated.stderr
    assert (tmp_path / "speech.en.srt").read_text().startswith("1\n")


def test_the_progress_bar_shows_recognised_audio_not_sent_audio():
    """Unpaced, the whole file is sent long before it is recognised: the bar follows the server, not the socket."""
    import io

    from slow_engine import BYTES_PER_SECOND, SlowEngine

    import cartesia_sync
    from cartesia_sync._progress import ProgressLine
    from cartesia_sync.local import LocalServer

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    bar = ProgressLine(terminal, label="talk.wav")
    bar.total = 20.0
    with LocalServer(SlowEngine(0.3, final_every=2.0)) as server:
        client = cartesia_sync.Client(url=server.url, plugins=[bar], load_entrypoints=False)
        with client.connect(realtime=False) as session:
            session.send(b"\x00\x01" * (20 * BYTES_PER_SECOND // 2))
            deadline = time.monotonic() + 30
            while session.audio_sent < 20.0 and time.monotonic() < deadline:
                time.sleep(0.01)
            drawn_when_sent = terminal.getvalue()
            assert session.audio_acknowledged < 20.0
        bar.finish()
    percents = [int(p) for p in re.findall(r"(\d+)%", terminal.getvalue())]
    assert "100%" not in drawn_when_sent
    assert any(0 < p < 100 for p in percents) and percents == sorted(percents) and percents[-1] == 100
    assert terminal.getvalue().endswith("\n")


def test_the_progress_bar_is_wiped_before_an_error_line(monkeypatch, tmp_path):
    """On a terminal, a failure part-way leaves no half-drawn bar in front of the error message."""
    import io

    from recordings import make_recording

    from cartesia_sync.cli import main
    from cartesia_sync.local import LocalServer

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    refusal = {
        "type": "error",
        "done": True,
        "status_code": 400,
        "error_code": "bad",
        "title": "Bad",
        "message": "refused",
    }
    recording = make_recording(tmp_path / "talk.wav", 64, seed=3)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with LocalServer(scenario=Scenario(error_after_bytes=40 * 32000, error_message=refusal)) as server:
        code = main(["transcribe", str(recording.path), "--url", server.url, "--no-plugins"])
    out = terminal.getvalue()
    assert code == 1
    before, after = out.split("cartesia-sync: error: ", 1)
    assert re.search(r"\] +\d+%", before), "the bar was drawn while finals came in"
    assert re.search(r"\r {20,}\r$", before), "and wiped right before the error line"
    assert "%" not in after
