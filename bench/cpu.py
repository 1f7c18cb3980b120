"""Client CPU per hour of audio, streamed unpaced in 100 ms frames (3200 B) to a sink server.

The sink server runs in a separate process (``bench.common``), so the CPU time of this process
(``resource.getrusage(RUSAGE_SELF)``, user + system, all threads) is the client's alone. Each
client streams ``--frames`` frames (default 36,000 = 1 hour of 16 kHz s16le audio), ends the
stream and waits for the server's ``done``; the CPU time from before connecting to after the end
is scaled to one hour of audio. ``--reps`` repetitions each (default 3), the median is reported.

* floor: websocket-client ``create_connection``, ``send_binary`` per frame, ``"close"``, read until done;
* cartesia_sync: ``Client(url=..., load_entrypoints=False)``, ``connect(realtime=False)``,
  ``send()`` per frame, ``close()``; no plugins;
* official SDK: ``cartesia`` 4.x ``client.stt.manual_finalize.websocket(...)`` at the same server,
  compression off, ``send_raw`` per frame, ``send("close")``, iterate events until ``done``.

Target: cartesia_sync within 1.3x of the floor and below the official SDK.
``--profile`` also runs cartesia_sync once under pyinstrument and prints the profile.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import time
from collections.abc import Callable

import websocket

from bench.common import (
    FRAME_BYTES,
    FRAME_SECONDS,
    SinkProcess,
    default_json,
    machine_facts,
    print_facts,
    print_table,
    read_until_done,
    silence_frame,
    write_json,
)


def cpu_now() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_floor(sink: SinkProcess, frames: int) -> None:
    frame = silence_frame()
    ws = websocket.create_connection(sink.url, header={"X-API-Key": "x"})
    for _ in range(frames):
        ws.send_binary(frame)
    ws.send("close")
    read_until_done(ws)


def run_library(sink: SinkProcess, frames: int) -> None:
    import cartesia_sync

    frame = silence_frame()
    client = cartesia_sync.Client(api_key="x", url=sink.url, load_entrypoints=False)
    session = client.connect(realtime=False)
    for _ in range(frames):
        session.send(frame)
    session.close(timeout=120)
    if session.errors:
        raise RuntimeError(f"cartesia_sync session errors: {session.errors}")


def run_sdk(sink: SinkProcess, frames: int) -> None:
    from cartesia import Cartesia

    frame = silence_frame()
    client = Cartesia(api_key="x", base_url=sink.base_url)
    with client.stt.manual_finalize.websocket(
        model="ink-whisper", encoding="pcm_s16le", sample_rate=16000, websocket_connection_options={"compression": None}
    ) as conn:
        for _ in range(frames):
            conn.send_raw(frame)
        conn.send("close")
        for ev in conn:
            if getattr(ev, "type", None) == "done":
                break


SDK = "official cartesia SDK"

CLIENTS: dict[str, Callable[[SinkProcess, int], None]] = {
    "raw websocket-client (floor)": run_floor,
    "cartesia_sync": run_library,
    SDK: run_sdk,
}


def available_clients() -> dict[str, Callable[[SinkProcess, int], None]]:
    """The clients this environment can run: the official SDK only when it is installed."""
    if importlib.util.find_spec("cartesia") is not None:
        return dict(CLIENTS)
    print(
        "the official cartesia SDK is not installed, so it is left out: pip install -e '.[bench]' to compare with it",
        flush=True,
    )
    return {name: fn for name, fn in CLIENTS.items() if name != SDK}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=36000, help="100 ms frames per run (default 36000 = 1 h)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile one cartesia_sync run with pyinstrument")
    parser.add_argument("--json", default=default_json("cpu"))
    args = parser.parse_args()
    facts = machine_facts()
    print_facts(facts)
    hours = args.frames * FRAME_SECONDS / 3600
    clients = available_clients()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    with SinkProcess() as sink:
        for fn in clients.values():  # warm-up: imports, first connection
            fn(sink, 50)
        for rep in range(args.reps):
            for name, fn in clients.items():
                c0, w0, s0 = cpu_now(), time.monotonic(), sink.cpu_seconds()
                fn(sink, args.frames)
                c1, w1, s1 = cpu_now(), time.monotonic(), sink.cpu_seconds()
                runs[name].append({"cpu_s": c1 - c0, "wall_s": w1 - w0, "server_cpu_s": s1 - s0})
                print(f"rep {rep + 1} {name}: cpu {c1 - c0:.2f} s, wall {w1 - w0:.2f} s", flush=True)
        profile_text = None
        if args.profile:
            from pyinstrument import Profiler

            prof = Profiler(interval=0.0005, async_mode="disabled")
            prof.start()
            run_library(sink, args.frames)
            prof.stop()
            profile_text = prof.output_text(unicode=False, color=False, show_all=False)
    floor = statistics.median(r["cpu_s"] for r in runs["raw websocket-client (floor)"]) / hours
    table, summary_out = [], {}
    for name, rs in runs.items():
        per_hour = statistics.median(r["cpu_s"] for r in rs) / hours
        wall = statistics.median(r["wall_s"] for r in rs)
        summary_out[name] = {
            "cpu_s_per_audio_hour": per_hour,
            "ratio_to_floor": per_hour / floor,
            "wall_s_median": wall,
            "us_per_frame": per_hour / 36000 * 1e6,
            "runs": rs,
        }
        table.append([name, per_hour, per_hour / floor, per_hour / 36000 * 1e6, wall])
    print_table(["client", "CPU s / audio hour (median)", "x floor", "CPU us / frame", "wall s / run"], table)
    lib = summary_out["cartesia_sync"]
    sdk = f"{summary_out[SDK]['cpu_s_per_audio_hour']:.2f} s" if SDK in summary_out else "not measured"
    print(
        f"target: cartesia_sync <= 1.3x floor (got {lib['ratio_to_floor']:.2f}x) and below the official SDK "
        f"({lib['cpu_s_per_audio_hour']:.2f} s vs {sdk})"
    )
    if profile_text:
        print(profile_text)
    write_json(
        args.json,
        {
            "benchmark": "cpu",
            "machine": facts,
            "frames": args.frames,
            "reps": args.reps,
            "frame_bytes": FRAME_BYTES,
            "results": summary_out,
            "profile": profile_text,
            "target": {"ratio_to_floor_max": 1.3, "below_official_sdk": True},
        },
    )


if __name__ == "__main__":
    main()
