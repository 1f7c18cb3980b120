"""The local server's HTTP routes on its WebSocket port: batch, tokens, status, errors, hostile uploads.

Everything goes over loopback to a real LocalServer or FakeCartesia, with the
library (``Client(base_url=...)``) or httpx as the client.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from conftest import CANARY_KEY

import cartesia_sync
from cartesia_sync import AuthenticationError, RateLimitError, ServerError
from cartesia_sync._embedded import server_endpoint
from cartesia_sync.local import LocalServer
from cartesia_sync.local._scripted_engine import ScriptedEngine
from cartesia_sync.testing import FakeCartesia, Scenario

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).parent / "data"
WAV = DATA / "utt01.wav"


def client(server: LocalServer, **kwargs) -> cartesia_sync.Client:
    kwargs.setdefault("api_key", CANARY_KEY)
    return cartesia_sync.Client(base_url=server.base_url, load_entrypoints=False, **kwargs)


def post_stt(server: LocalServer, files=None, data=None, params=None, headers=None, path="/stt") -> httpx.Response:
    headers = {"Authorization": f"Bearer {CANARY_KEY}", **(headers or {})}
    if files is None:
        files = {"file": ("utt01.wav", WAV.read_bytes(), "audio/wav")}
    if data is None:
        data = {"model": "ink-whisper"}
    return httpx.post(server.base_url + path, files=files, data=data, params=params, headers=headers, timeout=20)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) >= {"error_code", "title", "message", "request_id"}
    return body


@pytest.fixture
def fake():
    with FakeCartesia(api_key=CANARY_KEY, batch_text="The quick brown fox.", max_upload_bytes=2_000_000) as server:
        yield server


def test_every_route_is_on_one_port_and_declared(fake):
    assert fake.base_url == f"http://127.0.0.1:{fake.port}"
    assert "batch" in fake.routes
    assert server_endpoint(fake) == {"base_url": fake.base_url}
    status = httpx.get(fake.base_url + "/", timeout=5)
    assert (status.status_code, status.json()["ok"]) == (200, True)
    batch = post_stt(fake)
    assert batch.status_code == 200
    token = httpx.post(fake.base_url + "/access-token", headers={"X-API-Key": CANARY_KEY}, json={}, timeout=5)
    assert token.status_code == 200 and token.json()["token"]
    streamed = client(fake, model="ink-whisper").transcribe(WAV, mode="stream")
    assert streamed.text  # the WebSocket route on the same port


def test_pocketsphinx_batch_matches_the_stream_on_a_real_recording():
    with LocalServer("pocketsphinx", load_entrypoints=False) as server:
        batch = client(server).transcribe(WAV, mode="batch")
        stream = client(server).transcribe(WAV, mode="stream")
    assert batch.text.split() == stream.text.split()
    assert "weather" in batch.text
    assert 4.0 < batch.audio_seconds < 4.3, batch
    assert len(batch.words) == len(batch.text.split())
    assert all(0 <= w.start <= w.end <= batch.audio_seconds + 0.05 for w in batch.words)


def test_the_reply_has_the_documented_fields_and_words_only_when_asked(fake):
    plain = post_stt(fake).json()
    assert set(plain) == {"type", "text", "request_id", "language", "duration"}
    assert (plain["type"], plain["text"], plain["language"]) == ("transcript", "The quick brown fox.", "en")
    assert plain["duration"] == pytest.approx(soundfile.info(str(WAV)).duration, abs=0.01)
    worded = post_stt(fake, data={"model": "ink-whisper", "timestamp_granularities[]": "word", "language": "de"})
    body = worded.json()
    assert body["language"] == "de"
    assert [w["word"] for w in body["words"]] == ["The", "quick", "brown", "fox."]
    same = post_stt(fake, path="/audio/transcriptions").json()
    assert same["text"] == plain["text"]


@pytest.mark.parametrize("kind", ["path", "bytes", "array", "flac", "ogg", "resampled-bytes"])
def test_every_input_kind_through_the_library(kind, tmp_path):
    audio, rate = soundfile.read(str(WAV), dtype="int16")
    sources = {
        "path": lambda: WAV,
        "bytes": lambda: audio.tobytes(),
        "array": lambda: audio,
        "resampled-bytes": lambda: audio.tobytes(),
    }
    kwargs = {"sample_rate": 8000} if kind == "resampled-bytes" else {}
    if kind in ("flac", "ogg"):
        path = tmp_path / f"speech.{kind}"
        soundfile.write(str(path), audio, rate, format=kind.upper())
        sources[kind] = lambda: path
    with FakeCartesia(api_key=CANARY_KEY) as server:
        result = client(server, **kwargs).transcribe(sources[kind](), mode="batch")
    seconds = len(audio) / (8000 if kind == "resampled-bytes" else rate)
    assert result.audio_seconds == pytest.approx(seconds, abs=0.05)
    assert result.text  # the scripted engine describes the audio it got
    assert result.request_id


def test_raw_pcm_is_read_with_its_encoding_and_rate():
    audio, rate = soundfile.read(str(WAV), dtype="float32")
    with FakeCartesia(api_key=CANARY_KEY) as fake:
        answer = post_stt(
            fake,
            files={"file": ("upload", audio.astype("<f4").tobytes(), "application/octet-stream")},
            params={"encoding": "pcm_f32le", "sample_rate": str(rate)},
        )
    assert answer.status_code == 200
    assert answer.json()["duration"] == pytest.approx(len(audio) / rate, abs=0.01)


@pytest.mark.parametrize(
    ("data", "params", "code"),
    [
        ({}, {}, "model_required"),
        ({"model": "sonic-2"}, {}, "model_not_found"),
        ({"model": "ink-whisper", "timestamp_granularities[]": "segment"}, {}, "invalid_timestamp_granularities"),
        ({"model": "ink-whisper"}, {"encoding": "mp3"}, "invalid_encoding"),
        ({"model": "ink-whisper"}, {"encoding": "pcm_s16le", "sample_rate": "fast"}, "invalid_sample_rate"),
    ],
)
def test_bad_parameters_are_400_with_the_structured_body(fake, data, params, code):
    answer = post_stt(fake, data=data or {"language": "en"}, params=params)
    assert answer.status_code == 400
    assert error_of(answer)["error_code"] == code


def test_a_form_without_a_file_is_400_and_a_body_that_is_not_a_form_is_415(fake):
    answer = post_stt(fake, files={"other": ("a.txt", b"x")})
    assert (answer.status_code, error_of(answer)["error_code"]) == (400, "file_required")
    answer = httpx.post(
        fake.base_url + "/stt", content=b'{"model": "ink-whisper"}', headers={"X-API-Key": CANARY_KEY}, timeout=5
    )
    assert answer.status_code == 415
    assert "multipart/form-data" in error_of(answer)["message"]


def test_an_upload_that_is_not_audio_is_415_and_the_library_says_so(fake, tmp_path):
    answer = post_stt(fake, files={"file": ("notes.wav", b"these are notes, not audio" * 100, "audio/wav")})
    assert answer.status_code == 415
    message = error_of(answer)["message"]
    assert "not audio" in message and "/tmp" not in message  # the server's own temporary path is not shown


def test_an_upload_over_the_limit_is_413_before_the_body_is_read(fake):
    big = b"\0" * 3_000_000
    started = time.monotonic()
    answer = post_stt(fake, files={"file": ("big.wav", big, "audio/wav")})
    assert answer.status_code == 413
    assert error_of(answer)["error_code"] == "file_too_large"
    assert time.monotonic() - started < 6  # answered at once (the rest of the body is drained, not processed)
    audio, _ = soundfile.read(str(WAV), dtype="int16")
    with pytest.raises(ServerError) as caught:
        client(fake).transcribe(np.tile(audio, 20), mode="batch")  # about 2.6 MB of samples
    assert caught.value.status_code == 413


def test_a_chunked_upload_over_the_limit_is_413_while_it_streams(fake):
    def body():
        boundary = b"--b\r\n"
        yield boundary + b'Content-Disposition: form-data; name="model"\r\n\r\nink-whisper\r\n'
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 100_000

    answer = httpx.post(
        fake.base_url + "/stt",
        content=body(),
        headers={"X-API-Key": CANARY_KEY, "Content-Type": "multipart/form-data; boundary=b"},
        timeout=10,
    )
    assert answer.status_code == 413


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk_wrong"}, {"X-API-Key": "sk_wrong"}, {"Authorization": "Basic abc"}],
)
def test_a_bad_or_missing_key_is_401(fake, headers):
    answer = httpx.post(
        fake.base_url + "/stt", files={"file": ("a.wav", WAV.read_bytes())}, data={"model": "ink-whisper"},
        headers=headers, timeout=5,
    )  # fmt: skip
    assert (answer.status_code, error_of(answer)["error_code"]) == (401, "invalid_api_key")


def test_library_errors_for_every_status(fake):
    with pytest.raises(AuthenticationError) as auth:
        client(fake, api_key="sk_wrong").transcribe(WAV, mode="batch")
    assert auth.value.status_code == 401
    with pytest.raises(ServerError) as bad:
        client(fake, model="ink-2-nonexistent").transcribe(WAV, mode="batch")
    assert (bad.value.status_code, bad.value.error_code) == (400, "model_not_found")


def test_tokens_are_minted_with_the_key_only_and_checked_for_grant_and_expiry(fake):
    token = cartesia_sync.create_access_token(CANARY_KEY, expires_in=60, base_url=fake.base_url)
    assert client(fake, api_key=None, access_token=token).transcribe(WAV, mode="batch").text
    assert client(fake, api_key=None, access_token=token, model="ink-whisper").transcribe(WAV, mode="stream").text
    # a token cannot mint tokens; a token without the stt grant or past its expiry is refused
    refused = httpx.post(fake.base_url + "/access-token", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert refused.status_code == 401
    tts_only = cartesia_sync.create_access_token(CANARY_KEY, grants=("tts",), base_url=fake.base_url)
    with pytest.raises(AuthenticationError, match="stt"):
        client(fake, api_key=None, access_token=tts_only).transcribe(WAV, mode="batch")
    with pytest.raises(AuthenticationError):
        client(fake, api_key=None, access_token=tts_only, model="ink-whisper").transcribe(WAV, mode="stream")
    short = cartesia_sync.create_access_token(CANARY_KEY, expires_in=1, base_url=fake.base_url)
    time.sleep(1.1)
    with pytest.raises(AuthenticationError, match="expired"):
        client(fake, api_key=None, access_token=short).transcribe(WAV, mode="batch")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationError):
        client(fake, api_key=None, access_token=forged).transcribe(WAV, mode="batch")


@pytest.mark.parametrize("body", [{"expires_in": 3601}, {"expires_in": 0}, {"grants": {"music": True}}, [1]])
def test_bad_token_requests_are_400(fake, body):
    answer = httpx.post(fake.base_url + "/access-token", headers={"X-API-Key": CANARY_KEY}, json=body, timeout=5)
    assert answer.status_code == 400
    error_of(answer)


def test_unknown_routes_and_methods_are_404_and_405(fake):
    assert httpx.post(fake.base_url + "/tts/bytes", headers={"X-API-Key": CANARY_KEY}, timeout=5).status_code == 404
    assert httpx.put(fake.base_url + "/stt", headers={"X-API-Key": CANARY_KEY}, timeout=5).status_code == 405
    assert httpx.post(fake.base_url + "/", timeout=5).status_code == 405


def test_the_key_and_the_token_stay_out_of_logs_errors_and_records(fake, caplog):
    caplog.set_level(logging.DEBUG)
    token = cartesia_sync.create_access_token(CANARY_KEY, base_url=fake.base_url)
    client(fake, api_key=None, access_token=token).transcribe(WAV, mode="batch")
    with pytest.raises(AuthenticationError) as caught:
        client(fake, api_key=CANARY_KEY + "x").transcribe(WAV, mode="batch")
    post_stt(fake, data={"model": "nope"})
    shown = caplog.text + str(caught.value) + repr(caught.value) + repr(fake.connections)
    for secret in (CANARY_KEY, token):
        assert secret not in shown
    assert all(r.headers.get("authorization") in (None, "***") for r in fake.connections)


def test_fake_cartesia_scripts_429_then_success_and_the_library_retries():
    scenario = Scenario(reject_status=429, reject_headers=(("Retry-After", "0"),), faulty_connections=1)
    with FakeCartesia(batch_text="ok then", scenario=scenario) as fake:
        result = client(fake).transcribe(WAV, mode="batch")
        assert result.text == "ok then"
        assert [r.path for r in fake.connections] == ["/stt", "/stt"]
    with FakeCartesia(scenario=Scenario(reject_status=429, reject_headers=(("Retry-After", "0"),))) as fake:
        with pytest.raises(RateLimitError):
            client(fake).transcribe(WAV, mode="batch")
        assert len(fake.connections) == 3  # the first try and the library's two retries


@pytest.mark.parametrize("status", [400, 402, 500, 503])
def test_fake_cartesia_scripts_any_error_status(status):
    with FakeCartesia(scenario=Scenario(reject_status=status, reject_body="scripted")) as fake:
        answer = post_stt(fake)
    assert answer.status_code == status
    assert error_of(answer)["message"] == "scripted"


def test_fake_cartesia_scripts_a_slow_answer_and_records_the_form():
    with FakeCartesia(batch_text="slow", scenario=Scenario(reply_delay=1.5)) as fake:
        started = time.monotonic()
        result = client(fake, language="fr").transcribe(WAV, mode="batch")
        took = time.monotonic() - started
        record = fake.wait_finished()
    assert result.text == "slow"
    assert 1.5 <= took < 8
    assert record.form["language"] == ["fr"] and record.form["model"] == ["ink-whisper"]
    assert record.upload_bytes == WAV.stat().st_size


def test_a_stalled_upload_is_closed_after_the_idle_timeout_and_stop_is_bounded():
    server = LocalServer(ScriptedEngine(), load_entrypoints=False, idle_timeout=1.0).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(
            b"POST /stt HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n"
        )
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert time.monotonic() - started < 4  # the server hung up (idle_timeout 1 s), the client did not
        stuck = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        stuck.sendall(b"POST /stt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    finally:
        started = time.monotonic()
        server.stop(timeout=5)
        assert time.monotonic() - started < 6
    sock.close()
    stuck.close()
    assert not [t for t in threading.enumerate() if t.name == "local-stt-server"]


def test_a_malformed_request_gets_400_and_a_silent_socket_is_closed():
    with LocalServer(ScriptedEngine(), load_entrypoints=False, handshake_timeout=1.0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /stt HTTP/1.1\r\nBad Header Line\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 400")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            started = time.monotonic()
            assert sock.recv(4096) == b""
            assert time.monotonic() - started < 3


def test_requests_on_one_kept_alive_connection(fake):
    with httpx.Client(base_url=fake.base_url, headers={"X-API-Key": CANARY_KEY}, timeout=10) as http:
        for _ in range(3):
            answer = http.post("/stt", files={"file": ("a.wav", WAV.read_bytes())}, data={"model": "ink-whisper"})
            assert answer.status_code == 200
        assert http.get("/").json()["ok"] is True
    assert json.loads(answer.content)["text"] == "The quick brown fox."


def test_the_embedded_server_takes_batch_uploads(monkeypatch):
    for name in ("CARTESIA_API_KEY", "CARTESIA_STT_URL", "CARTESIA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    result = cartesia_sync.transcribe(str(WAV), mode="batch", load_entrypoints=False)
    assert "weather" in result.text


def test_stop_ends_a_batch_decode_in_progress_within_its_timeout():
    from slow_engine import SlowEngine

    server = LocalServer(SlowEngine(slowness=0.5), load_entrypoints=False).start()
    outcome: list[object] = []

    def upload() -> None:
        try:
            outcome.append(post_stt(server, files={"file": ("long.wav", _silence_wav(60.0), "audio/wav")}))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    uploader = threading.Thread(target=upload)
    uploader.start()
    time.sleep(1.5)  # the decode runs: 60 s of audio at half real time would take 30 s
    started = time.monotonic()
    server.stop(timeout=5)
    assert time.monotonic() - started < 7
    uploader.join(10)
    assert not uploader.is_alive()
    (answer,) = outcome
    assert isinstance(answer, httpx.HTTPError) or answer.status_code == 503


def test_head_and_expect_100_continue():
    with LocalServer(ScriptedEngine(), load_entrypoints=False) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"HEAD /stt HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 405")
        body = (
            b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nink-whisper\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            + WAV.read_bytes()
            + b"\r\n--b--\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /stt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 100")
            sock.sendall(body)
            answer = b""
            while b"}" not in answer:
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200") and b'"type": "transcript"' in answer


def _silence_wav(seconds: float) -> bytes:
    import io

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(16000 * seconds), dtype=np.int16), 16000, format="WAV")
    return buffer.getvalue()
