"""The sender thread: takes frames and commands off the queue and writes them, paced.

Pacing is deadline-based on the monotonic clock: the frame that starts at
audio time ``a`` (seconds of audio already sent) leaves at ``t0 + a / speed``,
so no drift accumulates however long the session runs. When the queue runs
dry (a live source that is slower than the clock, or a caller that paused), the
schedule is re-anchored instead of bursting to catch up. When nothing has been
sent for ``keepalive_interval`` seconds, one frame of silence goes out so that
the server does not close the idle socket.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

import websocket

from .audio_queue import AudioFrame, AudioQueue, Command
from .errors import ConnectionLostError
from .stats import StatsCounter
from .transport import send_binary

__all__ = ["Sender"]

logger = logging.getLogger(__name__)

#: How long the sender sleeps at most between looks at its stop flag.
_POLL = 0.25


class Sender(threading.Thread):
    """Owns the writing side of one connection.

    :param ws: the open WebSocket; only this thread writes data frames to it.
    :param queue: where frames and commands come from.
    :param stats: counters to update.
    :param bytes_per_second: of the wire audio, to turn bytes into seconds.
    :param speed: pacing factor (1.0 = real time), or ``None`` for unpaced.
    :param keepalive_interval: seconds without sending after which a frame of
        silence goes out; ``None`` to never send one.
    :param keepalive_frame: the silence to send.
    :param on_failure: called once with a :class:`ConnectionLostError` when a
        write fails while the session still needed the connection.
    """

    def __init__(
        self,
        ws: websocket.WebSocket,
        queue: AudioQueue,
        stats: StatsCounter,
        *,
        bytes_per_second: int,
        speed: Optional[float],
        keepalive_interval: Optional[float],
        keepalive_frame: bytes,
        on_failure: Callable[[ConnectionLostError], None],
        name: str = "cartesia-sync-sender",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._ws = ws
        self._queue = queue
        self._stats = stats
        self._bytes_per_second = bytes_per_second
        self._speed = speed
        self._keepalive_interval = keepalive_interval
        self._keepalive_frame = keepalive_frame
        self._on_failure = on_failure
        self._stop_requested = threading.Event()
        self._anchor: Optional[float] = None  # monotonic time at which audio time 0 was due
        self._audio_bytes_paced = 0
        self._last_write = time.monotonic()
        self._holding = 0  # bytes of the audio frame taken off the queue and not yet written

    def stop(self) -> None:
        """Ask the thread to end soon; it does not send anything more."""
        self._stop_requested.set()

    def run(self) -> None:
        try:
            self._loop()
        except (websocket.WebSocketException, OSError) as exc:
            if not self._stop_requested.is_set():
                self._on_failure(ConnectionLostError(f"sending failed, the connection is gone: {exc}"))
        except BaseException as exc:  # a bug here must not vanish with the thread
            logger.exception("the sender thread failed")
            self._on_failure(ConnectionLostError(f"the sender thread failed: {type(exc).__name__}: {exc}"))
        finally:
            if self._holding:  # taken off the queue but never written: it counts as unsent
                self._stats.add("audio_unsent", self._holding)

    def _loop(self) -> None:
        while not self._stop_requested.is_set():
            starved = self._queue.is_empty()
            item = self._queue.get(self._wait_time())
            if isinstance(item, AudioFrame):
                self._holding = len(item.data)
            if self._stop_requested.is_set():
                return
            if item is None:
                if self._keepalive_due():
                    self._write_keepalive()
                continue
            if isinstance(item, AudioFrame):
                self._pace(starved)
                if self._stop_requested.is_set():
                    return
                send_binary(self._ws, item.data)
                self._holding = 0
                self._after_write(len(item.data))
                self._stats.add("audio_sent", len(item.data))
                self._stats.add("frames_sent")
            else:
                self._write_command(item)
                if item.text != "finalize":
                    return

    def _wait_time(self) -> float:
        if self._keepalive_interval is None:
            return _POLL
        due = self._last_write + self._keepalive_interval - time.monotonic()
        return max(0.0, min(_POLL, due))

    def _keepalive_due(self) -> bool:
        return (
            self._keepalive_interval is not None
            and time.monotonic() - self._last_write >= self._keepalive_interval
        )

    def _write_keepalive(self) -> None:
        logger.debug("no audio for %.1f s; sending %d bytes of silence as keepalive",
                     self._keepalive_interval, len(self._keepalive_frame))
        send_binary(self._ws, self._keepalive_frame)
        self._after_write(len(self._keepalive_frame))
        self._stats.add("keepalive_sent", len(self._keepalive_frame))

    def _write_command(self, command: Command) -> None:
        self._ws.send(command.text, websocket.ABNF.OPCODE_TEXT)
        self._last_write = time.monotonic()
        self._stats.add("commands_sent")
        command.sent.set()

    def _after_write(self, nbytes: int) -> None:
        self._audio_bytes_paced += nbytes
        self._last_write = time.monotonic()

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
            self._stop_requested.wait(delay)
