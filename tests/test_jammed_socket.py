"""A server that accepted the upgrade and stopped reading: the socket jams, and the session still ends on time.

Every server is a raw socket on loopback (tests/hostile_server.py) that
upgrades and then never reads again, so the client's send buffer and the
server's receive buffer fill up. Then:

1. ``close(timeout)`` returns within its documented budget (``timeout`` to
   get the end command out, then the teardown: ``close_grace`` and a join of
   each thread), raising ``StreamTimeout``;
2. ``abort()`` returns within the teardown budget, even while ``send()`` is
   blocked on a full buffer in another thread;
3. Ctrl-C while ``send_file()`` waits for room in the buffer interrupts it at
   once and the ``with`` block's abort ends the session and its threads; a real
   SIGINT to a child process doing the same ends the process promptly.
"""

from __future__ import annotations

import _thread
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import wave
from pathlib import Path
from typing import Any

import pytest
from conftest import CANARY_KEY, pcm, session_threads
from hostile_server import HostileServer, upgrade

import cartesia_sync
from cartesia_sync import StreamTimeout

pytestmark = pytest.mark.timeout(90)

SLACK = 1.5


def never_read(conn: socket.socket, server: HostileServer) -> None:
    """Upgrade with a small receive buffer, then never read again."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    upgrade(conn)
    server.stop.wait(60)


def jammed_session(server: HostileServer, **kwargs: Any) -> cartesia_sync.Session:
    """A session whose socket no longer takes anything: audio was sent until ``send()`` timed out."""
    options: dict[str, Any] = {
        "send_timeout": 0.5,
        "max_buffer_seconds": 2.0,
        "join_timeout": 1.0,
        "close_grace": 0.5,
        "keepalive_interval": None,
        "ping_interval": None,
        "reconnect": False,
    }
    options.update(kwargs)
    client = cartesia_sync.Client(api_key=CANARY_KEY, url=server.url, load_entrypoints=False, **options)
    session = client.connect(realtime=False)
    second = pcm(1.0)
    for _ in range(2000):  # at most ~64 MB: far more than loopback buffers hold
        try:
            session.send(second)
        except StreamTimeout:
            return session
    session.abort()
    raise AssertionError("the socket never jammed")


def test_close_returns_within_its_budget_on_a_jammed_socket():
    with HostileServer(never_read) as server:
        session = jammed_session(server)
        sent = session.stats.audio_sent
        started = time.monotonic()
        with pytest.raises(StreamTimeout):
            session.close(timeout=1.0)
        elapsed = time.monotonic() - started

    budget = 1.0 + 0.5 + 2 * 1.0 + 1.0  # timeout, then close_grace and a join of each thread, plus a poll
    assert elapsed < budget + SLACK, f"close() took {elapsed:.2f} s"
    assert session.closed
    assert sent > 30  # seconds of audio: the buffers really were full
    assert not session_threads()


def test_abort_returns_at_once_on_a_jammed_socket():
    with HostileServer(never_read) as server:
        session = jammed_session(server)
        started = time.monotonic()
        session.abort()
        elapsed = time.monotonic() - started

    assert elapsed < 1.0 + SLACK, f"abort() took {elapsed:.2f} s"  # no wait for room for a close frame
    assert session.closed and not session_threads()


def test_abort_from_another_thread_ends_a_send_blocked_on_a_jammed_socket():
    with HostileServer(never_read) as server:
        session = jammed_session(server, send_timeout=4.0)
        outcome: list[BaseException | None] = []

        def blocked_send() -> None:
            try:
                session.send(pcm(5.0))
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - the test reports whatever came out
                outcome.append(exc)

        sender = threading.Thread(target=blocked_send, name="test-blocked-send", daemon=True)
        sender.start()
        time.sleep(0.5)
        started = time.monotonic()
        session.abort()
        aborted = time.monotonic() - started
        sender.join(5)

    assert aborted < 2 * 1.0 + SLACK
    assert not sender.is_alive()
    assert outcome and isinstance(outcome[0], cartesia_sync.SessionClosedError)
    assert not session_threads()


def long_wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm(seconds))
    return path


def test_ctrl_c_while_send_file_waits_for_room_ends_the_session_promptly(tmp_path: Path):
    audio = long_wav(tmp_path / "long.wav", 400.0)
    with HostileServer(never_read) as server:
        client = cartesia_sync.Client(
            api_key=CANARY_KEY,
            url=server.url,
            load_entrypoints=False,
            send_timeout=30.0,
            max_buffer_seconds=2.0,
            join_timeout=1.0,
            keepalive_interval=None,
            ping_interval=None,
            reconnect=False,
        )
        interrupted_at: list[float] = []

        def ctrl_c() -> None:
            interrupted_at.append(time.monotonic())
            _thread.interrupt_main()  # as when the terminal's SIGINT lands on another thread than the main one

        timer = threading.Timer(2.0, ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            with client.connect(realtime=False) as session:
                timer.start()
                session.send_file(audio)
        ended = time.monotonic()
        timer.join(5)

    assert interrupted_at, "send_file() returned before the interrupt: the socket never jammed"
    assert ended - interrupted_at[0] < 1.0 + SLACK, f"took {ended - interrupted_at[0]:.2f} s"
    assert session.closed and not session_threads()


SIGINT_SCRIPT = textwrap.dedent(
    """
    import socket, sys, threading
    sys.path.insert(0, sys.argv[1])
    from hostile_server import HostileServer, upgrade
    import cartesia_sync

    def never_read(conn, server):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        upgrade(conn)
        server.stop.wait(60)

    with HostileServer(never_read) as server:
        client = cartesia_sync.Client(
            api_key="k", url=server.url, load_entrypoints=False, send_timeout=60.0, max_buffer_seconds=2.0,
            join_timeout=1.0, keepalive_interval=None, ping_interval=None, reconnect=False,
        )
        if sys.argv[3] == "with":
            with client.connect(realtime=False) as session:
                print("sending", flush=True)
                session.send_file(sys.argv[2])
        else:  # no with block: nothing aborts the session, the interpreter must still exit
            session = client.connect(realtime=False)
            print("sending", flush=True)
            session.send_file(sys.argv[2])
    """
)


@pytest.mark.parametrize("form", ["with", "bare"])
def test_sigint_to_a_process_blocked_in_send_file_ends_it_promptly(tmp_path: Path, form: str):
    audio = long_wav(tmp_path / "long.wav", 400.0)
    script = tmp_path / "interrupted.py"
    script.write_text(SIGINT_SCRIPT)
    tests = str(Path(__file__).parent)
    child = subprocess.Popen(
        [sys.executable, str(script), tests, str(audio), form],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tests,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "sending"
        time.sleep(2.0)  # the buffers fill in well under a second on loopback
        assert child.poll() is None, "send_file() finished: the socket never jammed"
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = child.communicate(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)

    assert "KeyboardInterrupt" in stderr
    assert elapsed < 1.0 + 2 * 1.0 + SLACK, f"the process took {elapsed:.2f} s to end after SIGINT"
