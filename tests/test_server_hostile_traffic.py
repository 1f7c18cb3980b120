"""Abusive traffic at the local server: bounded memory, and a well-behaved client that is not starved.

The server runs in its own process (:class:`hostile_clients.ServerProcess`) so
its resident memory can be measured apart from the clients'. The abusers are
raw sockets on loopback: audio far faster than real time, frames of the
largest allowed size and larger, thousands of ``finalize`` commands, junk
commands and junk frames, mostly without reading a byte of the answers.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable

import pytest
from hostile_clients import (
    OP_BINARY,
    OP_TEXT,
    ServerProcess,
    audio,
    finalize_latency,
    frame,
    open_session,
    text,
)
from process_memory import tree_rss_mib

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="measures memory in Linux /proc"),
]

MIB = 2**20
FRAME_64K = audio(bytes(range(256)) * 256)
FRAME_1MIB = audio(b"\x01\x02" * (MIB // 2))  # exactly max_message_bytes


class Abuse:
    """Runs abuser functions on threads until stopped; each gets the port and a stop event."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.sent_bytes = 0
        self._lock = threading.Lock()

    def start(self, target: Callable[[Abuse], None], copies: int = 1) -> None:
        for _ in range(copies):
            thread = threading.Thread(target=self._run, args=(target,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, target: Callable[[Abuse], None]) -> None:
        try:
            target(self)
        except OSError:
            pass  # the server cut the abuser off: allowed
        except BaseException as exc:  # pragma: no cover - shows in the test's assertion
            self.errors.append(exc)

    def count(self, n: int) -> None:
        with self._lock:
            self.sent_bytes += n

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)
        assert not [t for t in self.threads if t.is_alive()], "an abuser thread did not stop"
        assert not self.errors, self.errors


# -- the abusers ---------------------------------------------------------------------------------------------------


def blast_audio(abuse: Abuse) -> None:
    """Audio in 64 KiB frames, unpaced (thousands of times real time), never a finalize, never reading."""
    sock, _ = open_session(abuse.port, timeout=2)
    sock.settimeout(2)
    with sock:
        while not abuse.stop.is_set():
            try:
                sock.sendall(FRAME_64K)
            except TimeoutError:
                continue  # the server reads no faster than it decodes: TCP holds us back
            abuse.count(len(FRAME_64K))


def blast_huge_frames(abuse: Abuse) -> None:
    """Frames of exactly max_message_bytes, unpaced, never reading."""
    sock, _ = open_session(abuse.port, timeout=2)
    sock.settimeout(2)
    with sock:
        while not abuse.stop.is_set():
            try:
                sock.sendall(FRAME_1MIB)
            except TimeoutError:
                continue
            abuse.count(len(FRAME_1MIB))


def too_big_frames(abuse: Abuse) -> None:
    """One frame over max_message_bytes after another, on new connections: each is closed with 1009."""
    while not abuse.stop.is_set():
        sock, reader = open_session(abuse.port, timeout=5)
        with sock:
            sock.sendall(frame(OP_BINARY, b"\x00" * (MIB + 2))[: 14 + 65536])  # the header says 1 MiB + 2
            _, code = reader.until_close(5)
            assert code == 1009, code
            abuse.count(1)


def finalize_flood(abuse: Abuse, read: bool = False) -> None:
    """Thousands of finalize commands, with a little audio between them."""
    sock, reader = open_session(abuse.port, timeout=2)
    burst = (audio(b"\x00\x01" * 160) + text("finalize") * 50) * 20
    sock.settimeout(2)
    drain = threading.Thread(target=_drain, args=(sock, abuse.stop), daemon=True) if read else None
    if drain:
        drain.start()
    with sock:
        while not abuse.stop.is_set():
            try:
                sock.sendall(burst)
            except TimeoutError:
                continue
            abuse.count(len(burst))
    if drain:
        drain.join(5)


def junk_flood(abuse: Abuse, read: bool = False) -> None:
    """Unknown text commands, JSON, binary garbage, pings and empty frames, as fast as the socket takes them."""
    sock, reader = open_session(abuse.port, timeout=2)
    junk = (
        text("x" * 200)
        + text('{"type": "config", "x": ' + "1" * 300 + "}")
        + text("")
        + frame(OP_BINARY, b"")
        + frame(OP_BINARY, b"\xff")  # an odd byte: half a sample
        + frame(0x9, b"ping")
        + text("\u2603" * 50)
    ) * 100
    sock.settimeout(2)
    drain = threading.Thread(target=_drain, args=(sock, abuse.stop), daemon=True) if read else None
    if drain:
        drain.start()
    with sock:
        while not abuse.stop.is_set():
            try:
                sock.sendall(junk)
            except TimeoutError:
                continue
            abuse.count(len(junk))
    if drain:
        drain.join(5)


def protocol_violations(abuse: Abuse) -> None:
    """Connections that break the framing (unmasked frames, bad opcodes, bad UTF-8): each is closed, none kept."""
    bad = [
        frame(OP_TEXT, b"finalize", masked=False),
        frame(0x3, b"reserved opcode"),
        frame(OP_TEXT, b"\xff\xfe not UTF-8"),
        frame(OP_TEXT, b"half", fin=False) + frame(OP_BINARY, b"new message inside a fragmented one"),
        bytes([0xF1, 0x80]) + os.urandom(4),  # RSV bits set
    ]
    while not abuse.stop.is_set():
        for payload in bad:
            sock, reader = open_session(abuse.port, timeout=5)
            with sock:
                sock.sendall(payload)
                _, code = reader.until_close(5)
                assert code in (1002, 1007), code
                abuse.count(1)


def _drain(sock, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            if not sock.recv(1 << 20):
                return
        except TimeoutError:
            continue
        except OSError:
            return


# -- memory ----------------------------------------------------------------------------------------------------------


def peak_growth(server: ServerProcess, abuse: Abuse, seconds: float) -> tuple[float, float]:
    """Run the abuse for ``seconds``; the server's peak RSS growth in MiB and the baseline."""
    baseline = tree_rss_mib(server.pid)
    peak = baseline
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, tree_rss_mib(server.pid))
        time.sleep(0.05)
    return peak - baseline, baseline


def warm_up(port: int) -> None:
    """One ordinary session first, so imports and first-use allocations are in the baseline."""
    sock, reader = open_session(port)
    with sock:
        for _ in range(3):
            finalize_latency(sock, reader, b"\x00\x01" * 16000)


#: (name, abusers and copies, seconds, bound on peak RSS growth in MiB, least bytes the abusers must get through)
MEMORY_CASES = [
    # 4 unpaced streams: without bounds, 4 x (all the audio they send) would pile up in the scripted
    # engine's segments; with them the streams cost a running hash each.
    ("unpaced audio", [(blast_audio, 4)], 6.0, 60, 200 * MIB),
    # 4 x 16 queued messages of 1 MiB is the worst case the limits allow per connection.
    ("frames of max_message_bytes", [(blast_huge_frames, 4)], 6.0, 4 * 16 + 40, 100 * MIB),
    ("frames over max_message_bytes", [(too_big_frames, 2)], 4.0, 40, 10),
    ("finalize flood, never read", [(finalize_flood, 4)], 6.0, 40, 1 * MIB),
    ("junk flood, never read", [(junk_flood, 4)], 6.0, 40, 1 * MIB),
    ("protocol violations", [(protocol_violations, 2)], 4.0, 40, 10),
]


@pytest.mark.parametrize(
    ("name", "abusers", "seconds", "bound", "least"), MEMORY_CASES, ids=[c[0] for c in MEMORY_CASES]
)
def test_abuse_does_not_grow_the_server_memory_without_bound(name, abusers, seconds, bound, least):
    with ServerProcess(engine="scripted", write_timeout=3.0) as server:
        warm_up(server.port)
        abuse = Abuse(server.port)
        for target, copies in abusers:
            abuse.start(target, copies)
        growth, baseline = peak_growth(server, abuse, seconds)
        still_serving = finalize_latency(*open_session(server.port), b"\x00\x01" * 1600)
        abuse.finish()
        print(f"{name}: baseline {baseline:.0f} MiB, peak growth {growth:.1f} MiB, {abuse.sent_bytes} sent")
        assert abuse.sent_bytes >= least, f"the abuse hardly ran ({abuse.sent_bytes}): the test proves nothing"
        assert growth < bound, f"{name}: the server grew by {growth:.0f} MiB (bound {bound} MiB)"
        assert still_serving < 3.0
        assert server.stop() == 0


# -- starvation -------------------------------------------------------------------------------------------------------


def test_a_well_behaved_client_is_not_starved_by_abusers():
    """finalize -> flush_done of a paced client while 8 abusers hammer the same server."""
    with ServerProcess(engine="scripted", write_timeout=3.0) as server:
        warm_up(server.port)
        quiet = []
        sock, reader = open_session(server.port)
        with sock:
            for _ in range(5):
                quiet.append(finalize_latency(sock, reader, b"\x00\x01" * 1600))
            abuse = Abuse(server.port)
            abuse.start(blast_audio, 2)
            abuse.start(blast_huge_frames, 1)
            abuse.start(lambda a: finalize_flood(a, read=True), 2)
            abuse.start(lambda a: junk_flood(a, read=True), 2)
            abuse.start(finalize_flood, 1)
            time.sleep(1.0)  # let the abuse get going
            loud = []
            for _ in range(20):
                loud.append(finalize_latency(sock, reader, b"\x00\x01" * 1600))
                time.sleep(0.1)  # paced: 100 ms of audio per 100 ms
            abuse.finish()
        print(
            f"finalize->flush_done: quiet median {statistics.median(quiet) * 1000:.1f} ms; under abuse median "
            f"{statistics.median(loud) * 1000:.1f} ms, max {max(loud) * 1000:.1f} ms; abusers sent "
            f"{abuse.sent_bytes / MIB:.0f} MiB"
        )
        assert abuse.sent_bytes > 50 * MIB, "the abuse hardly ran: the test proves nothing"
        assert max(loud) < 2.0, f"a finalize waited {max(loud):.2f} s for its flush_done under abuse"
        assert statistics.median(loud) < 0.5


def test_pocketsphinx_clients_flooding_one_worker_do_not_starve_a_paced_one():
    """Two clients send noise (decoded slower than real time) in 1 MiB frames into the one worker process
    a paced client shares with them, a third floods finalize: the paced client's finalize waits for one
    request of theirs, not for their backlog."""
    pytest.importorskip("pocketsphinx")
    import numpy as np

    noisy = audio(np.random.default_rng(1).normal(0, 3000, 2**19 - 8).astype("<i2").tobytes())

    def blast_noise(abuse: Abuse) -> None:
        sock, _ = open_session(abuse.port, timeout=2)
        sock.settimeout(2)
        with sock:
            while not abuse.stop.is_set():
                try:
                    sock.sendall(noisy)
                except TimeoutError:
                    continue
                abuse.count(len(noisy))

    speech_like = np.random.default_rng(0).normal(0, 2000, 1600).astype("<i2").tobytes()
    with ServerProcess(engine="pocketsphinx", workers=1) as server:
        sock, reader = open_session(server.port, timeout=60)
        with sock:
            quiet = [finalize_latency(sock, reader, speech_like) for _ in range(3)]  # starts the worker
            baseline = tree_rss_mib(server.pid)
            abuse = Abuse(server.port)
            abuse.start(blast_noise, 2)
            abuse.start(lambda a: finalize_flood(a, read=True), 1)
            time.sleep(3.0)  # both floods are decoding by now
            loud = []
            peak = baseline
            for _ in range(10):
                loud.append(finalize_latency(sock, reader, speech_like))
                peak = max(peak, tree_rss_mib(server.pid))
                time.sleep(0.1)
            abuse.finish()
    print(
        f"pocketsphinx finalize->flush_done: quiet {quiet[-1] * 1000:.0f} ms, under abuse max "
        f"{max(loud) * 1000:.0f} ms; RSS growth {peak - baseline:.0f} MiB"
    )
    # Three more decoders (90-150 MiB each) and bounded buffers; unbounded, the noise sent would pile up.
    assert peak - baseline < 3 * 150 + 50, f"the server grew by {peak - baseline:.0f} MiB"
    assert abuse.sent_bytes >= 4 * MIB
    # Measured on 2 loaded cores: 0.2-4.8 s at most (a flooder's request that ends a 30 s utterance is the
    # slow one). Before the turns, one request was a whole frame (32 s of noise, about 50 s to decode here)
    # and the flooders took the worker in turn between them: the paced client waited 30 s for the worker,
    # then got an engine error.
    assert max(loud) < 10.0, f"a finalize waited {max(loud):.1f} s for its flush_done"


def test_pocketsphinx_decoders_are_capped_by_max_streams():
    """Twelve sessions send audio to a server allowing 3 streams: 3 decoders exist, 9 sessions get a 429 error."""
    pytest.importorskip("pocketsphinx")
    import numpy as np

    speech_like = np.random.default_rng(0).normal(0, 2000, 16000).astype("<i2").tobytes()
    with ServerProcess(engine="pocketsphinx", workers=1, max_streams=3) as server:
        warm_up(server.port)  # the worker process and its first decoder are in the baseline
        baseline = tree_rss_mib(server.pid)
        sessions = [open_session(server.port, timeout=60) for _ in range(12)]
        refused = 0
        for sock, reader in sessions:
            sock.sendall(audio(speech_like))
            sock.sendall(text("finalize"))
            message = reader.next_json()
            while message["type"] == "transcript":
                message = reader.next_json()
            if message["type"] == "error":
                assert (message["status_code"], message["error_code"]) == (429, "concurrency_limited")
                refused += 1
            else:
                assert message["type"] == "flush_done"
        growth = tree_rss_mib(server.pid) - baseline
        for sock, _ in sessions:
            sock.close()
    print(f"12 sessions, max_streams=3: {refused} refused, RSS growth {growth:.0f} MiB")
    assert refused == 9
    # A decoder is 90-150 MiB: 12 of them would add about a gigabyte.
    assert growth < 3 * 150, f"the server grew by {growth:.0f} MiB"
