"""The replay buffer: what was written on one connection and the server has not acknowledged yet.

A reconnect resends it, so that no audio is lost when a connection dies with
results still in flight. The server acknowledges audio three ways: a
``flush_done`` covers everything written before its ``finalize``, ``done``
covers everything, and a final transcript covers the audio up to the end of
its last word. What lies before the acknowledged point is forgotten; what
lies after it is kept, up to a bound, oldest forgotten first.

Positions are bytes of audio written on the connection, keepalive silence
included: the server hears that silence too, and its word times count it.
An item is kept *before* it is written: the server may answer it before the
write call returns, and its answer must find it here. An item whose write did
not complete is resent as a first send, not as a replay.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ._audio_queue import Command, Item, KeepaliveFrame

__all__ = ["ReplayBuffer", "Replay"]


@dataclass(frozen=True)
class Replay:
    """What a new connection must be sent first, taken from the old connection's buffer.

    :ivar items: audio frames and unanswered commands, in their original order,
        each with ``True`` when it had gone out in full before (a replay) and
        ``False`` when its first write never completed.
    :ivar resume_at: the old connection's position at which the first replayed
        audio starts; the new connection's time zero.
    :ivar acknowledged: the old connection's acknowledged position.
    :ivar gap: bytes between ``acknowledged`` and ``resume_at``: audio that
        had been let go because of the bound and cannot be resent.
    """

    items: tuple[tuple[Item, bool], ...]
    resume_at: int
    acknowledged: int

    @property
    def gap(self) -> int:
        """Bytes of unacknowledged audio that cannot be resent."""
        return max(0, self.resume_at - self.acknowledged)

    @property
    def first_send_bytes(self) -> int:
        """Bytes of audio in :attr:`items` whose first write never completed."""
        return sum(len(item) for item, replayed in self.items if not replayed and isinstance(item, bytes))

    @property
    def replayed_bytes(self) -> int:
        """Bytes of audio in :attr:`items` that had gone out in full before."""
        return sum(len(item) for item, replayed in self.items if replayed and isinstance(item, bytes))


class ReplayBuffer:
    """The unacknowledged tail of one connection. Thread-safe: the sender writes, the receiver acknowledges.

    :param limit: the most bytes of audio kept.
    :param sample_bytes: bytes per sample of the wire encoding; acknowledged
        positions from word times are rounded to whole samples.
    :param bytes_per_second: of the wire audio, to turn word times into positions.
    """

    def __init__(self, limit: int, sample_bytes: int, bytes_per_second: int) -> None:
        self._lock = threading.Lock()
        self._limit = max(1, limit)
        self._sample_bytes = sample_bytes
        self._bytes_per_second = bytes_per_second
        # The kept items themselves, no wrapper per item: a busy process keeps many thousands of frames
        # here for seconds, and a new tracked object per frame pushes the garbage collector into full
        # collections (pauses of 100 ms and more with hundreds of sessions). Positions follow from ``_head``.
        self._items: deque[Item] = deque()
        self._head = 0  # the position at which the first kept item was written
        self._carried: list[Command] = []  # unanswered commands whose audio the bound let go
        self._in_flight: Sequence[tuple[Item, bool]] = ()  # the batch whose write has not completed
        self._unanswered: deque[tuple[int, Command]] = deque()  # finalize commands awaiting flush_done
        self._written = 0
        self._acknowledged = 0

    @property
    def written(self) -> int:
        """Bytes of audio written on the connection."""
        return self._written

    @property
    def acknowledged(self) -> int:
        """The position up to which the server confirmed its results."""
        return self._acknowledged

    def writing(self, batch: Sequence[tuple[Item, bool]]) -> None:
        """Keep the items the sender is about to write, each with ``True`` when it goes out again.

        :meth:`wrote` follows once all of them went out.
        """
        with self._lock:
            self._in_flight = batch
            for item, _ in batch:
                self._items.append(item)
                if isinstance(item, bytes):
                    self._written += len(item)
                elif item.expects_answer:
                    self._unanswered.append((self._written, item))
            self._let_go_beyond_limit()

    def unfinished_first_sends(self) -> int:
        """Bytes of the caller's audio in a write that never completed and was not taken for a new connection.

        The sender counts them as unsent when it ends: they are neither sent nor replayed.
        """
        with self._lock:
            return sum(
                len(item)
                for item, replayed in self._in_flight
                if isinstance(item, bytes) and not replayed and not isinstance(item, KeepaliveFrame)
            )

    def wrote(self) -> None:
        """The items given to :meth:`writing` went out in full."""
        self._in_flight = ()

    def word_end(self, seconds: float) -> None:
        """A final transcript's last word ended ``seconds`` after the connection's first audio."""
        samples = round(seconds * self._bytes_per_second / self._sample_bytes)
        with self._lock:
            self._acknowledge(min(self._written, samples * self._sample_bytes))

    def flush_done(self) -> None:
        """The oldest unanswered ``finalize`` was answered: everything before it is transcribed."""
        with self._lock:
            if self._unanswered:
                position, command = self._unanswered.popleft()
                command.answered = True
                self._acknowledge(position)

    def acknowledge_written(self) -> None:
        """Everything written so far is done with (a turn ended on the turns endpoint)."""
        with self._lock:
            self._acknowledge(self._written)

    def done(self) -> None:
        """The end command was answered: everything written is transcribed."""
        with self._lock:
            for command in self._carried + [item for item in self._items if isinstance(item, Command)]:
                command.answered = True
            self._unanswered.clear()
            self._carried.clear()
            self._acknowledge(self._written)

    def take(self) -> Replay:
        """Everything a new connection must be sent again; the buffer is left empty."""
        with self._lock:
            # The batch being written is always the newest part of what is kept (only the oldest items
            # are ever let go), so its items line up with the end of the buffer.
            first_in_flight = len(self._items) - len(self._in_flight)
            items: list[tuple[Item, bool]] = [(command, True) for command in self._carried if not command.answered]
            resume_at = self._written
            end = self._head
            for index, item in enumerate(self._items):
                # False: its first write never completed
                replayed = self._in_flight[index - first_in_flight][1] if index >= first_in_flight else True
                if isinstance(item, Command):
                    if not item.answered:
                        items.append((item, replayed))
                    continue
                position, end = end, end + len(item)
                if end <= self._acknowledged:
                    continue
                if position < self._acknowledged:  # the acknowledged point falls inside this frame
                    item = item[self._acknowledged - position :]
                    position = self._acknowledged
                resume_at = min(resume_at, position)
                items.append((item, replayed))
            replay = Replay(tuple(items), resume_at, self._acknowledged)
            self._items.clear()
            self._head = self._written
            self._carried.clear()
            self._in_flight = ()
            return replay

    def _acknowledge(self, position: int) -> None:
        if position <= self._acknowledged:
            return
        self._acknowledged = position
        while self._items:
            item = self._items[0]
            if isinstance(item, Command):
                if not item.answered:
                    return
            elif self._head + len(item) > position:
                return
            else:
                self._head += len(item)
            self._items.popleft()

    def _let_go_beyond_limit(self) -> None:
        while self._written - self._head > self._limit and self._items:  # audio kept beyond the bound
            item = self._items.popleft()
            if isinstance(item, Command):
                self._carried.append(item)  # it still needs its answer: it goes first in a replay
            else:
                self._head += len(item)
