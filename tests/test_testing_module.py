"""cartesia_sync.testing: every scenario a user can script, and the pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import pcm

import cartesia_sync
from cartesia_sync import (
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    RateLimitError,
    ServerError,
    SessionClosedError,
    StreamTimeout,
)
from cartesia_sync.testing import FakeCartesia, Scenario


def connect(fake, **kwargs):
    kwargs.setdefault("load_entrypoints", False)
    return cartesia_sync.Client(url=fake.url, **kwargs).connect()


def wait_for_error(session, timeout=5.0):
    deadline = time.monotonic() + timeout
    while session.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return session.error


def test_error_message_mid_stream():
    with FakeCartesia(scenario=Scenario(error_after_bytes=6400)) as fake:
        session = connect(fake, reconnect=False)
        session.send(pcm(0.3))
        error = wait_for_error(session)
        session.abort()
    assert isinstance(error, ServerError) and error.status_code == 500 and error.error_code == "internal_error"
    assert error.request_id  # filled in by the server


def test_abrupt_drop_after_n_bytes():
    with FakeCartesia(scenario=Scenario(drop_after_bytes=3200)) as fake:
        session = connect(fake, reconnect=False)
        session.send(pcm(0.2))
        error = wait_for_error(session)
        with pytest.raises(ConnectionLostError):
            session.send(pcm(0.1))  # the error that ended the session, raised once
        with pytest.raises(SessionClosedError):
            session.send(pcm(0.1))
        session.abort()
    assert isinstance(error, ConnectionLostError)


def test_clean_close_with_a_chosen_code():
    with FakeCartesia(
        scenario=Scenario(close_after_bytes=3200, close_code=1013, close_reason="try again later")
    ) as fake:
        session = connect(fake, reconnect=False)
        session.send(pcm(0.1))
        error = wait_for_error(session)
        session.abort()
    assert (
        isinstance(error, ConnectionLostError) and error.close_code == 1013 and error.close_reason == "try again later"
    )


def test_no_answer_to_finalize():
    with FakeCartesia(scenario=Scenario(answer_finalize=False)) as fake:
        with connect(fake) as session:
            session.send(pcm(0.1))
            with pytest.raises(StreamTimeout):
                session.finalize(timeout=0.2)


def test_no_answer_to_done():
    with FakeCartesia(scenario=Scenario(answer_end=False)) as fake:
        session = connect(fake)
        session.send(pcm(0.1))
        with pytest.raises(StreamTimeout):
            session.close(timeout=0.2)
    assert session.closed


def test_slow_done_is_waited_for():
    with FakeCartesia(scenario=Scenario(end_delay=0.5)) as fake:
        with connect(fake) as session:
            session.send(pcm(0.1))
    assert session.text.startswith(" seg1:3200b")


def test_junk_frames():
    scenario = Scenario(on_open=("{oops", b"\x00binary", {"type": "mystery"}), before_done=("[]",))
    with FakeCartesia(scenario=scenario) as fake:
        session = connect(fake, raise_errors=False)
        session.send(pcm(0.1))
        session.close()
    assert [type(e) for e in session.errors] == [ProtocolError, ProtocolError, ProtocolError]
    assert session.text.startswith(" seg1:3200b")


@pytest.mark.parametrize("status,error_class", [(401, AuthenticationError), (429, RateLimitError), (503, ConnectError)])
def test_handshake_rejection_with_a_chosen_status(status, error_class):
    with FakeCartesia(scenario=Scenario(reject_status=status, reject_body='{"message":"nope"}')) as fake:
        with pytest.raises(error_class) as caught:
            connect(fake)
    assert caught.value.status_code == status and caught.value.body == '{"message":"nope"}'


def test_records_show_what_the_client_sent():
    with FakeCartesia(api_key="sk_record", record_secrets=True) as fake:
        with connect(fake, api_key="sk_record", keyterms=["Cartesia"]) as session:
            session.send(pcm(0.1))
            session.finalize()
        record = fake.wait_finished()
    assert record.headers["x-api-key"] == "sk_record"
    assert record.query_dict()["keyterm"] == "Cartesia"
    assert record.texts == ["finalize", "done"] and len(record.audio) == 3200


def test_the_pytest_plugin_gives_fixtures(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["cartesia_sync.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent("""
        import cartesia_sync
        from cartesia_sync.testing import Scenario

        def test_default(fake_cartesia):
            with cartesia_sync.Client(url=fake_cartesia.url, load_entrypoints=False).connect() as s:
                s.send(b"\\x00" * 3200)
            assert s.text.startswith(" seg1:3200b")
            assert fake_cartesia.wait_finished().texts == ["done"]

        def test_factory(fake_cartesia_factory):
            fake = fake_cartesia_factory(["Hi."], scenario=Scenario(end_delay=0.1))
            with cartesia_sync.Client(url=fake.url, load_entrypoints=False).connect() as s:
                s.send(b"\\x00" * 3200)
            assert s.text == "Hi."
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_readme_example_holds(fake_cartesia_factory):
    fake = fake_cartesia_factory(["Hello", " world."])
    result = cartesia_sync.transcribe(b"\0" * 64000, url=fake.url, load_entrypoints=False)
    assert result.text == "Hello"  # one segment: the end command closed it
    assert fake.wait_finished().texts == ["done"]
