"""Dispatch latency: from the server writing a transcript message to the hook running.

The sink server (separate process, ``bench.common --latency-count N``) sends N transcript messages at
``--rate`` per second, each stamped with ``"t": time.monotonic()`` just before the write. On Linux
CLOCK_MONOTONIC is system-wide, so the client's ``time.monotonic()`` minus the stamp is the
one-way latency through the server's send path, loopback TCP, the client's receive path and
(for cartesia_sync) parsing, transcript accumulation and hook dispatch.

* cartesia_sync: a plugin's ``on_transcript`` hook takes the reading (on the receiver thread);
* raw: a websocket-client ``recv()`` loop with ``json.loads`` (the floor).

Target: cartesia_sync p99 under 1 ms.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import websocket

import cartesia_sync
from bench.common import (
    SinkProcess,
    default_json,
    machine_facts,
    print_facts,
    print_table,
    silence_frame,
    summary,
    write_json,
)


class StampPlugin:
    name = "bench-latency"

    def __init__(self, count: int) -> None:
        self.count = count
        self.latencies: list[float] = []
        self.finished = threading.Event()

    @cartesia_sync.hookimpl
    def on_transcript(self, transcript) -> None:  # type: ignore[no-untyped-def]
        now = time.monotonic()
        self.latencies.append(now - transcript.raw["t"])
        if len(self.latencies) >= self.count:
            self.finished.set()


def run_library(url: str, count: int, timeout: float) -> list[float]:
    plugin = StampPlugin(count)
    client = cartesia_sync.Client(api_key="x", url=url, plugins=[plugin], load_entrypoints=False)
    session = client.connect(realtime=False)
    session.send(silence_frame())
    plugin.finished.wait(timeout)
    session.close(timeout=30)
    return plugin.latencies


def run_raw(url: str, count: int, timeout: float) -> list[float]:
    ws = websocket.create_connection(url, header={"X-API-Key": "x"}, skip_utf8_validation=True)
    ws.send_binary(silence_frame())
    out: list[float] = []
    while len(out) < count:
        msg = ws.recv()
        now = time.monotonic()
        data = json.loads(msg)
        if data.get("type") == "transcript":
            out.append(now - data["t"])
    ws.send("done")
    while True:
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_CLOSE or b'"done"' in data:
            break
    ws.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000, help="transcript messages per client (default 5000)")
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second (default 100)")
    parser.add_argument("--json", default=default_json("latency"))
    args = parser.parse_args()
    facts = machine_facts()
    print_facts(facts)
    timeout = args.count / args.rate * 2 + 30
    results = {}
    with SinkProcess(latency_count=args.count, latency_rate=args.rate) as sink:
        run_raw(sink.url, min(50, args.count), timeout) if args.count >= 50 else None  # warm-up
        for name, fn in (
            ("raw websocket-client recv loop", run_raw),
            ("cartesia_sync on_transcript hook", run_library),
        ):
            print(f"{name}: {args.count} messages at {args.rate:g}/s ...", flush=True)
            lat = fn(sink.url, args.count, timeout)
            results[name] = {k: (v * 1000 if k != "n" else v) for k, v in summary(lat).items()}
    rows = [[name, r["n"], r["p50"], r["p99"], r["max"], r["mean"]] for name, r in results.items()]
    print_table(["client", "messages", "p50 (ms)", "p99 (ms)", "max (ms)", "mean (ms)"], rows)
    print("target: cartesia_sync p99 under 1 ms")
    write_json(
        args.json,
        {
            "benchmark": "latency",
            "machine": facts,
            "count": args.count,
            "rate": args.rate,
            "unit": "ms",
            "results": results,
            "target": {"p99_ms_max": 1.0},
        },
    )


if __name__ == "__main__":
    main()
