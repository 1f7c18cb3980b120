"""The microphone plugin, through a real PortAudio stream on ALSA's ``file`` plugin (no sound card needed).

Each test writes a self-contained asoundrc (``fake_mic.py``) and points
``ALSA_CONFIG_PATH`` at it before the plugin creates its ``PyAudio``: every
``PyAudio()`` re-initialises PortAudio, which re-reads the ALSA configuration,
so tests may use different fake devices in one process.

The fake device has no clock and repeats stale data after the end of its file,
so :class:`FileMicrophone` stops capturing after exactly the file's bytes and,
when asked, sleeps in the callback to pace it.

PyAudio is required: these tests fail (they do not skip) when it is missing, except on non-Linux.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cartesia_sync
from cartesia_sync._native_stderr import split_lines
from cartesia_sync.testing import FakeCartesia
from cartesia_sync_plugins import _input_devices, _portaudio
from cartesia_sync_plugins import microphone as mic_module
from cartesia_sync_plugins.microphone import (
    InputDevice,
    Microphone,
    MicrophoneError,
    NoInputDeviceError,
    find_input_device,
    list_input_devices,
)

from .fake_mic import (
    FakeDevice,
    alsa_environ,
    read_wav,
    to_48k_stereo,
    write_asoundrc,
    write_raw,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fake capture device is ALSA's")

ROOT = Path(__file__).resolve().parents[2]
HELLO_WAV = ROOT / "samples" / "hello.wav"
HELLO_TXT = ROOT / "samples" / "hello.txt"


@pytest.fixture(scope="module")
def pyaudio() -> Any:
    """The real PyAudio module; an ImportError here fails the test (CI installs the ``mic`` extra)."""
    import pyaudio as module

    return module


@pytest.fixture
def fake_alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pyaudio: Any) -> Callable[..., Path]:
    """``fake_alsa(*devices, mic_file=None)``: write the asoundrc and set the ALSA environment."""

    def use(*devices: FakeDevice, mic_file: Path | None = None) -> Path:
        config = write_asoundrc(tmp_path / "asoundrc", devices or (FakeDevice(),))
        monkeypatch.delenv("FAKE_MIC_FILE", raising=False)
        for key, value in alsa_environ(config, mic_file).items():
            monkeypatch.setenv(key, value)
        return config

    return use


@pytest.fixture(scope="module")
def hello_pcm() -> bytes:
    data, rate, channels = read_wav(HELLO_WAV)
    assert (rate, channels) == (16000, 1)
    return data


@pytest.fixture
def hello_raw(tmp_path: Path, hello_pcm: bytes) -> Path:
    return write_raw(tmp_path / "hello.raw", hello_pcm)


def numbered_blocks(count: int, frames: int = 1600) -> bytes:
    """``count`` blocks of 16 kHz mono s16le, every sample of block ``i`` equal to ``i + 1``."""
    return np.repeat(np.arange(1, count + 1, dtype="<i2"), frames).tobytes()


def block_numbers(audio: bytes, frames: int = 1600) -> list[int]:
    samples = np.frombuffer(audio, dtype="<i2")
    assert len(samples) % frames == 0
    blocks = samples.reshape(-1, frames)
    assert (blocks == blocks[:, :1]).all(), "a block was split or mixed"
    return [int(b) for b in blocks[:, 0]]


class FileMicrophone(Microphone):
    """A microphone that captures exactly ``limit_bytes`` from the fake device, then completes.

    :param speed: sleep in the callback so the fake device runs at this multiple of real time
        (``None``: as fast as it reads).
    :param on_block: called with the block number before each block is handled (to pause/resume
        at a known point).
    """

    def __init__(
        self,
        *args: Any,
        limit_bytes: int,
        speed: float | None = None,
        on_block: Callable[[FileMicrophone, int], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        import pyaudio

        self._complete = pyaudio.paComplete
        self.limit_bytes = limit_bytes
        self.speed = speed
        self.on_block = on_block
        self.read_bytes = 0
        self.blocks = 0
        self.finished = threading.Event()

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> Any:
        if self.finished.is_set():
            return None, self._complete
        data = (in_data or b"")[: self.limit_bytes - self.read_bytes]
        self.read_bytes += len(data)
        if self.on_block is not None:
            self.on_block(self, self.blocks)
        self.blocks += 1
        if self.speed:
            time.sleep(len(data) / (2 * self.channels * self.sample_rate) / self.speed)
        result = super()._callback(data, frame_count, time_info, status)
        if self.read_bytes >= self.limit_bytes:
            self.finished.set()
            return None, self._complete
        return result

    def wait(self, timeout: float = 20.0) -> None:
        assert self.finished.wait(timeout), f"the fake device delivered only {self.read_bytes} bytes"


def client_for(server: Any, **options: Any) -> cartesia_sync.Client:
    return cartesia_sync.Client(url=server.url, load_entrypoints=False, **options)


def mic_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("cartesia-sync-mic-")]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length, ignoring case and punctuation."""
    ref = re.findall(r"[a-z0-9']+", reference.lower())
    hyp = re.findall(r"[a-z0-9']+", hypothesis.lower())
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)] / max(1, len(ref))


def test_word_error_rate_helper():
    assert word_error_rate("Good morning, everyone.", "good morning everyone") == 0
    assert word_error_rate("a b c d", "a x c") == 0.5


# -- content: what the device captured reaches the session ---------------------------------


def test_words_spoken_into_the_microphone_come_out_of_the_session(fake_alsa, hello_raw, hello_pcm):
    """hello.wav played into the fake device, real PortAudio callback capture, real local recogniser."""
    from cartesia_sync.local import LocalServer

    fake_alsa(FakeDevice(), mic_file=hello_raw)
    with LocalServer("pocketsphinx", load_entrypoints=False) as server:
        session = client_for(server).connect()
        with session:
            mic = FileMicrophone(limit_bytes=len(hello_pcm), speed=8.0)
            with mic.start(session):
                assert mic_threads() == [f"cartesia-sync-mic-{mic.number}"]
                mic.wait()
            assert mic.dropped_seconds == 0 and mic.unsent_seconds == 0
            assert mic.captured_seconds == pytest.approx(len(hello_pcm) / 32000)
        text = session.text
    assert word_error_rate(HELLO_TXT.read_text(), text) <= 0.2, text
    assert mic_threads() == []


def test_a_16k_mono_device_is_forwarded_byte_for_byte(fake_alsa, hello_raw, hello_pcm):
    fake_alsa(FakeDevice(), mic_file=hello_raw)
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            with FileMicrophone(limit_bytes=len(hello_pcm), speed=20.0) as mic:
                mic.start(session)
                assert (mic.sample_rate, mic.channels) == (16000, 1)
                assert mic.device == InputDevice(0, "default", 128, 44100.0)
                mic.wait()
        record = fake.wait_finished()
    assert record.sha256() == hashlib.sha256(hello_pcm).hexdigest()
    digest = hashlib.sha256(hello_pcm).hexdigest()[:8]
    assert session.text == f" seg1:{len(hello_pcm)}b:{digest}"  # the scripted engine's facts
    assert mic.forwarded_seconds == mic.captured_seconds == pytest.approx(147336 / 16000)
    assert mic.dropped_seconds == mic.discarded_seconds == 0


def test_a_48k_stereo_device_is_downmixed_and_resampled(fake_alsa, tmp_path, hello_pcm):
    raw48 = write_raw(tmp_path / "hello48k.raw", to_48k_stereo(hello_pcm))
    fake_alsa(FakeDevice(), FakeDevice("usb48k", infile=raw48))
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            with FileMicrophone(
                device="USB48", rate=48000, channels=2, limit_bytes=raw48.stat().st_size, speed=20.0
            ) as mic:
                mic.start(session)
                assert mic.device.name == "usb48k"
                assert (mic.sample_rate, mic.channels) == (48000, 2)
                mic.wait()
        record = fake.wait_finished()
    got = np.frombuffer(bytes(record.audio), dtype="<i2").astype(float)
    want = np.frombuffer(hello_pcm, dtype="<i2").astype(float)
    assert abs(len(got) - len(want)) <= 16, (len(got), len(want))  # 16 kHz mono, the same duration
    n = min(len(got), len(want))
    correlation = np.corrcoef(got[:n], want[:n])[0, 1]
    assert correlation > 0.99, correlation  # the same speech, aligned: real resampling, not decimation
    assert mic.captured_seconds == pytest.approx(len(hello_pcm) / 32000, abs=1e-3)


# -- the buffer between the callback and the session -----------------------------------------


def test_the_oldest_audio_is_dropped_and_counted_when_the_session_stalls(fake_alsa, tmp_path):
    """A session that takes audio at half real time with a 0.2 s buffer: send() blocks, the mic buffer fills."""
    raw = write_raw(tmp_path / "numbered.raw", numbered_blocks(50))
    fake_alsa(FakeDevice(), mic_file=raw)
    with FakeCartesia() as fake:
        client = client_for(fake, max_buffer_seconds=0.2, keepalive_interval=None)
        with client.connect(realtime=0.5) as session:
            mic = FileMicrophone(limit_bytes=raw.stat().st_size, buffer_seconds=0.5)
            mic.start(session)
            mic.wait()  # the whole 5 s arrive at once; the forwarding thread is stuck in send()
            assert mic.captured_seconds == pytest.approx(5.0)
            assert mic.dropped_seconds >= 3.5
            assert mic.dropped_frames == round(mic.dropped_seconds * 16000)
            mic.stop(timeout=15)  # sends what is buffered: the newest 0.5 s
            assert mic_threads() == []
        record = fake.wait_finished(timeout=15)
    blocks = block_numbers(bytes(record.audio))
    assert blocks[-5:] == [46, 47, 48, 49, 50]  # the newest audio survived, in order
    assert blocks == sorted(set(blocks))  # nothing reordered or sent twice
    assert len(blocks) <= 12  # a few blocks got into the 0.2 s session buffer before the stall
    assert mic.forwarded_seconds == pytest.approx(len(blocks) / 10)
    assert mic.forwarded_seconds + mic.dropped_seconds == pytest.approx(5.0)
    assert mic.unsent_seconds == 0 and session.stats.audio_dropped == 0


def test_a_session_that_closes_under_the_microphone_stops_forwarding(fake_alsa, tmp_path):
    raw = write_raw(tmp_path / "numbered.raw", numbered_blocks(50))
    fake_alsa(FakeDevice(), mic_file=raw)
    with FakeCartesia() as fake:
        session = client_for(fake, max_buffer_seconds=0.2).connect(realtime=0.1)
        mic = FileMicrophone(limit_bytes=raw.stat().st_size, buffer_seconds=1.0).start(session)
        mic.wait()
        session.abort()  # the blocked send() raises; the thread ends
        mic.stop(timeout=5)
    assert isinstance(mic.error, cartesia_sync.SessionClosedError)
    total = mic.forwarded_seconds + mic.dropped_seconds + mic.unsent_seconds + mic.discarded_seconds
    assert total == pytest.approx(5.0)
    assert mic.unsent_seconds > 0


# -- pause / resume / stop -----------------------------------------------------------------


def test_pause_discards_audio_and_resume_forwards_again(fake_alsa, tmp_path):
    raw = write_raw(tmp_path / "numbered.raw", numbered_blocks(30))

    def script(mic: FileMicrophone, block: int) -> None:
        if block == 10:
            mic.pause()
            assert mic.paused
        elif block == 20:
            mic.resume()

    fake_alsa(FakeDevice(), mic_file=raw)
    with FakeCartesia() as fake:
        with client_for(fake, keepalive_interval=0.05).connect() as session:
            with FileMicrophone(limit_bytes=raw.stat().st_size, speed=5.0, on_block=script) as mic:
                mic.start(session)
                mic.wait()
        record = fake.wait_finished()
    blocks = [b for b in block_numbers(bytes(record.audio)) if b]  # 0: the keepalive silence during the pause
    assert blocks == list(range(1, 11)) + list(range(21, 31))
    assert mic.discarded_seconds == pytest.approx(1.0)
    assert mic.dropped_seconds == 0
    assert mic.captured_seconds == pytest.approx(3.0)
    assert session.error is None  # the session stayed alive through the pause


def test_pause_from_another_thread_keeps_the_session_open(fake_alsa, tmp_path):
    fake_alsa(FakeDevice())  # /dev/zero: silence for ever
    with FakeCartesia() as fake:
        with client_for(fake, keepalive_interval=0.05).connect(realtime=True) as session:
            mic = FileMicrophone(limit_bytes=16000 * 2 * 3, speed=2.0).start(session)
            time.sleep(0.3)
            mic.pause()
            time.sleep(0.3)
            mic.resume()
            mic.wait(10)
            mic.stop()
            assert session.state is cartesia_sync.SessionState.OPEN
            assert mic.discarded_seconds > 0.1
            assert mic.forwarded_seconds + mic.discarded_seconds == pytest.approx(3.0)


def test_stop_releases_the_device_and_the_microphone_can_start_again(
    fake_alsa, hello_raw, hello_pcm, pyaudio, monkeypatch
):
    instances: list[Any] = []

    class Spy(pyaudio.PyAudio):
        def __init__(self) -> None:
            super().__init__()
            self.terminated = False
            instances.append(self)

        def terminate(self) -> None:
            self.terminated = True
            super().terminate()

    monkeypatch.setattr(pyaudio, "PyAudio", Spy)
    fake_alsa(FakeDevice(), mic_file=hello_raw)
    limit = 32000  # one second
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            mic = FileMicrophone(limit_bytes=limit, speed=20.0)
            for _ in range(2):
                mic.start(session)
                mic.wait()
                mic.stop()
                assert not mic.running and mic_threads() == []
                assert instances[-1].terminated and not instances[-1]._streams  # stream.close() ran
                mic.stop()  # idempotent
                mic.finished.clear()
                mic.read_bytes = 0
            # and a plain PyAudio stream can open the device afterwards
            pa = pyaudio.PyAudio()
            try:
                stream = pa.open(format=pyaudio.paInt16, channels=1, rate=16000, input=True, frames_per_buffer=1600)
                assert stream.read(1600) == hello_pcm[:3200]
                stream.close()
            finally:
                pa.terminate()
        record = fake.wait_finished()
    assert bytes(record.audio) == hello_pcm[:limit] * 2  # each open starts the file again
    assert len(instances) == 3


def test_a_started_microphone_refuses_a_second_start(fake_alsa):
    fake_alsa(FakeDevice())
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            with FileMicrophone(limit_bytes=3200, speed=1.0) as mic:
                mic.start(session)
                with pytest.raises(MicrophoneError, match="already started"):
                    mic.start(session)


# -- devices ------------------------------------------------------------------------------


def test_list_input_devices_and_selection(fake_alsa, tmp_path, hello_raw):
    fake_alsa(
        FakeDevice("usb48k", infile=hello_raw), FakeDevice("usb-ulaw", kind="ulaw"), FakeDevice(), mic_file=hello_raw
    )
    devices = list_input_devices()
    assert [(d.name, d.max_input_channels, d.default_sample_rate) for d in devices] == [
        ("usb48k", 128, 44100.0),
        ("usb-ulaw", 128, 44100.0),
        ("default", 128, 44100.0),
    ]
    assert [d.index for d in devices] == [0, 1, 2]
    assert str(devices[0]) == "[0] usb48k (128 ch, 44100 Hz)"
    select = _input_devices.select_device
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        assert select(pa, None).name == "default"  # the default input device
        assert select(pa, "USB4").name == "usb48k"  # part of the name, any case
        assert select(pa, 1).name == "usb-ulaw" and select(pa, "1").name == "usb-ulaw"
        assert select(pa, "Default").index == 2
        with pytest.raises(MicrophoneError, match=r"2 input devices match 'usb'.*usb48k.*usb-ulaw.*more of the name"):
            select(pa, "usb")
        with pytest.raises(MicrophoneError, match=r"no input device name contains 'webcam'.*\[0\] usb48k.*default"):
            select(pa, "webcam")
        with pytest.raises(MicrophoneError, match=r"no input device with index 9.*usb48k"):
            select(pa, 9)
        with pytest.raises(MicrophoneError, match="device must be"):
            select(pa, 1.5)
    finally:
        pa.terminate()


def test_a_device_chosen_by_name_is_the_one_captured(fake_alsa, tmp_path, hello_pcm):
    other = write_raw(tmp_path / "other.raw", numbered_blocks(10))
    fake_alsa(FakeDevice(), FakeDevice("headset", infile=other))
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            with FileMicrophone(device="HEADSET", limit_bytes=other.stat().st_size, speed=20.0) as mic:
                mic.start(session)
                mic.wait()
        record = fake.wait_finished()
    assert block_numbers(bytes(record.audio)) == list(range(1, 11))


def test_the_format_falls_back_to_the_device_rate_and_channels(monkeypatch):
    """A device that refuses 16 kHz mono (unit test: ALSA's fake devices accept every rate)."""
    opened: dict[str, Any] = {}

    class Stream:
        def start_stream(self) -> None:
            pass

        def is_active(self) -> bool:
            return False

        def close(self) -> None:
            opened["closed"] = True

    class StubPyAudio:
        def get_device_count(self) -> int:
            return 2

        def get_device_info_by_index(self, index: int) -> dict[str, Any]:
            return [
                {"index": 0, "name": "speakers", "maxInputChannels": 0, "defaultSampleRate": 48000.0},
                {"index": 1, "name": "USB mic", "maxInputChannels": 2, "defaultSampleRate": 48000.0},
            ][index]

        def get_default_input_device_info(self) -> dict[str, Any]:
            return self.get_device_info_by_index(1)

        def is_format_supported(self, rate: int, input_device: int, input_channels: int, input_format: int) -> bool:
            opened.setdefault("tried", []).append((rate, input_channels))
            if (rate, input_channels) != (48000, 2):
                raise ValueError("Invalid sample rate")
            return True

        def open(self, **kwargs: Any) -> Stream:
            opened.update(kwargs)
            return Stream()

        def terminate(self) -> None:
            opened["terminated"] = True

    stub = type(sys)("pyaudio")
    stub.PyAudio, stub.paInt16, stub.paContinue = StubPyAudio, 8, 0
    monkeypatch.setitem(sys.modules, "pyaudio", stub)
    assert list_input_devices() == [InputDevice(1, "USB mic", 2, 48000.0)]
    mic = Microphone()
    mic.start(object())  # nothing is sent: the stub never calls back
    try:
        assert opened["tried"] == [(16000, 1), (16000, 2), (48000, 1), (48000, 2)]
        assert (mic.sample_rate, mic.channels) == (48000, 2)
        assert opened["rate"] == 48000 and opened["channels"] == 2 and opened["input_device_index"] == 1
        assert opened["frames_per_buffer"] == 4800 and opened["start"] is False
        assert callable(opened["stream_callback"])
    finally:
        mic.stop()
    assert opened["closed"] and opened["terminated"]


# -- errors -------------------------------------------------------------------------------


def test_pyaudio_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyaudio", None)
    hint = re.escape("pip install 'cartesia-sync[mic]' (needs the PortAudio headers: apt-get install portaudio19-dev)")
    with pytest.raises(MicrophoneError, match=hint):
        list_input_devices()
    with pytest.raises(MicrophoneError, match=hint) as info:
        Microphone().start(object())
    assert isinstance(info.value, cartesia_sync.CartesiaSyncError)
    assert mic_threads() == []


def test_portaudio_failing_to_initialise(monkeypatch, pyaudio):
    def broken() -> None:
        raise OSError(-9999, "Unanticipated host error")

    monkeypatch.setattr(pyaudio, "PyAudio", broken)
    with pytest.raises(MicrophoneError, match=r"PortAudio failed to initialise \(.*Unanticipated host error"):
        Microphone().start(object())


def test_no_input_device(fake_alsa):
    fake_alsa(FakeDevice(kind="nocard"))  # a config with no capture PCM that opens
    assert list_input_devices() == []
    with pytest.raises(NoInputDeviceError, match="no audio input device was found"):
        Microphone().start(object())
    with pytest.raises(NoInputDeviceError, match="no audio input device was found"):
        Microphone(device="anything").start(object())
    with pytest.raises(NoInputDeviceError) as info:
        find_input_device()
    assert isinstance(info.value, MicrophoneError)
    message = str(info.value)
    assert "\n" not in message
    for hint in ("sound card", "'audio' group", "ALSA", "PulseAudio", "$ALSA_CONFIG_PATH", "'file' device"):
        assert hint in message


def test_find_input_device_resolves_without_opening(fake_alsa, hello_raw):
    fake_alsa(FakeDevice("headset", infile=hello_raw), FakeDevice(), mic_file=hello_raw)
    assert find_input_device() == InputDevice(1, "default", 128, 44100.0)
    assert find_input_device("HEAD") == InputDevice(0, "headset", 128, 44100.0)
    with pytest.raises(MicrophoneError, match="no input device name contains 'webcam'"):
        find_input_device("webcam")


def test_a_device_that_rejects_the_format(fake_alsa):
    fake_alsa(FakeDevice(), FakeDevice("ulaw", kind="ulaw"))
    with pytest.raises(MicrophoneError) as info:
        Microphone(device="ulaw").start(object())
    message = str(info.value)
    assert "'ulaw'" in message and "Sample format not supported" in message
    assert "tried 16000 Hz x1, 16000 Hz x2, 16000 Hz x128, 44100 Hz x1" in message
    assert isinstance(info.value.__cause__, OSError)
    assert mic_threads() == []
    # the device was released: the next microphone opens the good one
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            with FileMicrophone(limit_bytes=3200, speed=1.0) as mic:
                mic.start(session)
                mic.wait()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"speed_window": 0.01}, "speed_window must span"),
        ({"rate": 0}, "rate must be"),
        ({"channels": 0}, "channels must be"),
        ({"block_seconds": 2}, "block_seconds must be"),
        ({"buffer_seconds": 0.01}, "buffer_seconds must hold"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(MicrophoneError, match=match):
        Microphone(**kwargs)


# -- capture speed: a device with no clock is told from a real-time one ----------------------


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_the_capture_speed_of_a_paced_device_is_measured(fake_alsa, tmp_path, speed):
    """The fake device paced at 1x and 4x real time (the callback sleeps); windows of 0.5 s."""
    raw = write_raw(tmp_path / "numbered.raw", numbered_blocks(100))
    fake_alsa(FakeDevice(), mic_file=raw)
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            mic = FileMicrophone(limit_bytes=int(speed * 2.0 * 32000), speed=speed, speed_window=0.5)
            assert mic.capture_speed is None and mic.peak_capture_speed is None and not mic.faster_than_realtime
            with mic.start(session):
                mic.wait()
    assert mic.capture_speed == pytest.approx(speed, rel=0.15)
    assert mic.peak_capture_speed == pytest.approx(speed, rel=0.15)
    assert mic.faster_than_realtime is (speed >= mic_module.FASTER_THAN_REALTIME)


def test_a_device_without_a_clock_is_faster_than_realtime(fake_alsa, tmp_path):
    """Unpaced, ALSA's file plugin delivers seconds of audio in milliseconds: the first window says so."""
    raw = write_raw(tmp_path / "numbered.raw", numbered_blocks(50))
    fake_alsa(FakeDevice(), mic_file=raw)
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            with FileMicrophone(limit_bytes=raw.stat().st_size, speed_window=1.0) as mic:
                mic.start(session)
                mic.wait()
    assert mic.faster_than_realtime
    assert mic.capture_speed is not None and mic.capture_speed > 10
    assert mic.peak_capture_speed >= mic.capture_speed


# -- what PortAudio and ALSA print on file descriptor 2 -------------------------------------

NOISE_MARKS = ("ALSA lib", "Unknown PCM no_such_pcm")


def test_a_misconfigured_alsa_is_noisy_without_quiet(fake_alsa, capfd, caplog):
    """The control for the tests below: this configuration really prints ALSA noise on fd 2."""
    fake_alsa(FakeDevice(kind="misconfigured"))
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="cartesia_sync_plugins.microphone"):
        assert list_input_devices(quiet=False) == []
        with pytest.raises(NoInputDeviceError):
            find_input_device(quiet=False)
    err = capfd.readouterr().err
    assert all(mark in err for mark in NOISE_MARKS), err
    assert "ALSA lib" not in caplog.text


def test_listing_and_finding_devices_is_quiet_and_logs_the_noise_at_debug(fake_alsa, capfd, caplog):
    fake_alsa(FakeDevice(kind="misconfigured"))
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="cartesia_sync_plugins.microphone"):
        assert list_input_devices() == []
        with pytest.raises(NoInputDeviceError):
            find_input_device()
        with pytest.raises(NoInputDeviceError):
            Microphone().start(object())
    err = capfd.readouterr().err
    assert err == ""
    logged = [r.getMessage() for r in caplog.records if r.name == "cartesia_sync_plugins.microphone"]
    assert [m.splitlines()[0] for m in logged] == [
        "microphone: PortAudio printed while listing devices:",
        "microphone: PortAudio printed while looking for an input device:",
        "microphone: PortAudio printed while opening the input device:",
    ]
    assert all(all(mark in m for mark in NOISE_MARKS) for m in logged)
    assert mic_threads() == []


def test_opening_and_closing_a_device_is_quiet(fake_alsa, tmp_path, capfd):
    """JACK's client library complains at every PortAudio initialisation; none of it reaches fd 2."""
    raw = write_raw(tmp_path / "numbered.raw", numbered_blocks(5))
    fake_alsa(FakeDevice(), FakeDevice("broken", kind="misconfigured"), mic_file=raw)
    capfd.readouterr()
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            with FileMicrophone(limit_bytes=raw.stat().st_size, speed=20.0) as mic:
                mic.start(session)
                mic.wait()
    assert capfd.readouterr().err == ""
    with FakeCartesia() as fake:
        with client_for(fake).connect() as session:
            with FileMicrophone(limit_bytes=raw.stat().st_size, speed=20.0, quiet=False) as mic:
                mic.start(session)
                mic.wait()
    assert "ALSA lib" in capfd.readouterr().err  # the same device, not quiet: the control


def test_split_noise_knows_the_audio_libraries_lines():
    text = (
        "ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM cards.pcm.front\n"
        "Cannot connect to server socket err = No such file or directory\n"
        "Cannot connect to server request channel\n"
        "jack server is not running or cannot be started\n"
        "JackShmReadWritePtr::~JackShmReadWritePtr - Init not done for -1, skipping unlock\n"
        "\n"
        "Expression 'ret' failed in 'src/hostapi/alsa/pa_linux_alsa.c', line: 1736\n"
        "cartesia-sync: a caption line from another thread\n"
    )
    noise, other = split_lines(text, mic_module.PORTAUDIO_NOISE)
    assert len(noise) == 7
    assert other == ["cartesia-sync: a caption line from another thread"]


def test_another_threads_output_during_a_quiet_call_is_written_back(fake_alsa, capfd, caplog):
    """fd 2 is the process's: what another thread prints meanwhile is captured too, and must not be lost."""
    fake_alsa(FakeDevice(kind="misconfigured"))
    capfd.readouterr()
    inside = threading.Event()
    written = threading.Event()

    def other_thread() -> None:
        inside.wait(5)
        print("a message from another thread", file=sys.stderr, flush=True)
        written.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with caplog.at_level(logging.DEBUG, logger="cartesia_sync_plugins.microphone"):
        with _portaudio.native_output(True, "testing"):
            inside.set()
            assert written.wait(5)
            os.write(2, b"ALSA lib pcm.c:1:(x) noise\n")
    thread.join(5)
    assert capfd.readouterr().err == "a message from another thread\n"
    assert "ALSA lib pcm.c:1:(x) noise" in caplog.text and "another thread" not in caplog.text


def test_a_real_time_device_over_a_slow_session_drops_without_being_called_fast(fake_alsa, tmp_path):
    """Drops caused by the session (it takes audio at half real time) leave the device's speed at 1x."""
    raw = write_raw(tmp_path / "numbered.raw", numbered_blocks(30))
    fake_alsa(FakeDevice(), mic_file=raw)
    with FakeCartesia() as fake:
        client = client_for(fake, max_buffer_seconds=0.2, keepalive_interval=None)
        with client.connect(realtime=0.5) as session:
            mic = FileMicrophone(limit_bytes=raw.stat().st_size, speed=1.0, buffer_seconds=0.3, speed_window=0.5)
            mic.start(session)
            mic.wait()
            mic.stop(timeout=15)
        fake.wait_finished(timeout=15)
    assert mic.dropped_seconds >= 0.5
    assert mic.capture_speed == pytest.approx(1.0, rel=0.15)
    assert not mic.faster_than_realtime
