#!/usr/bin/env python3
"""Measure the pocketsphinx engine: accuracy, speed, flush latency, concurrent streams.

Run by hand (takes about 5-8 minutes on 2 cores)::

    python bench/local_engine.py                       # everything, table on stdout
    python bench/local_engine.py --json out.json       # also write the numbers as JSON
    python bench/local_engine.py --real DIR            # add real speech: DIR/*.wav + DIR/*.txt
    python bench/local_engine.py --skip dev,concurrency

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cartesia_sync.local.decoder_worker import RecognizerSettings  # noqa: E402
from cartesia_sync.local.engine import StreamOptions  # noqa: E402
from cartesia_sync.local.pocketsphinx_engine import PocketSphinxEngine  # noqa: E402
from cartesia_sync.local.metrics import normalise_words, word_error_rate as wer  # noqa: E402

RATE = 16000
CHUNK = 3200
Clip = Tuple[bytes, str]

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
    ("en-us", 150), ("en-us+klatt4", 150), ("en-us+m3", 175), ("en-us+f3", 150), ("en-us", 130), ("en-gb", 150),
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


def fixtures() -> List[Clip]:
    data = ROOT / "tests" / "data"
    out = []
    for line in (data / "fixtures.tsv").read_text().splitlines():
        name, text = line.split("\t")
        out.append((read_wav(data / name), text))
    return out


def sample() -> List[Clip]:
    path = ROOT / "samples" / "hello.wav"
    return [(read_wav(path), path.with_suffix(".txt").read_text())]


def dev_sets(workdir: Path) -> Dict[str, List[Clip]]:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        print("espeak-ng or sox missing: no dev set", file=sys.stderr)
        return {}
    sets: Dict[str, List[Clip]] = {}
    for voice, rate in DEV_VOICES:
        clips = []
        for i, text in enumerate(DEV_SENTENCES):
            raw, out = workdir / "speech.wav", workdir / f"{voice}-{rate}-{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(raw), text], check=True)
            subprocess.run(
                ["sox", str(raw), "-D", "-b", "16", "-e", "signed-integer", str(out), "gain", "-3", "rate", "16000",
                 "channels", "1", "pad", "0.3", "0.5"],
                check=True,
            )
            clips.append((read_wav(out), text))
        sets[f"{voice}@{rate}"] = clips
    return sets


def real_set(directory: Path) -> List[Clip]:
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


def measure_wer(corpora: Dict[str, List[Clip]]) -> Dict[str, Dict[str, dict]]:
    out: Dict[str, Dict[str, dict]] = {}
    for label, settings in SETTINGS.items():
        with PocketSphinxEngine(workers=2, settings=settings) as engine:

            def one(clips: List[Clip]) -> dict:
                hyps = [transcribe(engine, pcm) for pcm, _ in clips]
                refs = [text for _, text in clips]
                words = sum(len(normalise_words(r)) for r in refs)
                return {"wer": round(wer(refs, hyps), 4), "words": words, "hyps": hyps}

            with ThreadPoolExecutor(2) as pool:
                results = dict(zip(corpora, pool.map(one, corpora.values())))
        out[label] = results
        print(f"  WER {label:<10} " + "  ".join(f"{k}={v['wer'] * 100:.1f}%" for k, v in results.items()), flush=True)
    return out


def worker_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_rtf(clips: List[Clip]) -> dict:
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
    lags: List[List[float]] = [[] for _ in range(n)]
    costs: List[List[float]] = [[] for _ in range(n)]
    errors: List[BaseException] = []
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


def measure_concurrency(clips: List[Clip], seconds: float, max_streams: int) -> dict:
    pcm = b"".join(p + silence(0.8) for p, _ in clips)
    while len(pcm) < seconds * RATE * 2:
        pcm += pcm
    pcm = pcm[: int(seconds * RATE) * 2]
    runs = []
    best = 0
    with PocketSphinxEngine() as engine:
        n = 1
        while n <= max_streams:
            result = realtime_run(engine, n, pcm)
            runs.append(result)
            shown = "  ".join(f"{k}={v}" for k, v in result.items() if k != "streams")
            print(f"  {n:3d} streams: {shown}", flush=True)
            if not result["keeps_up"]:
                break
            best = n
            n = n + 1 if n < 4 else n + 2
    return {"audio_s_per_stream": seconds, "workers": os.cpu_count(), "max_realtime_streams": best, "runs": runs}


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


def _dist_version(name: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results to this file ('-' for stdout)")
    parser.add_argument("--real", type=Path, help="a directory of recorded speech: NAME.wav + NAME.txt")
    parser.add_argument("--skip", default="", help="comma-separated: wer,dev,rtf,flush,concurrency")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream in the concurrency runs")
    parser.add_argument("--max-streams", type=int, default=24)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    results: dict = {"machine": machine()}
    print(f"machine: {results['machine']}", flush=True)
    fix, hello = fixtures(), sample()
    if "wer" not in skip:
        corpora: Dict[str, List[Clip]] = {"fixtures": fix, "sample": hello}
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


if __name__ == "__main__":
    raise SystemExit(main())
