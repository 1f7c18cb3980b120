"""A lock that serves the lightest user first, with a timeout on acquiring.

Several streams share one pocketsphinx worker process, one request at a time.
With :class:`threading.Lock` the thread that just released the lock usually
takes it again before a waiter wakes up, so a stream fed without pause (a
client sending audio far faster than real time) kept the worker to itself
and another stream's ``finalize`` waited for seconds. Here ``release`` hands
the lock straight to a waiter: the one with the smallest ``weight`` (the
caller's recent use of what the lock guards), the earliest among equals. A
client paced at real time therefore waits for at most the request in
progress, however many clients flood the same worker. The standard library
has no such lock (``threading.Lock`` makes no ordering promise).
"""

from __future__ import annotations

import itertools
import math
import threading
import time

__all__ = ["FairLock", "RecentUse"]


class FairLock:
    """A non-reentrant lock handed over to the lightest waiter."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locked = False
        self._waiters: dict[threading.Event, tuple[float, int]] = {}
        self._arrivals = itertools.count()

    def acquire(self, timeout: float = -1, weight: float = 0.0) -> bool:
        """Take the lock; False if it was not handed over within ``timeout`` seconds (negative: wait forever)."""
        with self._mutex:
            if not self._locked and not self._waiters:
                self._locked = True
                return True
            turn = threading.Event()
            self._waiters[turn] = (weight, next(self._arrivals))
        if turn.wait(None if timeout < 0 else timeout):
            return True
        with self._mutex:
            if turn.is_set():  # handed over just as the wait timed out: it is ours now
                return True
            del self._waiters[turn]
            return False

    def release(self) -> None:
        """Hand the lock to the lightest waiter, or free it."""
        with self._mutex:
            if not self._locked:
                raise RuntimeError("release of an unlocked FairLock")
            if self._waiters:
                turn = min(self._waiters, key=self._waiters.__getitem__)
                del self._waiters[turn]
                turn.set()  # stays locked: ownership passes to that waiter
            else:
                self._locked = False

    def locked(self) -> bool:
        with self._mutex:
            return self._locked


class RecentUse:
    """An amount that fades with time (half of it is gone after ``half_life`` seconds): a stream's recent load."""

    def __init__(self, half_life: float = 5.0) -> None:
        self._rate = math.log(2) / half_life
        self._value = 0.0
        self._when = time.monotonic()

    def add(self, amount: float) -> float:
        """Add ``amount`` now; returns the faded total."""
        now = time.monotonic()
        self._value = self._value * math.exp(-self._rate * (now - self._when)) + amount
        self._when = now
        return self._value
