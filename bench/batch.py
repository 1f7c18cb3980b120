"""Batch against stream for a whole file, and the client's memory during a large upload.

    python -m bench.batch [--minutes 10] [--upload-gb 1]

(a) One recording of ``--minutes`` (``tests/recordings.py``: the spoken fixtures with pauses) is
transcribed twice by ``cartesia_sync.transcribe`` against one embedded
:class:`~cartesia_sync.local.LocalServer`: ``mode="batch"`` (``POST /stt``, the server decodes the
upload with the same engine) and ``mode="stream"`` (the WebSocket, unpaced). Wall time, the word
error rate against the script, and the words recognised.

(b) A WAV file of ``--upload-gb`` gigabytes (a tone) is uploaded by a child process with
``transcribe(mode="batch")`` to a ``FakeCartesia`` that answers uploads with a fixed text; the
child reports its peak resident memory (RSS) before the upload (everything imported) and after it.
What matters is that the growth is small and does not depend on the size: the upload streams from
disk.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
import wave
from pathlib import Path

import numpy as np

from .common import default_json, machine_facts, print_facts, print_table, write_json

ROOT = Path(__file__).resolve().parent.parent


def _batch_vs_stream(minutes: float, tmp: Path) -> list[dict[str, object]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from recordings import make_recording  # noqa: E402  (test helpers, shared with the suite)

    import cartesia_sync
    from cartesia_sync.local import LocalServer
    from cartesia_sync.local._metrics import word_error_rate

    recording = make_recording(tmp / "long.wav", minutes * 60)
    rows = []
    with LocalServer() as server:
        for mode in ("batch", "stream"):
            started = time.monotonic()
            result = cartesia_sync.transcribe(str(recording.path), base_url=server.base_url, mode=mode)
            wall = time.monotonic() - started
            rows.append(
                {
                    "mode": result.mode,
                    "wall_seconds": wall,
                    "audio_seconds": minutes * 60,
                    "words": len(result.text.split()),
                    "wer": word_error_rate([" ".join(recording.words)], [result.text]),
                }
            )
    return rows


_UPLOADER = textwrap.dedent(
    """
    import resource, sys
    import cartesia_sync, httpx  # everything the upload needs, loaded before the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = cartesia_sync.transcribe(sys.argv[1], base_url=sys.argv[2], mode="batch", timeout=3600)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(before / 1024, after / 1024)  # peak RSS in MiB before and after the upload
    """
)


def _upload_memory(gigabytes: float, tmp: Path) -> dict[str, float]:
    from cartesia_sync.testing import FakeCartesia

    path = tmp / "big.wav"
    frames = int(gigabytes * 1e9 / 2)
    block = (np.sin(np.arange(160_000) * 0.05) * 3000).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        written = 0
        while written < frames:
            chunk = block[: 2 * min(len(block) // 2, frames - written)]
            out.writeframes(chunk)
            written += len(chunk) // 2
    with FakeCartesia(batch_text="a very long file", max_upload_bytes=int(3e9)) as fake:
        started = time.monotonic()
        child = subprocess.run(
            [sys.executable, "-c", _UPLOADER, str(path), fake.base_url], capture_output=True, text=True, check=True
        )
        wall = time.monotonic() - started
    before, after = (float(x) for x in child.stdout.split())
    return {
        "upload_gb": gigabytes,
        "wall_seconds": wall,
        "peak_rss_before_mib": before,
        "peak_rss_after_mib": after,
        "rss_growth_mib": after - before,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the recording for (a)")
    parser.add_argument("--upload-gb", type=float, default=1.0, help="size of the upload for (b); 0 skips it")
    parser.add_argument("--json", help="where to write the results")
    args = parser.parse_args(argv)
    facts = machine_facts()
    print_facts(facts)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        modes = _batch_vs_stream(args.minutes, tmp)
        print_table(
            ["mode", "audio s", "wall s", "words", "WER"],
            [(r["mode"], r["audio_seconds"], r["wall_seconds"], r["words"], r["wer"]) for r in modes],
        )
        upload = _upload_memory(args.upload_gb, tmp) if args.upload_gb > 0 else None
        if upload is not None:
            print_table(list(upload), [list(upload.values())])
    write_json(args.json or default_json("batch"), {"facts": facts, "modes": modes, "upload": upload})


if __name__ == "__main__":
    main()
