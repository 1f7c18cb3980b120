"""The error bookkeeping of a session: the errors reported, the one that ended it, and those not raised yet.

Memory stays bounded however many errors a session sees (a server flooding it
with junk frames makes one ``ProtocolError`` each): the first
:data:`KEPT_ERRORS` are kept, then only the most recent one, and the
session's stats count them all (``errors_reported``). The error that ended
the session is always kept.
"""

from __future__ import annotations

import threading

from ._stats import StatsCounter
from .errors import CartesiaSyncError, PluginError, ProtocolError, SessionClosedError

__all__ = ["ErrorBook", "KEPT_ERRORS"]

#: How many errors a session keeps (and queues for raising) before it keeps only the latest one.
KEPT_ERRORS = 100


class ErrorBook:
    """Keeps a session's errors so that each reaches the caller exactly once.

    :param stats: counts protocol and plugin errors.
    :param raise_errors: when false, nothing is ever handed out for raising;
        the errors are still kept in :attr:`errors`.
    :param keep: how many errors to keep before keeping only the latest.
    """

    def __init__(self, stats: StatsCounter, raise_errors: bool = True, keep: int = KEPT_ERRORS) -> None:
        self._stats = stats
        self._lock = threading.Lock()
        self._raise = raise_errors
        self._keep = keep
        self._errors: list[CartesiaSyncError] = []  # the first ``keep``
        self._latest: CartesiaSyncError | None = None  # the most recent after those
        self._unraised: list[CartesiaSyncError] = []  # at most ``keep``, plus the failure
        self.failure: CartesiaSyncError | None = None

    @property
    def errors(self) -> tuple[CartesiaSyncError, ...]:
        """The errors reported, in order: the first :data:`KEPT_ERRORS`, the failure, and the latest one."""
        with self._lock:
            kept = list(self._errors)
            failure, latest = self.failure, self._latest
        if failure is not None and not any(error is failure for error in kept):
            kept.append(failure)
        if latest is not None and latest is not failure:
            kept.append(latest)
        return tuple(kept)

    def record(self, error: CartesiaSyncError, *, fatal: bool = False, raised: bool = False) -> bool:
        """Keep ``error``; a fatal one becomes :attr:`failure` unless one is already set.

        :param raised: the caller raises it itself, so it is not handed out again.
        :returns: False when ``fatal`` and the session had already failed (the error is then ignored).
        """
        with self._lock:
            if fatal:
                if self.failure is not None:
                    return False
                self.failure = error
            if len(self._errors) < self._keep:
                self._errors.append(error)
            else:
                self._latest = error
            if self._raise and not raised and (fatal or len(self._unraised) < self._keep):
                self._unraised.append(error)
        self._stats.add("errors_reported")
        if isinstance(error, ProtocolError):
            self._stats.add("protocol_errors")
        elif isinstance(error, PluginError):
            self._stats.add("plugin_errors")
        return True

    def keep(self, error: CartesiaSyncError) -> None:
        """Keep an error that does not end the session."""
        self.record(error)

    def raise_next(self, fatal_only: bool = False) -> None:
        """Raise the error :meth:`take` hands out, if any."""
        error = self.take(fatal_only)
        if error is not None:
            raise error

    def closed_error(self, state: str) -> CartesiaSyncError:
        """The error for using a session that is no longer open; chained to the failure, if any."""
        if self.failure is not None:
            error = SessionClosedError(f"the session ended because of an error: {self.failure}")
            error.__cause__ = self.failure
            return error
        return SessionClosedError(f"the session is {state}; open a new one with client.connect()")

    def take(self, fatal_only: bool = False) -> CartesiaSyncError | None:
        """Hand out the next error to raise and forget it: the failure first, then the others in order.

        :param fatal_only: hand out only the error that ended the session.
        """
        if not self._unraised:  # the common case, checked without the lock: nothing to hand out
            return None
        with self._lock:
            if self.failure is not None and self.failure in self._unraised:
                self._unraised.remove(self.failure)
                return self.failure
            if fatal_only or not self._unraised:
                return None
            return self._unraised.pop(0)
