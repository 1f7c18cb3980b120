"""Shared pieces of the benchmarks: machine facts, result output, and the sink server.

The sink server runs in its own process so that the client process's CPU time is the client's alone::

    python -m bench.common sink --port 0 [--record-dir DIR] [--latency-count N --latency-rate R]

It prints ``PORT <n>`` on its first line of stdout, then serves until killed. It is an asyncio
``websockets`` server (one event loop, no thread per connection), so that 500 concurrent real-time
connections cost one thread, not 500. Per connection it:

* accepts binary audio frames; with ``--record-dir`` it stamps each frame's arrival with
  ``time.monotonic()`` (CLOCK_MONOTONIC, system-wide on Linux, so comparable with the client's clock)
  and writes ``conn-<n>.json`` (``{"arrivals": [...], "bytes": ...}``) when the connection ends;
* answers ``"finalize"`` with ``{"type": "flush_done"}``;
* answers ``"done"`` or ``"close"`` with ``{"type": "done"}`` and closes with code 1000;
* in latency mode (``--latency-count N``), on the first binary frame starts sending N transcript
  messages at ``--latency-rate`` per second, each stamped with ``"t": time.monotonic()`` just
  before it is written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Any

FRAME_BYTES = 3200  # 100 ms of 16 kHz s16le mono
FRAME_SECONDS = 0.1
SAMPLE_RATE = 16000


# -- machine facts and output ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """Cores, CPU model, memory, OS, Python and the versions of the libraries involved."""
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {
            name: _version(name)
            for name in ("cartesia-sync", "websocket-client", "websockets", "cartesia", "wsaccel", "pluggy")
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def print_facts(facts: dict[str, Any]) -> None:
    v = ", ".join(f"{k} {val}" for k, val in facts["versions"].items() if val)
    print(f"machine: {facts['cores']} cores, {facts['cpu_model']}, {facts['memory_gib']} GiB, {facts['os']}")
    print(f"python: {facts['python']}; {v}")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    rows = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    print(" | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return f"{value:.4f}"
        return f"{value:.2f}"
    return str(value)


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2)
    print(f"wrote {path}")


def default_json(name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{name}.json")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def raise_fd_limit(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def silence_frame() -> bytes:
    # Not all zeros, so nothing along the way can special-case it; content is irrelevant to the sink.
    return bytes(range(256)) * (FRAME_BYTES // 256) + bytes(FRAME_BYTES % 256)


# -- the sink server, in a subprocess --------------------------------------------------------


class SinkProcess:
    """Start ``python -m bench.common sink`` as a child process; ``.port``, ``.url``, ``.stop()``."""

    def __init__(self, record_dir: str | None = None, latency_count: int = 0, latency_rate: float = 100.0) -> None:
        cmd = [sys.executable, "-m", "bench.common", "sink", "--port", "0"]
        if record_dir:
            cmd += ["--record-dir", record_dir]
        if latency_count:
            cmd += ["--latency-count", str(latency_count), "--latency-rate", str(latency_rate)]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=root, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"sink server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"ws://127.0.0.1:{self.port}/stt/websocket"
        self.base_url = f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def read_records(record_dir: str) -> list[dict[str, Any]]:
    out = []
    for name in sorted(os.listdir(record_dir)):
        if name.startswith("conn-") and name.endswith(".json"):
            with open(os.path.join(record_dir, name)) as fh:
                out.append(json.load(fh))
    return out


def wait_records(record_dir: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = read_records(record_dir)
        if len(recs) >= count:
            return recs
        time.sleep(0.05)
    return read_records(record_dir)


def schedule_errors(arrivals: Sequence[float], frame_seconds: float = FRAME_SECONDS) -> list[float]:
    """Arrival of frame k minus its ideal time ``arrivals[0] + k * frame_seconds``, in seconds."""
    if not arrivals:
        return []
    t0 = arrivals[0]
    return [a - (t0 + k * frame_seconds) for k, a in enumerate(arrivals)]


async def _serve(args: argparse.Namespace) -> None:
    import websockets
    from websockets.asyncio.server import serve

    counter = [0]

    async def handler(conn: Any) -> None:
        counter[0] += 1
        number = counter[0]
        arrivals: list[float] = []
        record = args.record_dir is not None
        nbytes = 0
        sender_task = None

        async def send_transcripts() -> None:
            interval = 1.0 / args.latency_rate
            start = time.monotonic()
            for i in range(args.latency_count):
                due = start + i * interval
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await conn.send(
                    json.dumps(
                        {
                            "type": "transcript",
                            "is_final": True,
                            "text": " w",
                            "request_id": "bench",
                            "i": i,
                            "t": time.monotonic(),
                        }
                    )
                )

        try:
            async for msg in conn:
                if isinstance(msg, bytes):
                    if record:
                        arrivals.append(time.monotonic())
                    nbytes += len(msg)
                    if args.latency_count and sender_task is None:
                        sender_task = asyncio.create_task(send_transcripts())
                elif msg == "finalize":
                    await conn.send('{"type":"flush_done","request_id":"bench"}')
                elif msg in ("done", "close"):
                    if sender_task is not None:
                        await sender_task
                    await conn.send('{"type":"done","request_id":"bench"}')
                    await conn.close(1000, "done")
                    break
        except websockets.ConnectionClosed:
            pass
        finally:
            if sender_task is not None and not sender_task.done():
                sender_task.cancel()
            if record:
                path = os.path.join(args.record_dir, f"conn-{number:06d}.json")
                with open(path + ".tmp", "w") as fh:
                    json.dump({"arrivals": arrivals, "bytes": nbytes}, fh)
                os.replace(path + ".tmp", path)

    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        compression=None,
        max_size=2**20,
        ping_interval=None,
        max_queue=64,
        backlog=2048,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.Future()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.common", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sink = sub.add_parser("sink", help="run the sink server (prints 'PORT <n>')")
    sink.add_argument("--port", type=int, default=0)
    sink.add_argument("--record-dir", default=None, help="write per-connection frame arrival times here")
    sink.add_argument("--latency-count", type=int, default=0, help="send this many stamped transcripts")
    sink.add_argument("--latency-rate", type=float, default=100.0, help="transcripts per second")
    sub.add_parser("facts", help="print the machine facts")
    args = parser.parse_args(argv)
    if args.command == "facts":
        print(json.dumps(machine_facts(), indent=2))
        return
    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()


def read_until_done(ws: Any) -> None:
    """Read a raw websocket-client connection until the server's ``done`` or close, then close it."""
    import websocket

    while True:
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_CLOSE or (op == websocket.ABNF.OPCODE_TEXT and b'"done"' in data):
            break
    ws.close()
