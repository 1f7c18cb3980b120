"""FairLock: hands the lock to the lightest waiter, times out cleanly; RecentUse fades."""

from __future__ import annotations

import threading
import time

import pytest

from cartesia_sync.local._fair_lock import FairLock, RecentUse

pytestmark = pytest.mark.timeout(30)


def test_the_lightest_waiter_goes_first_then_arrival_order():
    lock = FairLock()
    assert lock.acquire()
    order: list[str] = []
    threads = []
    for name, weight in [("heavy", 100.0), ("light-1", 1.0), ("mid", 50.0), ("light-2", 1.0)]:

        def take(name: str = name, weight: float = weight) -> None:
            assert lock.acquire(timeout=10, weight=weight)
            order.append(name)
            lock.release()

        thread = threading.Thread(target=take)
        thread.start()
        threads.append(thread)
        time.sleep(0.05)  # arrive in this order
    lock.release()
    for thread in threads:
        thread.join(10)
    assert order == ["light-1", "light-2", "mid", "heavy"]
    assert not lock.locked()


def test_a_holder_that_releases_and_takes_again_at_once_lets_the_waiter_in_first():
    lock = FairLock()
    lock.acquire()
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (lock.acquire(timeout=10), got.set(), lock.release()))
    waiter.start()
    time.sleep(0.05)
    lock.release()
    assert lock.acquire(timeout=10)  # queued behind the waiter, who was handed the lock
    assert got.is_set()
    lock.release()
    waiter.join(10)


def test_a_timed_out_waiter_leaves_no_trace():
    lock = FairLock()
    lock.acquire()
    started = time.monotonic()
    assert lock.acquire(timeout=0.2) is False
    assert 0.15 < time.monotonic() - started < 2.0
    lock.release()
    assert not lock.locked()
    assert lock.acquire(timeout=0.5)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_recent_use_fades_with_its_half_life():
    use = RecentUse(half_life=0.2)
    assert use.add(100) == pytest.approx(100, abs=1)
    time.sleep(0.4)
    assert use.add(0) < 40  # two half-lives: about 25
