"""``cartesia-sync transcribe FILE --turns``: the turns endpoint on a file, on the embedded server."""

from __future__ import annotations

import json
import subprocess
import wave
from pathlib import Path

import pytest
from cli_helpers import run_cli

pytest.importorskip("pocketsphinx")

from cartesia_sync.local._metrics import word_error_rate  # noqa: E402

DATA = Path(__file__).parent / "data"


def truth(name: str) -> str:
    return dict(line.split("\t") for line in (DATA / "fixtures.tsv").read_text().splitlines())[name]


@pytest.fixture
def two_utterances(tmp_path: Path) -> Path:
    frames = b""
    for name in ("utt03.wav", "utt06.wav"):
        with wave.open(str(DATA / name)) as w:
            frames += w.readframes(w.getnframes()) + bytes(2 * 16000 * 2)
    path = tmp_path / "two.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(frames)
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("transcribe", *args, timeout=300)


def test_one_line_per_turn(two_utterances):
    result = cli(str(two_utterances), "--turns")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert word_error_rate([truth("utt03.wav")], [lines[0]]) < 0.35
    assert word_error_rate([truth("utt06.wav")], [lines[1]]) < 0.35


def test_json_has_the_turns_and_their_times(two_utterances):
    result = cli(str(two_utterances), "--turns", "--json")
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)
    assert entry["file"] == str(two_utterances) and len(entry["turns"]) == 2
    first, second = entry["turns"]
    assert first["start"] <= first["end"] <= second["start"] <= second["end"]
    assert entry["text"] == first["text"] + second["text"]


def test_a_missing_file_is_one_error_line(tmp_path):
    result = cli(str(tmp_path / "missing.wav"), "--turns")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("cartesia-sync: error:")
    assert "Traceback" not in result.stderr
