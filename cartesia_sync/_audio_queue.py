"""The bounded queue between callers of ``send()`` and the sender thread.

It holds audio frames and control commands in one FIFO, so commands go out in
order with the audio. Its capacity is counted in bytes of audio (the session
turns seconds into bytes); commands never count and are never dropped. When
it is full, the policy decides: ``"block"`` makes the caller wait (with a
timeout), ``"drop_oldest"`` discards the oldest queued audio and counts it.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

from .errors import SessionClosedError, StreamTimeout

__all__ = ["AudioFrame", "KeepaliveFrame", "Command", "AudioQueue", "INTERRUPT_POLL", "acquire_interruptibly"]

#: The longest a caller's thread blocks in one go, so that a pending Ctrl-C is raised within this long.
INTERRUPT_POLL = 0.2


def acquire_interruptibly(lock: threading.Lock, timeout: float) -> bool:
    """``lock.acquire(timeout=timeout)`` in slices of :data:`INTERRUPT_POLL`, for the same reason."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if lock.acquire(timeout=max(0.0, min(remaining, INTERRUPT_POLL))):
            return True
        if remaining <= INTERRUPT_POLL:
            return False


#: One binary frame of wire-format audio is plain ``bytes``, on purpose: the garbage collector does
#: not track bytes, and a process with hundreds of sessions holds hundreds of thousands of frames
#: (queued, or kept for a replay). As tracked objects they drive CPython into full collections of
#: 100 ms and more, which every paced session then feels as a late frame.
AudioFrame = bytes


class KeepaliveFrame(bytes):
    """A frame of silence the session made up to keep an idle connection open: sent as audio, counted apart."""

    __slots__ = ()


@dataclass
class Command:
    """A text command (``finalize``, ``done`` or ``close``).

    ``sent`` is set once it is on the wire; ``answered`` once the server
    answered it (``flush_done`` or ``done``), so a reconnect never resends it.
    ``ends_stream`` marks the end command (the sender writes nothing after it);
    ``expects_answer`` a command the server answers with a message of its own
    (``finalize``: ``flush_done``), which acknowledges the audio before it.
    """

    text: str
    ends_stream: bool = False
    expects_answer: bool = False
    sent: threading.Event = field(default_factory=threading.Event)
    answered: bool = False


Item = AudioFrame | Command  # audio is bytes (a KeepaliveFrame is bytes too); anything else is a command


class AudioQueue:
    """A FIFO of frames and commands, bounded in bytes of audio.

    :param capacity: the most bytes of audio it holds.
    :param policy: ``"block"`` or ``"drop_oldest"`` (validated by :class:`~cartesia_sync.SessionOptions`).
    """

    def __init__(self, capacity: int, policy: str = "block") -> None:
        self._items: collections.deque[Item] = collections.deque()
        self._capacity = max(1, capacity)
        self._policy = policy
        self._audio_bytes = 0
        self._dropped_bytes = 0
        self._closed: str | None = None
        self._lock = lock = threading.Lock()
        # Two conditions on one lock, and wake-ups only when someone waits: a full buffer wakes
        # its producers once it has drained to the low-water mark, not once per frame, which
        # saves a thread switch per frame when a file streams faster than the socket.
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)
        self._low_water = self._capacity // 2
        self._consumer_waiting = False
        self._producers_waiting = 0

    @property
    def audio_bytes(self) -> int:
        """Bytes of audio waiting to be sent."""
        return self._audio_bytes

    @property
    def dropped_bytes(self) -> int:
        """Bytes of audio discarded by the ``drop_oldest`` policy so far."""
        return self._dropped_bytes

    def is_empty(self) -> bool:
        """True when nothing at all is queued."""
        return not self._items

    def put_audio(self, data: bytes, timeout: float) -> int:
        """Queue one frame of audio.

        :returns: the number of bytes dropped to make room (``drop_oldest``).
        :raises StreamTimeout: ``block`` policy, and no room came within ``timeout`` seconds.
        :raises SessionClosedError: the queue was closed (the session ended).
        """
        if not isinstance(data, bytes):  # a frame must not change after it is queued
            data = bytes(data)
        size = len(data)
        dropped = 0
        deadline: float | None = None
        with self._lock:  # the lock both conditions share
            self._check_open()
            while self._audio_bytes and self._audio_bytes + size > self._capacity:
                if self._policy == "drop_oldest":
                    dropped += self._drop_oldest_audio()
                    continue
                if deadline is None:
                    deadline = time.monotonic() + timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StreamTimeout(
                        f"the send buffer ({self._capacity} bytes of audio) stayed full for {timeout:g} s: "
                        "the connection is not taking audio as fast as it is produced; raise send_timeout or "
                        "max_buffer_seconds, or use buffer_policy='drop_oldest' for live sources"
                    )
                self._producers_waiting += 1
                try:
                    # In slices: a Ctrl-C that the terminal delivered to another thread only reaches the
                    # main thread when it runs Python code again, so a long wait here would delay it.
                    self._not_full.wait(min(remaining, INTERRUPT_POLL))
                finally:
                    self._producers_waiting -= 1
                self._check_open()
            self._items.append(data)
            self._audio_bytes += size
            if self._consumer_waiting:
                self._not_empty.notify()
        return dropped

    def put_command(self, command: Command) -> None:
        """Queue a command after everything already queued. Never blocks.

        :raises SessionClosedError: the queue was closed.
        """
        with self._lock:
            self._check_open()
            self._items.append(command)
            self._not_empty.notify()

    def get(self, timeout: float, max_audio_bytes: int = 0) -> list[Item]:
        """Take the next item, and the audio frames right behind it up to ``max_audio_bytes`` in all.

        Waits up to ``timeout`` seconds for something to arrive. A command
        always comes alone; audio comes as a run of frames (at least one), so
        that a deep queue can go out in few writes.

        :returns: the items, oldest first; empty if none came or the queue closed.
        """
        with self._lock:
            if not self._items and self._closed is None:
                self._consumer_waiting = True
                try:
                    self._not_empty.wait(timeout)
                finally:
                    self._consumer_waiting = False
            if not self._items or self._closed is not None:
                return []
            items = self._items
            first = items.popleft()
            if not isinstance(first, bytes):
                return [first]
            taken: list[Item] = [first]
            size = len(first)
            while items:
                following = items[0]
                if not isinstance(following, bytes) or size + len(following) > max_audio_bytes:
                    break
                taken.append(items.popleft())
                size += len(following)
            self._audio_bytes -= size
            if self._producers_waiting and (self._audio_bytes <= self._low_water or not items):
                self._not_full.notify_all()
            return taken

    def close(self, reason: str) -> int:
        """Refuse further items, wake every waiter, and discard what is queued.

        :returns: bytes of audio that were still queued (never sent).
        """
        with self._lock:
            if self._closed is None:
                self._closed = reason
            unsent = self._audio_bytes
            self._items.clear()
            self._audio_bytes = 0
            self._not_empty.notify_all()
            self._not_full.notify_all()
            return unsent

    def _check_open(self) -> None:
        if self._closed is not None:
            raise SessionClosedError(self._closed)

    def _drop_oldest_audio(self) -> int:
        for index, item in enumerate(self._items):
            if isinstance(item, bytes):
                del self._items[index]
                self._audio_bytes -= len(item)
                self._dropped_bytes += len(item)
                return len(item)
        return 0  # pragma: no cover - only reached when no audio is queued, which the caller excludes
