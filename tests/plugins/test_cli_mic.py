"""`cartesia-sync listen` and `cartesia-sync devices` through a real PortAudio stream on ALSA's file plugin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .fake_mic import FakeDevice, alsa_environ, write_asoundrc, write_raw

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fake capture device is ALSA's")


@pytest.fixture
def mic_env(tmp_path):
    raw = write_raw(tmp_path / "mic.raw", bytes(range(256)) * 2000)
    config = write_asoundrc(tmp_path / "asound.conf", [FakeDevice("default"), FakeDevice("studio_usb", infile=raw)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    env.update(alsa_environ(config, raw))
    return env


def test_devices_lists_the_fake_capture_devices(mic_env):
    result = subprocess.run([sys.executable, "-m", "cartesia_sync", "devices", "--json"], capture_output=True,
                            text=True, timeout=60, env=mic_env)
    assert result.returncode == 0, result.stderr
    names = [device["name"] for device in json.loads(result.stdout)]
    assert "studio_usb" in names and "default" in names


def test_listen_streams_until_ctrl_c_then_flushes_and_closes(server, mic_env, tmp_path):
    log = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "cartesia_sync", "listen", "--device", "studio", "--url", server.url,
                             "--log", str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mic_env)
    try:
        deadline = time.monotonic() + 30
        line = ""
        while "listening on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert "listening on studio_usb" in line
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.startswith("seg1:")  # the final transcript, flushed at Ctrl-C
    record = server.wait_finished()
    assert record.texts[-1] == "done" and len(record.audio) > 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[-1]["event"] == "session_end"


def test_listen_with_an_unknown_device_is_one_clear_line(server, mic_env):
    result = subprocess.run([sys.executable, "-m", "cartesia_sync", "listen", "--device", "no-such-mic", "--url",
                             server.url], capture_output=True, text=True, timeout=60, env=mic_env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("cartesia-sync: error:")]
    assert len(errors) == 1 and "no-such-mic" in errors[0]
