"""Real-time sessions through one local server with its engine stream cap raised to 24: how many keep up.

    python bench/sessions_cap.py 10,12 results.json

``bench/local_engine.py``'s server section uses a server with its default cap
(pocketsphinx: 8 streams, for memory), so it cannot show what the CPU allows
past 8. This runs the same sessions (``server_realtime_run``: N clients
streaming 20 s of speech at 1x, then finalize) against a server that allows
24, for each N given. Run it from a checkout's root: it measures that
checkout's client and server.
"""

import json
import os
import sys

sys.path.insert(0, os.getcwd())

from bench import local_engine as le  # noqa: E402
from cartesia_sync.local._server import LocalServer  # noqa: E402


def main() -> None:
    clips = le.fixtures() + le.sample()
    pcm = le.looped_speech(clips, 20.0)
    out = {}
    for n in [int(x) for x in sys.argv[1].split(",")]:
        with LocalServer("pocketsphinx", load_entrypoints=False, max_streams=24) as server:
            result = le.server_realtime_run(server, n, pcm)
        print(n, {k: v for k, v in result.items() if k != "sessions"}, flush=True)
        out[n] = result
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as file:
            json.dump(out, file, indent=1)


if __name__ == "__main__":
    main()
