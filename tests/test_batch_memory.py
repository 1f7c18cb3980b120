"""A long upload streams from disk: the client's memory stays flat while it sends a 300 MB file."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from batch_server import BatchServer

TESTS = Path(__file__).parent
SIZE = 300 * 1024 * 1024
#: RSS growth allowed during the upload: httpx's 64 KiB chunks and socket buffers, not the file.
BOUND_MIB = 40

CHILD = r"""
import json, os, sys, threading, time
sys.path.insert(0, sys.argv[3])
from process_memory import tree_rss_mib
import cartesia_sync

client = cartesia_sync.Client(base_url=sys.argv[1], api_key="sk_mem", load_entrypoints=False)
client.transcribe(b"\0" * 32000, mode="batch")  # imports and first-use allocations before the baseline
baseline = tree_rss_mib(os.getpid())
peak = baseline
stop = threading.Event()

def sample():
    global peak
    while not stop.wait(0.02):
        peak = max(peak, tree_rss_mib(os.getpid()))

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
started = time.monotonic()
result = client.transcribe(sys.argv[2], mode="batch", progress=False)
elapsed = time.monotonic() - started
stop.set()
sampler.join(timeout=5)
print(json.dumps({"baseline": baseline, "peak": peak, "seconds": elapsed, "text": result.text}))
"""


def write_big_wav(path: Path, size: int) -> None:
    """A 16 kHz mono s16 WAV of silence, ``size`` bytes long, written sparse (no 300 MB of writes)."""
    data = size - 44
    header = b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    header += b"data" + struct.pack("<I", data)
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(size)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_300_mb_upload_keeps_the_client_s_memory_flat(tmp_path):
    big = tmp_path / "big.wav"
    write_big_wav(big, SIZE)
    with BatchServer(keep_body=False) as server:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, server.base_url, str(big), str(TESTS)],
            capture_output=True,
            text=True,
            timeout=240,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert child.returncode == 0, child.stderr[-3000:]
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    # the server read the whole multipart body: the file and the form around it
    assert server.requests[-1].body_size > SIZE
    growth = figures["peak"] - figures["baseline"]
    print(f"300 MB upload: RSS {figures['baseline']:.0f} -> {figures['peak']:.0f} MiB in {figures['seconds']:.1f} s")
    assert growth < BOUND_MIB, figures
