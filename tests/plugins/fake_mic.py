"""A capture device with no sound card: ALSA's ``file`` plugin reading a raw file (for the microphone tests).

ALSA reads its configuration from ``$ALSA_CONFIG_PATH`` when PortAudio initialises
(every ``PyAudio()``), so a test points it at a self-contained asoundrc written
here and then creates the ``PyAudio`` instance. Devices:

- ``file``: captures the raw bytes of a file (s16le, in whatever rate and
  channel count the reader asks for: nothing is checked or converted). The
  ``default`` device reads ``$FAKE_MIC_FILE``, re-read at every open.
- ``ulaw``: a device that only speaks mu-law: PortAudio refuses 16-bit capture.
- ``nocard``: a ``hw`` PCM on a card that does not exist: PortAudio lists nothing.

The fake device has no clock: reads return at once, and after the end of the
file they repeat stale data. Tests must limit what they read.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import soxr

PathLike = Union[str, Path]


@dataclass(frozen=True)
class FakeDevice:
    """One PCM of the fake configuration.

    :param name: the ALSA PCM name, which PortAudio shows as the device name
        (``"default"`` is the default input device).
    :param infile: the raw file it captures; ``None`` reads ``$FAKE_MIC_FILE``
        (``/dev/zero`` when unset).
    :param kind: ``"file"``, ``"ulaw"`` or ``"nocard"`` (see the module docs).
    """

    name: str = "default"
    infile: Optional[PathLike] = None
    kind: str = "file"

    def render(self) -> str:
        pcm = f"pcm.!{self.name}" if self.name == "default" else f"pcm.{self.name}"
        if self.kind == "nocard":
            return f"{pcm} {{\n    type hw\n    card 7\n}}\n"
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
        return (f"{pcm} {{\n    type file\n    slave.pcm {slave}\n    file \"/dev/null\"\n"
                f"    infile {infile}\n    format \"raw\"\n}}\n")


def write_asoundrc(path: PathLike, devices: Sequence[FakeDevice]) -> Path:
    """Write a self-contained ALSA configuration (no system alsa.conf) with ``devices``."""
    path = Path(path)
    text = "# fake capture devices for the microphone tests (tests/plugins/fake_mic.py)\n"
    path.write_text(text + "".join(device.render() for device in devices))
    return path.resolve()


def alsa_environ(config: PathLike, mic_file: Optional[PathLike] = None) -> Dict[str, str]:
    """The environment variables that make PortAudio use ``config`` (set them before ``PyAudio()``)."""
    env = {"ALSA_CONFIG_PATH": str(Path(config).resolve())}
    if mic_file is not None:
        env["FAKE_MIC_FILE"] = str(Path(mic_file).resolve())
    return env


def read_wav(path: PathLike) -> "tuple[bytes, int, int]":
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
