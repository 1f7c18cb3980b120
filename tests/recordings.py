"""Long recordings for tests and benchmarks, built from the spoken fixtures in ``tests/data``.

A user's first file is minutes long, with speech, short pauses between
sentences and the odd long silence. :func:`make_recording` lays the six
fixture sentences and ``samples/hello.wav`` end to end in a seeded order with
such pauses until the wanted length is reached, and returns the script, so a
test can check that the words of every part of the file came back.
"""

from __future__ import annotations

import random
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Recording", "make_recording", "CLIPS"]

_ROOT = Path(__file__).resolve().parent.parent
_DATA = _ROOT / "tests" / "data"
RATE = 16000


def _load_clips() -> list[tuple[Path, str]]:
    clips = []
    for line in (_DATA / "fixtures.tsv").read_text().splitlines():
        name, text = line.split("\t")
        clips.append((_DATA / name, text))
    hello = _ROOT / "samples" / "hello.txt"
    words = "".join(c if c.isalpha() or c.isspace() else " " for c in hello.read_text().lower()).split()
    clips.append((_ROOT / "samples" / "hello.wav", " ".join(words)))
    return clips


#: (path, lower-case words) of every clip a recording is made of.
CLIPS = _load_clips()


@dataclass(frozen=True)
class Recording:
    """A generated recording: where it is, how long, and what each sentence in it says, in order."""

    path: Path
    seconds: float
    sentences: tuple[str, ...]

    @property
    def words(self) -> list[str]:
        return " ".join(self.sentences).split()


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def make_recording(path: Path, seconds: float, seed: int = 0, long_pause_every: float = 120.0) -> Recording:
    """Write a 16 kHz mono 16-bit WAV of about ``seconds`` of speech and pauses to ``path``.

    Pauses between sentences are 0.3-2.5 s; roughly every ``long_pause_every``
    seconds comes a silence of 8-15 s (a speaker who stopped talking). The
    silence is not digital zero: a quiet seeded noise floor, as in a room.
    """
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    clips = [(_samples(p), text) for p, text in CLIPS]
    total = int(seconds * RATE)
    parts: list[np.ndarray] = []
    sentences: list[str] = []
    length = 0
    next_long_pause = long_pause_every
    while True:
        samples, text = clips[rng.randrange(len(clips))]
        if length + len(samples) > total:
            break
        parts.append(samples)
        sentences.append(text)
        length += len(samples)
        pause = rng.uniform(0.3, 2.5)
        if length / RATE >= next_long_pause:
            pause = rng.uniform(8.0, 15.0)
            next_long_pause += long_pause_every
        gap = min(int(pause * RATE), total - length)
        parts.append((noise.normal(0, 20, gap)).astype("<i2"))
        length += gap
    if length < total:
        parts.append((noise.normal(0, 20, total - length)).astype("<i2"))
    audio = np.concatenate(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(audio.tobytes())
    return Recording(path=path, seconds=len(audio) / RATE, sentences=tuple(sentences))


if __name__ == "__main__":  # pragma: no cover - python tests/recordings.py OUT.wav SECONDS
    import sys

    made = make_recording(Path(sys.argv[1]), float(sys.argv[2]))
    print(f"{made.path}: {made.seconds:.1f} s, {len(made.sentences)} sentences")
