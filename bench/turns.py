"""Turn latency through the local server: end of speech to ``turn.eager_end`` and to ``turn.end``.

    python -m bench.turns [--utterances 24] [--sessions 1,2,4]

The spoken test fixtures (``tests/data/utt0*.wav``) are sent in real time (1x, 100 ms frames) to
an embedded :class:`~cartesia_sync.local.LocalServer` (pocketsphinx) through a ``TurnSession``,
each utterance followed by 2 s of silence. The end of speech is the last 10 ms block of the
utterance whose level is above 1 % of full scale, on the audio clock; an event's latency is the
audio clock when it arrived (the audio sent so far, which at 1x is the wall clock since the first
frame) minus that end. It includes the detector's silence windows (0.65 s to an eager end and
1.02 s to an end, by default), the engine's decoding and the network.

With ``--sessions``, that many turn sessions stream at once, to see how many real-time turn
sessions one local server keeps up with on this machine (an end later than 2 s after its silence
window is not keeping up).
"""

from __future__ import annotations

import argparse
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

import cartesia_sync
from cartesia_sync import hookimpl
from cartesia_sync.local import LocalServer

from .common import default_json, machine_facts, percentile, print_facts, print_table, summary, write_json

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
RATE = 16000
FRAME = 3200  # 100 ms of s16le


def _wav(name: str) -> bytes:
    with wave.open(str(DATA / name)) as w:
        return w.readframes(w.getnframes())


def _speech_end(pcm: bytes) -> float:
    """Seconds into ``pcm`` where the last 10 ms block above 1 % of full scale ends."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    blocks = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt(np.mean(blocks * blocks, axis=1)) > 327.67)
    return float((loud[-1] + 1) * 160 / RATE) if len(loud) else 0.0


class _Clock:
    """Records the audio clock (the session's audio sent) when each turn event arrives."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    @hookimpl
    def on_event(self, session: Any, event: Any) -> None:
        if event.type in ("turn.eager_end", "turn.end"):
            self.events.append((event.type, session.audio_sent))


def _one_session(url: str, utterances: list[str]) -> tuple[list[float], list[float], int]:
    audio = bytearray()
    ends: list[float] = []
    for name in utterances:
        pcm = _wav(name)
        ends.append(len(audio) / (2 * RATE) + _speech_end(pcm))
        audio += pcm + bytes(2 * RATE * 2)
    clock = _Clock()
    client = cartesia_sync.Client(url=url, plugins=[clock], load_entrypoints=False)
    with client.connect_turns(realtime=True) as session:
        for start in range(0, len(audio), FRAME):
            session.send(bytes(audio[start : start + FRAME]))
    eager, end = [], []
    for kind, at in clock.events:
        speech_end = max((e for e in ends if e <= at), default=None)
        if speech_end is None:
            continue
        (end if kind == "turn.end" else eager).append(at - speech_end)
    return eager, end, len(session.turns)


def _run_sessions(url: str, utterances: list[str], count: int) -> list[tuple[list[float], list[float], int]]:
    """``count`` turn sessions at once, each on its own thread."""
    outcomes: list[tuple[list[float], list[float], int]] = []
    lock = threading.Lock()

    def run() -> None:
        outcome = _one_session(url, utterances)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, name=f"bench-turns-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3600)
    return outcomes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=24, help="utterances per session")
    parser.add_argument("--sessions", default="1", help="comma-separated numbers of concurrent sessions")
    parser.add_argument("--json", help="where to write the results")
    args = parser.parse_args(argv)
    names = sorted(p.name for p in DATA.glob("utt0*.wav"))
    utterances = [names[i % len(names)] for i in range(args.utterances)]
    facts = machine_facts()
    print_facts(facts)
    rows, results = [], []
    with LocalServer() as server:
        for count in [int(n) for n in args.sessions.split(",")]:
            started = time.monotonic()
            outcomes = _run_sessions(server.url, utterances, count)
            eager = [x for o in outcomes for x in o[0]]
            end = [x for o in outcomes for x in o[1]]
            turns = sum(o[2] for o in outcomes)
            e, d = summary(eager), summary(end)
            e["p95"], d["p95"] = percentile(eager, 95), percentile(end, 95)
            rows.append((count, turns, count * len(utterances), e["p50"], e["p95"], d["p50"], d["p95"], d["max"]))
            results.append({"sessions": count, "turns": turns, "eager_end": e, "end": d,
                            "wall_seconds": time.monotonic() - started})  # fmt: skip
    print_table(
        ["sessions", "turns", "utterances", "eager p50 s", "eager p95 s", "end p50 s", "end p95 s", "end max s"],
        rows,
    )
    write_json(args.json or default_json("turns"), {"facts": facts, "results": results})


if __name__ == "__main__":
    main()
