"""A long recording end to end on the embedded server: wall time, and memory of client and server over time.

    python -m bench.long_file --minutes 60 [--every 5]

The recording is generated from the spoken test fixtures (``tests/recordings.py``: sentences, short
pauses, a long silence every two minutes). The server runs as ``cartesia-sync serve`` in its own
process and the client as ``cartesia-sync transcribe --url``, so each one's memory is its own. Every
``--every`` seconds the resident memory (RSS) of each process tree is sampled from ``/proc``; the
server's tree includes its pocketsphinx worker processes. The table shows the first sample after
the audio started flowing, the peak, and the last sample, per side. What matters is that memory is
flat: the server reads no faster than its engine decodes and the client's send buffer is bounded,
so neither holds the hour.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import default_json, machine_facts, print_facts, write_json

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the recording")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--json", help="where to write the results")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "tests"))
    from process_memory import tree_rss_mib  # noqa: E402  (test helpers, shared with the suite)
    from recordings import make_recording  # noqa: E402

    exe = str(Path(sys.executable).with_name("cartesia-sync"))
    with tempfile.TemporaryDirectory() as tmp:
        recording = make_recording(Path(tmp) / "long.wav", args.minutes * 60)
        server = subprocess.Popen([exe, "serve", "--port", "0"], stderr=subprocess.PIPE, text=True)
        try:
            line = server.stderr.readline() if server.stderr else ""
            match = re.search(r"(ws://\S+)", line)
            if not match:
                raise SystemExit(f"the server did not start: {line!r}")
            url = match.group(1)
            started = time.monotonic()
            out_file = open(Path(tmp) / "out.json", "w+")  # a file, not a pipe: the JSON of an hour is large
            client = subprocess.Popen(
                [exe, "transcribe", "--url", url, "--json", str(recording.path)],
                stdout=out_file,
                stderr=subprocess.PIPE,
                text=True,
            )
            samples = []
            while client.poll() is None:
                samples.append(
                    (
                        round(time.monotonic() - started, 1),
                        round(tree_rss_mib(client.pid), 1),
                        round(tree_rss_mib(server.pid), 1),
                    )
                )
                time.sleep(args.every)
            wall = time.monotonic() - started
            _, err = client.communicate()
            out_file.seek(0)
            out = out_file.read()
            out_file.close()
        finally:
            server.terminate()
            server.wait(10)
    if client.returncode != 0:
        raise SystemExit(f"transcribe failed ({client.returncode}): {err.strip()}")
    import json

    result = json.loads(out)
    expected = recording.words
    got = result["text"].split()
    flowing = [s for s in samples if s[0] >= 10] or samples
    table = {
        "audio_seconds": recording.seconds,
        "wall_seconds": round(wall, 1),
        "realtime_factor": round(wall / recording.seconds, 3),
        "words_expected": len(expected),
        "words_recognised": len(got),
        "client_rss_mib": {"at_10s": flowing[0][1], "peak": max(s[1] for s in samples), "last": samples[-1][1]},
        "server_rss_mib": {"at_10s": flowing[0][2], "peak": max(s[2] for s in samples), "last": samples[-1][2]},
        "samples": samples,
    }
    facts = machine_facts()
    print_facts(facts)
    print(
        f"{recording.seconds / 60:.0f} min of audio: {wall:.1f} s wall ({wall / recording.seconds:.3f}x real time), "
        f"{len(got)} words recognised of {len(expected)} spoken"
    )
    print("| process | RSS at 10 s | peak | last |")
    print("| --- | --- | --- | --- |")
    for side in ("client", "server"):
        rss = table[f"{side}_rss_mib"]
        print(f"| {side} | {rss['at_10s']} MiB | {rss['peak']} MiB | {rss['last']} MiB |")
    write_json(args.json or default_json("long_file"), {"machine": facts, "minutes": args.minutes, **table})


if __name__ == "__main__":
    main()
