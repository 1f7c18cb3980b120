"""A user's own recordings on the embedded server: minutes long, from the CLI and the Python API, with no key.

The recordings are made of the spoken fixtures with pauses between sentences
and long silences (``tests/recordings.py``), so the text that must come back
is known. Recognition is not perfect, so the checks are on recall of the
spoken words, over the whole file and over its last minute (the tail is where
a client that stops waiting too early loses text).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cli_helpers
import pytest
from cli_helpers import clean_env
from process_memory import tree_rss_mib
from recordings import Recording, make_recording

import cartesia_sync
from cartesia_sync import ConfigurationError, PluginError, ServerError, TranscriptionResult, hookimpl
from cartesia_sync.local import LocalServer
from cartesia_sync.testing import Scenario

ROOT = Path(__file__).resolve().parent.parent


def recall(spoken: Sequence[str], text: str) -> float:
    """The share of the spoken words that were recognised (as a bag of words)."""
    heard = Counter(text.split())
    wanted = Counter(spoken)
    return sum((heard & wanted).values()) / max(1, sum(wanted.values()))


def tail_words(recording: Recording, count: int = 40) -> list[str]:
    return recording.words[-count:]


def run_cli(*args: str, timeout: float, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return cli_helpers.run_cli(*args, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def ten_minutes(tmp_path_factory) -> Recording:
    return make_recording(tmp_path_factory.mktemp("rec") / "ten-minutes.wav", 600, seed=10)


@pytest.fixture(scope="module")
def one_minute(tmp_path_factory) -> Recording:
    return make_recording(tmp_path_factory.mktemp("rec") / "one-minute.wav", 64, seed=1)


@pytest.fixture
def local_server():
    with LocalServer() as server:
        yield server


# -- any length -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ten_minutes_through_the_cli_with_no_key(ten_minutes):
    result = run_cli("transcribe", str(ten_minutes.path), timeout=1800)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("\n") == 1 and "using the embedded local server" in result.stderr
    text = result.stdout.strip()
    assert not result.stdout.startswith(" ")
    assert recall(ten_minutes.words, text) > 0.75
    assert recall(tail_words(ten_minutes), " ".join(text.split()[-80:])) > 0.75


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ten_minutes_through_the_python_api_with_no_key(ten_minutes, monkeypatch, capsys):
    for name in ("CARTESIA_API_KEY", "CARTESIA_STT_URL"):
        monkeypatch.delenv(name, raising=False)
    result = cartesia_sync.transcribe(ten_minutes.path, load_entrypoints=False)
    assert result.complete and result.stats.reconnects == 0
    assert result.audio_seconds == pytest.approx(600)
    assert result.stats.audio_acknowledged == pytest.approx(600, abs=0.1)
    assert recall(ten_minutes.words, result.text) > 0.75
    assert result.words[-1].end > 590 - 15  # the last sentence is there, at its time
    assert "using the embedded local server" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_an_hour_through_the_cli_with_flat_memory(tmp_path):
    """One hour of audio, unpaced into the embedded server: it finishes, and memory stays flat on both sides."""
    recording = make_recording(tmp_path / "hour.wav", 3600, seed=60)
    out = open(tmp_path / "out.json", "w+")
    client = subprocess.Popen(
        # streamed: an hour of backlog at the server, the path that must keep memory flat on both sides
        [sys.executable, "-m", "cartesia_sync", "transcribe", "--mode", "stream", "--json", str(recording.path)],
        stdout=out,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=ROOT,
    )
    samples = []
    deadline = time.monotonic() + 3600
    while client.poll() is None and time.monotonic() < deadline:
        samples.append(tree_rss_mib(client.pid))
        time.sleep(5)
    if client.poll() is None:
        client.kill()
    _, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    out.seek(0)
    result = json.load(out)
    assert result["complete"] and result["audio_recognised"] == pytest.approx(3600, abs=0.1)
    assert result["reconnects"] == 0  # the server kept up with its backlog without cutting the client off
    assert recall(recording.words, result["text"]) > 0.75
    # After the first quarter the engine's decoders are built; from there on nothing may grow with the
    # audio (the hour is 115 MB of samples; 60 MiB would be holding half of what is left of it).
    settled = samples[len(samples) // 4 :]
    assert max(settled) - settled[0] < 60, f"memory grew: {settled[0]:.0f} -> {max(settled):.0f} MiB"


# -- nothing recognised is thrown away ---------------------------------------------------------


class Raises:
    """A plugin whose on_transcript raises on every final."""

    name = "raises"

    @hookimpl
    def on_transcript(self, transcript):
        if transcript.is_final:
            raise RuntimeError("a plugin bug")


def test_a_plugin_that_raises_keeps_the_whole_transcript(one_minute, local_server):
    with pytest.raises(PluginError) as raised:
        cartesia_sync.transcribe(one_minute.path, url=local_server.url, plugins=[Raises()], load_entrypoints=False)
    partial = raised.value.partial_result
    assert partial.complete  # the stream itself ended well: only the plugin failed
    assert recall(one_minute.words, partial.text) > 0.75


def test_a_server_error_part_way_keeps_what_was_recognised(one_minute):
    half = 32 * 32000
    with LocalServer(scenario=Scenario(error_after_bytes=half)) as server:
        with pytest.raises(ServerError) as raised:
            cartesia_sync.transcribe(one_minute.path, url=server.url, reconnect=False, load_entrypoints=False)
    partial = raised.value.partial_result
    assert isinstance(partial, TranscriptionResult) and not partial.complete
    assert partial.words and partial.words[-1].end <= 32.5
    first_half = [w for sentence in one_minute.sentences[:3] for w in sentence.split()]
    assert recall(first_half, partial.text) > 0.6


def test_a_dropped_connection_keeps_what_was_recognised(one_minute):
    with LocalServer(scenario=Scenario(drop_after_bytes=40 * 32000)) as server:
        with pytest.raises(cartesia_sync.ConnectionLostError) as raised:
            cartesia_sync.transcribe(one_minute.path, url=server.url, reconnect=False, load_entrypoints=False)
    partial = raised.value.partial_result
    assert not partial.complete and partial.text.strip()


def test_ctrl_c_in_the_python_api_carries_what_was_recognised(one_minute, local_server):
    import _thread

    class InterruptAtFirstFinal:
        name = "interrupt"
        fired = False

        @hookimpl
        def on_transcript(self, transcript):
            if transcript.is_final and not self.fired:
                self.fired = True
                _thread.interrupt_main()

    with pytest.raises(KeyboardInterrupt) as raised:
        cartesia_sync.transcribe(
            one_minute.path, url=local_server.url, plugins=[InterruptAtFirstFinal()], load_entrypoints=False
        )
    partial = raised.value.partial_result
    assert isinstance(partial, TranscriptionResult) and not partial.complete
    assert partial.text.strip()


def test_the_cli_prints_what_it_has_then_one_error_line(one_minute, tmp_path):
    srt = tmp_path / "part.srt"
    refusal = {
        "type": "error",
        "done": True,
        "status_code": 400,
        "error_code": "bad_audio",
        "title": "Bad audio",
        "message": "the audio could not be decoded",
    }  # a 4xx: permanent, no reconnect
    with LocalServer(scenario=Scenario(error_after_bytes=40 * 32000, error_message=refusal)) as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "cartesia_sync",
                "transcribe",
                str(one_minute.path),
                "--url",
                server.url,
                "--srt",
                str(srt),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=clean_env(),
            cwd=ROOT,
        )
    assert result.returncode == 1
    assert result.stdout.strip() and not result.stdout.startswith(" ")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartesia-sync: error: ")
    assert "-->" in srt.read_text()  # the subtitles up to the failure were written


def test_one_bad_file_among_good_ones(tmp_path):
    good = str(ROOT / "samples" / "hello.wav")
    bad = tmp_path / "notes.wav"
    bad.write_text("these are my notes, not audio\n")
    result = run_cli("transcribe", good, str(bad), good, "--json", timeout=300)
    assert result.returncode == 1
    entries = json.loads(result.stdout)
    assert [e["file"] for e in entries] == [good, str(bad), good]
    assert entries[0]["complete"] and entries[2]["complete"] and "coffee" in entries[2]["text"]
    assert "error" in entries[1] and "notes.wav" in entries[1]["error"]
    assert "1 of 3 files failed" in result.stderr

    plain = run_cli("transcribe", good, str(bad), good, timeout=300)
    assert plain.returncode == 1
    assert plain.stdout.count("coffee") == 2


def test_ctrl_c_in_the_cli_prints_what_was_recognised(ten_minutes, tmp_path):
    log = tmp_path / "events.jsonl"
    srt = tmp_path / "live.srt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cartesia_sync",
            "transcribe",
            str(ten_minutes.path),
            "--mode",
            "stream",  # a batch upload's answer comes whole; a stream's finals come as they are recognised
            "--log",
            str(log),
            "--srt",
            str(srt),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count('"is_final":true') >= 3:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no final transcript in the event log within 120 s")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(out.split()) >= 5 and not out.startswith(" ")
    assert err.strip().splitlines()[-1] == "cartesia-sync: interrupted"
    assert "Traceback" not in err
    assert "-->" in srt.read_text()


# -- no key, no surprise -----------------------------------------------------------------------


def test_the_readme_python_example_runs_with_no_key():
    code = "import cartesia_sync\nprint(cartesia_sync.transcribe('samples/hello.wav').text.strip())\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=clean_env(), cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "cup of coffee" in result.stdout
    assert re.fullmatch(
        r"cartesia-sync: no CARTESIA_API_KEY set: using the embedded local server \(pocketsphinx\) "
        r"at http://127\.0\.0\.1:\d+\n",
        result.stderr,
    )


def test_no_key_and_local_false_is_a_clear_error(monkeypatch):
    for name in ("CARTESIA_API_KEY", "CARTESIA_STT_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="no API key for the hosted API.*local=True"):
        cartesia_sync.transcribe(b"\0" * 3200, local=False, load_entrypoints=False)
    with pytest.raises(ConfigurationError, match="CARTESIA_API_KEY"):
        cartesia_sync.Client(load_entrypoints=False).connect()


def test_local_true_and_a_url_conflict(local_server):
    with pytest.raises(ConfigurationError, match="not both"):
        cartesia_sync.transcribe(b"\0" * 3200, local=True, url=local_server.url)


# -- the smaller things ----------------------------------------------------------------------------


def test_mp3_decoder_chatter_is_not_printed(tmp_path):
    import soundfile

    data, rate = soundfile.read(ROOT / "samples" / "hello.wav")
    mp3 = tmp_path / "hello.mp3"
    soundfile.write(mp3, data, rate, format="MP3")
    result = run_cli("transcribe", str(mp3), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "coffee" in result.stdout
    assert "mpg123" not in result.stderr and result.stderr.count("\n") == 1
    debug = run_cli("--debug", "transcribe", str(mp3), timeout=300)
    assert "libmpg123" in debug.stderr  # still there for whoever asks


def test_options_may_follow_the_files(tmp_path):
    first = tmp_path / "first.wav"
    second = tmp_path / "second.wav"
    for path in (first, second):
        path.write_bytes((ROOT / "samples" / "hello.wav").read_bytes())
    subs = tmp_path / "subs"
    result = run_cli("transcribe", str(first), "--srt", str(subs), str(second), timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in subs.iterdir()) == ["first.srt", "second.srt"]
    assert "coffee" in (subs / "second.srt").read_text()
