"""How long a server asked to wait: the ``Retry-After-Ms`` and ``Retry-After`` header fields, in seconds."""

from __future__ import annotations

import email.utils
import time

__all__ = ["retry_after_seconds"]


def retry_after_seconds(millis: str | None, value: str | None) -> float | None:
    """Seconds from ``Retry-After-Ms`` (preferred) or ``Retry-After`` (seconds or an HTTP date), or ``None``."""
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
