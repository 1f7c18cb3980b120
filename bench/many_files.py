"""Many files at once: wall time of ``transcribe_many`` against the ideal, and how the local engine scales.

(a) ``--files`` files of ``--seconds`` s (default 40 of 10 s) streamed at 1x (``realtime=True``, the
    pacing the hosted API expects) to a ``FakeCartesia`` on loopback, at each of ``--jobs`` (default
    1, 4, 8, 16): wall time against the ideal ``total audio / jobs``.
(b) ``--local-files`` files of ``--local-seconds`` s (default 20 of 30 s, ``samples/hello.wav``
    repeated) through the embedded pocketsphinx engine, unpaced: ``max_concurrency`` 1 against 2 in
    one process (target: at least 1.7x on 2 cores), and a 2-worker Dask ``LocalCluster`` (each worker
    with its own local server) against one process, when ``distributed`` is installed.

    python bench/many_files.py [--files 40 --seconds 10 --jobs 1,4,8,16] [--local-files 20 --local-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cartesia_sync  # noqa: E402
from bench.common import default_json, machine_facts, print_facts, print_table, write_json  # noqa: E402
from cartesia_sync.local import LocalServer  # noqa: E402
from cartesia_sync.testing import FakeCartesia  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "hello.wav"


def make_files(folder: Path, count: int, seconds: float, speech: bool) -> Path:
    """``count`` mono 16 kHz WAV files of ``seconds`` s: the sample repeated, or quiet noise."""
    folder.mkdir(parents=True, exist_ok=True)
    length = int(16000 * seconds)
    if speech:
        sample, rate = soundfile.read(SAMPLE, dtype="int16")
        assert rate == 16000, rate
        audio = np.resize(sample, length)
    for i in range(count):
        if not speech:
            audio = np.random.default_rng(i).integers(-300, 300, length, dtype=np.int16)
        soundfile.write(folder / f"f{i:03d}.wav", audio, 16000)
    return folder


def paced(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    folder = make_files(root / "paced", args.files, args.seconds, speech=False)
    rows = []
    with FakeCartesia() as fake:
        for jobs in args.jobs:
            started = time.monotonic()
            report = cartesia_sync.transcribe_many(
                str(folder), max_concurrency=jobs, url=fake.url, realtime=True, progress_bar=False
            )
            wall = time.monotonic() - started
            ideal = args.files * args.seconds / jobs
            rows.append(
                {
                    "jobs": jobs,
                    "wall_s": round(wall, 2),
                    "ideal_s": round(ideal, 2),
                    "wall_over_ideal": round(wall / ideal, 3),
                    "done": report.count("done"),
                }
            )
    return rows


def local(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    folder = make_files(root / "local", args.local_files, args.local_seconds, speech=True)
    rows = []
    with LocalServer("pocketsphinx", load_entrypoints=False) as server:
        for jobs in (1, 2):
            started = time.monotonic()
            report = cartesia_sync.transcribe_many(
                str(folder), max_concurrency=jobs, url=server.url, realtime=False, progress_bar=False
            )
            rows.append(
                {
                    "run": f"one process, max_concurrency={jobs}",
                    "wall_s": round(time.monotonic() - started, 2),
                    "done": report.count("done"),
                }
            )
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return rows
    for name in ("CARTESIA_API_KEY", "CARTESIA_URL", "CARTESIA_BASE_URL"):
        os.environ.pop(name, None)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.run(cartesia_sync._many_job.worker_server_url)  # start each worker's server before timing
        started = time.monotonic()
        report = cartesia_sync.transcribe_many(
            str(folder), max_concurrency=2, executor=client.get_executor(), realtime=False, progress_bar=False
        )
        rows.append(
            {
                "run": "Dask LocalCluster, 2 workers",
                "wall_s": round(time.monotonic() - started, 2),
                "done": report.count("done"),
            }
        )
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup"] = round(base / row["wall_s"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--jobs", type=lambda text: [int(x) for x in text.split(",")], default=[1, 4, 8, 16])
    parser.add_argument("--local-files", type=int, default=20)
    parser.add_argument("--local-seconds", type=float, default=30.0)
    parser.add_argument("--skip", choices=("paced", "local"), action="append", default=[])
    parser.add_argument("--json", default=default_json("many_files"))
    args = parser.parse_args()
    facts = machine_facts()
    print_facts(facts)
    payload: dict[str, Any] = {"facts": facts, "args": {k: v for k, v in vars(args).items() if k != "json"}}
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        if "paced" not in args.skip:
            payload["paced"] = paced(args, root)
            print_table(list(payload["paced"][0]), [list(row.values()) for row in payload["paced"]])
        if "local" not in args.skip:
            payload["local"] = local(args, root)
            headers = sorted({key for row in payload["local"] for key in row}, key=list(payload["local"][0]).index)
            print_table(headers, [[row.get(h, "") for h in headers] for row in payload["local"]])
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
