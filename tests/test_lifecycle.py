"""The session lifecycle: every state, every allowed move, the refused ones, and the states real sessions go through."""

from __future__ import annotations

import threading

import pytest
from conftest import pcm

import cartesia_sync
from cartesia_sync import SessionState, hookimpl
from cartesia_sync._lifecycle import TRANSITIONS, Lifecycle
from cartesia_sync.testing import Scenario

S = SessionState


def test_every_state_has_its_moves_listed_and_closed_is_final():
    assert set(TRANSITIONS) == set(SessionState)
    assert TRANSITIONS[S.CLOSED] == frozenset()
    for state, targets in TRANSITIONS.items():
        assert state not in targets
    # from every state, CLOSED can be reached
    for state in SessionState:
        seen, todo = {state}, [state]
        while todo:
            for target in TRANSITIONS[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        assert S.CLOSED in seen


def test_close_drains_then_tears_down():
    life = Lifecycle()
    assert life.is_open and life.begin_close(drain=True)
    assert life.state is S.DRAINING and life.closer is threading.current_thread()
    assert not life.begin_close(drain=True)  # one closer only
    life.tear_down()
    assert life.state is S.CLOSING and life.stopping.is_set() and life.close_expected
    life.finish()
    assert life.state is S.CLOSED and life.closed.is_set() and life.hooks_closed


def test_abort_goes_straight_to_closing():
    life = Lifecycle()
    assert life.begin_close(drain=False)
    assert life.state is S.CLOSING


@pytest.mark.parametrize("first", ["fail", "end_by_server"])
def test_a_failed_or_server_ended_session_is_released_by_close(first):
    life = Lifecycle()
    if first == "fail":
        life.fail()
        assert life.state is S.FAILED
    else:
        assert life.end_by_server("idle")
        assert life.state is S.ENDED_BY_SERVER and life.ended_by_server == "idle" and life.close_expected
    assert life.stopping.is_set() and not life.is_open
    assert life.begin_close(drain=True)
    assert life.state is S.CLOSING  # nothing to drain
    life.finish()
    assert life.state is S.CLOSED


def test_a_failure_while_draining_is_a_failure():
    life = Lifecycle()
    life.begin_close(drain=True)
    life.fail()
    assert life.state is S.FAILED
    life.tear_down()
    assert life.state is S.CLOSING


def test_an_abort_while_another_thread_drains_cuts_the_drain_short():
    life = Lifecycle()
    life.begin_close(drain=True)
    life.cut_short()
    assert life.state is S.CLOSING and life.stopping.is_set() and life.close_expected
    life.tear_down()  # the draining thread then tears down as usual
    life.finish()
    assert life.state is S.CLOSED


@pytest.mark.parametrize("first", ["open", "fail", "end_by_server"])
def test_cutting_short_moves_only_a_draining_session(first):
    life = Lifecycle()
    if first == "fail":
        life.fail()
    elif first == "end_by_server":
        life.end_by_server("idle")
    before = life.state
    life.cut_short()
    assert life.state is before and life.stopping.is_set()


def test_moves_that_make_no_sense_do_nothing_or_are_refused():
    life = Lifecycle()
    life.begin_close(drain=True)
    assert not life.end_by_server("late")  # only an open session can be ended by the server
    assert life.state is S.DRAINING
    life.tear_down()
    life.fail()  # a failure during the teardown changes nothing but stops the waits
    assert life.state is S.CLOSING
    life.finish()
    life.finish()  # idempotent
    assert not life.begin_close(drain=True)
    with pytest.raises(RuntimeError, match="cannot go from closed to open"):
        life._move(S.OPEN)


# -- real sessions -----------------------------------------------------------------------------------


class StateAtDone:
    name = "state-at-done"

    def __init__(self):
        self.states = []

    @hookimpl
    def on_done(self, session):
        self.states.append(session.state)

    @hookimpl
    def on_session_end(self, session):
        self.states.append(session.state)


def test_a_session_goes_open_draining_closing_closed(server):
    spy = StateAtDone()
    client = cartesia_sync.Client(url=server.url, plugins=[spy], load_entrypoints=False)
    session = client.connect()
    assert session.state is S.OPEN
    session.send(pcm(0.2))
    session.close()
    assert spy.states == [S.DRAINING, S.CLOSING]
    assert session.state is S.CLOSED and session.closed


@pytest.mark.parametrize("scenario", [Scenario(error_after_bytes=3200)])
def test_a_background_failure_makes_the_session_failed(server):
    client = cartesia_sync.Client(url=server.url, load_entrypoints=False, reconnect=False)
    session = client.connect()
    session.send(pcm(0.2))
    assert session._core.lifecycle.stopping.wait(5)
    assert session.state is S.FAILED
    with pytest.raises(cartesia_sync.ServerError):
        session.close()
    assert session.state is S.CLOSED


def test_an_abort_ends_closed(server):
    session = cartesia_sync.Client(url=server.url, load_entrypoints=False).connect()
    session.abort()
    assert session.state is S.CLOSED


def test_an_idle_close_by_the_server_makes_the_session_ended_by_server():
    from cartesia_sync.testing import FakeCartesia

    with FakeCartesia(idle_timeout=0.5) as fake:
        session = cartesia_sync.Client(url=fake.url, load_entrypoints=False, keepalive_interval=None).connect()
        assert session._core.lifecycle.stopping.wait(5)
        assert session.state is S.ENDED_BY_SERVER and "idle" in session.ended_by_server
        with pytest.raises(cartesia_sync.SessionClosedError):
            session.send(pcm(0.1))
        session.close()
        assert session.state is S.CLOSED
