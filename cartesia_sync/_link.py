"""The link: a session's current connection, its replay buffer, and where its audio starts on the session's clock.

A session outlives its connections when it reconnects. The link is the one
place that says which connection is current, so that every thread that must
shut a socket (the teardown, a failing sender, the receiver's watchdog) shuts
the right one, and no new connection is installed once the session ends.
"""

from __future__ import annotations

import threading

from ._replay import Replay, ReplayBuffer
from ._stats import StatsCounter
from ._wire import WireConnection
from .errors import CartesiaSyncError

__all__ = ["Link"]


class Link:
    """The current connection of one session. Thread-safe.

    :param ws: the first connection.
    :param replay_bytes: the most unacknowledged audio each replay buffer keeps.
    :param sample_bytes: bytes per sample of the wire encoding.
    :param bytes_per_second: of the wire audio.
    :param stats: where the acknowledged audio is counted.
    """

    def __init__(
        self, ws: WireConnection, replay_bytes: int, sample_bytes: int, bytes_per_second: int, stats: StatsCounter
    ) -> None:
        self._lock = threading.Lock()
        self._replay_args = (replay_bytes, sample_bytes, bytes_per_second)
        self._stats = stats
        self.ws = ws
        self.replay = ReplayBuffer(*self._replay_args)
        self.base = 0  # bytes of session audio before this connection's first byte
        self.connecting: WireConnection | None = None  # a handshake in progress, to interrupt at teardown
        self._error: CartesiaSyncError | None = None
        self.ended = False  # the current connection's reader has reached its end
        self._closed = False

    @property
    def error(self) -> CartesiaSyncError | None:
        """Why the current connection is being dropped: by this side, or because the server broke the protocol."""
        return self._error or self.ws.failure

    @error.setter
    def error(self, error: CartesiaSyncError | None) -> None:
        self._error = error

    def count_acknowledged(self) -> None:
        """The replay buffer's acknowledged point moved: count it on the session's clock."""
        self._stats.raise_to("audio_acknowledged", self.base + self.replay.acknowledged)

    def peer_ended(self) -> None:
        """The current connection's reader reached its end (a close frame, or the stream ended).

        Called before the socket is shut, so that a write failing because of
        that shut is not taken for the cause: the reader reports the real one.
        """
        self.ended = True

    def drop(self, error: CartesiaSyncError) -> None:
        """Give up on the current connection because of ``error``: its reader will see it end."""
        if self.error is None:
            self.error = error
        self.ws.shutdown()

    def new_socket(self, ws: WireConnection) -> bool:
        """A handshake is about to start on ``ws``; False (and nothing kept) once the link is closed."""
        with self._lock:
            self.connecting = None if self._closed else ws
            return not self._closed

    def switch(self, ws: WireConnection, replay: Replay) -> ReplayBuffer | None:
        """Make ``ws`` current; its audio starts where ``replay`` resumes. ``None`` once the link is closed."""
        with self._lock:
            self.connecting = None
            if self._closed:
                ws.shutdown()
                return None
            ws.write_patience = self.ws.write_patience
            self.ws = ws
            self.base += replay.resume_at
            self.replay = ReplayBuffer(*self._replay_args)
            self.error = None
            self.ended = False
            return self.replay

    def send_close_frame(self) -> None:
        """Start the close handshake on the current connection; never raises."""
        self.ws.send_close()

    def stop_switching(self) -> None:
        """The session is ending: interrupt any handshake in progress and install nothing more."""
        with self._lock:
            self._closed = True
            connecting, self.connecting = self.connecting, None
        if connecting is not None:
            connecting.shutdown()

    def close(self) -> None:
        """Shut the current connection and any handshake in progress; install nothing more."""
        self.stop_switching()
        self.ws.shutdown()
