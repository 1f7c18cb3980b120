"""`cartesia-sync listen` and `cartesia-sync devices` through a real PortAudio stream on ALSA's file plugin.

Each test runs the command line as a subprocess, with ``ALSA_CONFIG_PATH``
pointing at a configuration written by ``fake_mic.py``:

- ``mic_env``: two fake capture devices with no clock (``default`` and ``studio_usb``);
- ``no_card_env``: a misconfigured ALSA with no capture device, which makes ALSA
  print ``ALSA lib ...`` lines while PortAudio probes it (and JACK its own), as a
  machine without a sound card does;
- ``paced_env``: ``studio_usb`` fed through a FIFO at real time, a device with a clock.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .fake_mic import FakeDevice, PacedFeed, alsa_environ, write_asoundrc, write_raw

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fake capture device is ALSA's")

#: What PortAudio, ALSA and JACK print when nobody captures fd 2.
NOISE = re.compile(r"ALSA lib|jack server|JackShm|Cannot connect to server", re.IGNORECASE)
NO_DEVICE = "cartesia-sync: error: no audio input device was found: "


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CARTESIA", "ALSA_", "FAKE_MIC"))}


@pytest.fixture
def mic_env(tmp_path):
    raw = write_raw(tmp_path / "mic.raw", bytes(range(256)) * 2000)
    config = write_asoundrc(tmp_path / "asound.conf", [FakeDevice("default"), FakeDevice("studio_usb", infile=raw)])
    env = base_env()
    env.update(alsa_environ(config, raw))
    return env


@pytest.fixture
def no_card_env(tmp_path):
    config = write_asoundrc(tmp_path / "asound.conf", [FakeDevice("default", kind="misconfigured")])
    env = base_env()
    env.update(alsa_environ(config))
    return env


@pytest.fixture
def paced_env(tmp_path) -> Iterator[tuple[dict[str, str], PacedFeed]]:
    """``studio_usb`` delivers at real time: a FIFO written at 32000 bytes a second (16 kHz mono)."""
    with PacedFeed(tmp_path / "mic.fifo", bytes(range(256)) * 125) as feed:
        config = write_asoundrc(
            tmp_path / "asound.conf", [FakeDevice("default"), FakeDevice("studio_usb", infile=feed.path)]
        )
        env = base_env()
        env.update(alsa_environ(config, "/dev/zero"))
        yield env, feed


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cartesia_sync", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def listen_until_ctrl_c(args: list[str], env: dict[str, str], seconds: float) -> tuple[int, str, str, str]:
    """Run ``listen``, wait for its "listening on" line, let it capture ``seconds``, then send SIGINT.

    Returns ``(exit code, the "listening on" line, stdout, the rest of stderr)``.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "cartesia_sync", "listen", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        before: list[str] = []
        line = ""
        while "listening on" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
            before.append(line)
        assert "listening on" in line, "".join(before)
        time.sleep(seconds)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(5)
    return proc.returncode, line, out, "".join(before[:-1]) + err


# -- the environments are what they claim to be ------------------------------------------


def test_without_the_microphone_plugin_these_environments_are_noisy(mic_env, no_card_env):
    """The controls: PortAudio itself, uncaptured, prints JACK's complaints (and ALSA's, with no card)."""
    probe = [sys.executable, "-c", "import pyaudio; pyaudio.PyAudio().terminate()"]
    with_fake = subprocess.run(probe, capture_output=True, text=True, timeout=60, env=mic_env)
    no_card = subprocess.run(probe, capture_output=True, text=True, timeout=60, env=no_card_env)
    assert "jack server is not running" in with_fake.stderr
    assert "ALSA lib" in no_card.stderr and "Unknown PCM no_such_pcm" in no_card.stderr
    assert "jack server is not running" in no_card.stderr


# -- devices --------------------------------------------------------------------------------


def test_devices_lists_the_fake_capture_devices(mic_env):
    result = cli("devices", "--json", env=mic_env)
    assert result.returncode == 0, result.stderr
    names = [device["name"] for device in json.loads(result.stdout)]
    assert names == ["studio_usb", "default"]  # PortAudio lists "default" last
    assert result.stderr == ""  # no JACK noise
    text = cli("devices", env=mic_env)
    assert (text.returncode, text.stderr) == (0, "")
    assert text.stdout.splitlines() == ["  0  studio_usb  (128 ch, 44100 Hz)", "  1  default  (128 ch, 44100 Hz)"]


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_devices_without_an_input_device_is_one_line_and_exit_1(no_card_env, json_flag):
    result = cli("devices", *json_flag, env=no_card_env)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(NO_DEVICE), result.stderr
    assert "arecord -l" in lines[0] and "ALSA_CONFIG_PATH" in lines[0]
    assert not NOISE.search(result.stderr)
    if json_flag:  # stdout stays valid JSON for scripts: the list is empty
        assert json.loads(result.stdout) == []
    else:
        assert result.stdout == ""


@pytest.mark.parametrize(
    "command, what",
    [
        (["devices"], "listing devices"),
        (["listen"], "looking for an input device"),
    ],
)
def test_debug_shows_the_captured_noise(no_card_env, command, what):
    result = cli("--debug", *command, env=no_card_env)
    assert result.returncode == 1
    assert f"cartesia_sync_plugins.microphone: microphone: PortAudio printed while {what}:" in result.stderr
    assert "ALSA lib" in result.stderr and "Unknown PCM no_such_pcm" in result.stderr
    assert "jack server is not running" in result.stderr
    assert NO_DEVICE in result.stderr


# -- listen ---------------------------------------------------------------------------------


def test_listen_without_an_input_device_is_one_line_and_exit_1(no_card_env):
    """No --url and no key: the device is looked for first, so no embedded server starts for nothing."""
    result = cli("listen", env=no_card_env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(NO_DEVICE)
    assert "Traceback" not in result.stderr and not NOISE.search(result.stderr)
    assert result.stdout == ""


def test_listen_streams_until_ctrl_c_then_flushes_and_closes(server, mic_env, tmp_path):
    """The fake device has no clock: it is named, reported as faster than real time, and nothing is noisy."""
    log = tmp_path / "events.jsonl"
    code, line, out, err = listen_until_ctrl_c(
        ["--device", "studio", "--url", server.url, "--log", str(log)], mic_env, seconds=1.0
    )
    assert code == 0, err
    assert line == "cartesia-sync: listening on studio_usb (device 0, 16000 Hz, 1 channel); Ctrl-C stops\n"
    assert out.startswith("seg1:")  # the final transcript, flushed at Ctrl-C
    record = server.wait_finished()
    assert record.texts[-1] == "done" and len(record.audio) > 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[-1]["event"] == "session_end"
    assert not NOISE.search(err), err
    report = re.fullmatch(
        r"cartesia-sync: the device delivered audio at (\d+(?:\.\d)?)x real time; "
        r"(\d+\.\d) s were dropped",
        err.strip().splitlines()[-1],
    )
    assert report, err
    assert float(report.group(1)) >= 10 and float(report.group(2)) > 0
    assert "connection" not in err


def test_listen_on_a_real_time_device_drops_nothing(server, paced_env):
    env, feed = paced_env
    code, line, out, err = listen_until_ctrl_c(["--device", "studio_usb", "--url", server.url], env, seconds=4.0)
    assert code == 0, err
    assert line.startswith("cartesia-sync: listening on studio_usb (device 0, 16000 Hz, 1 channel)")
    assert out.startswith("seg1:")
    record = server.wait_finished()
    assert 3.5 * 32000 <= len(record.audio) <= 5.5 * 32000  # about the 4 s listened, not a device's burst
    assert "dropped" not in err and not NOISE.search(err), err


def test_listen_turns_prints_each_turn_as_it_ends(mic_env):
    """The fake device's audio is all speech: one turn, open until Ctrl-C closes the session and ends it."""
    from turns_server import TurnsServer

    with TurnsServer() as turns:
        stream_url = f"ws://127.0.0.1:{turns.port}/stt/websocket"
        code, line, out, err = listen_until_ctrl_c(
            ["--device", "studio", "--url", stream_url, "--turns"], mic_env, seconds=1.0
        )
        record = turns.records[0]
    assert code == 0, err
    assert "listening on studio_usb" in line
    assert record.path.startswith("/stt/turns/websocket?") and "model=ink-2" in record.path
    assert record.commands[-1] == {"type": "close"}
    assert re.fullmatch(r"level\d+:\d+ms\n", out), out  # the joined turn texts
    assert out.strip() in err  # the captions committed the turn on stderr as it ended
    assert not NOISE.search(err), err


def test_listen_turns_on_the_embedded_server(mic_env):
    """No URL and no key: the embedded server serves the turns endpoint too."""
    code, line, out, err = listen_until_ctrl_c(["--device", "studio", "--turns"], mic_env, seconds=1.0)
    assert code == 0, err
    assert "listening on studio_usb" in line and "local" in err
    assert not NOISE.search(err), err
