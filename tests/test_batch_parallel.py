"""A long batch upload on the local server is cut at quiet moments and decoded on several engine streams at once.

The cutting is checked on synthetic audio (bursts of tone between silences);
the decoding through a real LocalServer over loopback, with an engine that
hears bursts (so every word's true time is known) and counts the streams that
decode at once; and with pocketsphinx on a spoken recording, against one stream.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from conftest import CANARY_KEY

import cartesia_sync
from cartesia_sync.local import LocalServer
from cartesia_sync.local._batch_segments import SEARCH_SECONDS, SEGMENT_SECONDS, cut_segments, quietest_cut
from cartesia_sync.local._engine import Recognition, StreamOptions, Word

pytestmark = pytest.mark.timeout(120)

RATE = 16000


def bursts(layout: list[tuple[float, float]], total: float) -> np.ndarray:
    """Digital silence of ``total`` seconds with a 440 Hz square wave over each (start, end) of ``layout``."""
    audio = np.zeros(int(total * RATE), dtype=np.int16)
    for start, end in layout:
        span = np.arange(int(start * RATE), int(end * RATE))
        audio[span] = np.where(np.sin(span * 2 * np.pi * 440 / RATE) >= 0, 8000, -8000)  # never 0 inside
    return audio


def speech_like(total: float, seed: int = 0) -> list[tuple[float, float]]:
    """Bursts of 0.2 to 0.6 s ('words') with gaps of 0.08 to 0.5 s, over ``total`` seconds."""
    rng = np.random.default_rng(seed)
    layout, at = [], 0.3
    while at < total - 1.0:
        length = float(rng.uniform(0.2, 0.6))
        layout.append((round(at, 3), round(at + length, 3)))
        at += length + float(rng.uniform(0.08, 0.5))
    return layout


def blocks_of(audio: np.ndarray, size: int) -> Iterable[bytes]:
    data = audio.astype("<i2").tobytes()
    return (data[i : i + size] for i in range(0, len(data), size))


def loud_at(audio: np.ndarray, sample: int) -> bool:
    return bool(audio[sample] != 0 or audio[max(0, sample - 1)] != 0)


def test_segments_cover_every_sample_once_in_order_and_cut_only_in_silence():
    total = 200.0
    layout = speech_like(total)
    audio = bursts(layout, total)
    segments = list(cut_segments(blocks_of(audio, 8000)))
    assert [s.index for s in segments] == list(range(len(segments)))
    assert b"".join(s.audio for s in segments) == audio.tobytes()
    starts = [s.start_sample for s in segments]
    assert starts == [0] + list(np.cumsum([len(s.audio) // 2 for s in segments[:-1]]))
    for segment in segments[:-1]:
        seconds = len(segment.audio) / 2 / RATE
        assert SEGMENT_SECONDS - SEARCH_SECONDS <= seconds <= SEGMENT_SECONDS
    for start in starts[1:]:
        assert not loud_at(audio, start), f"cut inside a burst at {start / RATE:.3f} s"
    assert len(segments) == int(total // SEGMENT_SECONDS) + 1 or len(segments) == int(total // SEGMENT_SECONDS) + 2


@pytest.mark.parametrize("segment_seconds, search_seconds", [(0.0, 5.0), (1e-6, 5.0), (30.0, 0.0), (30.0, -1.0)])
def test_degenerate_cutting_parameters_are_refused(segment_seconds, search_seconds):
    with pytest.raises(ValueError, match="at least one sample"):
        list(cut_segments([b"\x00\x00" * 100], segment_seconds, search_seconds))


@pytest.mark.parametrize("block", [2, 4410, 32000, 10**7])
def test_the_cuts_do_not_depend_on_how_the_audio_arrives(block):
    audio = bursts(speech_like(95.0, seed=3), 95.0)
    reference = [(s.start_sample, len(s.audio)) for s in cut_segments(blocks_of(audio, 32000))]
    assert [(s.start_sample, len(s.audio)) for s in cut_segments(blocks_of(audio, block))] == reference


def test_the_quietest_cut_is_in_the_silence_the_latest_of_equals_and_never_empty():
    audio = bursts([(0.0, 1.0), (1.4, 3.0)], 3.0)
    cut = quietest_cut(audio.tobytes()) // 2
    assert 1.0 * RATE < cut < 1.4 * RATE
    silence = np.zeros(RATE, dtype=np.int16).tobytes()
    assert quietest_cut(silence) == (RATE - 3200 + 1600) * 2  # the last 0.2 s window, at its middle
    assert quietest_cut(b"") == 2 and quietest_cut(b"\x00\x00") == 2
    loud = (np.sin(np.arange(RATE) * 0.3) * 9000).astype(np.int16)
    assert 0 < quietest_cut(loud.tobytes()) <= RATE * 2


class _BurstStream:
    """Hears each burst of tone as the word 'w<tenths of a second it lasted>', with its times."""

    def __init__(self, engine: BurstEngine) -> None:
        self.engine = engine
        self.audio = bytearray()

    def feed(self, audio: bytes) -> list[Recognition]:
        time.sleep(self.engine.feed_delay)
        self.audio += audio
        return []

    def flush(self) -> list[Recognition]:
        samples = np.frombuffer(bytes(self.audio), dtype="<i2")
        loud = np.concatenate(([False], samples != 0, [False]))
        edges = np.flatnonzero(loud[1:] != loud[:-1])
        words = tuple(
            Word(f"w{round((end - start) / RATE * 10)}", round(start / RATE, 3), round(end / RATE, 3))
            for start, end in zip(edges[::2], edges[1::2], strict=True)
        )
        if not words:
            return []
        return [Recognition(" ".join(w.word for w in words), True, words, 0.0, len(samples) / RATE)]

    def close(self) -> None:
        with self.engine.lock:
            self.engine.open -= 1


class BurstEngine:
    name = "bursts"

    def __init__(self, parallel_streams: int = 2, feed_delay: float = 0.0, fail_after: int | None = None) -> None:
        self.parallel_streams = parallel_streams
        self.feed_delay = feed_delay
        self.fail_after = fail_after
        self.lock = threading.Lock()
        self.open = self.peak = self.streams = 0

    def open_stream(self, options: StreamOptions) -> _BurstStream:
        with self.lock:
            if self.fail_after is not None and self.streams >= self.fail_after:
                raise RuntimeError("the burst detector broke")
            self.open += 1
            self.streams += 1
            self.peak = max(self.peak, self.open)
        return _BurstStream(self)

    def close(self) -> None:
        pass


def free_streams(server: LocalServer) -> int:
    """The server's engine-stream slots not taken (every request must give back what it took)."""
    return server._config.streams._value  # type: ignore[attr-defined]


def write(path: Path, audio: np.ndarray) -> Path:
    soundfile.write(path, audio, RATE, subtype="PCM_16")
    return path


def transcribe(server: LocalServer, path: Path) -> cartesia_sync.TranscriptionResult:
    client = cartesia_sync.Client(base_url=server.base_url, api_key=CANARY_KEY, load_entrypoints=False)
    return client.transcribe(path, mode="batch")


def test_a_long_upload_is_decoded_on_parallel_streams_with_every_word_at_its_true_time(tmp_path):
    total = 150.0
    layout = speech_like(total, seed=7)
    path = write(tmp_path / "long.wav", bursts(layout, total))
    parallel = BurstEngine(parallel_streams=2, feed_delay=0.01)
    with LocalServer(parallel, api_key=CANARY_KEY, load_entrypoints=False) as server:
        result = transcribe(server, path)
        assert free_streams(server) == server.max_streams
    one = BurstEngine(parallel_streams=1)
    with LocalServer(one, api_key=CANARY_KEY, load_entrypoints=False) as server:
        single = transcribe(server, path)
    assert parallel.peak == 2 and parallel.streams == 6  # 150 s in segments of 25 to 30 s
    assert one.peak == 1 and one.streams == 1
    assert result.text == single.text and len(result.words) == len(layout)
    for word, (start, end) in zip(result.words, layout, strict=True):
        assert word.start == pytest.approx(start, abs=0.002) and word.end == pytest.approx(end, abs=0.002)
    assert result.audio_seconds == pytest.approx(total, abs=0.01)


def test_a_short_upload_takes_one_stream_and_a_busy_server_gives_fewer(tmp_path):
    engine = BurstEngine(parallel_streams=4)
    short = write(tmp_path / "short.wav", bursts(speech_like(20.0), 20.0))
    with LocalServer(engine, api_key=CANARY_KEY, load_entrypoints=False, max_streams=2) as server:
        transcribe(server, short)
        assert engine.streams == 1
        long = write(tmp_path / "long.wav", bursts(speech_like(100.0), 100.0))
        result = transcribe(server, long)
    assert engine.peak == 2  # four were worth it; the server had two
    assert len(result.words) == len(speech_like(100.0))


def test_an_engine_failure_in_one_segment_fails_the_upload_with_a_500_and_stops_the_others(tmp_path):
    engine = BurstEngine(parallel_streams=2, feed_delay=0.005, fail_after=3)
    path = write(tmp_path / "long.wav", bursts(speech_like(200.0), 200.0))
    with LocalServer(engine, api_key=CANARY_KEY, load_entrypoints=False) as server:
        with pytest.raises(cartesia_sync.ServerError, match="burst detector broke"):
            transcribe(server, path)
        assert engine.open == 0  # every stream it opened was closed
        assert engine.streams == 3
        deadline = time.monotonic() + 5
        while free_streams(server) < server.max_streams and time.monotonic() < deadline:
            time.sleep(0.01)  # the other thread gives its slot back as it ends
        assert free_streams(server) == server.max_streams
        status = httpx.get(server.base_url + "/", timeout=5)
        assert status.status_code == 200  # the server goes on
        engine.fail_after = None
        assert transcribe(server, path).text
    assert not [t.name for t in threading.enumerate() if t.name.startswith("cartesia-sync-batch-decode")]


def test_stopping_the_server_ends_a_parallel_decode_at_once(tmp_path):
    engine = BurstEngine(parallel_streams=2, feed_delay=0.05)  # 1 s of audio per 0.05 s: 300 s take 7 s and more
    path = write(tmp_path / "long.wav", bursts(speech_like(300.0), 300.0))
    server = LocalServer(engine, api_key=CANARY_KEY, load_entrypoints=False).start()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            transcribe(server, path)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=run)
    caller.start()
    deadline = time.monotonic() + 10
    while engine.streams < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    took = time.monotonic() - started
    caller.join(timeout=30)
    assert not caller.is_alive() and errors
    assert engine.open == 0
    assert took < 5, took
    assert free_streams(server) == server.max_streams
    assert not [t.name for t in threading.enumerate() if t.name.startswith("cartesia-sync-batch-decode")]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pocketsphinx_on_two_streams_reads_a_spoken_recording_as_well_as_on_one(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from recordings import make_recording

    from cartesia_sync.local._metrics import word_error_rate

    recording = make_recording(tmp_path / "spoken.wav", 150.0)
    results = {}
    for workers in (1, 2):
        with LocalServer("pocketsphinx", workers=workers, api_key=CANARY_KEY, load_entrypoints=False) as server:
            results[workers] = transcribe(server, recording.path)
    script = " ".join(recording.words)
    one, two = (word_error_rate([script], [results[n].text]) for n in (1, 2))
    assert two <= one + 0.02, (one, two)
    words = results[2].words
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))  # in order across the cuts
    assert all(0 <= w.start <= w.end <= results[2].audio_seconds + 0.05 for w in words)


def test_a_server_stopping_after_the_last_segment_was_handed_over_still_ends_the_decode(tmp_path):
    engine = BurstEngine(parallel_streams=2, feed_delay=0.2)  # 58 s: two segments of 25-33 s, 5 s and more each
    path = write(tmp_path / "two.wav", bursts(speech_like(58.0), 58.0))
    server = LocalServer(engine, api_key=CANARY_KEY, load_entrypoints=False).start()
    errors: list[BaseException] = []
    caller = threading.Thread(target=lambda: errors.append(_raises(lambda: transcribe(server, path))))
    caller.start()
    deadline = time.monotonic() + 10
    while engine.open < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # both segments are being decoded: nothing is left to hand over
    started = time.monotonic()
    server.stop()
    took = time.monotonic() - started
    caller.join(timeout=30)
    assert not caller.is_alive() and errors and errors[0] is not None
    assert took < 3, took  # both threads saw the stop at their next block, not at the end of their segments
    assert engine.open == 0 and free_streams(server) == server.max_streams


def _raises(call):
    try:
        call()
    except BaseException as exc:
        return exc
    return None


@pytest.mark.parametrize("parallel_streams", [1, 2])
def test_an_upload_damaged_past_its_header_is_a_400_saying_how_far_it_could_be_read(tmp_path, parallel_streams):
    path = tmp_path / "damaged.flac"
    soundfile.write(path, bursts(speech_like(90.0), 90.0), RATE, format="FLAC")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + len(data) // 8] = np.random.default_rng(5).bytes(len(data) // 8)
    path.write_bytes(bytes(data))
    engine = BurstEngine(parallel_streams=parallel_streams)
    with LocalServer(engine, api_key=CANARY_KEY, load_entrypoints=False) as server:
        with pytest.raises(cartesia_sync.ServerError) as raised:
            transcribe(server, path)
        assert raised.value.status_code == 400
        assert "could not be decoded after" in str(raised.value) and "damaged" in str(raised.value)
        deadline = time.monotonic() + 5
        while (engine.open or free_streams(server) < server.max_streams) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.open == 0 and free_streams(server) == server.max_streams
