"""Pacing at 1x: does the library send frame k at t0 + k * 0.1 s, over a long stream?

The sink server (a separate process, ``bench.common``) stamps each binary frame's arrival with
``time.monotonic()``. Client and server are on the same host and CLOCK_MONOTONIC is system-wide,
so the server-side arrival time against the ideal schedule ``arrival[0] + k * 0.1`` measures the
client's send schedule plus loopback delivery (tens of microseconds on an idle machine).

* ``cartesia_sync``: ``Client(realtime=True)``; the caller queues 100 ms frames as fast as the
  buffer allows (``send()`` blocks when 30 s are queued), the sender thread paces them.
* naive: websocket-client, ``send_binary(frame); time.sleep(0.1)`` in a loop, as the SDK examples do.

Both run at the same time by default (two light threads in one process, about 10 frames/s each);
``--sequential`` runs them one after the other (twice as long).

Reported: drift (error of the last frame), per-frame error p50/p99/max (absolute), in ms.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from typing import Any

import websocket

import cartesia_sync
from bench.common import (
    SinkProcess,
    default_json,
    machine_facts,
    print_facts,
    print_table,
    read_records,
    read_until_done,
    schedule_errors,
    silence_frame,
    summary,
    write_json,
)


def run_library(url: str, frames: int, out: dict[str, Any]) -> None:
    frame = silence_frame()
    client = cartesia_sync.Client(api_key="x", url=url, load_entrypoints=False)
    session = client.connect(realtime=True)
    out["start"] = time.monotonic()
    for _ in range(frames):
        session.send(frame)
    session.close(timeout=60)
    out["end"] = time.monotonic()
    out["errors"] = [repr(e) for e in session.errors]


def run_naive(url: str, frames: int, out: dict[str, Any]) -> None:
    frame = silence_frame()
    ws = websocket.create_connection(url, header={"X-API-Key": "x"})
    out["start"] = time.monotonic()
    for _ in range(frames):
        ws.send_binary(frame)
        time.sleep(0.1)
    ws.send("done")
    read_until_done(ws)
    out["end"] = time.monotonic()
    out["errors"] = []


def analyse(arrivals: list[float]) -> dict[str, Any]:
    errs = schedule_errors(arrivals)
    s = summary([abs(e) * 1000 for e in errs])
    return {
        "frames": len(arrivals),
        "drift_ms": errs[-1] * 1000 if errs else None,
        "abs_error_ms": s,
        "signed_max_ms": max(errs) * 1000,
        "signed_min_ms": min(errs) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pacing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="audio per run, at 1x (default 10)")
    parser.add_argument("--sequential", action="store_true", help="run the two clients one after the other")
    parser.add_argument("--json", default=default_json("pacing"))
    args = parser.parse_args()
    facts = machine_facts()
    print_facts(facts)
    frames = int(round(args.minutes * 600))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as rec_lib, tempfile.TemporaryDirectory() as rec_naive:
        with SinkProcess(record_dir=rec_lib) as sink_lib, SinkProcess(record_dir=rec_naive) as sink_naive:
            outs = {"cartesia_sync": {}, "naive sleep(0.1)": {}}
            jobs = [
                threading.Thread(target=run_library, args=(sink_lib.url, frames, outs["cartesia_sync"])),
                threading.Thread(target=run_naive, args=(sink_naive.url, frames, outs["naive sleep(0.1)"])),
            ]
            print(f"streaming {frames} frames ({args.minutes:g} min) per client at 1x ...", flush=True)
            for j in jobs:
                j.start()
                if args.sequential:
                    j.join()
            for j in jobs:
                j.join()
            time.sleep(0.5)
        for name, rec_dir in (("cartesia_sync", rec_lib), ("naive sleep(0.1)", rec_naive)):
            recs = read_records(rec_dir)
            results[name] = analyse(recs[0]["arrivals"]) if recs else {"error": "no record"}
            results[name]["client_errors"] = outs[name].get("errors")
    rows = []
    for name, r in results.items():
        e = r["abs_error_ms"]
        rows.append([name, r["frames"], r["drift_ms"], e["p50"], e["p99"], e["max"]])
    print_table(["client", "frames", "drift at end (ms)", "|err| p50 (ms)", "|err| p99 (ms)", "|err| max (ms)"], rows)
    print("target: cartesia_sync drift under 5 ms after 10 minutes")
    write_json(
        args.json,
        {
            "benchmark": "pacing",
            "machine": facts,
            "minutes": args.minutes,
            "sequential": args.sequential,
            "method": "server-side arrival time (separate process, same host, CLOCK_MONOTONIC) vs arrival[0] + k*0.1 s",
            "results": results,
            "target": {"drift_ms_max": 5.0},
        },
    )


if __name__ == "__main__":
    main()
