"""N real-time sessions in one process: pacing error, CPU, memory per session, errors.

For each N (default 10, 100, 500) the script opens N ``cartesia_sync`` sessions with
``realtime=True`` to one sink server in a separate process, queues ``--seconds`` of audio on each
(one ``send()`` call, the sender threads pace it in 100 ms frames), then closes them all.

* pacing error: the server stamps every frame's arrival with ``time.monotonic()`` (same host,
  system-wide clock); the error of frame k is ``arrival[k] - (arrival[0] + k * 0.1)`` per
  connection; p50/p99/max of the absolute error over all frames of all sessions;
* client CPU: ``getrusage(RUSAGE_SELF)`` over the whole run, also as % of one core;
* memory: RSS after all sessions are streaming minus RSS before, divided by N;
* errors: failed connects plus errors recorded by sessions.

Only each connection's first ``seconds * 10`` frames are the audio. A session whose audio has all
gone out waits, open, for its turn in the sequential close loop; after ``keepalive_interval`` it
sends a frame of silence to keep the socket open. Those frames are counted apart
(``keepalive_frames_after_audio``), not as late audio.

The server is an asyncio ``websockets`` server (one thread, one event loop), not the library's
thread-per-connection sync server: 500 connections cost it no threads, and its own CPU is reported
so one can see whether it kept up (a saturated server would delay the arrival stamps).

Target: report the largest N whose p99 pacing error stays under 20 ms.
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from typing import Any

import cartesia_sync
from bench.common import (
    SinkProcess,
    default_json,
    machine_facts,
    print_facts,
    print_table,
    raise_fd_limit,
    rss_bytes,
    schedule_errors,
    silence_frame,
    summary,
    wait_records,
    write_json,
)


def cpu_now() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_n(n: int, seconds: float) -> dict[str, Any]:
    frames = int(round(seconds * 10))
    audio = silence_frame() * frames
    with tempfile.TemporaryDirectory() as rec:
        with SinkProcess(record_dir=rec) as sink:
            client = cartesia_sync.Client(api_key="x", url=sink.url, load_entrypoints=False)
            gc.collect()
            rss0, cpu0, wall0, srv0 = rss_bytes(), cpu_now(), time.monotonic(), sink.cpu_seconds()
            sessions, errors = [], []
            for _ in range(n):
                try:
                    s = client.connect(realtime=True)
                    s.send(audio)
                    sessions.append(s)
                except Exception as exc:  # measured, not asserted
                    errors.append(f"connect/send: {type(exc).__name__}: {exc}")
            connect_wall = time.monotonic() - wall0
            time.sleep(min(2.0, seconds / 2))
            rss_streaming = rss_bytes()
            for s in sessions:
                try:
                    s.close(timeout=seconds + 60)
                except Exception as exc:
                    errors.append(f"close: {type(exc).__name__}: {exc}")
                errors.extend(repr(e) for e in s.errors)
            cpu1, wall1, srv1 = cpu_now(), time.monotonic(), sink.cpu_seconds()
            recs = wait_records(rec, len(sessions), timeout=30)
    errs: list[float] = []
    short = after_audio = 0
    for r in recs:
        # Frames beyond the audio are the library's keepalive silence: a session whose audio has all
        # gone out waits, open, for its turn in the sequential close loop, and keeps the socket alive.
        if len(r["arrivals"]) < frames:
            short += 1
        after_audio += max(0, len(r["arrivals"]) - frames)
        r["arrivals"] = r["arrivals"][:frames]
        errs.extend(abs(e) * 1000 for e in schedule_errors(r["arrivals"]))
    drifts = [schedule_errors(r["arrivals"])[-1] * 1000 for r in recs if r["arrivals"]]
    wall = wall1 - wall0
    return {
        "n": n,
        "sessions_opened": len(sessions),
        "records": len(recs),
        "records_short": short,
        "keepalive_frames_after_audio": after_audio,
        "audio_seconds_each": seconds,
        "connect_all_s": connect_wall,
        "wall_s": wall,
        "pacing_abs_error_ms": summary(errs),
        "drift_ms_max": max((abs(d) for d in drifts), default=None),
        "client_cpu_s": cpu1 - cpu0,
        "client_cpu_pct_of_core": (cpu1 - cpu0) / wall * 100,
        "server_cpu_pct_of_core": (srv1 - srv0) / wall * 100,
        "rss_per_session_kib": (rss_streaming - rss0) / max(1, len(sessions)) / 1024,
        "errors": len(errors),
        "error_samples": errors[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.concurrency", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ns", default="10,100,500", help="comma-separated session counts (default 10,100,500)")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per session (default 20)")
    parser.add_argument("--json", default=default_json("concurrency"))
    args = parser.parse_args()
    fd_limit = raise_fd_limit()
    facts = machine_facts()
    facts["fd_soft_limit"] = fd_limit
    print_facts(facts)
    print(f"file-descriptor soft limit: {fd_limit}")
    results = []
    for n in (int(x) for x in args.ns.split(",")):
        print(f"N={n}: {args.seconds:g} s of audio each at 1x ...", flush=True)
        try:
            results.append(run_n(n, args.seconds))
        except Exception as exc:
            results.append({"n": n, "failed": f"{type(exc).__name__}: {exc}"})
            print(f"N={n} failed: {exc}")
            break
    rows = []
    for r in results:
        if "failed" in r:
            rows.append([r["n"], "failed", "", "", "", "", "", "", "", ""])
            continue
        e = r["pacing_abs_error_ms"]
        rows.append(
            [
                r["n"],
                r["sessions_opened"],
                e["p50"],
                e["p99"],
                e["max"],
                r["client_cpu_pct_of_core"],
                r["server_cpu_pct_of_core"],
                r["rss_per_session_kib"],
                r["errors"],
                r["keepalive_frames_after_audio"],
            ]
        )
    print_table(
        [
            "N",
            "opened",
            "|err| p50 ms",
            "|err| p99 ms",
            "|err| max ms",
            "client CPU %core",
            "server CPU %core",
            "RSS/session KiB",
            "errors",
            "keepalive frames",
        ],
        rows,
    )
    ok = [
        r["n"]
        for r in results
        if "failed" not in r
        and r["errors"] == 0
        and r["sessions_opened"] == r["n"]
        and r["pacing_abs_error_ms"]["p99"] < 20
    ]
    best = max(ok) if ok else None
    print(f"largest N with p99 pacing error under 20 ms and no errors: {best}")
    write_json(
        args.json,
        {
            "benchmark": "concurrency",
            "machine": facts,
            "results": results,
            "largest_n_p99_under_20ms": best,
            "target": {"p99_ms_max": 20.0},
        },
    )


if __name__ == "__main__":
    main()
