"""The concurrency gates of a many-file run: what each transcription attempt holds while it runs.

:class:`AdaptiveLimit` (one process) lets at most ``ceiling`` attempts run and
slows down while the server pushes back: a 429 halves the limit (at most once
a second, so one burst of refusals is one step), and each run of successes as
long as the limit raises it by one again, up to the ceiling (additive
increase, multiplicative decrease, as TCP does). :class:`ClusterGate` holds a
lease of a ``distributed.Semaphore``, so the cap holds across every worker of
a Dask cluster; an attempt refused with 429 keeps its lease while it waits, so
the whole cluster runs one connection fewer for each source backing off, and
gets them back as the refusals stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Gate", "AdaptiveLimit", "ClusterGate", "OpenGate"]

#: The shortest time between two decreases of the limit.
_DECREASE_EVERY = 1.0
#: How often a waiting attempt looks at the stop flag.
_POLL = 0.2


class Gate(Protocol):
    """What an attempt holds while it runs."""

    def acquire(self, stop: threading.Event | None) -> bool: ...

    def release(self, ok: bool) -> None: ...

    def rate_limited(self, wait: Callable[[], None]) -> None:
        """The holder's attempt was refused with 429: it waits ``wait()`` and gives its place back."""
        ...


class AdaptiveLimit:
    """At most ``limit`` holders at once; ``limit`` moves between 1 and ``ceiling`` with the server's pushback."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self.in_flight = 0
        self.peak = 0
        self._successes = 0
        self._decreased_at = float("-inf")
        self._condition = threading.Condition()

    def acquire(self, stop: threading.Event | None) -> bool:
        """Wait for a place; False when ``stop`` was set first."""
        with self._condition:
            while self.in_flight >= self.limit:
                if stop is not None and stop.is_set():
                    return False
                self._condition.wait(_POLL)
            if stop is not None and stop.is_set():
                return False
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return True

    def release(self, ok: bool) -> None:
        """Give the place back; a success counts towards raising the limit."""
        with self._condition:
            self.in_flight -= 1
            if ok and self.limit < self.ceiling:
                self._successes += 1
                if self._successes >= self.limit:
                    self.limit += 1
                    self._successes = 0
            self._condition.notify_all()

    def rate_limited(self, wait: Callable[[], None]) -> None:
        """Give the place back, halve the limit (once per burst of refusals), then wait."""
        self.release(False)
        self.pushed_back()
        wait()

    def pushed_back(self) -> None:
        """The server refused with 429: halve the limit (once per burst)."""
        with self._condition:
            now = time.monotonic()
            if now - self._decreased_at >= _DECREASE_EVERY:
                self._decreased_at = now
                self.limit = max(1, self.limit // 2)
                self._successes = 0


class ClusterGate:
    """A lease of a Dask ``distributed.Semaphore`` (by name, so it pickles to any worker)."""

    def __init__(self, name: str, max_leases: int) -> None:
        self.name = name
        self.max_leases = max_leases
        self._semaphore: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "max_leases": self.max_leases}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name = state["name"]
        self.max_leases = state["max_leases"]
        self._semaphore = None

    def _get(self) -> Any:
        if self._semaphore is None:
            from distributed import Semaphore

            self._semaphore = Semaphore(max_leases=self.max_leases, name=self.name)  # type: ignore[no-untyped-call]
        return self._semaphore

    def acquire(self, stop: threading.Event | None) -> bool:
        while not self._get().acquire(timeout=_POLL * 5):
            if stop is not None and stop.is_set():
                return False
        return True

    def release(self, ok: bool) -> None:
        self._get().release()

    def rate_limited(self, wait: Callable[[], None]) -> None:
        """Wait with the lease held: while the server pushes back, the cluster runs fewer connections."""
        try:
            wait()
        finally:
            self.release(False)


class OpenGate:
    """No gate, for an executor of other processes that is not Dask: there the caller keeps at most
    ``max_concurrency`` tasks submitted at once, which caps the connections as well."""

    def acquire(self, stop: threading.Event | None) -> bool:
        return not (stop is not None and stop.is_set())

    def release(self, ok: bool) -> None:
        """Nothing to give back."""

    def rate_limited(self, wait: Callable[[], None]) -> None:
        """Each attempt backs off on its own."""
        wait()
