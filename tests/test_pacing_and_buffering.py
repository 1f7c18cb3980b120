"""Pacing, keepalive silence and the bounded send buffer, observed by the server.

Timing bounds here are deliberately loose: the machines running the suite are
shared and noisy. Precise figures come from the benchmarks, not the tests.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import pcm

from cartesia_sync import StreamTimeout


def frame_times(record):
    return [frame.at for frame in record.audio_frames]


def test_realtime_paces_frames_at_one_x(make_client, server):
    with make_client().connect(realtime=True) as session:
        session.send(pcm(1.0))
    times = frame_times(server.wait_finished())
    assert len(times) == 10
    span = times[-1] - times[0]
    assert 0.75 <= span <= 2.0, span  # frame k leaves at t0 + k * 0.1 s: 0.9 s from first to last
    gaps = np.diff(times)
    assert gaps.min() > 0.04, gaps  # never a burst


def test_speed_factor_paces_faster(make_client, server):
    with make_client().connect(realtime=4.0) as session:
        session.send(pcm(2.0))
    span = np.ptp(frame_times(server.wait_finished()))
    assert 0.35 <= span <= 1.5, span  # 1.9 s of audio time at 4x: 0.475 s


def test_loopback_default_is_unpaced(make_client, server):
    with make_client().connect() as session:  # realtime=None on 127.0.0.1
        assert session.speed is None
        session.send(pcm(5.0))
    span = np.ptp(frame_times(server.wait_finished()))
    assert span < 2.5, span  # 5 s of audio, sent as fast as the socket takes it


def test_remote_default_is_one_x():
    from cartesia_sync._config import resolve_speed

    assert resolve_speed(None, loopback=False) == 1.0
    assert resolve_speed(None, loopback=True) is None
    assert resolve_speed(True, loopback=True) == 1.0
    assert resolve_speed(False, loopback=False) is None
    assert resolve_speed(2, loopback=False) == 2.0


def test_a_pause_does_not_cause_a_burst_afterwards(make_client, server):
    with make_client().connect(realtime=True) as session:
        session.send(pcm(0.3))
        time.sleep(0.8)  # the caller pauses; the schedule must not "catch up" afterwards
        session.send(pcm(0.3))
    times = frame_times(server.wait_finished())
    after_pause = np.diff(times[3:])
    assert after_pause.min() > 0.04, after_pause


def test_keepalive_silence_keeps_an_idle_session_alive(make_client, server):
    with make_client(keepalive_interval=0.15).connect() as session:
        session.send(pcm(0.1))
        time.sleep(0.8)
    record = server.wait_finished()
    silence = [f.data for f in record.audio_frames[1:]]
    assert len(silence) >= 2
    assert all(frame == bytes(3200) for frame in silence)
    assert session.stats.keepalive_sent == pytest.approx(len(silence) * 0.1)
    assert session.stats.audio_sent == pytest.approx(0.1)  # keepalive is not counted as caller audio


def test_keepalive_can_be_turned_off(make_client, server):
    with make_client(keepalive_interval=None).connect() as session:
        session.send(pcm(0.1))
        time.sleep(0.5)
    assert len(server.wait_finished().audio_frames) == 1
    assert session.stats.keepalive_sent == 0


def test_full_buffer_blocks_then_times_out(make_client):
    session = make_client(max_buffer_seconds=0.3, send_timeout=0.3).connect(realtime=0.1)
    started = time.monotonic()
    with pytest.raises(StreamTimeout, match="send buffer"):
        for _ in range(50):
            session.send(pcm(0.1))
    assert time.monotonic() - started < 10
    session.abort()


def test_drop_oldest_policy_counts_what_it_drops(make_client, server):
    client = make_client(max_buffer_seconds=0.3, buffer_policy="drop_oldest")
    with client.connect(realtime=1.0) as session:
        for _ in range(20):
            session.send(pcm(0.1))  # 2 s of audio into a 0.3 s buffer, at once: most must go
        dropped = session.stats.audio_dropped
    assert dropped >= 1.0
    stats = session.stats
    received = len(server.wait_finished().audio) / 32000
    assert stats.audio_sent == pytest.approx(received)
    assert stats.audio_sent + stats.audio_dropped == pytest.approx(2.0)


def test_finalize_waits_for_paced_audio_then_applies_its_timeout(make_client):
    with make_client().connect(realtime=2.0) as session:
        session.send(pcm(1.5))  # 0.75 s to send at 2x, more than the finalize timeout below
        session.finalize(timeout=0.5)
        assert session.text == " seg1:48000b"
