"""Helpers of the many-file tests: tiny WAV files, an engine that counts its open streams, a run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from cartesia_sync.local._engine import Recognition, StreamOptions
from cartesia_sync.testing import ScriptedEngine

__all__ = ["write_wav", "CountingEngine", "start_script", "REPO"]

REPO = Path(__file__).resolve().parent.parent


def write_wav(path: Path, seconds: float = 0.25, seed: int = 0) -> Path:
    """A mono 16 kHz WAV of quiet noise (each seed its own content, so each file its own hash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).integers(-300, 300, int(16000 * seconds), dtype=np.int16)
    soundfile.write(path, samples, 16000)
    return path


class _CountedStream:
    def __init__(self, inner: Any, engine: CountingEngine) -> None:
        self._inner = inner
        self._engine = engine
        self._open = True

    def feed(self, audio: bytes) -> Iterable[Recognition]:
        time.sleep(self._engine.feed_delay)
        return self._inner.feed(audio)

    def flush(self) -> Iterable[Recognition]:
        self._leave()  # the answer to done follows: the client may start its next source from here on
        return self._inner.flush()

    def close(self) -> None:
        self._leave()
        self._inner.close()

    def _leave(self) -> None:
        with self._engine.lock:
            if self._open:
                self._open = False
                self._engine.open -= 1


class CountingEngine(ScriptedEngine):
    """The scripted engine, counting the streams open at once (``peak``); each chunk is fed after ``feed_delay``."""

    def __init__(self, feed_delay: float = 0.01, **options: Any) -> None:
        super().__init__(**options)
        self.feed_delay = feed_delay
        self.lock = threading.Lock()
        self.open = 0
        self.peak = 0
        self.streams = 0

    def open_stream(self, options: StreamOptions) -> Any:
        with self.lock:
            self.open += 1
            self.streams += 1
            self.peak = max(self.peak, self.open)
        return _CountedStream(super().open_stream(options), self)


def start_script(code: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    """Run ``code`` in a fresh interpreter in ``cwd``, without the CARTESIA_* variables of this one."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    environment.update(env)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
