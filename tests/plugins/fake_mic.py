"""A capture device with no sound card: ALSA's ``file`` plugin reading a raw file (for the microphone tests).

ALSA reads its configuration from ``$ALSA_CONFIG_PATH`` when PortAudio initialises
(every ``PyAudio()``), so a test points it at a self-contained asoundrc written
here and then creates the ``PyAudio`` instance. Devices:

- ``file``: captures the raw bytes of a file (s16le, in whatever rate and
  channel count the reader asks for: nothing is checked or converted). The
  ``default`` device reads ``$FAKE_MIC_FILE``, re-read at every open.
- ``ulaw``: a device that only speaks mu-law: PortAudio refuses 16-bit capture.
- ``nocard``: a ``hw`` PCM on a card that does not exist: PortAudio lists nothing.
- ``misconfigured``: a ``plug`` PCM whose slave does not exist: PortAudio lists
  nothing, and probing it makes ALSA print ``ALSA lib pcm.c:... Unknown PCM``
  on file descriptor 2, like a machine without a sound card does with the
  system's configuration (but the same everywhere, sound card or not).

The fake device has no clock: reads return at once, and after the end of the
file they repeat stale data. Tests must limit what they read, or pace the device
with :class:`PacedFeed` (a FIFO as the ``infile``, written at a set speed).
"""

from __future__ import annotations

import os
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

PathLike = str | Path


@dataclass(frozen=True)
class FakeDevice:
    """One PCM of the fake configuration.

    :param name: the ALSA PCM name, which PortAudio shows as the device name
        (``"default"`` is the default input device).
    :param infile: the raw file it captures; ``None`` reads ``$FAKE_MIC_FILE``
        (``/dev/zero`` when unset).
    :param kind: ``"file"``, ``"ulaw"``, ``"nocard"`` or ``"misconfigured"`` (see the module docs).
    """

    name: str = "default"
    infile: PathLike | None = None
    kind: str = "file"

    def render(self) -> str:
        pcm = f"pcm.!{self.name}" if self.name == "default" else f"pcm.{self.name}"
        if self.kind == "nocard":
            return f"{pcm} {{\n    type hw\n    card 7\n}}\n"
        if self.kind == "misconfigured":
            return f'{pcm} {{\n    type plug\n    slave.pcm "no_such_pcm"\n}}\n'
        if self.kind == "ulaw":
            return f"{pcm} {{\n    type mulaw\n    slave {{ pcm {{ type null }} format S16_LE }}\n}}\n"
        if self.kind != "file":
            raise ValueError(f"unknown fake device kind {self.kind!r}")
        # (A ``multi`` slave could fix the channel count, but then the captured bytes are no longer
        # the file's, so every file device takes any rate and channel count: PortAudio says 128.)
        slave = "{ type null }"
        if self.infile is None:
            infile = '{ @func getenv vars [ FAKE_MIC_FILE ] default "/dev/zero" }'
        else:
            infile = f'"{Path(self.infile).resolve()}"'
        return (
            f'{pcm} {{\n    type file\n    slave.pcm {slave}\n    file "/dev/null"\n'
            f'    infile {infile}\n    format "raw"\n}}\n'
        )


def write_asoundrc(path: PathLike, devices: Sequence[FakeDevice]) -> Path:
    """Write a self-contained ALSA configuration (no system alsa.conf) with ``devices``."""
    path = Path(path)
    text = "# fake capture devices for the microphone tests (tests/plugins/fake_mic.py)\n"
    path.write_text(text + "".join(device.render() for device in devices))
    return path.resolve()


def alsa_environ(config: PathLike, mic_file: PathLike | None = None) -> dict[str, str]:
    """The environment variables that make PortAudio use ``config`` (set them before ``PyAudio()``)."""
    env = {"ALSA_CONFIG_PATH": str(Path(config).resolve())}
    if mic_file is not None:
        env["FAKE_MIC_FILE"] = str(Path(mic_file).resolve())
    return env


def read_wav(path: PathLike) -> tuple[bytes, int, int]:
    """The PCM bytes (no header), rate and channel count of a 16-bit WAV file."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM")
        return w.readframes(w.getnframes()), w.getframerate(), w.getnchannels()


def write_raw(path: PathLike, data: bytes) -> Path:
    path = Path(path)
    path.write_bytes(data)
    return path.resolve()


def to_48k_stereo(pcm16k_mono: bytes) -> bytes:
    """The same speech as 48 kHz stereo s16le (both channels equal), as a 48 kHz USB mic would give it."""
    mono = np.frombuffer(pcm16k_mono, dtype="<i2")
    up = soxr.resample(mono, 16000, 48000, quality="VHQ")
    return np.repeat(up[:, None], 2, axis=1).astype("<i2").tobytes()


class PacedFeed:
    """A FIFO that a thread fills with ``data`` (looped) at ``speed`` times real time: a fake device with a clock.

    Give ``path`` as a :class:`FakeDevice`'s ``infile``. ALSA's ``file`` plugin reads it with
    blocking reads, so the capture runs at the writer's pace. PortAudio opens and closes the device
    while it probes it, so the writer reopens the FIFO whenever the reader goes away, and restarts
    its clock then (a reader that comes back late gets no burst of catch-up audio). The pipe is
    shrunk to one page so that little audio waits in it.

    Each write is one period of the reader (``chunk_seconds``, 0.1 s: the microphone's default
    block): the ``file`` plugin fills a period with ONE read and leaves the rest of it stale, so
    smaller writes would make the device deliver whole periods per write, faster than real time.

    :param bytes_per_second: the real-time byte rate of ``data`` (32000 for 16 kHz mono s16le).
    """

    def __init__(
        self, path: PathLike, data: bytes, bytes_per_second: int = 32000, speed: float = 1.0, chunk_seconds: float = 0.1
    ) -> None:
        self.path = Path(path).resolve()
        self.data = data
        self.chunk = max(2, int(bytes_per_second * chunk_seconds) // 2 * 2)
        self.interval = self.chunk / bytes_per_second / speed
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-mic-feed", daemon=True)

    def __enter__(self) -> PacedFeed:
        os.mkfifo(self.path)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        try:  # unblock a writer waiting in open() for a reader
            os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            pass
        self._thread.join(5)

    def _run(self) -> None:
        position = 0
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY)  # blocks until a reader opens the FIFO
            except OSError:
                return
            try:
                try:
                    import fcntl

                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)
                except (ImportError, AttributeError, OSError):
                    pass
                deadline = time.monotonic()
                while not self._stop.is_set():
                    piece = self.data[position : position + self.chunk]
                    if len(piece) < self.chunk:
                        piece += self.data[: self.chunk - len(piece)]
                    os.write(fd, piece)
                    position = (position + self.chunk) % len(self.data)
                    self.written += len(piece)
                    deadline = max(deadline + self.interval, time.monotonic() - self.interval)
                    self._stop.wait(max(0.0, deadline - time.monotonic()))
            except (BrokenPipeError, OSError):
                continue  # the reader closed the FIFO: wait for the next one
            finally:
                os.close(fd)
