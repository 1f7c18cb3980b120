"""Load test: 200 concurrent sessions in one process, repeated rounds, no thread or memory growth.

What it proves, and why it matters for a thread-per-session library:

* **Correctness under concurrency.** 200 sessions are open at the same moment against one
  :class:`~cartesia_sync.testing.FakeCartesia` (a barrier holds every caller until all 200 have
  connected, and the test checks that 200 were open both on the client side and on the server
  side at that moment). Each session streams its *own* seeded random audio, in several uneven
  ``send()`` calls, paced at 20x real time, then ``finalize()``, more audio, ``close()``. The
  scripted engine names every segment by its number, byte count and SHA-256 prefix, so a
  session's text equals the expected string only if none of its bytes was lost, duplicated,
  reordered or taken from another session (cross-talk), and only if every final was delivered
  to the right session exactly once. Word times, the stats counters, the plugin hooks (shared by
  all sessions and called from their 200 receiver threads) and the server's own records are checked
  against the same expectations.
* **No leak across rounds.** The same load runs ``ROUNDS`` times in the same process. After each
  round, every thread the round started (200 callers, 2 per session, and the server's: 3 per
  connection with websockets 15, about 1,200 at the peak) must be gone (also as counted by the
  kernel), every socket closed (open file descriptors back to the baseline), every ``Session``
  collectable (weak references dead after ``gc.collect()``), and memory must not grow from the
  second to the last round: neither the objects the garbage collector tracks, nor the
  interpreter's allocated blocks, nor RSS. A library that kept anything
  per session would grow by at least ``SESSIONS`` times that thing per round.

Memory is measured without tracemalloc on purpose: tracing made each round about 2.5 times slower
here, and its own bookkeeping made RSS climb 3-4 MiB a round while the traced heap stayed flat, which
would hide the signal this test looks for. ``gc.get_objects()`` and ``sys.getallocatedblocks()`` are
exact and cost nothing while the sessions run; RSS is read after ``malloc_trim(0)`` (glibc) so that
free memory the allocator has not yet returned to the kernel does not count as growth.

Timing is reported (``-s`` shows one line per round) but never asserted. The test is part of the
default suite, so it is kept small: about 1.5 s of audio per session, 5 rounds, about 10 s in all
on a 2-core machine; ``@pytest.mark.timeout`` is only a safety net.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import cartesia_sync
from cartesia_sync import FlushDone, hookimpl
from cartesia_sync.testing import FakeCartesia

resource = pytest.importorskip("resource", reason="needs a Unix process (file-descriptor limits)")

pytestmark = [
    pytest.mark.load,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts threads, descriptors and RSS in Linux /proc"),
]

SESSIONS = 200  # open at the same time, one caller thread each
ROUNDS = 5  # round 1 warms caches; growth is measured over the 3 rounds from round 2 to round 5
SPEED = 20.0  # pacing factor: every session's sender really paces, and all 200 overlap in time
RATE = 16_000
BYTES_PER_SECOND = RATE * 2  # s16le mono
SEGMENT_BYTES = 12_000  # the engine also ends a segment every 0.375 s: several finals per part
CALL_TIMEOUT = 60.0  # for each blocking call; generous because CI machines are slow and shared
FDS_PER_SESSION = 2  # the client's socket and the server's end of it, in this one process

# Growth allowed from round 2 to the last round (3 rounds of SESSIONS sessions each).
# Objects tracked by the garbage collector: a leaked Session drags dozens along (its queue, stats,
# threads, events, transcript...), so any per-session leak adds >= 600 over the 3 rounds. Measured
# here: +2 per round, the test's own per-round row. SESSIONS // 2 = 100 leaves room for a lazily
# filled cache or two and still catches a leak of one object for every 6 sessions.
GC_OBJECTS_GROWTH_BOUND = SESSIONS // 2
# Interpreter (pymalloc) blocks, i.e. small objects of any kind, tracked or not (ints, strings,
# bytes under 512 B): measured +20 to +100 per round from free lists and set/dict resizing. A leak of
# one small object per session adds 600 over the 3 rounds; 1,000 leaves 3x the measured noise.
BLOCKS_GROWTH_BOUND = 1_000
# RSS, after malloc_trim: measured within +-2.5 MiB of round 2 over 12 rounds. The audio of one round
# is SESSIONS x ~50 KB ~ 10 MB, so a leak of the sessions' audio (or of their socket buffers or
# thread stacks, which are larger) adds >= 30 MB over the 3 rounds; 16 MiB is twice the worst
# allocator slack we could imagine here and half that leak.
RSS_GROWTH_BOUND = 16 * 1024 * 1024


# -- the scripted engine's segment text, and what each session must therefore read ------------------


def checksum_text(number: int, audio: bytes) -> str:
    """The engine's text for a segment: number, byte count and a 64-bit SHA-256 prefix of its audio."""
    return f" s{number}:{len(audio)}b:{hashlib.sha256(audio).hexdigest()[:16]}"


def expected_segments(parts: Sequence[bytes]) -> list[bytes]:
    """The segments the engine cuts: every SEGMENT_BYTES, and at each finalize/end (after each part)."""
    segments: list[bytes] = []
    for part in parts:
        for start in range(0, len(part), SEGMENT_BYTES):
            segments.append(part[start : start + SEGMENT_BYTES])
    return segments


def expected_text(segments: Sequence[bytes]) -> str:
    return "".join(checksum_text(number, audio) for number, audio in enumerate(segments, 1))


def session_audio(round_no: int, index: int) -> tuple[bytes, bytes]:
    """Two parts of seeded random int16 audio, different in every session and round (lengths too)."""
    rng = np.random.default_rng([round_no, index])
    first = rng.integers(-12_000, 12_000, RATE + 37 * (index % 41), dtype="<i2").tobytes()  # ~1.0-1.1 s
    second = rng.integers(-12_000, 12_000, RATE // 2 + 11 * (index % 13), dtype="<i2").tobytes()  # ~0.5 s
    return first, second


def uneven_chunks(audio: bytes, cuts: Sequence[float]) -> Iterator[bytes]:
    """Split at these fractions, on sample boundaries but not on the 100 ms frame boundaries."""
    samples = len(audio) // 2
    points = [0] + [int(samples * cut) * 2 for cut in cuts] + [len(audio)]
    for start, end in zip(points, points[1:], strict=False):
        yield audio[start:end]


# -- bookkeeping shared by the caller threads --------------------------------------------------------


class Gauge:
    """How many sessions are open now, and the most there ever were."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def up(self) -> None:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)

    def down(self) -> None:
        with self._lock:
            self.current -= 1


class HookCounter:
    """A plugin shared by every session: counts hooks per session number, from the receiver threads."""

    name = "load-counter"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: set[int] = set()
        self.ended: set[int] = set()
        self.finals: dict[int, int] = {}
        self.errors: list[str] = []

    def reset(self) -> None:
        with self._lock:
            self.started.clear()
            self.ended.clear()
            self.finals.clear()
            self.errors.clear()

    @hookimpl
    def on_session_start(self, session: cartesia_sync.Session) -> None:
        with self._lock:
            self.started.add(session.number)

    @hookimpl
    def on_transcript(self, session: cartesia_sync.Session, transcript: Any) -> None:
        if transcript.is_final:
            with self._lock:
                self.finals[session.number] = self.finals.get(session.number, 0) + 1

    @hookimpl
    def on_error(self, session: cartesia_sync.Session, error: Exception) -> None:
        with self._lock:
            self.errors.append(f"session #{session.number}: {error!r}")

    @hookimpl
    def on_session_end(self, session: cartesia_sync.Session) -> None:
        with self._lock:
            self.ended.add(session.number)


@dataclass
class Outcome:
    """What one caller thread found; never holds the session itself (the leak check needs it gone)."""

    index: int
    number: int = 0
    problems: list[str] = field(default_factory=list)
    session_ref: weakref.ReferenceType[cartesia_sync.Session] | None = None
    audio_sha256: str = ""
    finals: int = 0


@dataclass
class AtPeak:
    """Counts taken when all callers reached the barrier, and a few for the whole round."""

    client_open: int = 0
    server_open: int = 0
    threads: int = 0
    streaming: int = 0  # most sessions between their first send and the end of close(), at once
    wall: float = 0.0


def drive(
    client: cartesia_sync.Client, round_no: int, index: int, barrier: threading.Barrier, gauge: Gauge, streaming: Gauge
) -> Outcome:
    """One session: connect, wait for all, stream, finalize, check, stream more, close, check."""
    outcome = Outcome(index)
    problems = outcome.problems
    first, second = session_audio(round_no, index)
    outcome.audio_sha256 = hashlib.sha256(first + second).hexdigest()
    session: cartesia_sync.Session | None = None
    counted = False
    try:
        try:
            session = client.connect(realtime=SPEED)
        except BaseException:
            barrier.abort()  # the others must not wait for a session that will never come
            raise
        outcome.number = session.number
        outcome.session_ref = weakref.ref(session)
        gauge.up()
        counted = True
        barrier.wait()  # all SESSIONS are open now; they stream, finalize and close together

        streaming.up()  # from the first send until close() returns (reported, not asserted)
        try:
            for chunk in uneven_chunks(first, (0.13, 0.41, 0.77)):
                session.send(chunk)
            flush = session.finalize(timeout=CALL_TIMEOUT)
            want_first = expected_text(expected_segments([first]))
            if not isinstance(flush, FlushDone) or flush.request_id is None or flush.request_id != session.request_id:
                problems.append(f"finalize returned {flush!r}, request_id of the session {session.request_id!r}")
            if session.text != want_first:
                problems.append(f"text after finalize {session.text!r}, expected {want_first!r}")

            for chunk in uneven_chunks(second, (0.3, 0.65)):
                session.send(chunk)
            session.close(timeout=CALL_TIMEOUT)
        finally:
            streaming.down()

        segments = expected_segments([first, second])
        outcome.finals = len(segments)
        want = expected_text(segments)
        if session.text != want:
            problems.append(f"final text {session.text!r}, expected {want!r}")
        problems.extend(word_problems(session.words, segments))
        problems.extend(stats_problems(session.stats, len(first) + len(second), len(segments)))
        if session.errors:
            problems.append(f"errors {session.errors!r}")
        if not session.closed:
            problems.append(f"state {session.state} after close()")
    except threading.BrokenBarrierError:
        problems.append("another session failed before all were open (barrier broken)")
    except Exception as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        if session is not None and not session.closed:
            session.abort()
        if counted:
            gauge.down()
    return outcome


def word_problems(words: Sequence[cartesia_sync.Word], segments: Sequence[bytes]) -> list[str]:
    """One word per segment, spanning its audio on the session's clock (server rounds to 1 ms)."""
    expected: list[tuple[str, float, float]] = []
    offset = 0
    for number, audio in enumerate(segments, 1):
        expected.append(
            (checksum_text(number, audio).strip(), offset / BYTES_PER_SECOND, (offset + len(audio)) / BYTES_PER_SECOND)
        )
        offset += len(audio)
    got = [(w.word, w.start, w.end) for w in words]
    if [g[0] for g in got] != [e[0] for e in expected] or any(
        abs(g[1] - e[1]) > 0.0011 or abs(g[2] - e[2]) > 0.0011 for g, e in zip(got, expected, strict=False)
    ):
        return [f"words {got!r}, expected {expected!r}"]
    return []


def stats_problems(stats: cartesia_sync.SessionStats, audio_bytes: int, finals: int) -> list[str]:
    """Every byte queued was sent, none dropped or left unsent, no keepalive, one final per segment."""
    seconds = audio_bytes / BYTES_PER_SECOND
    checks = {
        "audio_queued": (stats.audio_queued, pytest.approx(seconds, abs=1e-9)),
        "audio_sent": (stats.audio_sent, pytest.approx(seconds, abs=1e-9)),
        "audio_dropped": (stats.audio_dropped, 0),
        "audio_unsent": (stats.audio_unsent, 0),
        "keepalive_sent": (stats.keepalive_sent, 0),
        "commands_sent": (stats.commands_sent, 2),  # finalize, done
        "final_transcripts": (stats.final_transcripts, finals),
        "interim_transcripts": (stats.interim_transcripts, 0),
        "protocol_errors": (stats.protocol_errors, 0),
        "plugin_errors": (stats.plugin_errors, 0),
        "server_errors": (stats.server_errors, 0),
    }
    return [f"stats.{name} = {got!r}, expected {want!r}" for name, (got, want) in checks.items() if got != want]


# -- process measurements ----------------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    """The process's threads as the kernel counts them (also those the threading module never saw)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line in /proc/self/status")


def rss_bytes() -> int:
    """Resident set size, after handing free heap memory back to the kernel where glibc allows it."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS includes the allocator's free lists
        pass
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Resources:
    """What the process holds between rounds."""

    new_threads: list[str]
    os_threads: int
    fds: int
    gc_objects: int = 0
    blocks: int = 0
    rss: int = 0


def settled(
    baseline_threads: set[int | None], baseline_os_threads: int, baseline_fds: int, wait: float = 10.0
) -> Resources:
    """Threads and descriptors once the round's stragglers (server connections) have finished, then memory."""
    deadline = time.monotonic() + wait
    while True:
        now = Resources(
            [t.name for t in threading.enumerate() if t.ident not in baseline_threads], os_threads(), open_fds()
        )
        if (
            not now.new_threads and now.os_threads <= baseline_os_threads and now.fds <= baseline_fds
        ) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    gc.collect()
    now.gc_objects = len(gc.get_objects())
    now.blocks = sys.getallocatedblocks()
    now.rss = rss_bytes()
    return now


@pytest.fixture
def fd_headroom() -> Iterator[None]:
    """Raise the soft file-descriptor limit (up to the hard one) for SESSIONS x FDS_PER_SESSION; restore it after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = open_fds() + SESSIONS * FDS_PER_SESSION + 256
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(
                f"{SESSIONS} concurrent sessions need about {needed} file descriptors; "
                f"the hard limit (ulimit -Hn) is {hard}"
            )
        raised = needed * 2 if hard == resource.RLIM_INFINITY else min(hard, needed * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- the test ------------------------------------------------------------------------------------------


def test_200_concurrent_sessions_repeatedly_without_thread_or_memory_growth(fd_headroom: None) -> None:
    counter = HookCounter()
    # idle_timeout: callers wait at the barrier while the others connect; never close them for it
    with FakeCartesia(text=checksum_text, segment_bytes=SEGMENT_BYTES, idle_timeout=120.0) as fake:
        client = cartesia_sync.Client(
            url=fake.url,
            load_entrypoints=False,
            plugins=[counter],
            keepalive_interval=None,  # keepalive silence would be audio to the engine and change the checksums
            connect_timeout=CALL_TIMEOUT,
            send_timeout=CALL_TIMEOUT,
        )
        gc.collect()
        baseline_threads = {t.ident for t in threading.enumerate()}
        baseline_os_threads = os_threads()
        baseline_fds = open_fds()
        after: list[Resources] = []
        for round_no in range(1, ROUNDS + 1):
            peak = run_round(fake, client, counter, round_no)
            now = settled(baseline_threads, baseline_os_threads, baseline_fds)
            after.append(now)
            print(
                f"\nload round {round_no}: {SESSIONS} sessions in {peak.wall:.2f} s; at the peak: {peak.client_open} "
                f"open (server side {peak.server_open}), {peak.threads} threads; most streaming at once "
                f"{peak.streaming}; after: {threading.active_count()} threads (OS {now.os_threads}, baseline "
                f"{baseline_os_threads}), {now.fds} fds (baseline {baseline_fds}), {now.gc_objects} gc objects, "
                f"{now.blocks} blocks, RSS {now.rss / 2**20:.1f} MiB"
            )
            assert not now.new_threads, (
                f"round {round_no}: {len(now.new_threads)} threads survived it: {now.new_threads[:10]}"
            )
            assert now.os_threads <= baseline_os_threads, (
                f"round {round_no}: {now.os_threads - baseline_os_threads} OS threads survived it"
            )
            assert now.fds <= baseline_fds, f"round {round_no}: {now.fds - baseline_fds} file descriptors leaked"

    second, last = after[1], after[-1]
    growth = {
        "gc objects": last.gc_objects - second.gc_objects,
        "blocks": last.blocks - second.blocks,
        "RSS bytes": last.rss - second.rss,
    }
    print(f"growth from round 2 to round {ROUNDS}: {growth}")
    assert growth["gc objects"] < GC_OBJECTS_GROWTH_BOUND, growth
    assert growth["blocks"] < BLOCKS_GROWTH_BOUND, growth
    assert growth["RSS bytes"] < RSS_GROWTH_BOUND, growth


def run_round(fake: FakeCartesia, client: cartesia_sync.Client, counter: HookCounter, round_no: int) -> AtPeak:
    """SESSIONS sessions at once; check each result, the hooks and the server's records."""
    counter.reset()
    gauge, streaming = Gauge(), Gauge()
    at_peak = AtPeak()

    def all_open() -> None:  # run by one thread once every caller reached the barrier
        at_peak.client_open = gauge.current
        at_peak.server_open = sum(not record.finished.is_set() for record in list(fake.connections))
        at_peak.threads = threading.active_count()

    barrier = threading.Barrier(SESSIONS, action=all_open, timeout=CALL_TIMEOUT * 2)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=SESSIONS, thread_name_prefix=f"load-caller-{round_no}") as pool:
        futures = [pool.submit(drive, client, round_no, index, barrier, gauge, streaming) for index in range(SESSIONS)]
        outcomes = [future.result() for future in futures]
    at_peak.wall = time.monotonic() - started
    at_peak.streaming = streaming.peak

    failed = [f"session {o.index} (#{o.number}): {p}" for o in outcomes for p in o.problems]
    assert not failed, f"round {round_no}: {len(failed)} problems, the first ones:\n" + "\n".join(failed[:8])
    assert gauge.peak == SESSIONS and at_peak.client_open == SESSIONS, (gauge.peak, at_peak)
    assert at_peak.server_open == SESSIONS, f"only {at_peak.server_open} server connections were open at the peak"
    assert gauge.current == 0

    numbers = {o.number for o in outcomes}
    assert len(numbers) == SESSIONS
    assert counter.started == numbers and counter.ended == numbers, "on_session_start/end not once per session"
    assert counter.finals == {o.number: o.finals for o in outcomes}, "on_transcript finals do not match the sessions"
    assert not counter.errors, counter.errors[:5]

    # The server saw each session's audio exactly, with its two commands, and closed each cleanly.
    records = list(fake.connections)
    assert len(records) == SESSIONS
    assert all(record.wait(CALL_TIMEOUT) for record in records)
    assert sorted(record.sha256() for record in records) == sorted(o.audio_sha256 for o in outcomes)
    assert all(record.texts == ["finalize", "done"] for record in records)
    assert {record.close_code for record in records} == {1000}
    fake.connections.clear()  # FakeCartesia records every frame: drop them, or they would count as growth
    del records

    # Nothing the library keeps refers to a closed session.
    refs = [o.session_ref for o in outcomes]
    del outcomes, futures
    gc.collect()
    alive = sum(ref is not None and ref() is not None for ref in refs)
    assert alive == 0, f"round {round_no}: {alive} closed sessions are still referenced"
    return at_peak
