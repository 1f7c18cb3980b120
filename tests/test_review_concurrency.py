"""Review of the session core under concurrency: close/abort/finalize/send from several threads,
stalled and abrupt servers, slow hooks, KeyboardInterrupt, error bookkeeping and stats.

Every test runs against a real loopback server (the fake Cartesia server, a subclass of it, or a
raw socket server below); nothing of websocket-client is mocked. Two tests replace the
intake's lock with a gated lock, only to force one interleaving of two threads that the
library allows but that a test could not otherwise reach deterministically.

Timing bounds are loose on purpose.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import HandlerServer, pcm, record_then, session_threads, short_facts
from hostile_server import upgrade_answer

import cartesia_sync
from cartesia_sync import (
    ConnectError,
    ConnectionLostError,
    FlushDone,
    ProtocolError,
    ServerError,
    SessionClosedError,
    StreamTimeout,
    hookimpl,
)
from cartesia_sync.testing import Scenario

# -- helpers ------------------------------------------------------------------------------


class Call(threading.Thread):
    """Run ``fn`` on its own thread and keep its result or exception and when it ended."""

    def __init__(self, fn: Callable[[], Any], name: str = "review-call") -> None:
        super().__init__(name=name, daemon=True)
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt is one of the cases
            self.error = exc
        finally:
            self.ended_at = time.monotonic()


def started(fn: Callable[[], Any], name: str = "review-call") -> Call:
    call = Call(fn, name)
    call.start()
    return call


def interrupt(thread: threading.Thread, exc_type: type = KeyboardInterrupt) -> None:
    """Raise ``exc_type`` asynchronously in ``thread``, as Ctrl-C does in the main thread."""
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))
    assert hit == 1


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def client_for(url: str, plugins=(), **kwargs: Any) -> cartesia_sync.Client:
    return cartesia_sync.Client(url=url, plugins=list(plugins), load_entrypoints=False, **kwargs)


class GatedLock:
    """Stands in for the intake's lock; threads in ``held_back`` wait for ``gate`` before taking it.

    This only reorders two lock acquisitions that the library already allows to happen in
    either order (for example behind a ``send()`` that is blocked on a full buffer).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.gate = threading.Event()
        self.waiting = threading.Event()
        self.held_back: set = set()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if threading.current_thread() in self.held_back:
            self.waiting.set()
            self.gate.wait(10)
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()


class RawWsServer:
    """One-connection WebSocket server on raw sockets, for behaviours websockets will not produce.

    ``mode``: ``"stall"`` completes the handshake and then never reads (with a tiny receive
    buffer, so the client's writes block soon); ``"drop_in_handshake"`` reads the request and
    closes the TCP connection without answering; ``"close_at_once"`` completes the handshake
    and sends a close frame (1011) in the same breath.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener = socket.socket()
        if mode == "stall":
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.release = threading.Event()
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name="review-raw-server", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stt/websocket"

    def __enter__(self) -> RawWsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
        self.listener.close()
        self._thread.join(5)

    def close_all(self) -> None:
        """Close every accepted connection: a stalled client write fails, and its thread wakes."""
        self.release.set()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()

    def _run(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.connections.append(conn)
        conn.settimeout(10)
        request = b""
        try:
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            if self.mode == "drop_in_handshake":
                conn.close()
                return
            answer = upgrade_answer(request)
            if self.mode == "close_at_once":
                answer += b"\x88\x02" + struct.pack("!H", 1011)
            conn.sendall(answer)
            if self.mode == "close_at_once":
                while conn.recv(4096):  # until the client's echo and EOF
                    pass
                return
            self.release.wait(30)  # "stall": never read
        except OSError:
            return


def final_for_all_audio(record: Any) -> str:
    """The final the ``server`` fixture would send for all the audio so far as one segment (JSON)."""
    seconds = len(record.audio) / 32000
    text = short_facts(1, bytes(record.audio))
    return json.dumps(
        {
            "type": "transcript",
            "request_id": "req-1",
            "is_final": True,
            "text": text,
            "duration": seconds,
            "language": "en",
            "words": [{"word": text.strip(), "start": 0.0, "end": seconds}],
        }
    )


# =========================================================================================
# BUGS
# =========================================================================================


@pytest.mark.parametrize("how", ["abort", "close"])
def test_abort_and_close_return_when_the_server_stops_reading(how):
    with RawWsServer("stall") as stalled:
        client = client_for(
            stalled.url, send_timeout=0.5, close_timeout=0.5, close_grace=0.2, join_timeout=0.5, max_buffer_seconds=1.0
        )
        session = client.connect()
        with pytest.raises(StreamTimeout):
            for _ in range(2000):  # ~1000 s of audio: far more than the socket buffers hold
                session.send(pcm(0.5))
        ender = started(getattr(session, how), name=f"review-{how}")
        ender.join(4.0)
        finished = not ender.is_alive()
        stalled.close_all()  # unblocks the stuck write so that nothing leaks, whatever happened
        ender.join(10)
        assert finished, f"{how}() was still blocked 4 s after it was called (timeouts are 0.5 s)"


def test_abort_releases_a_finalize_that_waits_for_queued_audio(server):
    session = client_for(server.url, send_timeout=1.0).connect(realtime=True)
    session.send(pcm(3.0))
    finalizer = started(lambda: session.finalize(timeout=1.0), name="review-finalize")
    time.sleep(0.3)
    aborted_at = time.monotonic()
    session.abort()
    finalizer.join(15)
    assert not finalizer.is_alive()
    assert isinstance(finalizer.error, SessionClosedError), repr(finalizer.error)
    assert finalizer.ended_at - aborted_at < 1.5


@pytest.mark.parametrize("scenario", [Scenario(end_delay=1.0)])
def test_finalize_racing_close_fails_fast_with_session_closed(server):
    session = client_for(server.url, send_timeout=1.0).connect()
    session.send(pcm(0.2))
    gated = GatedLock()
    session._core.intake._lock = gated  # forces: finalize passes its check, close() takes the lock first
    finalizer = Call(lambda: session.finalize(timeout=1.0), name="review-finalize")
    gated.held_back.add(finalizer)
    finalizer.start()
    assert gated.waiting.wait(5)
    closer = started(session.close, name="review-close")
    assert wait_until(
        lambda: session._core.lifecycle.end_command is not None and session._core.lifecycle.end_command.sent.is_set()
    )
    gated.gate.set()
    closer.join(10)
    finalizer.join(10)
    assert closer.error is None and not finalizer.is_alive()
    assert isinstance(finalizer.error, SessionClosedError), repr(finalizer.error)
    assert finalizer.ended_at - closer.ended_at < 0.5


@pytest.mark.parametrize("scenario", [Scenario(end_delay=1.0)])
def test_send_racing_close_never_discards_accepted_audio(server):
    session = client_for(server.url).connect()
    session.send(pcm(0.2))
    gated = GatedLock()
    session._core.intake._lock = gated
    sender = Call(lambda: session.send(pcm(0.3)), name="review-send")
    gated.held_back.add(sender)
    sender.start()
    assert gated.waiting.wait(5)
    closer = started(session.close, name="review-close")
    assert wait_until(
        lambda: session._core.lifecycle.end_command is not None and session._core.lifecycle.end_command.sent.is_set()
    )
    gated.gate.set()
    closer.join(10)
    sender.join(10)
    received = len(server.wait_finished().audio)
    if sender.error is None:  # send() said the audio was taken: it must have gone out
        assert received == len(pcm(0.5)), (received, session.stats)
    else:
        assert isinstance(sender.error, SessionClosedError)


def test_second_close_returns_only_when_the_session_is_closed(server):
    session = client_for(server.url, close_timeout=0.5, close_grace=0.2, join_timeout=0.5).connect(realtime=True)
    session.send(pcm(3.0))
    first = started(session.close, name="review-close-1")
    time.sleep(0.3)
    try:
        session.close()
        assert session.closed, f"close() returned with the session {session.state.value}"
    finally:
        first.join(15)
    assert first.error is None


def test_abort_cuts_short_a_close_that_is_draining(server):
    session = client_for(server.url).connect(realtime=True)
    session.send(pcm(3.0))
    closer = started(session.close, name="review-close")
    time.sleep(0.3)
    aborted_at = time.monotonic()
    try:
        session.abort()
        assert time.monotonic() - aborted_at < 1.0
        assert session.closed
    finally:
        closer.join(15)
    assert len(server.wait_finished().audio) < len(pcm(3.0))  # not drained


class SlowSessionEnd:
    name = "slow-session-end"

    def __init__(self) -> None:
        self.entered = threading.Event()

    @hookimpl
    def on_session_end(self) -> None:
        self.entered.set()
        for _ in range(200):  # 2 s, in small steps so that an interrupt lands here
            time.sleep(0.01)


def test_interrupt_during_teardown_still_ends_the_session(server):
    plugin = SlowSessionEnd()
    session = client_for(server.url, plugins=[plugin], close_timeout=1.0, close_grace=0.2, join_timeout=0.5).connect()
    session.send(pcm(0.1))
    closer = started(session.close, name="review-close")
    assert plugin.entered.wait(5)
    interrupt(closer)
    closer.join(10)
    assert isinstance(closer.error, KeyboardInterrupt)
    assert session.closed, f"state after an interrupted close(): {session.state.value}"
    again = time.monotonic()
    session.close()
    assert time.monotonic() - again < 0.5


@pytest.mark.parametrize(
    "scenario", [Scenario(on_open=("{broken", {"type": "error", "message": "fatal", "status_code": 500}))]
)
def test_every_background_error_is_raised_once(server):
    session = client_for(server.url, reconnect=False).connect()
    assert wait_until(lambda: session.error is not None)
    raised = []
    for call in (lambda: session.send(pcm(0.1)), session.close, session.close):
        try:
            call()
        except cartesia_sync.CartesiaSyncError as exc:
            raised.append(exc)
    assert [type(e) for e in session.errors] == [ProtocolError, ServerError]
    assert sorted(type(e).__name__ for e in raised) == ["ProtocolError", "ServerError"], raised


def test_stats_balance_with_a_partial_frame_left_at_abort(server):
    session = client_for(server.url).connect()  # unpaced on loopback: every whole frame goes out at once
    session.send(pcm(1.05))  # 10 frames and half a frame
    assert wait_until(lambda: session.stats.frames_sent == 10)
    session.abort()
    stats = session.stats
    assert stats.audio_queued == pytest.approx(stats.audio_sent + stats.audio_dropped + stats.audio_unsent), stats


def test_stats_balance_with_a_frame_in_flight_at_abort(server):
    session = client_for(server.url).connect(realtime=True)
    session.send(pcm(1.0))  # whole frames only; the sender spends nearly all its time pacing one of them
    time.sleep(0.35)
    session.abort()
    stats = session.stats
    assert stats.audio_queued == pytest.approx(stats.audio_sent + stats.audio_dropped + stats.audio_unsent), stats


class SlowFinalTranscript:
    name = "slow-final"

    @hookimpl
    def on_transcript(self, transcript) -> None:
        if transcript.is_final:
            time.sleep(1.5)


def test_no_hook_runs_after_on_session_end(server, recorder):
    session = client_for(
        server.url, plugins=[recorder, SlowFinalTranscript()], close_grace=0.2, join_timeout=0.2
    ).connect()
    session.send(pcm(0.1))
    with pytest.raises(StreamTimeout):
        session.close(timeout=0.3)
    assert wait_until(lambda: not session_threads(), timeout=5)
    assert recorder.names()[-1] == "on_session_end", recorder.names()


class EndsFromClosingThreadHook:
    """Calls abort() from a hook that runs on the thread closing the session."""

    name = "ends-from-closing-thread"

    def __init__(self, hook: str) -> None:
        self.hook = hook
        self.outcomes: list[str] = []

    def _end(self, session) -> None:
        begun = time.monotonic()
        try:
            session.abort()
            self.outcomes.append(f"returned after {time.monotonic() - begun:.1f} s")
        except RuntimeError:
            self.outcomes.append("RuntimeError")

    @hookimpl
    def on_error(self, session, error) -> None:
        if self.hook == "on_error" and isinstance(error, StreamTimeout):
            self._end(session)

    @hookimpl
    def on_session_end(self, session) -> None:
        if self.hook == "on_session_end":
            self._end(session)


@pytest.mark.parametrize("scenario", [Scenario(answer_end=False)])
@pytest.mark.parametrize("hook", ["on_session_end", "on_error"])
def test_ending_the_session_from_a_hook_on_the_closing_thread_does_not_wait_for_itself(server, hook):
    plugin = EndsFromClosingThreadHook(hook)
    session = client_for(server.url, plugins=[plugin], close_timeout=2.0, close_grace=0.5, join_timeout=1.0).connect()
    session.send(pcm(0.1))
    begun = time.monotonic()
    with pytest.raises(StreamTimeout):
        session.close(timeout=0.3)
    elapsed = time.monotonic() - begun
    assert session.closed
    assert len(plugin.outcomes) == 1
    assert elapsed < 2.0, (elapsed, plugin.outcomes)


# =========================================================================================
# CORRECT BEHAVIOUR (coverage)
# =========================================================================================


def test_abort_wakes_a_send_blocked_on_a_full_buffer(server):
    session = client_for(server.url, max_buffer_seconds=0.5, send_timeout=10).connect(realtime=True)
    blocked = started(lambda: session.send(pcm(3.0)), name="review-send")
    assert wait_until(lambda: session.stats.frames_sent >= 2)
    assert blocked.is_alive()
    aborted_at = time.monotonic()
    session.abort()
    blocked.join(5)
    assert isinstance(blocked.error, SessionClosedError)
    assert blocked.ended_at - aborted_at < 1.0
    assert session.closed and session.stats.audio_unsent > 0


def test_concurrent_finalizes_each_get_their_own_flush_done(server, recorder):
    session = client_for(server.url, plugins=[recorder]).connect()
    barrier = threading.Barrier(4)

    def one() -> FlushDone:
        barrier.wait(5)
        session.send(pcm(0.1))
        return session.finalize(timeout=5)

    calls = [started(one, name=f"review-finalize-{n}") for n in range(4)]
    for call in calls:
        call.join(10)
    session.close()
    assert [call.error for call in calls] == [None] * 4
    assert len({id(call.result) for call in calls}) == 4
    assert {id(e) for e in recorder.payloads("on_flush_done")} == {id(call.result) for call in calls}
    # two sends may meet in one segment, so count the audio the finals describe, not the segments
    assert sum(int(size) for size in re.findall(r":(\d+)b", session.text)) == 4 * len(pcm(0.1))


def test_a_finalize_that_timed_out_does_not_steal_the_next_answer(server):
    session = client_for(server.url, plugins=[SlowFinalTranscript()]).connect()
    session.send(pcm(0.1))
    with pytest.raises(StreamTimeout):
        session.finalize(timeout=0.3)
    session.send(pcm(0.2))
    session.finalize(timeout=10)
    assert session.text == " seg1:3200b seg2:6400b"  # its own flush_done, not the late first one
    session.close(timeout=10)


@pytest.mark.parametrize("scenario", [Scenario(answer_finalize=False)])
def test_abort_from_another_thread_ends_a_finalize_waiting_for_flush_done(server):
    session = client_for(server.url).connect()
    session.send(pcm(0.1))
    finalizer = started(lambda: session.finalize(timeout=10), name="review-finalize")
    assert wait_until(lambda: "finalize" in server.connections[-1].texts)
    aborted_at = time.monotonic()
    session.abort()
    finalizer.join(5)
    assert isinstance(finalizer.error, SessionClosedError)
    assert finalizer.ended_at - aborted_at < 1.5


@pytest.mark.parametrize("scenario", [Scenario(answer_finalize=False)])
def test_close_from_another_thread_ends_a_finalize_waiting_for_flush_done(server):
    session = client_for(server.url).connect()
    session.send(pcm(0.1))
    finalizer = started(lambda: session.finalize(timeout=10), name="review-finalize")
    assert wait_until(lambda: "finalize" in server.connections[-1].texts)
    session.close(timeout=5)
    finalizer.join(5)
    assert isinstance(finalizer.error, SessionClosedError)
    assert session.text == " seg1:3200b"  # done flushed it; nothing lost


def test_keyboard_interrupt_during_finalize_leaves_the_session_usable(server):
    session = client_for(server.url, plugins=[SlowFinalTranscript()]).connect()
    session.send(pcm(0.1))
    finalizer = started(lambda: session.finalize(timeout=10), name="review-finalize")
    assert wait_until(lambda: "finalize" in server.connections[-1].texts)
    time.sleep(0.1)
    interrupt(finalizer)
    finalizer.join(5)
    assert isinstance(finalizer.error, KeyboardInterrupt)
    session.send(pcm(0.2))
    session.finalize(timeout=10)
    assert session.text == " seg1:3200b seg2:6400b"
    session.close(timeout=10)
    assert session.closed


@pytest.mark.parametrize("scenario", [Scenario(end_delay=1.0)])
def test_keyboard_interrupt_during_close_still_tears_down(server, recorder):
    session = client_for(server.url, plugins=[recorder]).connect()
    session.send(pcm(0.1))
    closer = started(session.close, name="review-close")
    assert wait_until(lambda: "done" in server.connections[-1].texts)
    time.sleep(0.1)
    interrupt(closer)
    closer.join(5)
    assert isinstance(closer.error, KeyboardInterrupt)
    assert session.closed
    assert recorder.names().count("on_session_end") == 1
    session.close()  # idempotent, returns at once
    session.abort()


def _close_after_flush_done(conn, record, text) -> bool:
    if text == "finalize":
        conn.send(final_for_all_audio(record))
        conn.send('{"type": "flush_done", "request_id": "req-1"}')
        conn.close(1000, "bye")
        return True
    return False


def test_server_closing_right_after_flush_done_is_reported_once():
    with HandlerServer(record_then(_close_after_flush_done)) as srv:
        session = client_for(srv.url, reconnect=False).connect()
        session.send(pcm(0.1))
        raised = []
        try:
            assert isinstance(session.finalize(timeout=5), FlushDone)
        except ConnectionLostError as exc:
            raised.append(exc)
        assert wait_until(lambda: session.error is not None)
        for call in (lambda: session.send(pcm(0.1)), session.close, session.close):
            try:
                call()
            except ConnectionLostError as exc:
                raised.append(exc)
            except SessionClosedError:
                pass
        assert len(raised) == 1 and raised[0] is session.error
        assert session.text == " seg1:3200b"
        assert session.closed


def _close_on_finalize(conn, record, text) -> bool:
    if text == "finalize":
        conn.close(1000, "")
        return True
    return False


def test_server_closing_right_after_finalize_fails_the_finalize_fast():
    with HandlerServer(record_then(_close_on_finalize)) as srv:
        session = client_for(srv.url, reconnect=False).connect()
        session.send(pcm(0.1))
        begun = time.monotonic()
        with pytest.raises(ConnectionLostError):
            session.finalize(timeout=10)
        assert time.monotonic() - begun < 2
        session.close()  # raised once already
        assert session.closed


def test_server_dropping_the_connection_during_the_handshake_is_a_connect_error():
    with RawWsServer("drop_in_handshake") as raw:
        begun = time.monotonic()
        with pytest.raises(ConnectError):
            client_for(raw.url, connect_timeout=5).connect()
        assert time.monotonic() - begun < 3
    assert not session_threads()


def test_server_closing_at_once_after_the_handshake_is_raised_once():
    with RawWsServer("close_at_once") as raw:
        session = client_for(raw.url, reconnect=False).connect()
        assert wait_until(lambda: session.error is not None)
        raised = []
        for call in (lambda: session.send(pcm(0.1)), session.close, session.close):
            try:
                call()
            except ConnectionLostError as exc:
                raised.append(exc)
        assert len(raised) == 1 and raised[0].close_code == 1011
        assert session.closed


@pytest.mark.parametrize("scenario", [Scenario(error_after_bytes=3200)])
def test_a_fatal_error_is_raised_to_exactly_one_of_many_senders(server):
    session = client_for(server.url, reconnect=False).connect()
    session.send(pcm(0.1))
    assert wait_until(lambda: session.error is not None)
    barrier = threading.Barrier(6)

    def one() -> None:
        barrier.wait(5)
        session.send(pcm(0.1))

    calls = [started(one, name=f"review-send-{n}") for n in range(6)]
    for call in calls:
        call.join(5)
    kinds = sorted(type(call.error).__name__ for call in calls)
    assert kinds == ["ServerError"] + ["SessionClosedError"] * 5
    session.close()  # nothing left to raise


@pytest.mark.parametrize("scenario", [Scenario(on_open=("{broken",))])
def test_with_block_that_raises_keeps_its_exception_with_an_error_pending(server, recorder):
    with pytest.raises(ValueError, match="from the block"):
        with client_for(server.url, plugins=[recorder]).connect() as session:
            assert wait_until(lambda: session.errors)
            session.send(pcm(0.1))
            raise ValueError("from the block")
    assert session.closed
    assert [type(e) for e in session.errors] == [ProtocolError]
    assert recorder.names().count("on_session_end") == 1


class SlowDone:
    name = "slow-done"

    @hookimpl
    def on_done(self) -> None:
        time.sleep(0.5)


def test_close_waits_for_a_slow_on_done_and_ends_after_it(server, recorder):
    with client_for(server.url, plugins=[recorder, SlowDone()]).connect() as session:
        session.send(pcm(0.1))
    names = recorder.names()
    assert names[-2:] == ["on_done", "on_session_end"]
    assert session.text == " seg1:3200b"


def test_everything_at_once_ends_bounded_and_once(server, recorder):
    session = client_for(
        server.url, plugins=[recorder], send_timeout=1.0, finalize_timeout=1.0, close_timeout=2.0
    ).connect()
    unexpected: list[BaseException] = []

    def keep(fn: Callable[[], Any]) -> Callable[[], None]:
        def loop() -> None:
            while True:
                try:
                    fn()
                except SessionClosedError:
                    return
                except StreamTimeout:
                    continue  # allowed when racing the end (see the finalize/close race above)
                except BaseException as exc:  # noqa: BLE001
                    unexpected.append(exc)
                    return

        return loop

    workers = [started(keep(lambda: session.send(pcm(0.05))), name=f"review-send-{n}") for n in range(3)]
    workers.append(started(keep(lambda: session.finalize()), name="review-finalize"))
    time.sleep(0.3)
    enders = [
        started(session.close, name="review-close-a"),
        started(session.abort, name="review-abort"),
        started(session.close, name="review-close-b"),
    ]
    for thread in workers + enders:
        thread.join(15)
    assert not any(thread.is_alive() for thread in workers + enders)
    assert not unexpected, unexpected
    assert [e.error for e in enders] == [None, None, None]
    assert session.closed
    assert recorder.names().count("on_session_end") == 1
    assert recorder.names().count("on_done") <= 1


def test_an_abort_from_another_thread_while_on_session_start_runs(server):
    """A plugin hands the session to another thread in on_session_start, which aborts it at once."""
    seen = threading.Event()
    aborted = threading.Event()
    errors: list[BaseException] = []

    class HandOff:
        @hookimpl
        def on_session_start(self, session):
            def abort() -> None:
                try:
                    session.abort()
                except BaseException as exc:  # noqa: BLE001 - the test reports it
                    errors.append(exc)
                aborted.set()

            threading.Thread(target=abort, name="review-abort").start()
            seen.set()
            aborted.wait(5)  # on_session_start is still running while the abort happens

    session = client_for(server.url, plugins=[HandOff()]).connect()
    assert seen.is_set() and aborted.wait(5)
    assert errors == [] and session.closed
    with pytest.raises(cartesia_sync.SessionClosedError):
        session.send(pcm(0.1))
