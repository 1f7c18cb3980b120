#!/usr/bin/env python3
"""Measure the pocketsphinx engine: accuracy, speed, flush latency, concurrent streams.

Run by hand (takes about 8-12 minutes on 2 cores)::

    python bench/local_engine.py                       # everything, table on stdout
    python bench/local_engine.py --json out.json       # also write the numbers as JSON
    python bench/local_engine.py --real DIR            # add real speech: DIR/*.wav + DIR/*.txt
    python bench/local_engine.py --skip dev,concurrency,server

What it measures:

- **WER** of three settings: ``untuned`` (pocketsphinx defaults), ``noise-only``
  (a -40 dB white-noise floor, the recipe of docs/audio-stack.md) and ``tuned``
  (the engine's defaults: gain control, -35 dB noise floor, CMN prior, lw 5.5),
  on the test fixtures, the shipped sample, a dev set of 20 other sentences in six
  espeak-ng voices (made here when espeak-ng and sox are installed) and, with
  ``--real``, recorded speech. The pocketsphinx sdist has a few LibriVox
  utterances with transcripts under ``test/data/librivox``
  (``pip download --no-deps --no-binary :all: pocketsphinx==5.1.1``). Every
  utterance is decoded by a fresh stream, as a short request would be.
- **Real-time factor** of one stream: CPU seconds per audio second in-process,
  and wall and worker-CPU seconds per audio second through a worker process.
- **Flush latency**: time from ``flush()`` to its return after 5 s of speech.
- **Concurrent real-time streams**: N streams, each fed 100 ms every 100 ms by
  its own thread, against one engine with the default pool (one worker per
  core). A run keeps up when no chunk is answered more than 1 s after it was
  due; the result is the largest N that keeps up.
- **Through the local server**, end to end over the WebSocket: the embedded
  ``LocalServer`` (engine ``pocketsphinx``, default settings, in this process)
  and the library's own ``Client``.

  - *finalize -> flush_done*: ``session.finalize()`` timed after 5 s of speech,
    sent unpaced (timed once the server's workers have decoded all of it) and
    sent at 1x (timed right after the last frame went out, as a live caller
    would see it).
  - *Real-time sessions*: N client sessions, each on its own thread, stream
    ``--seconds`` of looped speech at 1x, then ``finalize()`` and ``close()``.
    The lag of a final transcript is when the ``on_transcript`` hook saw it
    minus when the end of its last word was due (the session's first frame
    plus the word's end time). A run keeps up when no final lags more than
    2 s, no session had an error and every ``finalize()`` returned; the
    result is the largest N that keeps up.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cartesia_sync  # noqa: E402
from cartesia_sync.local._decoder_worker import RecognizerSettings  # noqa: E402
from cartesia_sync.local._engine import StreamOptions  # noqa: E402
from cartesia_sync.local._metrics import normalise_words  # noqa: E402
from cartesia_sync.local._metrics import word_error_rate as wer
from cartesia_sync.local._pocketsphinx_engine import PocketSphinxEngine  # noqa: E402
from cartesia_sync.local._server import LocalServer  # noqa: E402

RATE = 16000
CHUNK = 3200
Clip = tuple[bytes, str]

#: The dev set: ordinary sentences, none of them in the fixtures or the sample.
DEV_SENTENCES = [
    "please send me the report by friday so i can review it over the weekend",
    "the meeting has been moved to three o'clock in the large conference room",
    "she bought a new car last year and drives it to work every day",
    "we need to buy milk eggs and bread before the store closes",
    "he forgot his keys at home and had to call his wife",
    "the new restaurant on main street serves very good food",
    "i will call you back as soon as i get home tonight",
    "the company hired twenty new people this month",
    "they are planning a trip to the mountains next summer",
    "the doctor said that i should drink more water",
    "our team won the game by two points last night",
    "it is important to read the instructions before you start",
    "the price of coffee went up again this week",
    "please turn off the lights when you leave the room",
    "the book was much better than the movie",
    "we had dinner with our friends on saturday evening",
    "thank you for calling please leave a message after the tone",
    "the first step is to open the box and take out the cable",
    "the train to boston leaves at nine in the morning",
    "the quick brown fox jumps over the lazy dog",
]
DEV_VOICES = [
    ("en-us", 150),
    ("en-us+klatt4", 150),
    ("en-us+m3", 175),
    ("en-us+f3", 150),
    ("en-us", 130),
    ("en-gb", 150),
]

SETTINGS = {
    "untuned": RecognizerSettings.untuned(),
    "noise-only": RecognizerSettings(target_level=None, noise_db=-40.0, cmninit=None, decoder_options=()),
    "tuned": RecognizerSettings(),
}


# -- audio and scoring --------------------------------------------------------------------


def read_wav(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (RATE, 1, 2):
            raise SystemExit(f"{path}: need 16 kHz mono 16-bit WAV")
        return w.readframes(w.getnframes())


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * RATE))


def fixtures() -> list[Clip]:
    data = ROOT / "tests" / "data"
    out = []
    for line in (data / "fixtures.tsv").read_text().splitlines():
        name, text = line.split("\t")
        out.append((read_wav(data / name), text))
    return out


def sample() -> list[Clip]:
    path = ROOT / "samples" / "hello.wav"
    return [(read_wav(path), path.with_suffix(".txt").read_text())]


def dev_sets(workdir: Path) -> dict[str, list[Clip]]:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        print("espeak-ng or sox missing: no dev set", file=sys.stderr)
        return {}
    sets: dict[str, list[Clip]] = {}
    for voice, rate in DEV_VOICES:
        clips = []
        for i, text in enumerate(DEV_SENTENCES):
            raw, out = workdir / "speech.wav", workdir / f"{voice}-{rate}-{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(raw), text], check=True)
            subprocess.run(
                [
                    "sox",
                    str(raw),
                    "-D",
                    "-b",
                    "16",
                    "-e",
                    "signed-integer",
                    str(out),
                    "gain",
                    "-3",
                    "rate",
                    "16000",
                    "channels",
                    "1",
                    "pad",
                    "0.3",
                    "0.5",
                ],
                check=True,
            )
            clips.append((read_wav(out), text))
        sets[f"{voice}@{rate}"] = clips
    return sets


def real_set(directory: Path) -> list[Clip]:
    clips = []
    for wav in sorted(directory.glob("*.wav")):
        txt = wav.with_suffix(".txt")
        if txt.exists():
            clips.append((read_wav(wav), txt.read_text()))
    return clips


# -- measurements ---------------------------------------------------------------------------


def transcribe(engine: PocketSphinxEngine, pcm: bytes, chunk: int = CHUNK) -> str:
    stream = engine.open_stream(StreamOptions())
    try:
        finals = []
        for i in range(0, len(pcm), chunk):
            finals += [r.text for r in stream.feed(pcm[i : i + chunk]) if r.is_final]
        finals += [r.text for r in stream.flush()]
        return " ".join(finals)
    finally:
        stream.close()


def measure_wer(corpora: dict[str, list[Clip]]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for label, settings in SETTINGS.items():
        with PocketSphinxEngine(workers=2, settings=settings) as engine:

            def one(clips: list[Clip]) -> dict:
                hyps = [transcribe(engine, pcm) for pcm, _ in clips]
                refs = [text for _, text in clips]
                words = sum(len(normalise_words(r)) for r in refs)
                return {"wer": round(wer(refs, hyps), 4), "words": words, "hyps": hyps}

            with ThreadPoolExecutor(2) as pool:
                results = dict(zip(corpora, pool.map(one, corpora.values()), strict=False))
        out[label] = results
        print(f"  WER {label:<10} " + "  ".join(f"{k}={v['wer'] * 100:.1f}%" for k, v in results.items()), flush=True)
    return out


def worker_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_rtf(clips: list[Clip]) -> dict:
    pcm = b"".join(p + silence(1.0) for p, _ in clips)
    seconds = len(pcm) / 2 / RATE
    out = {"audio_s": round(seconds, 2)}
    for label in ("untuned", "tuned"):
        with PocketSphinxEngine(workers=0, settings=SETTINGS[label]) as engine:
            transcribe(engine, silence(0.1))  # build the decoder outside the timing
            cpu, wall = time.process_time(), time.perf_counter()
            transcribe(engine, pcm)
            out[f"{label}_inprocess_cpu_rtf"] = round((time.process_time() - cpu) / seconds, 4)
            out[f"{label}_inprocess_wall_rtf"] = round((time.perf_counter() - wall) / seconds, 4)
        with PocketSphinxEngine(workers=1, settings=SETTINGS[label]) as engine:
            transcribe(engine, silence(0.1))
            (pid,) = engine.worker_pids()
            cpu, wall = worker_cpu(pid), time.perf_counter()
            transcribe(engine, pcm)
            out[f"{label}_worker_wall_rtf"] = round((time.perf_counter() - wall) / seconds, 4)
            out[f"{label}_worker_cpu_rtf"] = round((worker_cpu(pid) - cpu) / seconds, 4)
    print("  RTF " + "  ".join(f"{k}={v}" for k, v in out.items()), flush=True)
    return out


def measure_flush_latency(speech: bytes, runs: int = 7) -> dict:
    out = {}
    five = speech[: 5 * RATE * 2]
    for workers in (1, 0):
        with PocketSphinxEngine(workers=workers) as engine:
            transcribe(engine, silence(0.1))
            times = []
            for _ in range(runs):
                stream = engine.open_stream(StreamOptions())
                for i in range(0, len(five), CHUNK):
                    stream.feed(five[i : i + CHUNK])
                started = time.perf_counter()
                finals = stream.flush()
                times.append(time.perf_counter() - started)
                stream.close()
                assert finals, "no final for 5 s of speech"
        key = "worker" if workers else "inprocess"
        out[f"{key}_median_ms"] = round(statistics.median(times) * 1000, 1)
        out[f"{key}_max_ms"] = round(max(times) * 1000, 1)
    print("  flush latency " + "  ".join(f"{k}={v}" for k, v in out.items()), flush=True)
    return out


def realtime_run(engine: PocketSphinxEngine, n: int, pcm: bytes) -> dict:
    """N paced streams; returns how late the answers came and how long feeds took."""
    lags: list[list[float]] = [[] for _ in range(n)]
    costs: list[list[float]] = [[] for _ in range(n)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def stream_main(k: int) -> None:
        try:
            stream = engine.open_stream(StreamOptions())
            offset = k * CHUNK * 3  # streams start at different places in the audio
            audio = pcm[offset:] + pcm[:offset]
            barrier.wait(60)
            start = time.perf_counter() + 0.01 * k
            for i, pos in enumerate(range(0, len(audio), CHUNK)):
                due = start + (i + 1) * 0.1  # the chunk is complete 100 ms after it began
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                before = time.perf_counter()
                stream.feed(audio[pos : pos + CHUNK])
                now = time.perf_counter()
                costs[k].append(now - before)
                lags[k].append(now - due)
            stream.flush()
            stream.close()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=stream_main, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    all_lags = sorted(x for row in lags for x in row)
    all_costs = sorted(x for row in costs for x in row)
    return {
        "streams": n,
        "max_lag_s": round(all_lags[-1], 3),
        "p99_lag_s": round(all_lags[int(0.99 * (len(all_lags) - 1))], 3),
        "median_feed_ms": round(statistics.median(all_costs) * 1000, 1),
        "p99_feed_ms": round(all_costs[int(0.99 * (len(all_costs) - 1))] * 1000, 1),
        "keeps_up": all_lags[-1] <= 1.0,
    }


def looped_speech(clips: list[Clip], seconds: float) -> bytes:
    """The clips, each followed by 0.8 s of silence, repeated to exactly ``seconds`` of audio."""
    pcm = b"".join(p + silence(0.8) for p, _ in clips)
    while len(pcm) < seconds * RATE * 2:
        pcm += pcm
    return pcm[: int(seconds * RATE) * 2]


def ramp_up(run: Callable[[int], dict], max_n: int, label: str, step: Callable[[int], int]) -> tuple[int, list[dict]]:
    """Run ``run(n)`` for growing N (``step`` gives the next) until one does not keep up.

    :returns: the largest N that kept up (0 if none), and every run's result.
    """
    runs: list[dict] = []
    best = 0
    n = 1
    while n <= max_n:
        result = run(n)
        runs.append(result)
        shown = "  ".join(f"{k}={v}" for k, v in result.items() if k not in ("streams", "sessions"))
        print(f"  {n:3d} {label}: {shown}", flush=True)
        if not result["keeps_up"]:
            break
        best = n
        n = step(n)
    return best, runs


def measure_concurrency(clips: list[Clip], seconds: float, max_streams: int) -> dict:
    pcm = looped_speech(clips, seconds)
    with PocketSphinxEngine() as engine:
        best, runs = ramp_up(
            lambda n: realtime_run(engine, n, pcm), max_streams, "streams", lambda n: n + 1 if n < 4 else n + 2
        )
    return {"audio_s_per_stream": seconds, "workers": os.cpu_count(), "max_realtime_streams": best, "runs": runs}


# -- end to end through the local server ------------------------------------------------------

#: A session that lags more than this behind the audio clock does not keep up.
MAX_FINAL_LAG_S = 2.0


class FinalClock:
    """A client plugin that notes when each final transcript reached the session (monotonic clock)."""

    def __init__(self) -> None:
        self.finals: list[tuple[float, cartesia_sync.Transcript]] = []

    @cartesia_sync.hookimpl
    def on_transcript(self, transcript: cartesia_sync.Transcript) -> None:
        if transcript.is_final:
            self.finals.append((time.monotonic(), transcript))


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.002) -> float:
    """Poll ``condition`` until it holds; returns when it did (monotonic).

    :raises TimeoutError: it did not hold within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(poll)
    return time.monotonic()


def wait_engine_idle(engine: object, timeout: float = 30.0, quiet: float = 0.15) -> float:
    """Wait until the engine's worker processes used no CPU for ``quiet`` seconds.

    The server decodes a connection's frames one after another, so audio sent
    unpaced is still being decoded after the client wrote it; this waits that
    backlog out. Returns how long the workers were still busy (to about 30 ms).
    """
    pids = getattr(engine, "worker_pids", list)()
    started = time.monotonic()
    if not pids:  # an in-process engine: nothing to watch, just give it time
        time.sleep(1.0)
        return 1.0
    last, since = sum(worker_cpu(pid) for pid in pids), started
    while True:
        time.sleep(0.03)
        now = time.monotonic()
        cpu = sum(worker_cpu(pid) for pid in pids)
        if cpu != last:
            last, since = cpu, now
        elif now - since >= quiet:
            return since - started
        if now - started > timeout:
            raise TimeoutError(f"the engine's workers were still busy after {timeout:g} s")


def server_client(url: str, *plugins: object, **options: Any) -> cartesia_sync.Client:
    """The library's client for the local server: no key (the server asks for none), no installed plugins."""
    return cartesia_sync.Client(url=url, load_entrypoints=False, plugins=plugins, **options)


def close_session(session: cartesia_sync.Session | None) -> None:
    """Abort a session that is still open (after an error); a closed one is left alone."""
    if session is not None and not session.closed:
        session.abort()


def timed_finalize(server: LocalServer, pcm: bytes, realtime: bool) -> tuple[float, int, float]:
    """One session: send ``pcm``, wait until it is out, time ``finalize()``.

    Unpaced, the timing starts once the server's workers have decoded all the
    audio; at 1x, right after the last frame was written.

    :returns: finalize -> flush_done in seconds, the final words, and the wait for the server's backlog.
    """
    seconds = len(pcm) / 2 / RATE
    session = server_client(server.url).connect(realtime=realtime)
    try:
        session.send(pcm)
        wait_until(lambda: session.audio_sent >= seconds - 1e-6, seconds + 30, "sending the audio", poll=0.001)
        backlog = 0.0 if realtime else wait_engine_idle(server.engine)
        started = time.monotonic()
        session.finalize(timeout=30)
        elapsed = time.monotonic() - started
        words = len(session.words)
        session.close(timeout=10)
    finally:
        close_session(session)
    return elapsed, words, backlog


def measure_server_finalize(speech: bytes, runs: int = 7, realtime_runs: int = 5) -> dict:
    """finalize -> flush_done over the WebSocket after 5 s of speech, sent unpaced and at 1x."""
    five = speech[: 5 * RATE * 2]
    out: dict = {}
    with LocalServer("pocketsphinx", load_entrypoints=False) as server:
        timed_finalize(server, silence(0.1), realtime=False)  # start a worker outside the timing
        for label, realtime, count in (("unpaced", False, runs), ("realtime", True, realtime_runs)):
            measured = [timed_finalize(server, five, realtime) for _ in range(count)]
            times = [m[0] for m in measured]
            out[f"{label}_median_ms"] = round(statistics.median(times) * 1000, 1)
            out[f"{label}_max_ms"] = round(max(times) * 1000, 1)
            out[f"{label}_words"] = int(statistics.median(m[1] for m in measured))
            if not realtime:
                out[f"{label}_decode_backlog_median_ms"] = round(statistics.median(m[2] for m in measured) * 1000)
            assert all(m[1] for m in measured), "no final words for 5 s of speech"
    print("  server finalize->flush_done " + "  ".join(f"{k}={v}" for k, v in out.items()), flush=True)
    return out


def percentile(values: list[float], fraction: float) -> float:
    """The value at ``fraction`` of the sorted values (nearest rank below)."""
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1))]


def server_realtime_run(server: LocalServer, n: int, pcm: bytes) -> dict:
    """N client sessions streaming ``pcm`` at 1x through one server; how late their finals came."""
    seconds = len(pcm) / 2 / RATE
    lags: list[float] = []
    finalize_times: list[float] = []
    start_spread: list[float] = []
    errors: list[str] = []
    sessions: list[cartesia_sync.Session] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def session_main(k: int) -> None:
        clock = FinalClock()
        # No keepalive: silence sent while waiting at the barrier would move the server's audio clock.
        client = server_client(server.url, clock, keepalive_interval=None, max_buffer_seconds=max(30.0, seconds + 1))
        session: cartesia_sync.Session | None = None
        try:
            session = live = client.connect(realtime=True)
            with lock:
                sessions.append(live)
            live.finalize(timeout=30)  # answered once the server's engine stream is open: startup is not timed
            barrier.wait(60)
            time.sleep(0.1 * k / n)  # spread the sessions' frames over one frame period
            offset = k * CHUNK * 3  # and start them at different places in the audio
            start = time.monotonic()  # the sender writes the first frame at once and paces the rest from it
            live.send(pcm[offset:] + pcm[:offset])
            first = wait_until(lambda: live.audio_sent > 0, 10, "the first frame", poll=0.001)
            wait_until(lambda: live.audio_sent >= seconds - 1e-6, seconds + 30, "sending the audio")
            before = time.monotonic()
            live.finalize(timeout=30)
            finalized = time.monotonic() - before
            live.close(timeout=10)
            mine = [seen - (start + t.words[-1].end) for seen, t in clock.finals if t.words]
            with lock:
                lags.extend(mine)
                finalize_times.append(finalized)
                start_spread.append(first - start)
                errors.extend(f"session {k}: {e!r}" for e in live.errors)
        except BaseException as exc:  # reported in the result
            barrier.abort()  # the others stop waiting for this one
            with lock:
                errors.append(f"session {k}: {type(exc).__name__}: {exc}")
        finally:
            close_session(session)

    threads = [threading.Thread(target=session_main, args=(k,), name=f"bench-session-{k}") for k in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds + 150  # connect, barrier, audio, finalize, close: each has its own timeout
    try:
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        hung = [t for t in threads if t.is_alive()]
        if hung:
            errors.append(f"{len(hung)} sessions did not finish in time")
            with lock:
                stuck = list(sessions)
            for session in stuck:
                close_session(session)
            for t in hung:
                t.join(15)
    keeps_up = bool(lags) and max(lags) <= MAX_FINAL_LAG_S and not errors and len(finalize_times) == n
    return {
        "sessions": n,
        "finals": len(lags),
        "p50_final_lag_s": round(percentile(lags, 0.5), 3) if lags else None,
        "p99_final_lag_s": round(percentile(lags, 0.99), 3) if lags else None,
        "max_final_lag_s": round(max(lags), 3) if lags else None,
        "max_finalize_ms": round(max(finalize_times) * 1000, 1) if finalize_times else None,
        "max_start_ms": round(max(start_spread) * 1000, 1) if start_spread else None,
        "errors": len(errors),
        "keeps_up": keeps_up,
        **({"error_samples": errors[:3]} if errors else {}),
    }


def measure_server_sessions(clips: list[Clip], seconds: float, max_streams: int) -> dict:
    """N = 1, 2, 4, 6... real-time sessions, a fresh local server each, until one N does not keep up."""
    pcm = looped_speech(clips, seconds)

    def run(n: int) -> dict:
        with LocalServer("pocketsphinx", load_entrypoints=False) as server:
            return server_realtime_run(server, n, pcm)

    best, runs = ramp_up(run, max_streams, "server sessions", lambda n: 2 if n == 1 else n + 2)
    return {
        "audio_s_per_session": seconds,
        "max_final_lag_s": MAX_FINAL_LAG_S,
        "max_realtime_sessions": best,
        "runs": runs,
    }


def measure_server(speech: bytes, clips: list[Clip], seconds: float, max_streams: int) -> dict:
    """The ``server`` section: finalize latency and real-time sessions through the WebSocket."""
    return {
        "finalize": measure_server_finalize(speech),
        "sessions": measure_server_sessions(clips, seconds, max_streams),
    }


def machine() -> dict:
    import pocketsphinx

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pocketsphinx": getattr(pocketsphinx, "__version__", None) or _dist_version("pocketsphinx"),
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results to this file ('-' for stdout)")
    parser.add_argument("--real", type=Path, help="a directory of recorded speech: NAME.wav + NAME.txt")
    parser.add_argument("--skip", default="", help="comma-separated: wer,dev,rtf,flush,concurrency,server")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="audio per stream in the concurrency and server runs"
    )
    parser.add_argument("--max-streams", type=int, default=24)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    results: dict = {"machine": machine()}
    print(f"machine: {results['machine']}", flush=True)
    fix, hello = fixtures(), sample()
    if "wer" not in skip:
        corpora: dict[str, list[Clip]] = {"fixtures": fix, "sample": hello}
        with tempfile.TemporaryDirectory() as tmp:
            if "dev" not in skip:
                corpora.update(dev_sets(Path(tmp)))
        if args.real:
            corpora["real"] = real_set(args.real)
        results["wer"] = measure_wer(corpora)
    if "rtf" not in skip:
        results["rtf"] = measure_rtf(fix + hello)
    if "flush" not in skip:
        results["flush_latency"] = measure_flush_latency(hello[0][0][int(0.3 * RATE) * 2 :])
    if "concurrency" not in skip:
        results["concurrency"] = measure_concurrency(fix + hello, args.seconds, args.max_streams)
    if "server" not in skip:
        speech = hello[0][0][int(0.3 * RATE) * 2 :]
        results["server"] = measure_server(speech, fix + hello, args.seconds, args.max_streams)

    print_table(results)
    if args.json:
        text = json.dumps(results, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


def print_table(results: dict) -> None:
    print("\n| measure | value |\n| --- | --- |")
    for label, corpora in results.get("wer", {}).items():
        for corpus, r in corpora.items():
            print(f"| WER {label}, {corpus} ({r['words']} words) | {r['wer'] * 100:.1f} % |")
    for key, value in results.get("rtf", {}).items():
        print(f"| RTF {key} | {value} |")
    for key, value in results.get("flush_latency", {}).items():
        print(f"| flush latency after 5 s of speech, {key} | {value} |")
    conc = results.get("concurrency")
    if conc:
        for run in conc["runs"]:
            print(
                f"| {run['streams']} real-time streams | max lag {run['max_lag_s']} s, p99 feed "
                f"{run['p99_feed_ms']} ms, median feed {run['median_feed_ms']} ms, keeps up: {run['keeps_up']} |"
            )
        print(f"| largest N that keeps up ({conc['workers']} workers) | {conc['max_realtime_streams']} |")
    server = results.get("server")
    if server:
        for key, value in server["finalize"].items():
            print(f"| server finalize -> flush_done after 5 s of speech, {key} | {value} |")
        sessions = server["sessions"]
        for run in sessions["runs"]:
            print(
                f"| {run['sessions']} real-time sessions through the local server | final lag p50 "
                f"{run['p50_final_lag_s']} s, p99 {run['p99_final_lag_s']} s, max {run['max_final_lag_s']} s, "
                f"max finalize {run['max_finalize_ms']} ms, errors {run['errors']}, keeps up: {run['keeps_up']} |"
            )
        print(f"| largest N sessions that keep up (one local server) | {sessions['max_realtime_sessions']} |")


if __name__ == "__main__":
    raise SystemExit(main())
