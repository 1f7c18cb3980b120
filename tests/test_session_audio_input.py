"""Audio handed to a session: conversions that work, and bad input that is refused without loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import HandlerServer, pcm, record_then

from cartesia_sync import AudioFormatError


def received(server) -> bytes:
    return bytes(server.wait_finished().audio)


BAD_INPUT = [
    pytest.param(b"\x00" * 3201, {}, "3201 bytes", id="odd-byte-count"),
    pytest.param(np.array([0.0, np.nan, 0.5], dtype=np.float32), {}, "non-finite", id="nan"),
    pytest.param(np.array([0.0, np.inf], dtype=np.float64), {}, "non-finite", id="inf"),
    pytest.param(np.zeros((2, 48000), dtype=np.float32), {}, ".T", id="channel-first"),
    pytest.param(np.zeros((10, 2, 2), dtype=np.int16), {}, "shape", id="3-d"),
    pytest.param(np.zeros(10, dtype=np.complex64), {}, "complex64", id="complex"),
    pytest.param(np.zeros(10, dtype=np.int16), {"sample_rate": 0}, "sample_rate", id="zero-rate"),
    pytest.param(np.zeros((10, 2), dtype=np.int16), {"channels": 1}, "channels", id="channel-mismatch"),
    pytest.param(b"\x00" * 6, {"channels": 2}, "6 bytes", id="partial-stereo-frame"),
]


@pytest.mark.parametrize("audio,kwargs,expected", BAD_INPUT)
def test_bad_input_is_refused_and_nothing_is_lost(make_client, server, audio, kwargs, expected):
    with make_client().connect() as session:
        session.send(pcm(0.1))
        with pytest.raises(AudioFormatError, match=expected) as caught:
            session.send(audio, **kwargs)
        assert any(word in str(caught.value) for word in ("expected", "pass ", "accepted", "must"))
        session.send(pcm(0.1))  # the session goes on
    assert received(server) == pcm(0.1) + pcm(0.1)


def test_stereo_float_at_48k_is_downmixed_and_resampled(make_client, server):
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([tone, tone], axis=1)
    with make_client().connect() as session:
        for start in range(0, 48000, 4410):  # uneven chunks
            session.send(stereo[start : start + 4410], sample_rate=48000)
    samples = np.frombuffer(received(server), dtype="<i2").astype(np.float64)
    assert abs(len(samples) - 16000) <= 16
    spectrum = np.abs(np.fft.rfft(samples[1000:15000]))
    peak_hz = np.argmax(spectrum) * 16000 / len(samples[1000:15000])
    assert abs(peak_hz - 440) < 3
    assert 0.45 < np.abs(samples[1000:15000]).max() / 32768 < 0.55


def test_int16_at_the_session_rate_passes_bit_exact(make_client, server):
    audio = np.random.default_rng(1).integers(-32768, 32767, 16000, dtype=np.int16)
    with make_client().connect() as session:
        session.send(audio)
    assert received(server) == audio.astype("<i2").tobytes()


def test_send_file_wav_any_rate_and_channels(make_client, server, tmp_path):
    import soundfile

    path = tmp_path / "stereo24.wav"
    soundfile.write(path, np.zeros((22050 * 2, 2), dtype=np.float32), 22050, subtype="PCM_24")
    with make_client().connect() as session:
        info = session.send_file(str(path))
    assert (info.sample_rate, info.channels) == (22050, 2)
    assert abs(len(received(server)) - 2 * 32000) <= 64


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "empty"),
        (b"this is plainly not audio, just some text in a file\n" * 20, "could not read"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV"),
    ],
)
def test_send_file_refuses_bad_files_before_sending_anything(make_client, server, tmp_path, content, expected):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with make_client().connect() as session:
        with pytest.raises(AudioFormatError, match=expected):
            session.send_file(path)
        session.send(pcm(0.1))
    assert received(server) == pcm(0.1)


def test_send_file_missing_file(make_client, tmp_path):
    with make_client().connect() as session:
        with pytest.raises(FileNotFoundError):
            session.send_file(tmp_path / "nope.wav")


def _answer_done(conn, record, text) -> bool:
    if text in ("done", "close"):
        conn.send(json.dumps({"type": "done", "request_id": "req-1"}))
        conn.close(1000, "done")
        return True
    return False


def test_non_s16le_session_takes_raw_bytes_only(make_client):
    # the fake server's engine decodes pcm_s16le only (it answers other encodings with an error),
    # so a handler that records whatever arrives and answers the end command stands in for it
    with HandlerServer(record_then(_answer_done)) as server:
        with make_client(url=server.url, encoding="pcm_mulaw", sample_rate=8000).connect() as session:
            session.send(b"\x7f" * 1000)
            with pytest.raises(AudioFormatError, match="pcm_mulaw"):
                session.send(np.zeros(10, dtype=np.int16))
        record = server.wait_finished()
    assert bytes(record.audio) == b"\x7f" * 1000
    assert record.query_dict()["encoding"] == "pcm_mulaw"
    assert {len(f.data) for f in record.audio_frames[:-1]} == {800}  # 100 ms of 8 kHz mu-law
