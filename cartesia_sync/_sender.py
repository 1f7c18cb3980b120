"""The sender thread: takes frames and commands off the queue and writes them, paced.

Pacing is deadline-based on the monotonic clock: the frame that starts at
audio time ``a`` (seconds of audio already sent) leaves at ``t0 + a / speed``,
so no drift accumulates however long the session runs. Unpaced, a deep queue
goes out in runs of frames, one socket write per run (:data:`_BATCH_BYTES`):
the frames on the wire are the same, the cost per frame is a fraction. When the queue runs
dry (a live source that is slower than the clock, or a caller that paused), the
schedule is re-anchored instead of bursting to catch up. When nothing has been
sent for ``keepalive_interval`` seconds, one frame of silence goes out so that
the server does not close the idle socket, and after ``ping_interval`` seconds
without hearing from the server, a ping goes out (see :mod:`.liveness`).

Across a reconnect the thread stays: it parks while the session opens a new
connection, then writes the replayed items first (unpaced: they are late
already) and goes on with the queue. Every item is put in the connection's
replay buffer just before it is written, so an item whose write failed goes
out again on the next connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from ._audio_queue import AudioQueue, Command, Item, KeepaliveFrame
from ._headway import Headway
from ._liveness import Liveness
from ._replay import ReplayBuffer
from ._stats import StatsCounter
from ._wire import ConnectionBroken, WireConnection
from .errors import ConnectionLostError

__all__ = ["Sender"]

logger = logging.getLogger("cartesia_sync.sender")

#: How long the sender sleeps at most between looks at its stop flag.
_POLL = 0.25

#: The most audio written in one go when the queue is deep and pacing is off (20 frames of 100 ms at 16 kHz).
_BATCH_BYTES = 64000


class _LetGo(Exception):
    """The sender must stop writing to the connection at once (the session ends or reconnects)."""


class Sender(threading.Thread):
    """Owns the writing side of a session's connections.

    :param ws: the open WebSocket; only this thread writes data frames to it.
    :param queue: where frames and commands come from.
    :param stats: counters to update.
    :param bytes_per_second: of the wire audio, to turn bytes into seconds.
    :param speed: pacing factor (1.0 = real time), or ``None`` for unpaced.
    :param keepalive_interval: seconds without sending after which a frame of
        silence goes out; ``None`` to never send one.
    :param keepalive_frame: the silence to send.
    :param liveness: says when a ping is due.
    :param headway: marked whenever the socket takes the caller's audio or a command.
    :param replay: the connection's replay buffer; every item written goes in.
    :param on_failure: called with a :class:`ConnectionLostError` when a write
        fails while the session still needed the connection.
    """

    def __init__(
        self,
        ws: WireConnection,
        queue: AudioQueue,
        stats: StatsCounter,
        *,
        bytes_per_second: int,
        speed: float | None,
        keepalive_interval: float | None,
        keepalive_frame: bytes,
        liveness: Liveness,
        headway: Headway,
        replay: ReplayBuffer,
        on_failure: Callable[[ConnectionLostError], None],
        name: str = "cartesia-sync-sender",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._ws = ws
        self._replay = replay
        self._queue = queue
        self._stats = stats
        self._bytes_per_second = bytes_per_second
        self._speed = speed
        self._keepalive_interval = keepalive_interval
        self._keepalive_frame = keepalive_frame
        self._liveness = liveness
        self._headway = headway
        self._on_failure = on_failure
        self._stop_requested = threading.Event()
        self._let_go = threading.Event()  # stop writing to this connection: the session reconnects
        self._wake = threading.Event()  # set with either of the two above, to cut a pacing wait short
        self._parked = threading.Event()  # not writing, waiting for a connection or the end
        self._resumed = threading.Event()
        self._pending: deque[tuple[Item, bool]] = deque()  # (item, replayed) to write before the queue
        self._anchor: float | None = None  # monotonic time at which audio time 0 was due
        self._audio_bytes_paced = 0
        self._last_write = time.monotonic()
        self._last_audio = float("-inf")  # when the caller's audio was last written

    def stop(self) -> None:
        """Ask the thread to end soon; it does not send anything more."""
        self._stop_requested.set()
        self._wake.set()
        self._resumed.set()

    def let_go(self, timeout: float) -> bool:
        """Stop writing to the current connection; True once the thread is parked (or gone)."""
        self._let_go.set()
        self._wake.set()
        return self._parked.wait(timeout) or not self.is_alive()

    def resume(self, ws: WireConnection, replay: ReplayBuffer, items: Iterable[tuple[Item, bool]]) -> None:
        """Continue on a new connection: ``items`` (each with its "replayed" flag) first, then the queue."""
        self._ws = ws
        self._replay = replay
        self._pending.extendleft(reversed(tuple(items)))
        self._let_go.clear()
        self._wake.clear()
        self._parked.clear()
        self._resumed.set()

    def idle_for(self) -> float:
        """Seconds since the caller's audio was last taken or written (infinite if it never was)."""
        return time.monotonic() - self._last_audio

    def run(self) -> None:
        try:
            while not self._stop_requested.is_set():
                try:
                    self._serve()
                except _LetGo:
                    pass
                except ConnectionBroken as exc:
                    # A connection the server broke the protocol on is reported by its reader, with the reason.
                    if not (self._stop_requested.is_set() or self._let_go.is_set() or self._ws.failure):
                        self._on_failure(ConnectionLostError(f"sending failed, the connection is gone: {exc}"))
                if not self._park():
                    return
        except BaseException as exc:  # a bug here must not vanish with the thread
            logger.exception("the sender thread failed")
            self._on_failure(ConnectionLostError(f"the sender thread failed: {type(exc).__name__}: {exc}"))
        finally:
            self._parked.set()
            unsent = sum(len(item) for item, replayed in self._pending if isinstance(item, bytes) and not replayed)
            unsent += self._replay.unfinished_first_sends()  # a write cut off by the end of the session
            if unsent:  # taken off the queue but never written: it counts as unsent
                self._stats.add("audio_unsent", unsent)

    def _park(self) -> bool:
        """Wait for a new connection (True) or the end (False)."""
        self._parked.set()
        while not self._stop_requested.is_set():
            if self._resumed.wait(_POLL):
                self._resumed.clear()
                return not self._stop_requested.is_set()
        return False

    def _check(self) -> None:
        if self._stop_requested.is_set() or self._let_go.is_set():
            raise _LetGo()

    def _serve(self) -> None:
        """Write to the current connection until the end command is out (or it fails)."""
        while True:
            self._check()
            if self._liveness.ping_due(time.monotonic()):
                self._ws.write_ping(self._check)
                self._stats.add("pings_sent")
            batch, starved = self._next_batch()
            if not batch:
                if self._keepalive_due():
                    self._write_keepalive()
                continue
            first, replayed = batch[0]
            if isinstance(first, Command):
                self._write_command(first, replayed)
                if first.ends_stream:
                    return
                continue
            if not replayed:
                if not isinstance(first, KeepaliveFrame):
                    self._last_audio = time.monotonic()  # the caller's audio is in hand: not idle
                try:
                    self._pace(starved)
                except _LetGo:
                    self._pending.extendleft(reversed(batch))  # not written: it goes out on the next connection
                    raise
            self._write_audio(batch)

    def _next_batch(self) -> tuple[list[tuple[Item, bool]], bool]:
        """The next items to write in one go, and whether the queue had run dry before them.

        Unpaced audio, and audio being resent, goes out in runs of up to
        :data:`_BATCH_BYTES`; paced audio goes one frame at a time, each at its
        deadline.
        """
        pending = self._pending
        if pending:
            batch = [pending.popleft()]
            first, replayed = batch[0]
            if isinstance(first, bytes) and (replayed or self._speed is None):
                size = len(first)
                while pending:
                    item, again = pending[0]
                    if not (isinstance(item, bytes) and again == replayed) or size + len(item) > _BATCH_BYTES:
                        break
                    batch.append(pending.popleft())
                    size += len(item)
            return batch, False
        starved = self._queue.is_empty()
        items = self._queue.get(self._wait_time(), _BATCH_BYTES if self._speed is None else 0)
        return [(item, False) for item in items], starved

    def _write_audio(self, batch: list[tuple[Item, bool]]) -> None:
        """Write a run of audio frames; if the write fails, the replay buffer has them for the next connection."""
        self._replay.writing(batch)
        self._ws.write_audio([item for item, _ in batch], self._check)  # type: ignore[misc]
        sent = frames = replayed_bytes = keepalive = 0
        for item, replayed in batch:
            size = len(item)  # type: ignore[arg-type]
            if replayed:
                replayed_bytes += size
            elif isinstance(item, KeepaliveFrame):
                keepalive += size
            else:
                sent += size
                frames += 1
        self._audio_bytes_paced += sent + keepalive
        self._last_write = time.monotonic()
        if sent or replayed_bytes:
            self._headway.mark()
        if sent:
            self._last_audio = self._last_write
        self._stats.add_all(
            audio_sent=sent, frames_sent=frames, audio_replayed=replayed_bytes, keepalive_sent=keepalive
        )
        self._replay.wrote()

    def _write_command(self, command: Command, replayed: bool) -> None:
        """Write a command; if the write fails, the replay buffer has it for the next connection."""
        self._replay.writing(((command, replayed),))
        self._ws.write_text(command.text, self._check)
        self._stats.add("commands_sent")
        command.sent.set()
        self._last_write = time.monotonic()
        self._headway.mark()
        self._replay.wrote()

    def _wait_time(self) -> float:
        if self._keepalive_interval is None:
            return _POLL
        due = self._last_write + self._keepalive_interval - time.monotonic()
        return max(0.0, min(_POLL, due))

    def _keepalive_due(self) -> bool:
        return self._keepalive_interval is not None and time.monotonic() - self._last_write >= self._keepalive_interval

    def _write_keepalive(self) -> None:
        logger.debug(
            "no audio for %.1f s; sending %d bytes of silence as keepalive",
            self._keepalive_interval,
            len(self._keepalive_frame),
        )
        self._write_audio([(KeepaliveFrame(self._keepalive_frame), False)])

    def _pace(self, starved: bool) -> None:
        """Wait until this frame's deadline; re-anchor the schedule after a dry queue."""
        if self._speed is None:
            return
        now = time.monotonic()
        audio_time = self._audio_bytes_paced / self._bytes_per_second
        if self._anchor is None:
            self._anchor = now - audio_time / self._speed
            return
        deadline = self._anchor + audio_time / self._speed
        if starved and now > deadline:
            # The caller was late, not us: start a new schedule from this frame.
            self._anchor = now - audio_time / self._speed
            return
        delay = deadline - now
        if delay > 0:
            self._wake.wait(delay)
            self._check()
