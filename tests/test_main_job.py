"""The product's main job end to end: speech in, text out, through the real local server and engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cartesia_sync
from cartesia_sync.local import LocalServer
from cartesia_sync.local._metrics import word_error_rate

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "hello.wav"
SAMPLE_TEXT = (ROOT / "samples" / "hello.txt").read_text()


def test_word_error_rate():
    assert word_error_rate("a b c d", "A, b; c. d!") == 0
    assert word_error_rate("a b c d", "a x c") == 0.5
    assert word_error_rate("a b", "a b c d") == 1.0
    assert word_error_rate(["a b", "c d"], ["a b", "c"]) == 0.25


@pytest.fixture
def pocketsphinx_server():
    with LocalServer("pocketsphinx", load_entrypoints=False) as server:
        yield server


def test_the_sample_through_client_server_and_engine(pocketsphinx_server):
    seen = []

    class Collect:
        name = "collect"

        @cartesia_sync.hookimpl
        def on_transcript(self, transcript):
            seen.append(transcript)

    result = cartesia_sync.transcribe(
        str(SAMPLE), url=pocketsphinx_server.url, plugins=[Collect()], load_entrypoints=False
    )
    assert word_error_rate(SAMPLE_TEXT, result.text) <= 0.15, result.text
    assert result.text.startswith(" ") and "  " not in result.text  # verbatim joining reads naturally
    interims = [t for t in seen if not t.is_final]
    finals = [t for t in seen if t.is_final]
    assert interims and finals and seen.index(interims[0]) < seen.index(finals[0])  # it streams
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and 0 < result.words[-1].end <= 9.3
    assert result.request_id


def test_realtime_streaming_gives_interims_long_before_the_end(pocketsphinx_server):
    sent_at_first_interim = []

    class FirstInterim:
        name = "first-interim"

        @cartesia_sync.hookimpl
        def on_transcript(self, session, transcript):
            if not transcript.is_final and not sent_at_first_interim:
                sent_at_first_interim.append(session.audio_sent)

    client = cartesia_sync.Client(url=pocketsphinx_server.url, plugins=[FirstInterim()], load_entrypoints=False)
    # Paced at 2x, so results arrive while audio is still going out, with room for a loaded machine: the
    # engine decodes at 0.1-0.35x real time alone, and fell behind 4x pacing under load.
    with client.connect(realtime=2.0) as session:
        session.send_file(SAMPLE)
    assert sent_at_first_interim and sent_at_first_interim[0] < 4.0  # of 9.2 s
    assert word_error_rate(SAMPLE_TEXT, session.text) <= 0.15


def test_the_cli_main_job_with_no_key_and_no_network():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    result = subprocess.run(
        [sys.executable, "-m", "cartesia_sync", "transcribe", str(SAMPLE)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    notice = result.stderr.strip().splitlines()
    assert len(notice) == 1 and "embedded local server (pocketsphinx)" in notice[0]
    assert word_error_rate(SAMPLE_TEXT, result.stdout) <= 0.15, result.stdout
